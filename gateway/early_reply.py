"""Replies started during a pause, before the end of speech is confirmed.

The utterance state machine (``gateway.utterance``) decides when to start, use or drop
one (``PREEMPTIVE_REPLY``); this does the I/O, in order, on one task per session:

* start: publish an ``LlmJob`` for the attempt (turn ``t5.p1`` for utterance ``t5``) with
  ``options.held``, so its LLM and TTS workers write to the session's held stream
  (``Keys.held_reply``), which this follows; its events wait here.
* use (the final transcript is the text it answered): confirm it to its LLM worker (which
  then keeps its news state and history, see ``llm_worker.early_reply``) and copy its
  events, held and to come, to the reply stream as turn ``t5``'s. From there they reach
  the client, a resumed session and a cancel exactly like any reply's.
* drop (the user went on speaking, the hypothesis changed, the final differs, a cancel):
  cancel it like any reply, so its workers stop within a token, and forget its events;
  nothing of it reaches the reply stream or the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.relay import ReplyRelay
from shared import metrics
from shared.control import CancelRecord, ControlChannel
from shared.messages import InputChunk, LlmJob, MessageError, ReplyEvent, decode, encode
from shared.settings import Settings
from shared.streams import StreamAppender, now_ms

log = logging.getLogger(__name__)

HELD_EVENTS_LIMIT = 1000  # a reply held longer than this many events is dropped
DETACHED_WAIT_S = 60.0  # a closed session's early reply: how long its turn may still take
_DETACHED: set[asyncio.Task[None]] = set()  # settling after their session closed


@dataclass
class _Attempt:
    turn_id: str  # the utterance's turn, as the client knows it
    text: str
    state: str = "held"  # held | used | dropped | done (its reply ended) | detached
    held: list[ReplyEvent] = field(default_factory=list)
    last_id: str = "0-0"  # the last entry of the held stream that was its


class EarlyReplies:
    def __init__(
        self,
        session_id: str,
        settings: Settings,
        redis: aioredis.Redis,
        relay: ReplyRelay,
        control: ControlChannel,
        job_options: Callable[[], dict[str, object]],
    ) -> None:
        self._session_id = session_id
        self._settings = settings
        self._keys = settings.keys
        self._redis = redis
        self._relay = relay
        self._control = control
        self._job_options = job_options
        self._replies = StreamAppender(redis, settings.session_ttl_seconds, settings.reply_maxlen)
        self._inputs = StreamAppender(redis, settings.turn_ttl_seconds)
        self._attempts: dict[str, _Attempt] = {}
        self._work: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._following = False

    # --- decisions (from the utterance state machine) ---------------------------------

    def start(self, turn_id: str, attempt_id: str, text: str, trace: str = "") -> None:
        """``trace``: the utterance's traceparent (tracing on), for the attempt's job."""
        if len(self._attempts) > 64:  # a long session: forget attempts that are over
            for old in [a for a, item in self._attempts.items() if item.state == "dropped"]:
                del self._attempts[old]
            for old in [a for a, item in self._attempts.items() if item.state == "done"][:-8]:
                del self._attempts[old]
        self._attempts[attempt_id] = _Attempt(turn_id, text)
        metrics.PREEMPTIVE_REPLIES.labels("started").inc()
        self._do(lambda: self._publish(attempt_id, text, trace))

    def use(self, attempt_id: str) -> None:
        attempt = self._attempts.get(attempt_id)
        if attempt is None or attempt.state != "held":
            return
        attempt.state = "used"
        metrics.PREEMPTIVE_REPLIES.labels("used").inc()
        held, attempt.held = attempt.held, []
        self._do(lambda: self._control.confirm(self._session_id, attempt_id))
        for event in held:
            self._forward(attempt, event)
            if _ends_reply(event):
                attempt.state = "done"

    def drop(self, attempt_id: str) -> None:
        attempt = self._attempts.get(attempt_id)
        if attempt is None or attempt.state != "held":
            return
        attempt.state = "dropped"
        attempt.held.clear()
        metrics.PREEMPTIVE_REPLIES.labels("discarded").inc()
        self._do(lambda: self._stop(attempt_id, CancelRecord(0, 0, now_ms())))

    async def stop_used(self, turn_id: str, record: CancelRecord) -> None:
        """The client cancelled ``turn_id``: stop the workers of the reply it got early."""
        for attempt_id, attempt in list(self._attempts.items()):
            if attempt.turn_id == turn_id and attempt.state == "used":
                await self._stop(attempt_id, record)

    async def close(self) -> None:
        """The connection ended: finish the queued I/O. A reply still held belongs to an
        utterance that ended and waits for its final transcript (the utterance state
        machine dropped all others): that transcript still decides it, without the
        client, so a resumed session finds the turn answered either way."""
        if self._task is not None:
            self._do(self._end)
            await asyncio.wait([self._task], timeout=5.0)
            self._task.cancel()
        if self._following:
            self._relay.unfollow(self._keys.held_reply(self._session_id))
        for attempt_id, attempt in list(self._attempts.items()):
            if attempt.state in ("held", "used"):  # undecided, or its reply still going
                task = asyncio.create_task(self._settle_detached(attempt_id, attempt))
                _DETACHED.add(task)
                task.add_done_callback(_DETACHED.discard)

    # --- events of the held stream ----------------------------------------------------

    def on_event(self, event: ReplyEvent, entry_id: str = "") -> None:
        attempt = self._attempts.get(event.turn_id)
        if attempt is None:
            return  # an attempt of an earlier connection, or not ours
        attempt.last_id = entry_id or attempt.last_id
        if attempt.state == "used":
            self._forward(attempt, event)
            if _ends_reply(event):
                attempt.state = "done"
        elif attempt.state == "held":
            attempt.held.append(event)
            if len(attempt.held) > HELD_EVENTS_LIMIT:
                self.drop(event.turn_id)

    def _forward(self, attempt: _Attempt, event: ReplyEvent) -> None:
        as_turn = dataclasses.replace(event, turn_id=attempt.turn_id)
        key = self._keys.reply(self._session_id)
        self._do(lambda: self._replies.append(key, as_turn))

    # --- I/O, in order ----------------------------------------------------------------

    def _do(self, work: Callable[[], Awaitable[None]]) -> None:
        self._work.put_nowait(work)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"early-{self._session_id}")

    async def _run(self) -> None:
        while True:
            work = await self._work.get()
            try:
                await work()
            except _Ended:
                return
            except (RedisError, OSError) as exc:
                log.warning("early reply I/O failed (%s)", type(exc).__name__)
            except Exception:
                log.exception("early reply I/O failed")

    async def _end(self) -> None:
        raise _Ended

    async def _publish(self, attempt_id: str, text: str, trace: str = "") -> None:
        held_key = self._keys.held_reply(self._session_id)
        if not self._following:  # follow before the first event can be written
            last = await self._redis.xrevrange(held_key, count=1)
            from_id = last[0][0].decode() if last else "0-0"
            await self._relay.follow(held_key, self.on_event, from_id)
            self._following = True
        attempt = self._attempts.get(attempt_id)
        if attempt is None or attempt.state == "dropped":
            return  # dropped before it started: nothing to cancel
        options = {**self._job_options(), "held": True, "reply_turn": attempt.turn_id}
        job = LlmJob(self._session_id, attempt_id, text, "speech", now_ms(), options, trace)
        await self._redis.xadd(
            self._keys.jobs_for("llm", self._session_id),
            encode(job),  # type: ignore[arg-type]
            maxlen=self._settings.jobs_maxlen,
            approximate=True,
        )

    async def _settle_detached(self, attempt_id: str, attempt: _Attempt) -> None:
        """Finish, without the client, what the connection left: decide a held reply by
        its final transcript, and copy the rest of a used one to the reply stream."""
        turn_id, reply_key = attempt.turn_id, self._keys.reply(self._session_id)
        if attempt.state == "used":
            await self._copy_rest(attempt_id, attempt, attempt.last_id)
            return
        try:
            async for event in self._read(reply_key):
                if event.turn_id == turn_id and event.event == "partial_transcription":
                    if event.data.get("is_final"):
                        break
            else:
                event = None
            if event is None or event.data.get("text") != attempt.text:
                metrics.PREEMPTIVE_REPLIES.labels("discarded").inc()
                await self._stop(attempt_id, CancelRecord(0, 0, now_ms()))
                return
            metrics.PREEMPTIVE_REPLIES.labels("used").inc()
            await self._control.confirm(self._session_id, attempt_id)
        except (RedisError, OSError) as exc:
            log.warning("early reply of a closed session not settled (%s)", type(exc).__name__)
            return
        await self._copy_rest(attempt_id, attempt, "0-0")

    async def _copy_rest(self, attempt_id: str, attempt: _Attempt, after: str) -> None:
        """Copy the attempt's events after ``after`` to the reply stream, to its end."""
        reply_key = self._keys.reply(self._session_id)
        try:
            async for event in self._read(self._keys.held_reply(self._session_id), after):
                if event.turn_id == attempt_id:
                    as_turn = dataclasses.replace(event, turn_id=attempt.turn_id)
                    await self._replies.append(reply_key, as_turn)
                    if _ends_reply(event):
                        return
        except (RedisError, OSError) as exc:
            log.warning("early reply of a closed session not copied (%s)", type(exc).__name__)

    async def _read(self, key: str, after: str = "0-0") -> AsyncIterator[ReplyEvent]:
        """The reply events of ``key`` after ``after``, then as they come (for as long as
        the turn could still take)."""
        last, loop = after, asyncio.get_running_loop()
        deadline = loop.time() + DETACHED_WAIT_S
        while loop.time() < deadline:
            answer = await self._redis.xread({key: last}, count=100, block=500)
            for _key, entries in answer or []:
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    with contextlib.suppress(MessageError):
                        if isinstance(event := decode(fields), ReplyEvent):
                            yield event

    async def _stop(self, attempt_id: str, record: CancelRecord) -> None:
        stop_tts = InputChunk(seq=0, end=True, cancelled=True)
        await asyncio.gather(
            self._control.cancel(self._session_id, attempt_id, record),
            self._inputs.append(self._keys.tts_input(self._session_id, attempt_id), stop_tts),
        )


def _ends_reply(event: ReplyEvent) -> bool:
    """The last event of a reply: its end, or an error after which nothing follows."""
    return event.event == "streaming_complete" or (
        event.event == "error" and "reason" not in event.data
    )


class _Ended(Exception):
    """The session closed: the I/O task ends after the work queued before."""
