"""Shared fixtures.

* ``redis_server``: one real valkey-server for the whole session; the ``redis`` fixture
  gives a client on database 0, flushed before each test.
* ``fixture_http``: a real HTTP server on loopback serving ``tests/fixtures`` (RSS feeds
  stand in for the news sites).
* ``system``: the whole product (``voice-agent up``) as a real subprocess on its own port,
  using database 1 of the test server and the fixture feeds.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from shared.embedded_redis import EmbeddedRedis, start_embedded_redis

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, proc: subprocess.Popen | None = None, limit_s: float = 60) -> None:
    """Poll ``url`` until it answers 2xx; fail early if ``proc`` exits meanwhile."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited early with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).is_success:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {limit_s:.0f} s")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis | str]:
    """A Redis-compatible server for the whole session (``TEST_REDIS_URL`` to use another)."""
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        yield external
        return
    server = start_embedded_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis | str) -> str:
    return redis_server if isinstance(redis_server, str) else redis_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, db=0)
    await client.flushdb()
    yield client
    await client.aclose()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def fixture_http() -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(FIXTURES))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class System:
    ws_url: str
    http_url: str
    redis_url: str
    log_path: Path


E2E_FEEDS = (
    "general=/e2e/top.xml",
    "technology=/e2e/technology.xml",
    "business=/e2e/business.xml",
    "sports=/e2e/sports.xml",
    "science=/e2e/science.atom",
    "world=/e2e/world.xml",
)


@contextlib.contextmanager
def running_system(
    redis_url: str, fixture_http: str, log_dir: Path, **extra_env: str
) -> Iterator[System]:
    """``voice-agent up`` in a subprocess on a free port, ready to serve, then SIGTERM."""
    port = free_port()
    log_path = log_dir / "voice-agent.log"
    feeds = ",".join(
        f"{spec.split('=')[0]}={fixture_http}{spec.split('=')[1]}" for spec in E2E_FEEDS
    )
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "NEWS_FEEDS": feeds,
        "LOG_LEVEL": "INFO",
        **extra_env,
    }
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voice_agent.cli", "up"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    http_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{http_url}/ready", proc)
    except RuntimeError as exc:
        proc.kill()
        raise RuntimeError(f"{exc}:\n{log_path.read_text()[-3000:]}") from None
    try:
        yield System(f"ws://127.0.0.1:{port}/ws/voice", http_url, redis_url, log_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def system(
    redis_url: str, fixture_http: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """The whole product on database 1 of the test server, with the fixture feeds."""
    with running_system(f"{redis_url}/1", fixture_http, tmp_path_factory.mktemp("system")) as up:
        yield up
