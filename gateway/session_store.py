"""Session records in Redis: what a client needs to come back after its socket dropped.

The record holds a hash of the resume token (never the token), the user, the reply
options and the turn counter. While the client is connected it lives for
``SESSION_TTL_SECONDS``; when the socket closes, every key of the session is set to
expire after ``RESUME_WINDOW_SECONDS``. Replay reads the reply stream, which already
holds every event the client was meant to see, in order.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from shared.control import CancelRecord
from shared.keys import Keys
from shared.messages import Message, MessageError, ReplyEvent, decode, encode


class ResumeRefused(Exception):
    """The session cannot be resumed; the message says why without revealing anything."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    user_id: str
    options: dict[str, Any]
    barge_in: bool
    turns: int


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def turn_number(turn_id: str) -> int:
    """``t12`` -> 12 (0 for anything else)."""
    return int(turn_id[1:]) if turn_id[:1] == "t" and turn_id[1:].isdigit() else 0


class SessionStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys, ttl: int, resume_window: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = ttl
        self.resume_window = resume_window

    async def create(
        self, session_id: str, user_id: str, options: dict[str, Any], barge_in: bool
    ) -> str:
        """Store a new session; returns its resume token (shown to the client once)."""
        token = secrets.token_urlsafe(24)
        key = self._keys.session(session_id)
        record = {
            "token": _digest(token),
            "user": user_id,
            "options": json.dumps(options),
            "barge_in": int(barge_in),
            "turns": 0,
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=record)
            pipe.expire(key, self._ttl)
            await pipe.execute()
        return token

    async def resume(self, session_id: str, token: str, user_id: str) -> SessionRecord:
        """The stored session, if ``token`` is its resume token and ``user_id`` its user."""
        raw = await self._redis.hgetall(self._keys.session(session_id))
        if not raw:
            raise ResumeRefused("unknown or expired session; start a new one")
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        if not hmac.compare_digest(fields.get("token", ""), _digest(token)):
            raise ResumeRefused("wrong resume token for this session")
        if not hmac.compare_digest(fields.get("user", ""), user_id):
            raise ResumeRefused("this session belongs to another user")
        await self._redis.expire(self._keys.session(session_id), self._ttl)
        return SessionRecord(
            user_id=fields["user"],
            options=json.loads(fields.get("options") or "{}"),
            barge_in=fields.get("barge_in") == "1",
            turns=int(fields.get("turns", "0")),
        )

    async def publish_turn(
        self, session_id: str, turn: int, stream: str, job: Message, maxlen: int
    ) -> None:
        """Publish a turn's first job and count the turn, in one round trip."""
        key = self._keys.session(session_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(stream, encode(job), maxlen=maxlen, approximate=True)
            pipe.hset(key, "turns", turn)
            pipe.expire(key, self._ttl)
            await pipe.execute()

    async def detach(self, session_id: str) -> None:
        """The client went away: keep the session for the resume window only."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in self._keys.session_keys(session_id):
                pipe.expire(key, self.resume_window)
            await pipe.execute()

    async def missed_events(
        self,
        session_id: str,
        last_turn_id: str | None,
        last_chunk_index: int | None,
        cancelled: dict[str, CancelRecord],
    ) -> tuple[list[ReplyEvent], str]:
        """Events after the client's last position, and the stream id to go live from."""
        entries = await self._redis.xrange(self._keys.reply(session_id))
        last_id = entries[-1][0].decode() if entries else "0-0"
        events: list[ReplyEvent] = []
        for _raw_id, fields in entries:
            try:
                event = decode(fields)
            except MessageError:
                continue
            if isinstance(event, ReplyEvent) and _was_shown(event, cancelled):
                events.append(event)
        return events[_start_after(events, last_turn_id, last_chunk_index) :], last_id


def _was_shown(event: ReplyEvent, cancelled: dict[str, CancelRecord]) -> bool:
    """Events of a cancelled turn that were never meant to reach the client are skipped."""
    cut = cancelled.get(event.turn_id)
    if cut is None or event.event == "interrupted" or event.data.get("interrupted"):
        return True
    if event.event == "tts_chunk":
        return int(event.data.get("chunk_index", 0)) < cut.chunks_sent
    return event.event == "partial_transcription" or (
        event.event == "agent_response" and not event.data.get("is_final")
    )


def _start_after(events: list[ReplyEvent], turn_id: str | None, chunk_index: int | None) -> int:
    """Index of the first event the client has not seen."""
    if turn_id is None:
        return 0
    if chunk_index is not None:
        for i, event in enumerate(events):
            if (
                event.turn_id == turn_id
                and event.event == "tts_chunk"
                and event.data.get("chunk_index") == chunk_index
            ):
                return i + 1
    # the whole turn was received (or its chunk is no longer retained): later turns only
    seen = turn_number(turn_id)
    for i, event in enumerate(events):
        if turn_number(event.turn_id) > seen:
            return i
    return len(events)
