"""Stopping on purpose is quiet: Ctrl-C of ``voice-agent up`` (SIGINT to the whole process
group, as a terminal sends it) and SIGTERM to a service whose Redis stops at the same
moment (``compose down``) end with exit code 0 and no warning lines. A second Ctrl-C
exits at once. A worker started before its Redis waits for it.

No clock in the assertions: each test waits for the process to exit (the stop times are
measured by bench/stop_time.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from shared.embedded_redis import start_embedded_redis
from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import ROOT, free_port
from voice_agent.client import VoiceClient

HANG_GUARD_S = 60  # a wait on an event, below the suite's timeout; not a speed goal
QUIET_ENV = {"LOG_FORMAT": "text", "LOG_LEVEL": "INFO", "LLM_PROVIDER": "echo"}


def start(argv: list[str], **env: str) -> subprocess.Popen[str]:
    """A process in its own session (so a test can signal its whole group, as a terminal
    does), its log on a pipe."""
    full_env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    full_env.update(QUIET_ENV, **env)
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=full_env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def read_until(proc: subprocess.Popen[str], *needles: str) -> list[str]:
    """Log lines up to the one after which every needle has been seen."""
    assert proc.stderr is not None
    lines, missing = [], set(needles)
    for line in proc.stderr:
        lines.append(line)
        missing = {n for n in missing if n not in line}
        if not missing:
            return lines
    raise AssertionError(f"exited ({proc.wait()}) before logging {missing}:\n{''.join(lines)}")


def up_ready(proc: subprocess.Popen[str]) -> tuple[list[str], int]:
    lines = read_until(proc, "asr worker", "llm worker", "tts worker", "startup complete")
    while sum(" consuming " in line for line in lines) < 3:
        lines += read_until(proc, " consuming ")
    port = int(re.search(r"embedded valkey started on port (\d+)", "".join(lines))[1])
    return lines, port


def port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def up() -> Iterator[subprocess.Popen[str]]:
    proc = start([sys.executable, "-m", "voice_agent.cli", "up"], PORT=str(free_port()))
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_ctrl_c_stops_up_cleanly_and_valkey_last(up: subprocess.Popen[str]) -> None:
    _, valkey_port = up_ready(up)
    (valkey,) = children(up.pid)
    assert os.getpgid(valkey) != os.getpgid(up.pid), "the terminal's Ctrl-C must not reach it"
    os.killpg(up.pid, signal.SIGINT)  # what the terminal does: the whole group
    rest = up.stderr.read()
    assert up.wait() == 0, rest
    assert "WARNING" not in rest and "ERROR" not in rest, rest
    assert "lost Redis" not in rest and "control channel lost" not in rest
    assert port_closed(valkey_port), "the embedded valkey was stopped too"


async def test_a_second_ctrl_c_exits_at_once() -> None:
    """A reply that never ends (a stalled model) holds the first Ctrl-C's orderly shutdown
    for a minute; the second one ends it now, and leaves no valkey behind."""
    with running_standin(StandIn(), free_port()) as standin:
        standin.chat = ChatScript(fault="stall")
        port = free_port()
        proc = start(
            [sys.executable, "-m", "voice_agent.cli", "up"],
            PORT=str(port),
            ASR_PROVIDER="none",
            LLM_PROVIDER="openai",
            LLM_BASE_URL=standin.base_url,
            LLM_API_KEY=standin.api_key,
            GATEWAY_DRAIN_SECONDS="60",
            SHUTDOWN_GRACE_SECONDS="60",
            LLM_TIMEOUT="60",
        )
        try:
            lines = read_until(proc, "Uvicorn running on")
            valkey_port = int(re.search(r"valkey started on port (\d+)", "".join(lines))[1])
            async with VoiceClient.connect(f"ws://127.0.0.1:{port}/ws/voice") as client:
                await client.send_command("the news please")
                while not standin.chat.requests:  # noqa: ASYNC110 (a thread fills it)
                    await asyncio.sleep(0.02)  # the reply has started, and stalls
                os.killpg(proc.pid, signal.SIGINT)
                await asyncio.to_thread(read_until, proc, "Shutting down")
                os.killpg(proc.pid, signal.SIGINT)
                rest = await asyncio.to_thread(proc.stderr.read)
                assert await asyncio.to_thread(proc.wait) == 130, rest
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert "stopped without waiting" in rest
    assert port_closed(valkey_port), "no valkey left behind"


async def reading_its_stream(url: str, stream: str) -> None:
    """Until the worker's first read: from then on it handles a lost Redis."""
    redis = aioredis.from_url(url)
    try:
        while not await redis.xinfo_consumers(stream, "tts"):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    finally:
        await redis.aclose()


@pytest.mark.parametrize("module", ["gateway", "tts_worker"])
def test_sigterm_with_redis_stopping_at_the_same_moment_is_quiet(module: str) -> None:
    store = start_embedded_redis()
    proc = start([sys.executable, "-m", module], REDIS_URL=store.url, PORT=str(free_port()))
    try:
        read_until(proc, "startup complete" if module == "gateway" else " consuming ")
        if module == "tts_worker":
            asyncio.run(reading_its_stream(store.url, "vna:tts:jobs"))
        proc.send_signal(signal.SIGTERM)
        store.kill()  # compose down: Redis goes too
        rest = proc.stderr.read()
        assert proc.wait() == 0, rest
        assert "WARNING" not in rest and "ERROR" not in rest, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        store.stop()


def test_a_worker_started_before_redis_waits_for_it(tmp_path: Path) -> None:
    port = free_port()
    proc = start([sys.executable, "-m", "tts_worker"], REDIS_URL=f"redis://127.0.0.1:{port}/0")
    store = None
    try:
        waiting = read_until(proc, "not reachable", "attempt 1")
        waiting += read_until(proc, "attempt 2")
        intervals = [float(m) for m in re.findall(r"retrying in ([\d.]+) s", "".join(waiting))]
        assert intervals == sorted(intervals) and intervals[0] < intervals[-1]  # growing
        store = start_embedded_redis(port)
        read_until(proc, "answers", " consuming ")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait() == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if store is not None:
            store.stop()


def test_a_killed_up_takes_its_valkey_along(up: subprocess.Popen[str]) -> None:
    """Its own session keeps the terminal's signals from the server, so the server must
    still go when ``voice-agent up`` is killed outright (the parent-death signal)."""
    up_ready(up)
    (valkey,) = children(up.pid)
    server = os.pidfd_open(valkey)  # readable once it has exited, whoever reaps it
    try:
        up.kill()
        up.wait()
        exited, _, _ = select.select([server], [], [], HANG_GUARD_S)
        assert exited, "the embedded valkey outlived voice-agent up"
    finally:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(server, signal.SIGKILL)  # leave no server behind
        os.close(server)
