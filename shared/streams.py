"""Redis Streams I/O used by every service: connect, publish, follow a turn's input.

Writes to per-turn and per-session streams always refresh the key's TTL in the same
round trip, so abandoned sessions clean themselves up; work streams (with groups) are
only ever trimmed, never expired (an expired key would drop its consumer group).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.early_reply import events_key
from shared.keys import Keys
from shared.messages import Message, ReplyEvent, encode
from shared.write_batcher import write_batcher

log = logging.getLogger(__name__)

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


def now_ms() -> int:
    return int(time.time() * 1000)


def plain_url(url: str | None) -> str:
    """``url`` as redis-py's clients take it (``redis+cluster://`` -> ``redis://``)."""
    return (url or DEFAULT_REDIS_URL).replace("+cluster://", "://", 1)


def is_cluster(redis: object) -> bool:
    return isinstance(redis, RedisCluster)


@functools.cache
def _once_per_process() -> dict[str, object]:
    """Connection arguments computed once. redis-py 7+ looks its own version up in the
    package metadata for every new connection (for ``CLIENT SETINFO``): 0.6 ms of CPU
    each on a quiet machine here and up to 7 ms under load, and pools grow by dozens of
    connections in the first burst of sessions, stalling the event loop in the first
    second (relay p99 10-18 ms there against 3-4 ms after). Older redis-py computes it
    once at import."""
    try:
        from redis.driver_info import DriverInfo  # redis-py 7+
    except ImportError:
        return {}
    return {"driver_info": DriverInfo()}


def connect(url: str | None, max_connections: int = 64, cluster: bool = False) -> aioredis.Redis:
    """A client with a bounded pool that retries transient errors with jittered backoff.

    The pool blocks (up to 10 s) when all its connections are busy instead of failing:
    under load, commands queue for a connection rather than erroring out. Blocking reads
    hold a connection each, and each process has only two (its stream mux and, in a
    worker, its XREADGROUP); on a cluster, one per slot read (``shared/mux.py``).

    ``cluster`` (or a ``redis+cluster://`` URL): a ``RedisCluster`` client that learns
    the slot map from the node in the URL and sends each command to its slot's master;
    ``max_connections`` then bounds each node's connections.
    """
    if cluster or (url or "").startswith(("redis+cluster:", "rediss+cluster:")):
        return RedisCluster.from_url(  # type: ignore[return-value]
            plain_url(url),
            max_connections=max_connections,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=6),
            socket_keepalive=True,
            **_once_per_process(),
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        url or DEFAULT_REDIS_URL,
        max_connections=max_connections,
        timeout=10,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=6),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=15,
        socket_keepalive=True,
        **_once_per_process(),
    )
    return aioredis.Redis.from_pool(pool)


async def ensure_group(redis: aioredis.Redis, stream: str, group: str) -> None:
    """Create ``group`` on ``stream`` (and the stream) unless it exists already."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def publish_job(redis: aioredis.Redis, stream: str, job: Message, maxlen: int) -> bytes:
    """Add a job to a work stream; trimmed approximately so it stays bounded."""
    return await write_batcher(redis).xadd(stream, encode(job), maxlen=maxlen)


async def append_with_ttl(
    redis: aioredis.Redis, key: str, message: Message, ttl_seconds: int, maxlen: int | None = None
) -> None:
    """XADD to a stream that has no group, refreshing its TTL in the same round trip."""
    await write_batcher(redis).xadd(key, encode(message), maxlen=maxlen, ttl=ttl_seconds)


class StreamAppender:
    """XADD to streams without groups on hot paths, refreshing a key's TTL only when due.

    A TTL refresh per audio chunk or partial doubles the commands for nothing: the key
    is refreshed on its first write and then at most every quarter of its TTL, so it
    still outlives its last write by at least three quarters of the TTL. Writes go
    through the process's ``WriteBatcher``.
    """

    def __init__(self, redis: aioredis.Redis, ttl_seconds: int, maxlen: int | None = None):
        self._batcher = write_batcher(redis)
        self._ttl = ttl_seconds
        self._maxlen = maxlen
        self._refresh_due: dict[str, float] = {}

    def append(self, key: str, message: Message) -> Awaitable[object]:
        """The write to await (its entry id). Between refreshes it is the batcher's own
        coroutine, not one wrapped around it: an audio frame's append passes through one
        layer less on its way in and again when its write returns."""
        if self._refresh_due.get(key, 0.0) > time.monotonic():
            return self._batcher.xadd(key, encode(message), maxlen=self._maxlen)
        return self._append_refreshing(key, message)

    async def _append_refreshing(self, key: str, message: Message) -> bytes:
        """The write that refreshes the key's TTL; due again only once it succeeded."""
        now = time.monotonic()
        entry_id = await self._batcher.xadd(
            key, encode(message), maxlen=self._maxlen, ttl=self._ttl
        )
        self._refresh_due[key] = now + self._ttl / 4
        if len(self._refresh_due) > 4096:  # forget keys not written for a while
            self._refresh_due = {k: t for k, t in self._refresh_due.items() if t > now}
        return entry_id


class ReplyWriter:
    """Writes client-visible events to a session's reply stream."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, ttl: int, maxlen: int):
        self._keys = keys
        self._appender = StreamAppender(redis, ttl, maxlen)

    async def emit(self, event: ReplyEvent, options: Mapping[str, Any] | None = None) -> None:
        """``options``: the job's, so an early reply's event goes aside under its own id
        (``shared.early_reply.events_key``), never to the client under an unknown turn."""
        key = events_key(self._keys, event.session_id, options)
        await self._appender.append(key, event)
