"""Per-session conversation memory in Redis: the last few exchanges, with a TTL.

Each exchange keeps its reply sentence by sentence, so a reply the user cut off
(``cancel`` or barge-in) is remembered only as far as it was heard: the cut is read
from the session's cancel records when the history is loaded, which is race-free
whichever of the cancel and the history write happens first.
"""

from __future__ import annotations

import msgpack
import redis.asyncio as aioredis

from shared.control import CancelRecord
from shared.engines import HistoryTurn
from shared.keys import Keys

CUT_MARK = "… [the user interrupted here]"


class ConversationMemory:
    def __init__(self, redis: aioredis.Redis, keys: Keys, max_turns: int, ttl_seconds: int):
        self._redis = redis
        self._keys = keys
        self._max_turns = max_turns
        self._ttl = ttl_seconds

    async def load(self, session_id: str) -> list[HistoryTurn]:
        if self._max_turns == 0:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.lrange(self._keys.history(session_id), -self._max_turns, -1)
            pipe.hgetall(self._keys.cancelled(session_id))
            raw, cut_records = await pipe.execute()
        cuts = {turn.decode(): CancelRecord.unpack(value) for turn, value in cut_records.items()}
        turns = []
        for item in raw:
            user, assistant, *rest = msgpack.unpackb(item, raw=False)
            if len(rest) == 2 and (cut := cuts.get(rest[0])) is not None:
                assistant = heard_part(rest[1], cut.sentences_heard)
            turns.append(HistoryTurn(user=user, assistant=assistant))
        return turns

    async def append(
        self,
        session_id: str,
        user: str,
        assistant: str,
        turn_id: str = "",
        sentences: list[str] | None = None,
    ) -> None:
        if self._max_turns == 0:
            return
        key = self._keys.history(session_id)
        entry = [user, assistant, turn_id, sentences or [assistant]]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, msgpack.packb(entry, use_bin_type=True))
            pipe.ltrim(key, -self._max_turns, -1)
            pipe.expire(key, self._ttl)
            await pipe.execute()


def heard_part(sentences: list[str], heard: int) -> str:
    """What the user heard of a reply they interrupted, marked as cut."""
    return (" ".join(sentences[:heard]) + " " + CUT_MARK).strip()
