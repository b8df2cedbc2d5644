"""Transcripts recognised on the device: one reply per utterance, however often revised.

A client that recognises speech itself (iOS's ``SFSpeechRecognizer``, the browser's Web
Speech API) knows the words while they are being spoken. Clients that say so send each
interim transcript as ``voice_command`` with ``is_final: false`` and the last one with
``is_final: true``; older clients send every partial result as a plain ``voice_command``,
a growing text every few hundred ms, then the final text once more. Both are one
utterance here, so a person gets one answer per question:

* ``is_final: false``: the newest text replaces the previous one; no reply yet. The
  ``is_final: true`` that follows ends the utterance (whatever its words) and the reply
  starts at once. Interims with nothing after them for ``INTERIM_TIMEOUT_MS`` count as
  final (a client that lost its recogniser still gets an answer).
* without ``is_final``: a command that revises the previous one (its words extend, shorten
  or correct it while keeping most of its first words) before that one has ended, or
  within ``COMMAND_REVISION_MS`` of its last transcript, is the same utterance. It ends
  by the end-of-speech rule of spoken turns, counted from the last change of its words
  (``EndOfSpeechPolicy``): the short wait after a complete request, the long one after a
  clearly unfinished one, ``END_OF_SPEECH_MS`` otherwise.
  A recogniser reports words, not silence: after a complete request the wait is also no
  shorter than 1.5 times the longest interval between the utterance's changes so far (up
  to ``END_OF_SPEECH_MS``), since a client that reports every 250 ms has not heard the
  end 150 ms after a report. A one-shot client pays only the short wait. The same words
  again (the recogniser's final result) change nothing; a revision after the end
  replaces the reply that began (cancelled with reason ``revised``), as a new turn.
* While the words are a complete request (``asr_worker.completeness``), their reply is
  started as an attempt (``gateway.early_reply`` holds its events); a change of words
  cancels it before anything of it is sent, and at the end it becomes the turn's reply if
  the words are still the same. At most ``MAX_ATTEMPTS`` attempts per utterance.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError

from asr_worker.completeness import is_complete
from gateway.utterance import EndOfSpeechPolicy
from shared import metrics, protocol
from shared.early_reply import MAX_ATTEMPTS, attempt_id

log = logging.getLogger(__name__)

INTERIM_TIMEOUT_MS = 3000  # interims with no final after them: the last one is taken
GAP_FACTOR = 1.5  # after a complete request, wait this many of the client's report gaps
FREE_REVISIONS = 200  # per utterance; beyond, each transcript counts against the rate limit
LATE_FINAL_S = 1.5  # a final after its interims timed out: the same words this late are no news
CLOSE_WAIT_S = 5.0

# words for comparing transcripts: case, punctuation and spacing do not matter; each
# Chinese or Japanese character is a word (those texts have no spaces)
_WORDS = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|[^\W_]+(?:'[^\W_]+)*")


class CommandIO(Protocol):
    """What the revisions ask the session to do."""

    def new_turn(self) -> tuple[str, int]:
        """The next turn id and number of the session."""

    async def replace_reply(self) -> None:
        """A new utterance begins: with barge-in on, it replaces an unfinished reply."""

    async def revise_reply(self, turn_id: str) -> None:
        """The words of an ended utterance changed: stop its reply (reason ``revised``)."""

    async def publish_command(
        self, turn_id: str, number: int, text: str, timings: dict[str, object]
    ) -> None:
        """Start the turn's reply to ``text`` (the request is complete)."""

    async def use_command_attempt(
        self,
        turn_id: str,
        number: int,
        attempt: tuple[str, str],
        text: str,
        timings: dict[str, object],
    ) -> None:
        """The attempt (id, the text it answered) started for the turn's final words
        ``text`` is its reply: let it through (if it cannot be, answer ``text`` anew)."""

    def start_early_reply(self, turn_id: str, attempt_id: str, text: str) -> None:
        """Start a reply to ``text`` now, holding its events."""

    def drop_early_reply(self, attempt_id: str) -> None:
        """Cancel the attempt; nothing of it may reach the client or the history."""

    def send_error(self, code: str, message: str, turn_id: str | None = None) -> None:
        """Tell the client something failed."""


@dataclass
class _Utterance:
    turn_id: str
    number: int
    text: str
    words: tuple[str, ...]
    changed_at: float  # loop time of the last change of its words
    heard_at: float  # loop time of its last transcript
    interim: bool = False  # the client sends is_final: only that (or a timeout) ends it
    longest_gap: float = 0.0  # seconds between two changes of its words
    transcripts: int = 1
    attempt: str | None = None  # the attempt under way for ``attempt_words``
    attempt_words: tuple[str, ...] = ()
    attempt_text: str = ""
    attempts: int = 0
    timed_out: bool = False  # interims ended without a final
    timer: asyncio.TimerHandle | None = None


class CommandRevisions:
    """One session's device transcripts; all decisions here, the I/O in ``CommandIO``."""

    def __init__(
        self,
        io: CommandIO,
        policy: EndOfSpeechPolicy | None,
        revision_ms: int,
        early_replies: bool,
    ) -> None:
        """``revision_ms=0`` or ``policy=None``: every plain ``voice_command`` is a turn."""
        self._io = io
        self._policy = policy
        self._window = revision_ms / 1000 if policy is not None else 0.0
        self._early_replies = early_replies
        self._lock = asyncio.Lock()  # a frame and a timer's end never interleave
        self._pending: _Utterance | None = None  # not ended yet
        self._last: _Utterance | None = None  # ended last (its reply may be under way)
        self._ending: set[asyncio.Task[None]] = set()

    @property
    def pending_turn(self) -> str | None:
        """The turn of the utterance still being revised (no reply yet)."""
        return self._pending.turn_id if self._pending else None

    def continues(self, text: str, is_final: bool | None) -> bool:
        """Whether this command belongs to the utterance being spoken or just ended (so it
        is handled at once, even while new requests wait for a reply to end)."""
        return self._classify(_words(text), is_final)[0] != "new"

    def counts_as_request(self, text: str, is_final: bool | None) -> bool:
        """For the rate limit: an utterance's revisions are one request."""
        kind, utterance = self._classify(_words(text), is_final)
        if kind == "new" or utterance is None:
            return True
        return utterance.transcripts >= FREE_REVISIONS

    def _classify(
        self, words: tuple[str, ...], is_final: bool | None
    ) -> tuple[str, _Utterance | None]:
        """new | revision (of the pending one) | repeat or after_end (of the last one)."""
        now = asyncio.get_running_loop().time()
        pending, last = self._pending, self._last
        if pending is not None and (is_final is not None or self._revises(pending, words)):
            return "revision", pending  # not ended yet: soon enough
        plain = is_final is None and self._window > 0
        if last is not None and (plain or (is_final is True and last.timed_out)):
            if last.words == words and now - last.heard_at <= max(self._window, LATE_FINAL_S):
                return "repeat", last
            if plain and now - last.heard_at <= self._window and self._revises(last, words):
                return "after_end", last
        return "new", None

    def _revises(self, utterance: _Utterance, words: tuple[str, ...]) -> bool:
        if utterance.interim or self._window <= 0:
            return False  # its client sends is_final: a plain command is another request
        return _similar(utterance.words, words)

    async def command(self, text: str, is_final: bool | None) -> None:
        """One ``voice_command`` from the client."""
        async with self._lock:
            words = _words(text)
            kind, utterance = self._classify(words, is_final)
            metrics.DEVICE_TRANSCRIPTS.labels(kind).inc()
            now = asyncio.get_running_loop().time()
            if kind == "revision" and utterance is not None:
                await self._revise(utterance, text, words, is_final, now)
            elif kind == "repeat" and utterance is not None:
                utterance.heard_at = now  # the recogniser's final result: nothing new
                utterance.transcripts += 1
            elif kind == "after_end" and utterance is not None:
                await self._io.revise_reply(utterance.turn_id)
                await self._begin(text, words, is_final, now, revising=utterance)
            else:
                if self._pending is not None:  # another request: answer this one as it is
                    await self._end(self._pending, self._scheduled_timings(self._pending))
                await self._begin(text, words, is_final, now)

    async def _begin(
        self,
        text: str,
        words: tuple[str, ...],
        is_final: bool | None,
        now: float,
        revising: _Utterance | None = None,
    ) -> None:
        await self._io.replace_reply()
        turn_id, number = self._io.new_turn()
        utterance = _Utterance(turn_id, number, text, words, now, now, interim=is_final is False)
        if revising is not None:  # the same utterance to the rate limit and the wait
            utterance.transcripts = revising.transcripts + 1
            utterance.longest_gap = max(revising.longest_gap, now - revising.changed_at)
        self._pending = utterance
        if is_final is True or (is_final is None and self._window <= 0):
            await self._end(utterance, {})  # a whole request at once, as it always was
        else:
            self._consider_attempt(utterance)
            self._schedule(utterance)

    async def _revise(
        self,
        utterance: _Utterance,
        text: str,
        words: tuple[str, ...],
        is_final: bool | None,
        now: float,
    ) -> None:
        utterance.transcripts += 1
        utterance.heard_at = now
        utterance.interim = utterance.interim or is_final is False
        utterance.text = text
        if words != utterance.words:
            utterance.longest_gap = max(utterance.longest_gap, now - utterance.changed_at)
            utterance.changed_at = now
            utterance.words = words
        if is_final is True:
            await self._end(utterance, {"end_of_speech_rule": "is_final"})
            return
        self._consider_attempt(utterance)
        self._schedule(utterance)

    def _consider_attempt(self, utterance: _Utterance) -> None:
        """A complete request gets its reply started; changed words cancel it."""
        if utterance.attempt is not None and utterance.attempt_words != utterance.words:
            self._io.drop_early_reply(utterance.attempt)
            utterance.attempt = None
        if (
            utterance.attempt is None
            and self._early_replies
            and utterance.attempts < MAX_ATTEMPTS
            and is_complete(utterance.text) is True
        ):
            utterance.attempts += 1
            utterance.attempt = attempt_id(utterance.turn_id, utterance.attempts)
            utterance.attempt_words = utterance.words
            utterance.attempt_text = utterance.text
            self._io.start_early_reply(utterance.turn_id, utterance.attempt, utterance.text)

    def _wait(self, utterance: _Utterance) -> tuple[float, int, str]:
        """(loop time the utterance ends at unless revised, the wait in ms, its rule)."""
        if utterance.interim or self._policy is None:
            return utterance.heard_at + INTERIM_TIMEOUT_MS / 1000, INTERIM_TIMEOUT_MS, "no_final"
        needed, rule = self._policy.silence_needed(is_complete(utterance.text))
        if rule == "complete":
            gaps = int(utterance.longest_gap * GAP_FACTOR * 1000)
            needed = max(needed, min(gaps, self._policy.default_ms))
        return utterance.changed_at + needed / 1000, needed, rule

    def _scheduled_timings(self, utterance: _Utterance) -> dict[str, object]:
        _, needed, rule = self._wait(utterance)
        return {"end_of_speech_rule": rule, "end_of_speech_silence_ms": needed}

    def _schedule(self, utterance: _Utterance) -> None:
        if utterance.timer is not None:
            utterance.timer.cancel()
        at, needed, rule = self._wait(utterance)
        timings = {"end_of_speech_rule": rule, "end_of_speech_silence_ms": needed}
        loop = asyncio.get_running_loop()
        utterance.timer = loop.call_at(at, self._time_up, utterance, timings)

    def _time_up(self, utterance: _Utterance, timings: dict[str, object]) -> None:
        task = asyncio.create_task(self._end_by_timer(utterance, timings))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def _end_by_timer(self, utterance: _Utterance, timings: dict[str, object]) -> None:
        async with self._lock:
            if self._pending is not utterance:
                return  # revised, ended or cancelled meanwhile
            utterance.timer = None
            utterance.timed_out = utterance.interim
            try:
                await self._end(utterance, timings)
            except RedisError:
                log.warning("Redis unavailable while starting a reply to a device transcript")
                self._io.send_error(
                    protocol.UNAVAILABLE,
                    "the service is briefly unavailable; try again",
                    utterance.turn_id,
                )

    async def _end(self, utterance: _Utterance, timings: dict[str, object]) -> None:
        """The utterance is complete: its reply starts (or the attempt becomes it)."""
        if utterance.timer is not None:
            utterance.timer.cancel()
            utterance.timer = None
        self._pending, self._last = None, utterance
        if timings:
            timings = {**timings, "transcripts": utterance.transcripts}
        attempt, utterance.attempt = utterance.attempt, None
        if attempt is not None and utterance.attempt_words == utterance.words:
            chosen = (attempt, utterance.attempt_text)
            await self._io.use_command_attempt(
                utterance.turn_id, utterance.number, chosen, utterance.text, timings
            )
            return
        if attempt is not None:
            self._io.drop_early_reply(attempt)
        await self._io.publish_command(utterance.turn_id, utterance.number, utterance.text, timings)

    def cancel(self, turn_id: str) -> bool:
        """The client cancelled ``turn_id``: if it is the utterance being revised, it ends
        without a reply. Whether it was."""
        utterance = self._pending
        if utterance is None or utterance.turn_id != turn_id:
            return False
        self._drop(utterance)
        return True

    def _drop(self, utterance: _Utterance) -> None:
        if utterance.timer is not None:
            utterance.timer.cancel()
        if utterance.attempt is not None:
            self._io.drop_early_reply(utterance.attempt)
            utterance.attempt = None
        self._pending = None

    async def close(self) -> None:
        """The connection ended. A plain command's request is whole: it is answered now
        (a resumed session finds the turn answered); interims without a final are not."""
        if self._ending:  # a pause that just ended an utterance: let its reply start
            await asyncio.wait(list(self._ending), timeout=CLOSE_WAIT_S)
        async with self._lock:
            utterance = self._pending
            if utterance is None:
                return
            if utterance.interim:
                self._drop(utterance)
            else:
                await self._end(utterance, self._scheduled_timings(utterance))


def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORDS.findall(text.lower()))


def _similar(before: tuple[str, ...], after: tuple[str, ...]) -> bool:
    """Whether ``after`` revises ``before``: one begins with the other, or more than half
    of the shorter one's words begin both ("what is the latest in tech" → "… in sports")."""
    if not before or not after:
        return False
    shared = 0
    for old, new in zip(before, after, strict=False):
        if old != new:
            break
        shared += 1
    shorter = min(len(before), len(after))
    return shared == shorter or (shared > 0 and 2 * shared > shorter)
