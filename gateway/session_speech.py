"""A session's speech: the utterance state machine's I/O and the barge-in's.

``gateway.utterance.UtteranceTracker`` and ``gateway.barge_in.BargeIn`` decide; these
methods open the spoken turn, write its input, start or drop early replies and tell the
utterance what the client has been shown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from gateway.session_inputs import SessionInputs
from shared import metrics, protocol
from shared.messages import FIRST_AUDIO, AsrJob, InputChunk, LlmJob, ReplyEvent
from shared.protocol import AudioInput, ProtocolError
from shared.streams import now_ms

log = logging.getLogger(__name__)


class SessionSpeech(SessionInputs):
    """The session's side of ``gateway.utterance.UtteranceIO``."""

    async def open_utterance(self, first: InputChunk | None) -> tuple[str, str]:
        if not self._limits.allow_command():  # a spoken turn counts as a request
            told, self._turn_refused = self._turn_refused, True
            raise ProtocolError(
                "" if told else protocol.RATE_LIMITED,
                f"more than {self._limits.commands_per_minute} requests and cancels a minute; "
                "this utterance was not heard",
            )
        turn_id, number = self._next_turn()
        job = AsrJob(
            self.session_id,
            turn_id,
            protocol.INPUT_SAMPLE_RATE,
            now_ms(),
            self.options.as_job_options(),
            self._spans.begin(turn_id, "speech") if self._spans is not None else "",
        )
        stream = self._keys.jobs_for("asr", self.session_id)
        maxlen = self.settings.jobs_maxlen
        input_key = self._keys.asr_input(self.session_id, turn_id)
        beside = {FIRST_AUDIO: first.audio} if first is not None and first.audio else None
        published = self.store.publish_turn(self.session_id, number, stream, job, maxlen, beside)
        if first is None:
            await published
        else:  # queued in this order, so both join the next write pipeline, job first
            await asyncio.gather(published, self._inputs.append(input_key, first))
        if self._spans is not None:
            self._spans.received(turn_id)
        return turn_id, input_key

    def send_input(self, input_key: str, chunk: InputChunk) -> Awaitable[object]:
        """The append itself, not a coroutine around it: one layer less for every
        audio frame to pass through, on the way in and again when its write returns."""
        if chunk.end and self._barge is not None:
            return self._send_end_marker(input_key, chunk)
        return self._inputs.append(input_key, chunk)

    async def _send_end_marker(self, input_key: str, chunk: InputChunk) -> None:
        assert self._barge is not None
        chunk = await self._barge.end_marker(input_key, chunk)
        await self._inputs.append(input_key, chunk)

    def input_complete(self, turn_id: str, timings: dict[str, object]) -> None:
        self.delivery.expect(turn_id, "speech")
        self.delivery.add_timings(turn_id, timings)
        metrics.END_OF_SPEECH.labels(str(timings.get("end_of_speech_rule"))).inc()
        self._onset.reset()
        if self._spans is not None:
            self._spans.end_of_speech(turn_id, timings)

    def start_early_reply(self, turn_id: str, attempt_id: str, text: str) -> None:
        if self._barge is not None and not self._barge.early_reply_allowed(turn_id, attempt_id):
            return  # speech over a reply, not yet known to be a request
        trace = self._spans.traceparent(turn_id) if self._spans is not None else ""
        self._early.start(turn_id, attempt_id, text, trace)

    def settle_early_reply(self, attempt_id: str) -> None:
        self._early.settle(attempt_id)

    def drop_early_reply(self, attempt_id: str) -> None:
        self._early.drop(attempt_id)

    def _hear_hypothesis(self, event: ReplyEvent) -> None:
        """Partials on their way to the client tell the utterance what has been heard."""
        if event.event != "partial_transcription":
            if event.ends_turn:  # ended without a final transcript (a stage failure)
                self._speech.hear_final(event.turn_id)
            return
        if event.data.get("is_final"):
            self._speech.hear_final(event.turn_id)
        else:
            text = str(event.data.get("text", ""))
            self._speech.hear(event.turn_id, event.data.get("complete"), text)


class _BargeInIO:
    """The session's side of ``gateway.barge_in.BargeInIO``."""

    def __init__(self, session: SessionSpeech) -> None:
        self._session = session
        self.playing_turn = session.delivery.playing_turn
        self.played_ms = session.delivery.played_ms
        self.pause = session.delivery.pause
        self.resume = session.delivery.resume

    async def cut(self, turn_id: str) -> None:
        await self._session.cancel(turn_id, "barge_in")

    async def answer(self, turn_id: str, text: str, speech_end_ms: int) -> None:
        session = self._session
        spans = session._spans
        job = LlmJob(
            session.session_id,
            turn_id,
            text,
            "speech",
            speech_end_ms,
            session.options.as_job_options(),
            trace=spans.traceparent(turn_id) if spans is not None else "",
        )
        stream = session._keys.jobs_for("llm", session.session_id)
        maxlen = session.settings.jobs_maxlen
        await session.store.publish_turn(session.session_id, session._turns, stream, job, maxlen)

    async def restart_utterance(self, turn_id: str, pcm: bytes) -> tuple[str, str] | None:
        speech = self._session._speech
        await speech.cancel(turn_id)
        await speech.push(AudioInput(pcm, False))
        current = speech.current
        return (current.turn_id, current.input_key) if current else None

    async def unanswered(self, turn_id: str) -> None:
        message = "only noise, an acknowledgement or the reply itself was heard; it goes on"
        data = {"code": protocol.NO_SPEECH, "message": message}
        event = ReplyEvent("error", self._session.session_id, turn_id, data)
        await self._session._write_interruption([event])
