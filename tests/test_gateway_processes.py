"""``GATEWAY_PROCESSES=2``: two gateway processes behind one port, run by a supervisor.

A real ``python -m gateway`` supervisor and its two gateways (``SO_REUSEPORT``) on the test
Redis. Each gateway logs ``gateway process PID listening`` once it accepts connections;
which process served a request: the ``x-gateway-id`` header of the WebSocket handshake,
``/health`` and ``/metrics`` (each process's relay id). Processes are watched through
pidfds: readable when the process has exited, whoever its parent is by then.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support import ROOT, free_port
from voice_agent.client import VoiceClient

ATTEMPTS = 64  # new connections land on a process by a hash of their port: 2**-63 to miss
HANG_GUARD_S = 60  # waits on events, bounded below the suite's timeout; not speed goals
LISTENING = re.compile(r"gateway process (\d+) listening")


@dataclass
class Gateways:
    """The supervisor, its processes (pid -> pidfd) and the address they share."""

    supervisor: subprocess.Popen[bytes]
    address: str
    pidfds: dict[int, int] = field(default_factory=dict)
    both_listening: threading.Event = field(default_factory=threading.Event)

    def read_log(self) -> None:
        """Drain the supervisor's stderr (its processes share it); note who listens."""
        assert self.supervisor.stderr is not None
        for raw in self.supervisor.stderr:
            sys.stderr.write(raw.decode(errors="replace"))
            if found := LISTENING.search(raw.decode(errors="replace")):
                pid = int(found.group(1))
                self.pidfds[pid] = os.pidfd_open(pid)
                if len(self.pidfds) == 2:
                    self.both_listening.set()
        self.both_listening.set()  # the supervisor and its processes are gone: stop waiting

    def wait_exited(self, pids: list[int]) -> list[int]:
        """Wait until these processes exit; the ones still running after the hang guard."""
        waiting = {self.pidfds[pid]: pid for pid in pids}
        poller = select.poll()
        for fd in waiting:
            poller.register(fd, select.POLLIN)
        for _event in range(len(waiting)):
            ready = poller.poll(HANG_GUARD_S * 1000)
            if not ready:
                break
            for fd, _mask in ready:
                poller.unregister(fd)
                waiting.pop(fd)
        return list(waiting.values())


@pytest.fixture
def gateways(redis_url: str) -> Iterator[Gateways]:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": f"{redis_url}/5",
        "STREAM_PREFIX": f"gp{uuid.uuid4().hex[:6]}",
        "ASR_PROVIDER": "none",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "GATEWAY_PROCESSES": "2",
        "LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway"], cwd=ROOT, env=env, stderr=subprocess.PIPE
    )
    running = Gateways(proc, f"127.0.0.1:{port}")
    reader = threading.Thread(target=running.read_log, daemon=True)
    reader.start()
    try:
        assert running.both_listening.wait(HANG_GUARD_S) and len(running.pidfds) == 2
        yield running
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(HANG_GUARD_S) == 0  # the supervisor stops both and exits cleanly
    finally:
        for fd in running.pidfds.values():  # a failed test leaves no process behind
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        reader.join(HANG_GUARD_S)
        for fd in running.pidfds.values():
            os.close(fd)


def test_processes_die_with_a_killed_supervisor(gateways: Gateways) -> None:
    gateways.supervisor.kill()  # SIGKILL: nothing of the supervisor runs any more
    gateways.supervisor.wait()
    assert gateways.wait_exited(list(gateways.pidfds)) == []
    host, port = gateways.address.split(":")
    socket.create_server((host, int(port))).close()  # no orphan holds the port


def test_a_process_that_dies_stops_the_set(gateways: Gateways) -> None:
    first, second = gateways.pidfds
    signal.pidfd_send_signal(gateways.pidfds[first], signal.SIGKILL)
    assert gateways.supervisor.wait(HANG_GUARD_S) == 1
    assert gateways.wait_exited([second]) == []


async def test_metrics_and_health_count_sessions_on_every_process(gateways: Gateways) -> None:
    async with VoiceClient.connect(f"ws://{gateways.address}/ws/voice") as client:
        served_by = client.ws.response.headers["x-gateway-id"]
        for _ in range(ATTEMPTS):
            async with httpx.AsyncClient() as fresh:  # a new connection each time
                page = await fresh.get(f"http://{gateways.address}/metrics")
                if page.headers["x-gateway-id"] == served_by:
                    continue
                health = (await fresh.get(f"http://{gateways.address}/health")).json()
            assert re.search(r"^vna_sessions_open 1\.0$", page.text, re.M), page.text
            assert re.search(r"^vna_gateway_processes 2\.0$", page.text, re.M)
            assert (health["sessions"], health["processes"]) == (1, 2), health
            return
    pytest.fail("no request reached the other gateway process")


async def test_a_session_resumes_on_the_other_process(gateways: Gateways) -> None:
    url = f"ws://{gateways.address}/ws/voice"
    async with VoiceClient.connect(url) as first:
        served_by = first.ws.response.headers["x-gateway-id"]
        query, session_id = first.resume_query(), first.session_id
    for _ in range(ATTEMPTS):
        async with VoiceClient.connect(f"{url}?{query}") as again:
            if again.ws.response.headers["x-gateway-id"] == served_by:
                query = again.resume_query()  # the same process: resume again, elsewhere
                continue
            assert again.connected["resumed"] is True
            assert again.session_id == session_id
            return
    pytest.fail("no connection reached the other gateway process")
