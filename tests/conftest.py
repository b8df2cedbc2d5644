"""Shared fixtures.

* ``redis_server``: one real valkey-server for the whole session; the ``redis`` fixture
  gives a client on database 0, flushed before each test.
* ``fixture_http``: a real HTTP server on loopback serving ``tests/fixtures`` (RSS feeds
  stand in for the news sites).
* ``system``: the whole product (``voice-agent up``) as a real subprocess on its own port,
  using database 1 of the test server and the fixture feeds.
* ``redis_cluster_url``: a local 3-master Redis Cluster (``tests/support/redis_cluster.py``)
  for the whole session, started by the first test that asks for it.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis.asyncio as aioredis

from shared.embedded_redis import EmbeddedRedis, start_embedded_redis

# the helpers live in tests.support (benchmarks use them too); these names stay importable
# from here for tests written before the move
from tests.support import (  # noqa: F401
    E2E_FEEDS,
    FIXTURES,
    ROOT,
    System,
    free_port,
    running_system,
    wait_for_http,
)
from tests.support.redis_cluster import local_cluster


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


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis+cluster://127.0.0.1:PORT`` of a local 3-master cluster (skips without
    redis-server; ``VNA_REQUIRE_CLUSTER=1`` makes that a failure)."""
    with local_cluster(tmp_path_factory.mktemp("redis-cluster")) as url:
        yield url


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


@pytest.fixture(scope="session")
def system(
    redis_url: str, fixture_http: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """The whole product on database 1 of the test server, with the fixture feeds."""
    with running_system(f"{redis_url}/1", fixture_http, tmp_path_factory.mktemp("system")) as up:
        yield up
