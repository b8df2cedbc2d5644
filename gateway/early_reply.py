"""The gateway's I/O for early replies; the protocol and its rules are in
``shared.early_reply`` (which also says what happens on each failure).

The utterance state machine (``gateway.utterance``) says when to start, drop or settle
an attempt; ``shared.early_reply.Attempts`` says what each input means for its events;
this does the I/O, in order, on one task per connection: open the attempt with its job,
follow the early stream, decide or read its verdict, copy a used attempt's events to
the reply stream as the turn's (whence they reach the client, a resumed session and a
cancel exactly like any reply's), cancel a dropped attempt's workers.

Each copied event carries its early entry id into the record (``EarlyVerdicts.copy``,
one script with the append): a gateway killed mid-copy leaves the position behind, and
the gateway that resumes the session (``resume``) copies the rest from there. Copies
only ever go forward, so a second copier (the old connection's, still alive) repeats
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.relay import ReplyRelay
from shared import metrics
from shared.control import CancelRecord, ControlChannel
from shared.early_reply import (
    DROPPED,
    EARLY_OPTION,
    FINISHED,
    REPLY_TURN_OPTION,
    USED,
    Attempt,
    Attempts,
    EarlyVerdicts,
    Phase,
    Step,
    as_turn,
    attempt_turn,
)
from shared.messages import InputChunk, LlmJob, MessageError, ReplyEvent, decode
from shared.settings import Settings
from shared.streams import StreamAppender, now_ms

log = logging.getLogger(__name__)

CLOSED_WAIT_S = 60.0  # a closed connection's used attempt: how long its reply may still take
SETTLE_TRIES = 5  # reading a verdict through a Redis blip
_CLOSED: set[asyncio.Task[None]] = set()  # copies of used attempts without their connection


class EarlyReplies:
    def __init__(
        self,
        session_id: str,
        settings: Settings,
        redis: aioredis.Redis,
        relay: ReplyRelay,
        control: ControlChannel,
        job_options: Callable[[], dict[str, object]],
        on_discarded: Callable[[], None] = lambda: None,
    ) -> None:
        self._session_id = session_id
        self._settings = settings
        self._keys = settings.keys
        self._redis = redis
        self._relay = relay
        self._control = control
        self._job_options = job_options
        self._on_discarded = on_discarded  # an attempt that was published is not the reply
        self._verdicts = EarlyVerdicts(redis, settings.keys, settings.session_ttl_seconds)
        self._inputs = StreamAppender(redis, settings.turn_ttl_seconds)
        self._attempts = Attempts()
        self._work: asyncio.Queue[Callable[[], Awaitable[object]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._following = False
        self._closing = False  # the I/O task ends once its queue is empty

    # --- decisions (from the utterance state machine) ---------------------------------

    def start(self, turn_id: str, attempt_id: str, text: str, trace: str = "") -> None:
        """``trace``: the utterance's traceparent (tracing on), for the attempt's job."""
        self._attempts.start(attempt_id, turn_id, text)
        metrics.PREEMPTIVE_REPLIES.labels("started").inc()
        self._do(lambda: self._open(attempt_id, turn_id, text, trace))

    def settle(self, attempt_id: str) -> None:
        """The utterance's final transcript is out: its verdict is in the record."""
        self._do(lambda: self._settle(attempt_id))

    def drop(self, attempt_id: str) -> None:
        self._apply(attempt_id, self._attempts.drop(attempt_id))

    def decide(self, attempt_id: str, words: str, otherwise: Callable[[], Awaitable[None]]) -> None:
        """The gateway's own final words (transcripts from the device, where no ASR worker
        decides): the attempt is used if it answered exactly ``words``; if it cannot be
        (it broke, or was never opened), ``otherwise`` answers the turn anew."""
        self._do(lambda: self._decide(attempt_id, words, otherwise))

    async def stop_turn(self, turn_id: str, record: CancelRecord) -> None:
        """The client cancelled ``turn_id``: stop its attempts, used or not yet decided
        (closing the record of those, so their LLM worker waits no longer)."""
        for attempt in self._attempts.cancel_turn(turn_id):
            await asyncio.gather(
                self._stop(attempt.attempt_id, record),
                self._verdicts.decide(self._session_id, attempt.attempt_id, None),
            )

    async def close(self) -> None:
        """The connection ended: withdraw the attempts still undecided (the normal job
        answers their turns, and a resume replays that), finish the queued I/O, and leave
        a task copying the rest of a used attempt's reply to the reply stream."""
        if self._following:  # from here a used attempt's events are read by ``_copy_rest``
            self._relay.unfollow(self._keys.early_replies(self._session_id), self.on_event)
        for attempt in self._attempts.all():
            self.drop(attempt.attempt_id)
        if self._task is not None:
            self._closing = True
            self._do(_nothing)  # wakes the task: it ends once the queue is empty
            await asyncio.wait([self._task], timeout=5.0)
            self._task.cancel()
        for attempt in self._attempts.all():
            if attempt.phase == Phase.USED:  # its reply still going
                _copy_aside(self._copy_rest(attempt))

    async def resume(self, cancelled: Iterable[str]) -> None:
        """The session resumed here: finish copying its used attempts whose copier died
        before their reply's end (a gateway killed), from where it stopped; the client
        gets the rest through the reply stream, like any reply. ``cancelled``: turns the
        client cut, left as they are."""
        try:
            unfinished = await self._verdicts.unfinished_copies(self._session_id)
        except (RedisError, OSError) as exc:
            log.warning("early replies of a resumed session not read (%s)", type(exc).__name__)
            return
        cut = set(cancelled)
        for attempt_id, position in unfinished.items():
            turn_id = attempt_turn(attempt_id)
            if turn_id not in cut:
                attempt = Attempt(attempt_id, turn_id, "", Phase.USED, last_id=position)
                _copy_aside(self._copy_rest(attempt))

    # --- events of the early stream ---------------------------------------------------

    def on_event(self, event: ReplyEvent, entry_id: str = "") -> None:
        self._apply(event.turn_id, self._attempts.on_event(event, entry_id))

    def _apply(self, attempt_id: str, step: Step) -> None:
        for entry_id, event in step.forward:
            self._do(lambda e=entry_id, ev=event: self._copy(attempt_id, e, ev))  # type: ignore[misc]
        if step.withdraw:
            self._do(lambda: self._settle(attempt_id))
        if step.stop:
            self._do(lambda: self._stop(attempt_id, CancelRecord(0, 0, now_ms())))

    # --- I/O, in order ----------------------------------------------------------------

    def _do(self, work: Callable[[], Awaitable[object]]) -> None:
        self._work.put_nowait(work)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"early-{self._session_id}")

    async def _run(self) -> None:
        while not (self._closing and self._work.empty()):
            work = await self._work.get()
            try:
                await work()
            except (RedisError, OSError) as exc:
                log.warning("early reply I/O failed (%s)", type(exc).__name__)
            except Exception:
                log.exception("early reply I/O failed")

    async def _open(self, attempt_id: str, turn_id: str, text: str, trace: str) -> None:
        """Follow the early stream (before the first event can be written), then publish
        the attempt's job with its record. Failing, the attempt was never open: the ASR
        worker publishes the normal job, and it is forgotten here."""
        opened = False
        try:
            if not self._following:
                early_key = self._keys.early_replies(self._session_id)
                last = await self._redis.xrevrange(early_key, count=1)
                from_id = last[0][0].decode() if last else "0-0"
                await self._relay.follow(early_key, self.on_event, from_id)
                self._following = True
            attempt = self._attempts.get(attempt_id)
            if attempt is None or not attempt.undecided or attempt.phase == Phase.WITHDRAWING:
                return  # given up before it started: never opened, nothing to cancel
            options = {**self._job_options(), EARLY_OPTION: True, REPLY_TURN_OPTION: turn_id}
            job = LlmJob(self._session_id, attempt_id, text, "speech", now_ms(), options, trace)
            opened = await self._verdicts.open(job, text, self._settings.jobs_maxlen)
        finally:
            if not opened:
                self._attempts.settled(attempt_id, "dropped")

    async def _settle(self, attempt_id: str, tries: int = SETTLE_TRIES) -> None:
        attempt = self._attempts.get(attempt_id)
        if attempt is None or not attempt.undecided:
            return
        try:
            verdict = await self._verdicts.decide(self._session_id, attempt_id, None)
        except (RedisError, OSError) as exc:
            if tries <= 1:
                raise
            log.warning("early reply verdict not read (%s); trying again", type(exc).__name__)
            loop = asyncio.get_running_loop()
            retry = lambda: self._settle(attempt_id, tries - 1)  # noqa: E731
            loop.call_later(0.2 * (SETTLE_TRIES - tries + 1), self._do, retry)
            return
        metrics.PREEMPTIVE_REPLIES.labels("used" if verdict == USED else "discarded").inc()
        if verdict != USED:
            self._on_discarded()
        self._apply(attempt_id, self._attempts.settled(attempt_id, verdict))

    async def _copy(self, attempt_id: str, entry_id: str, event: ReplyEvent) -> int:
        maxlen = self._settings.reply_maxlen
        return await self._verdicts.copy(self._session_id, attempt_id, entry_id, event, maxlen)

    async def _decide(
        self, attempt_id: str, words: str, otherwise: Callable[[], Awaitable[None]]
    ) -> None:
        attempt = self._attempts.get(attempt_id)
        verdict = DROPPED
        if attempt is not None and attempt.undecided:
            try:
                verdict = await self._verdicts.decide(self._session_id, attempt_id, words)
            except (RedisError, OSError) as exc:  # still open: its LLM worker withdraws it
                log.warning("early reply not decided (%s); answering anew", type(exc).__name__)
            metrics.PREEMPTIVE_REPLIES.labels("used" if verdict == USED else "discarded").inc()
            if verdict != USED:
                self._on_discarded()
            self._apply(attempt_id, self._attempts.settled(attempt_id, verdict))
        if verdict != USED:
            await otherwise()

    async def _copy_rest(self, attempt: Attempt) -> None:
        """Copy the used attempt's events after ``attempt.last_id`` to the reply stream,
        to its end (its connection closed, or its copier died, before the reply ended)."""
        try:
            early = self._keys.early_replies(self._session_id)
            async for entry_id, event in self._read(early, attempt):
                if event.turn_id == attempt.attempt_id:
                    renamed = as_turn(event, attempt.turn_id)
                    if await self._copy(attempt.attempt_id, entry_id, renamed) == FINISHED:
                        return
                    if event.ends_turn:
                        return
        except (RedisError, OSError) as exc:
            log.warning("early reply of a closed session not copied (%s)", type(exc).__name__)

    async def _read(self, key: str, attempt: Attempt) -> AsyncIterator[tuple[str, ReplyEvent]]:
        """The events of ``key`` after the attempt's last one, then as they come (for as
        long as the turn could still take)."""
        last, loop = attempt.last_id, asyncio.get_running_loop()
        deadline = loop.time() + CLOSED_WAIT_S
        while loop.time() < deadline:
            answer = await self._redis.xread({key: last}, count=100, block=500)
            for _key, entries in answer or []:
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    with contextlib.suppress(MessageError):
                        if isinstance(event := decode(fields), ReplyEvent):
                            yield last, event

    async def _stop(self, attempt_id: str, record: CancelRecord) -> None:
        stop_tts = InputChunk(seq=0, end=True, cancelled=True)
        await asyncio.gather(
            self._control.cancel(self._session_id, attempt_id, record),
            self._inputs.append(self._keys.tts_input(self._session_id, attempt_id), stop_tts),
        )


def _copy_aside(copy: Awaitable[None]) -> None:
    """A copy that outlives its connection (``finish_closed_copies`` waits for it)."""
    task = asyncio.ensure_future(copy)
    _CLOSED.add(task)
    task.add_done_callback(_CLOSED.discard)


async def finish_closed_copies(wait_s: float) -> None:
    """At shutdown: let used attempts of closed connections reach the reply stream."""
    if _CLOSED:
        await asyncio.wait(list(_CLOSED), timeout=wait_s)


async def _nothing() -> None:
    return None
