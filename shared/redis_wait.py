"""Redis at the edges of a process's life: waiting for it at start-up, and not waiting
for it when shutting down.

A service started before its Redis keeps trying, with one log line per attempt at growing
intervals (0.5 s doubling up to 10 s), so a ``compose up`` that starts everything at once
or a Redis that comes up late is no crash. Once stopping, commands retry once instead of
six times over seconds: with ``compose down`` Redis goes at the same moment, and the last
writes (hand-backs, heartbeat removal) are worth one quick try, not a shutdown that
outlasts its grace.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff, NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

FIRST_WAIT_S = 0.5
LONGEST_WAIT_S = 10.0


def redis_address(url: str | None) -> str:
    """Host and port only: a URL may carry a password, never show it."""
    if not url:
        return "localhost:6379"
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else parts.path


async def wait_for_redis(url: str | None, stop: asyncio.Event | None = None) -> bool:
    """PING until Redis answers (True) or ``stop`` is set (False); each attempt is one
    try (a probe client of its own, without the service client's retries)."""
    wait = FIRST_WAIT_S
    attempt = 1
    while True:
        probe = aioredis.Redis.from_url(
            (url or "redis://localhost:6379/0").replace("+cluster://", "://", 1),
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=LONGEST_WAIT_S,
        )
        try:
            async with asyncio.timeout(LONGEST_WAIT_S):
                await probe.ping()
            if attempt > 1:
                log.info("Redis at %s answers", redis_address(url))
            return True
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning(
                "Redis at %s not reachable (%s, attempt %d); retrying in %.1f s",
                redis_address(url),
                type(exc).__name__,
                attempt,
                wait,
            )
        finally:
            await probe.aclose()
        if stop is None:
            await asyncio.sleep(wait)
        else:
            try:
                async with asyncio.timeout(wait):
                    await stop.wait()
                return False
            except TimeoutError:
                pass
        wait = min(wait * 2, LONGEST_WAIT_S)
        attempt += 1


def retry_less(redis: aioredis.Redis) -> None:  # type: ignore[type-arg]
    """From now on a failed command is tried once more after 50 ms, then given up."""
    pool = getattr(redis, "connection_pool", None)
    if pool is None:  # a RedisCluster: its own retries stay as they are
        return
    for connection in (*pool._available_connections, *pool._in_use_connections):
        connection.retry.update_retries(1)  # calls under way hold this object
    redis.set_retry(Retry(ConstantBackoff(0.05), 1))  # connections made from now on
