"""Shared fixtures: one real valkey-server per test session, flushed before each test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from shared.embedded_redis import EmbeddedRedis, start_embedded_redis


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
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    yield client
    await client.aclose()
