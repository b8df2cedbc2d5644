"""Redis Streams I/O used by every service: connect, publish, follow a turn's input.

Writes to per-turn and per-session streams always refresh the key's TTL in the same
round trip, so abandoned sessions clean themselves up; work streams (with groups) are
only ever trimmed, never expired (an expired key would drop its consumer group).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.keys import Keys
from shared.messages import InputChunk, Message, ReplyEvent, decode, encode

log = logging.getLogger(__name__)

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


def now_ms() -> int:
    return int(time.time() * 1000)


def connect(url: str | None, **kwargs: object) -> aioredis.Redis:
    """A client that retries transient connection errors with jittered backoff."""
    return aioredis.Redis.from_url(
        url or DEFAULT_REDIS_URL,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=6),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=15,
        socket_keepalive=True,
        **kwargs,  # type: ignore[arg-type]
    )


async def ensure_group(redis: aioredis.Redis, stream: str, group: str) -> None:
    """Create ``group`` on ``stream`` (and the stream) unless it exists already."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def publish_job(redis: aioredis.Redis, stream: str, job: Message, maxlen: int) -> bytes:
    """Add a job to a work stream; trimmed approximately so it stays bounded."""
    entry_id: bytes = await redis.xadd(stream, encode(job), maxlen=maxlen, approximate=True)
    return entry_id


async def append_with_ttl(
    redis: aioredis.Redis, key: str, message: Message, ttl_seconds: int, maxlen: int | None = None
) -> None:
    """XADD to a stream that has no group, refreshing its TTL in the same round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xadd(key, encode(message), maxlen=maxlen, approximate=True)
        pipe.expire(key, ttl_seconds)
        await pipe.execute()


class ReplyWriter:
    """Writes client-visible events to a session's reply stream."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, ttl: int, maxlen: int):
        self._redis = redis
        self._keys = keys
        self._ttl = ttl
        self._maxlen = maxlen

    async def emit(self, event: ReplyEvent) -> None:
        key = self._keys.reply(event.session_id)
        await append_with_ttl(self._redis, key, event, self._ttl, self._maxlen)


class InputIdle(TimeoutError):
    """A turn's input stream got no new entry for too long (the client went away)."""


async def follow_input(
    redis: aioredis.Redis, key: str, idle_timeout: float, start_id: str = "0-0"
) -> AsyncIterator[tuple[str, InputChunk]]:
    """Yield a turn's input entries in order until (and including) the end marker.

    Reads with the id of the last entry seen, never ``$``, so nothing written between
    two reads is missed. Raises ``InputIdle`` after ``idle_timeout`` seconds of silence.
    """
    last_id = start_id
    deadline = time.monotonic() + idle_timeout
    while True:
        block_ms = max(1, int((deadline - time.monotonic()) * 1000))
        result = await redis.xread({key: last_id}, count=64, block=block_ms)
        if not result:
            if time.monotonic() >= deadline:
                raise InputIdle(f"no input on {key} for {idle_timeout:.0f}s")
            continue
        for raw_id, fields in result[0][1]:
            last_id = raw_id.decode()
            message = decode(fields)
            if not isinstance(message, InputChunk):
                log.warning("unexpected %s on input stream", type(message).__name__)
                continue
            yield last_id, message
            if message.end:
                return
        deadline = time.monotonic() + idle_timeout
