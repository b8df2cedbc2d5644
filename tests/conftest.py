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

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from shared.embedded_redis import EmbeddedRedis, start_embedded_redis
from tests.support import System, fixture_server, running_system
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


@pytest.fixture(scope="session")
def fixture_http() -> Iterator[str]:
    with fixture_server() as url:
        yield url


@pytest.fixture(scope="session")
def system(
    redis_url: str, fixture_http: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """The whole product on database 1 of the test server, with the fixture feeds."""
    with running_system(f"{redis_url}/1", fixture_http, tmp_path_factory.mktemp("system")) as up:
        yield up
