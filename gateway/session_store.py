"""Session records in Redis: what a client needs to come back after its socket dropped.

The record holds a hash of the resume token (never the token), the user, the reply
options and the turn counter. While the client is connected it lives for
``SESSION_TTL_SECONDS``; when the socket closes, every key of the session is set to
expire after ``RESUME_WINDOW_SECONDS``. Replay reads the reply stream, which already
holds every event the client was meant to see, in order: an event's stream entry id is
its ``event_id``, so "replay after ``last_event_id``" is exact; the cancel records say
which events of a cut turn were never shown, and those are skipped as they were live.
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
from shared.protocol import event_id_key
from shared.resp import pack
from shared.write_batcher import pack_xadd, write_batcher


class ResumeRefused(Exception):
    """The session cannot be resumed; the message says why without revealing anything."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    user_id: str
    options: dict[str, Any]
    barge_in: bool
    turns: int


@dataclass(frozen=True, slots=True)
class Replay:
    """A resume's view of the reply stream, split at the client's position."""

    seen: list[ReplyEvent]  # shown events the client already had, in order
    missed: list[tuple[str, ReplyEvent]]  # (event id, event) to send again, in order
    live_from: str  # the newest entry id: relay live after it


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
        self,
        session_id: str,
        turn: int,
        stream: str,
        job: Message,
        maxlen: int,
        beside: dict[bytes, bytes] | None = None,
    ) -> None:
        """Publish a turn's first job and count the turn, in the process's shared write
        pipeline (a hundred utterances may open at once). The session's key and its work
        stream share a slot on a cluster (``shared/keys.py``)."""
        key = self._keys.session(session_id)
        fields = encode(job) | (beside or {})  # ``beside``: fields next to the message
        packed = pack_xadd(stream.encode(), fields, maxlen)
        packed += pack(b"HSET", key.encode(), b"turns", b"%d" % turn)
        packed += pack(b"EXPIRE", key.encode(), b"%d" % self._ttl)

        async def through_redis_py() -> object:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)
                pipe.hset(key, "turns", turn)
                pipe.expire(key, self._ttl)
                return (await pipe.execute())[0]

        await write_batcher(self._redis).call(stream, packed, 3, through_redis_py)

    async def count_turn(self, session_id: str, turn: int) -> None:
        """Count a turn that published no job of its own (its reply was started early)."""
        key = self._keys.session(session_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, "turns", turn)
            pipe.expire(key, self._ttl)
            await pipe.execute()

    async def detach(self, session_id: str) -> None:
        """The client went away: keep the session for the resume window only."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in self._keys.session_keys(session_id):
                pipe.expire(key, self.resume_window)
            await pipe.execute()

    async def replay(
        self,
        session_id: str,
        last_event_id: str | None,
        last_turn_id: str | None,
        last_chunk_index: int | None,
        cancelled: dict[str, CancelRecord],
    ) -> Replay:
        """The events after the client's position (``last_event_id``, else the v2
        position ``last_turn_id``/``last_chunk_index``) and the stream id to go live from."""
        entries = await self._redis.xrange(self._keys.reply(session_id))
        live_from = entries[-1][0].decode() if entries else "0-0"
        shown: list[tuple[str, ReplyEvent]] = []
        for raw_id, fields in entries:
            try:
                event = decode(fields)
            except MessageError:
                continue
            entry_id = raw_id.decode()
            if isinstance(event, ReplyEvent) and _was_shown(event, entry_id, cancelled):
                shown.append((entry_id, event))
        if last_event_id is not None:
            start = _start_after_id(shown, last_event_id)
        else:
            start = _start_after(shown, last_turn_id, last_chunk_index)
        return Replay([event for _id, event in shown[:start]], shown[start:], live_from)


def is_interruption(event: ReplyEvent) -> bool:
    """``interrupted`` or ``streaming_complete {interrupted}``: written by the gateway's
    cancel (no worker writes them), shown even though the turn was cut."""
    return event.event == "interrupted" or bool(event.data.get("interrupted"))


def _was_shown(event: ReplyEvent, entry_id: str, cancelled: dict[str, CancelRecord]) -> bool:
    """Events of a cancelled turn that never reached the client are skipped."""
    cut = cancelled.get(event.turn_id)
    if cut is None or is_interruption(event):
        return True
    if cut.shown_until:  # exact: the turn's events up to the last one sent
        return event_id_key(entry_id) <= event_id_key(cut.shown_until)
    # a record from before protocol v3: judge by kind
    if event.event == "tts_chunk":
        return int(event.data.get("chunk_index", 0)) < cut.chunks_sent
    return event.event == "partial_transcription" or (
        event.event == "agent_response" and not event.data.get("is_final")
    )


def _start_after_id(events: list[tuple[str, ReplyEvent]], last_event_id: str) -> int:
    """Index of the first event after ``last_event_id`` (stream order, like SSE)."""
    after = event_id_key(last_event_id)
    for i, (entry_id, _event) in enumerate(events):
        if event_id_key(entry_id) > after:
            return i
    return len(events)


def _start_after(
    events: list[tuple[str, ReplyEvent]], turn_id: str | None, chunk_index: int | None
) -> int:
    """Protocol v2: index of the first event after the last chunk (or turn) received."""
    if turn_id is None:
        return 0
    if chunk_index is not None:
        for i, (_id, event) in enumerate(events):
            if (
                event.turn_id == turn_id
                and event.event == "tts_chunk"
                and event.data.get("chunk_index") == chunk_index
            ):
                return i + 1
    # the whole turn was received (or its chunk is no longer retained): later turns only
    seen = turn_number(turn_id)
    for i, (_id, event) in enumerate(events):
        if turn_number(event.turn_id) > seen:
            return i
    return len(events)
