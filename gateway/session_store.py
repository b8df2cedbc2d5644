"""Session records in Redis: what a client needs to come back after its socket dropped.

The record holds a hash of the resume token (never the token), the user, the reply
options and the turn counter. While the client is connected it lives for
``SESSION_TTL_SECONDS`` from the last turn (each turn refreshes it, and the detected
language with it) or ``ping`` (which refreshes every key of the session); when the
socket closes, every key of the session is set to expire after
``RESUME_WINDOW_SECONDS``, and a resume gives every one of them ``SESSION_TTL_SECONDS``
again (their writers refresh them only now and then, so the reply stream or the history
would otherwise expire under a resumed client). Resumes of one session are counted per
minute in Redis, so the limit holds across gateways.

Replay reads the reply stream, which already holds every event the client was meant to
see, in order: an event's stream entry id is its ``event_id``, so "replay after
``last_event_id``" is exact; the cancel records say which events of a cut turn were
never shown, and those are skipped as they were live.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import math
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from gateway.outbox import frame_cost
from shared import protocol
from shared.control import CancelRecord
from shared.keys import Keys
from shared.messages import Message, MessageError, ReplyEvent, decode, encode
from shared.protocol import event_id_key
from shared.resp import pack
from shared.write_batcher import pack_xadd, write_batcher

REPLAY_PAGE = 128  # entries per read of a replay


class ResumeRefused(Exception):
    """The session cannot be resumed; the message says why without revealing anything."""


class ResumeLimited(Exception):
    """Too many resumes of this session this minute; the client may try again later."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    user_id: str
    options: dict[str, Any]
    barge_in: bool
    turns: int


@dataclass(frozen=True, slots=True)
class Replay:
    """A resume's view of the reply stream, split at the client's position."""

    seen: list[ReplyEvent]  # shown events not sent again, in order, without audio
    missed: list[tuple[str, ReplyEvent]]  # (event id, event) to send again, in order
    live_from: str  # the newest entry id: relay live after it
    skipped: int = 0  # missed events older than the replay's bound (at the end of seen)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def turn_number(turn_id: str) -> int:
    """``t12`` -> 12 (0 for anything else)."""
    return int(turn_id[1:]) if turn_id[:1] == "t" and turn_id[1:].isdigit() else 0


class SessionStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        ttl: int,
        resume_window: int,
        resumes_per_minute: int = 0,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = ttl
        self.resume_window = resume_window
        self._resumes_per_minute = resumes_per_minute  # 0: unlimited

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
        await self._count_resume(session_id)
        await self.keep(session_id)
        return SessionRecord(
            user_id=fields["user"],
            options=json.loads(fields.get("options") or "{}"),
            barge_in=fields.get("barge_in") == "1",
            turns=int(fields.get("turns", "0")),
        )

    async def _count_resume(self, session_id: str) -> None:
        """``ResumeLimited`` past ``RESUMES_PER_MINUTE`` in the current minute (counted
        only once the token and user were right: nobody else can spend them)."""
        if self._resumes_per_minute <= 0:
            return
        key = self._keys.resumes(session_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(key, 0, ex=60, nx=True)  # the minute starts with its first resume
            pipe.incr(key)
            count = (await pipe.execute())[1]
        if count > self._resumes_per_minute:
            raise ResumeLimited(
                f"more than {self._resumes_per_minute} resumes of this session in a minute; "
                "resume again a little later"
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
        # the detected language lives as long as the record (it is set once, by a worker)
        language = self._keys.language(session_id)
        fields = encode(job) | (beside or {})  # ``beside``: fields next to the message
        packed = pack_xadd(stream.encode(), fields, maxlen)
        packed += pack(b"HSET", key.encode(), b"turns", b"%d" % turn)
        packed += pack(b"EXPIRE", key.encode(), b"%d" % self._ttl)
        packed += pack(b"EXPIRE", language.encode(), b"%d" % self._ttl)

        async def through_redis_py() -> object:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)
                pipe.hset(key, "turns", turn)
                pipe.expire(key, self._ttl)
                pipe.expire(language, self._ttl)
                return (await pipe.execute())[0]

        await write_batcher(self._redis).call(stream, packed, 4, through_redis_py)

    async def keep(self, session_id: str) -> None:
        """Every key of the session lives ``SESSION_TTL_SECONDS`` from now (a resume, a
        client that stays connected)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in self._keys.session_keys(session_id):
                pipe.expire(key, self._ttl)  # a key that does not exist stays so
            await pipe.execute()

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
        max_bytes: int,
    ) -> Replay:
        """The events after the client's position (``last_event_id``, else the v2
        position ``last_turn_id``/``last_chunk_index``), the newest ``max_bytes`` of them
        as frames, and the stream id to go live from.

        Read in two passes so a resume holds about ``max_bytes`` of audio, not the whole
        stream's (``REPLY_MAXLEN`` chunks, megabytes; a restarted gateway's clients all
        resume at once): the first, page by page, keeps each event without its audio;
        the second reads back the audio of the events replayed only."""
        key = self._keys.reply(session_id)
        shown: list[tuple[str, ReplyEvent]] = []  # without audio
        audio_bytes: list[int] = []
        live_from = "0-0"
        async for raw_id, fields in self._entries(key, "-", "+"):
            live_from = raw_id.decode()
            try:
                event = decode(fields)
            except MessageError:
                continue
            if isinstance(event, ReplyEvent) and _was_shown(event, live_from, cancelled):
                shown.append((live_from, dataclasses.replace(event, audio=b"")))
                audio_bytes.append(len(event.audio))
        if last_event_id is not None:
            start = _start_after_id(shown, last_event_id)
        else:
            start = _start_after(shown, last_turn_id, last_chunk_index)
        kept = start + _newest_within(shown[start:], audio_bytes[start:], max_bytes)
        missed = await self._with_audio(key, shown[kept:], audio_bytes[kept:])
        return Replay([event for _id, event in shown[:kept]], missed, live_from, kept - start)

    async def _entries(
        self, key: str, first: str, last: str
    ) -> AsyncIterator[tuple[bytes, dict[bytes, bytes]]]:
        """The stream's entries from ``first`` to ``last``, a page at a time."""
        while True:
            page = await self._redis.xrange(key, min=first, max=last, count=REPLAY_PAGE)
            for entry in page:
                yield entry
            if len(page) < REPLAY_PAGE:
                return
            first = "(" + page[-1][0].decode()

    async def _with_audio(
        self, key: str, events: list[tuple[str, ReplyEvent]], audio_bytes: list[int]
    ) -> list[tuple[str, ReplyEvent]]:
        """The events again with their audio (an entry trimmed meanwhile is left out)."""
        pairs = zip(events, audio_bytes, strict=True)
        wanted = {entry_id for (entry_id, _event), size in pairs if size}
        if not wanted:
            return events
        audio: dict[str, bytes] = {}
        first, last = min(wanted, key=event_id_key), max(wanted, key=event_id_key)
        async for raw_id, fields in self._entries(key, first, last):
            entry_id = raw_id.decode()
            if entry_id in wanted:
                with contextlib.suppress(MessageError):
                    event = decode(fields)
                    audio[entry_id] = event.audio if isinstance(event, ReplyEvent) else b""
        return [
            (entry_id, dataclasses.replace(event, audio=audio[entry_id]) if size else event)
            for (entry_id, event), size in zip(events, audio_bytes, strict=True)
            if not size or audio.get(entry_id)
        ]


def replay_cost(entry_id: str, event: ReplyEvent, audio_bytes: int) -> int:
    """What the event weighs in the outbox as a frame (its audio is base64 in it)."""
    text = protocol.reply_frame(
        event.event, event.session_id, event.turn_id, event.data, b"", entry_id
    )
    return frame_cost(text) + 4 * math.ceil(audio_bytes / 3)


def _newest_within(
    events: list[tuple[str, ReplyEvent]], audio_bytes: list[int], max_bytes: int
) -> int:
    """Index of the oldest of the newest events that fit in ``max_bytes`` (the newest
    always does, as a single event always fits in the outbox)."""
    start, size = len(events), 0
    while start > 0:
        cost = replay_cost(*events[start - 1], audio_bytes[start - 1])
        if size + cost > max_bytes and start < len(events):
            break
        size += cost
        start -= 1
    return start


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
