"""Relays every session's reply stream to its WebSocket with one blocking reader.

One XREAD over all of this process's reply streams (instead of one blocked connection
per session) keeps a gateway at a handful of Redis connections however many sessions it
holds. A per-process "doorbell" stream is part of the read, so registering a session
wakes the reader and its stream joins immediately.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from shared.keys import Keys
from shared.messages import MessageError, ReplyEvent, decode

log = logging.getLogger(__name__)

Deliver = Callable[[ReplyEvent, str], None]


@dataclass
class _Subscription:
    session_id: str
    key: str
    last_id: str
    deliver: Deliver


class ReplyRelay:
    def __init__(self, redis: aioredis.Redis, keys: Keys, block_ms: int = 5000) -> None:
        self._redis = redis
        self._keys = keys
        self._block_ms = block_ms
        self.gateway_id = uuid.uuid4().hex[:12]
        self._wake_key = keys.gateway_wake(self.gateway_id)
        self._wake_id = "0-0"  # the key is new (unique gateway id): read it all
        self._subs: dict[str, _Subscription] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reply-relay")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._redis.delete(self._wake_key)

    async def subscribe(self, session_id: str, deliver: Deliver, from_id: str = "0-0") -> None:
        """Start relaying ``session_id``'s replies (after ``from_id``) to ``deliver``."""
        key = self._keys.reply(session_id)
        self._subs[session_id] = _Subscription(session_id, key, from_id, deliver)
        await self._ring()

    def unsubscribe(self, session_id: str) -> None:
        self._subs.pop(session_id, None)

    async def _ring(self) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(self._wake_key, {b"r": b"1"}, maxlen=16, approximate=False)
            pipe.expire(self._wake_key, 3600)
            await pipe.execute()

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                await self._read_once()
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("reply relay read failed; retrying in %.2fs", backoff, exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _read_once(self) -> None:
        streams = {self._wake_key: self._wake_id}
        subs_by_key = {sub.key: sub for sub in self._subs.values()}
        streams.update({key: sub.last_id for key, sub in subs_by_key.items()})
        result = await self._redis.xread(streams, count=256, block=self._block_ms)
        for raw_key, entries in result or ():
            key = raw_key.decode()
            if key == self._wake_key:
                self._wake_id = entries[-1][0].decode()
                continue
            sub = subs_by_key.get(key)
            if sub is None or self._subs.get(sub.session_id) is not sub:
                continue  # unsubscribed while we were reading
            for raw_id, fields in entries:
                sub.last_id = raw_id.decode()
                try:
                    event = decode(fields)
                except MessageError:
                    log.warning("undecodable reply entry %s skipped", sub.last_id)
                    continue
                if isinstance(event, ReplyEvent):
                    sub.deliver(event, sub.last_id)
