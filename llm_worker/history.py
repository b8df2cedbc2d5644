"""Per-session conversation memory in Redis: the last few exchanges, with a TTL."""

from __future__ import annotations

import msgpack
import redis.asyncio as aioredis

from shared.engines import HistoryTurn
from shared.keys import Keys


class ConversationMemory:
    def __init__(self, redis: aioredis.Redis, keys: Keys, max_turns: int, ttl_seconds: int):
        self._redis = redis
        self._keys = keys
        self._max_turns = max_turns
        self._ttl = ttl_seconds

    async def load(self, session_id: str) -> list[HistoryTurn]:
        if self._max_turns == 0:
            return []
        raw = await self._redis.lrange(self._keys.history(session_id), -self._max_turns, -1)
        turns = []
        for item in raw:
            user, assistant = msgpack.unpackb(item, raw=False)
            turns.append(HistoryTurn(user=user, assistant=assistant))
        return turns

    async def append(self, session_id: str, user: str, assistant: str) -> None:
        if self._max_turns == 0:
            return
        key = self._keys.history(session_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, msgpack.packb([user, assistant], use_bin_type=True))
            pipe.ltrim(key, -self._max_turns, -1)
            pipe.expire(key, self._ttl)
            await pipe.execute()
