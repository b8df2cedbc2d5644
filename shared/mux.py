"""Follow many Redis streams with one blocking reader per process.

A gateway relays hundreds of reply streams and a worker follows the input streams of
all its turns. One blocked ``XREAD`` per stream would cost one Redis connection each;
``StreamMux`` instead issues a single ``XREAD BLOCK`` over every followed stream plus a
per-process "doorbell" stream. Subscribing rings the doorbell, so a new stream joins the
read at once. Ids are tracked per stream, never ``$``, so no entry is missed between
two reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.messages import InputChunk, MessageError, decode

log = logging.getLogger(__name__)

Entry = tuple[str, dict[bytes, bytes]]
Deliver = Callable[[str, dict[bytes, bytes]], None]


class InputIdle(TimeoutError):
    """A followed stream got no new entry for too long (its writer went away)."""


@dataclass
class _Subscription:
    key: str
    last_id: str
    deliver: Deliver


class StreamMux:
    def __init__(self, redis: aioredis.Redis, wake_key: str, block_ms: int = 5000) -> None:
        self._redis = redis
        self._wake_key = wake_key
        self._wake_id = "0-0"  # the doorbell key is unique to this process: read all of it
        self._block_ms = block_ms
        self._subs: dict[str, _Subscription] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def followed(self) -> int:
        return len(self._subs)

    def start(self, name: str = "stream-mux") -> None:
        self._task = asyncio.create_task(self._run(), name=name)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._redis.delete(self._wake_key)

    async def subscribe(self, key: str, deliver: Deliver, from_id: str = "0-0") -> None:
        """Call ``deliver(entry_id, fields)`` for every entry of ``key`` after ``from_id``."""
        self._subs[key] = _Subscription(key, from_id, deliver)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(self._wake_key, {b"r": b"1"}, maxlen=16, approximate=False)
            pipe.expire(self._wake_key, 3600)
            await pipe.execute()

    def unsubscribe(self, key: str) -> None:
        self._subs.pop(key, None)

    async def follow(
        self, key: str, idle_timeout: float, from_id: str = "0-0"
    ) -> AsyncIterator[tuple[str, InputChunk]]:
        """Yield a turn's ``InputChunk``s in order until (and including) the end marker.

        Raises ``InputIdle`` after ``idle_timeout`` seconds without a new entry.
        """
        queue: asyncio.Queue[Entry] = asyncio.Queue()
        await self.subscribe(key, lambda *entry: queue.put_nowait(entry), from_id)
        try:
            while True:
                try:
                    async with asyncio.timeout(idle_timeout):
                        entry_id, fields = await queue.get()
                except TimeoutError:
                    raise InputIdle(f"no input on {key} for {idle_timeout:.0f}s") from None
                try:
                    message = decode(fields)
                except MessageError:
                    log.warning("undecodable input entry %s skipped", entry_id)
                    continue
                if not isinstance(message, InputChunk):
                    continue
                yield entry_id, message
                if message.end:
                    return
        finally:
            self.unsubscribe(key)

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                await self._read_once()
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.warning("stream mux lost Redis (%s); retrying in %.2fs", exc, backoff)
                await asyncio.sleep(backoff * (1 + random.random()))  # jitter: no herd
                backoff = min(backoff * 2, 2.0)
            except Exception:
                log.warning("stream mux read failed; retrying in %.2fs", backoff, exc_info=True)
                await asyncio.sleep(backoff * (1 + random.random()))
                backoff = min(backoff * 2, 2.0)

    async def _read_once(self) -> None:
        subs = dict(self._subs)
        streams = {self._wake_key: self._wake_id}
        streams.update({key: sub.last_id for key, sub in subs.items()})
        result = await self._redis.xread(streams, count=256, block=self._block_ms)
        for raw_key, entries in result or ():
            key = raw_key.decode()
            if key == self._wake_key:
                self._wake_id = entries[-1][0].decode()
                continue
            sub = subs.get(key)
            if sub is None or self._subs.get(key) is not sub:
                continue  # unsubscribed while we were reading
            for raw_id, fields in entries:
                sub.last_id = raw_id.decode()
                sub.deliver(sub.last_id, fields)
