"""``GATEWAY_PROCESSES=2``: two gateway processes behind one port, sessions across them.

A real ``python -m gateway`` supervisor and its two gateways (``SO_REUSEPORT``) on the test
Redis. Which process served a connection: ``/health``'s ``gateway`` and the WebSocket
handshake's ``x-gateway-id`` header (each process's relay id).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support import ROOT, free_port, wait_for_http
from voice_agent.client import VoiceClient

ATTEMPTS = 64  # new connections land on a process by a hash of their port: 2**-63 to miss


@pytest.fixture
def two_gateways(redis_url: str) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": f"{redis_url}/5",
        "STREAM_PREFIX": f"gp{uuid.uuid4().hex[:6]}",
        "ASR_PROVIDER": "none",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "GATEWAY_PROCESSES": "2",
    }
    proc = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=ROOT, env=env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", proc)
        _wait_for_both(port)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0  # the supervisor stops both and exits cleanly


def _wait_for_both(port: int) -> None:
    """Until both processes listen: the first one up answers /health while the second is
    still starting, and every connection would land on the first (a busy machine)."""
    seen: set[str] = set()
    for _poll in range(3000):  # a hang guard (60 s), not a speed goal
        with httpx.Client() as fresh:  # a new connection: any listening process may take it
            seen.add(fresh.get(f"http://127.0.0.1:{port}/health", timeout=10).json()["gateway"])
        if len(seen) == 2:
            return
        time.sleep(0.02)
    raise AssertionError("the second gateway process never answered")


def test_new_connections_reach_both_processes(two_gateways: str) -> None:
    seen = set()
    for _ in range(ATTEMPTS):
        with httpx.Client() as fresh:  # a new connection each time
            seen.add(fresh.get(f"http://{two_gateways}/health").json()["gateway"])
        if len(seen) == 2:
            break
    assert len(seen) == 2, seen


async def test_a_session_resumes_on_the_other_process(two_gateways: str) -> None:
    url = f"ws://{two_gateways}/ws/voice"
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
