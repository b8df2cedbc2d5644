"""A session's inputs: the client's frames, checked, rate-limited and turned into turns.

Text frames become commands for the LLM stage, audio feeds the utterance; a ``cancel``
stops a reply. With barge-in off, input that arrives while a reply is still being sent
waits for it to end. ``VoiceSession`` (``gateway.session``) owns the state used here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from redis.exceptions import RedisError

from gateway.barge_in import BargeIn
from gateway.command_revisions import CommandRevisions
from gateway.delivery import ReplyDelivery
from gateway.early_reply import EarlyReplies
from gateway.endpointing import SpeechOnset
from gateway.rate_limit import SessionLimits
from gateway.session_store import SessionStore, turn_number
from gateway.utterance import UtteranceTracker
from shared import metrics, protocol
from shared.control import ControlChannel
from shared.keys import Keys
from shared.messages import InputChunk, LlmJob, ReplyEvent
from shared.protocol import AudioInput, Cancel, Ping, ProtocolError, SessionOptions, VoiceCommand
from shared.settings import Settings
from shared.streams import StreamAppender, now_ms
from shared.tracing import TurnSpans

log = logging.getLogger(__name__)

WAITING_INPUT_LIMIT = 2000  # frames waiting for the current reply to end (barge-in off)
BYTES_PER_SECOND = protocol.INPUT_SAMPLE_RATE * 2


class SessionInputs:
    """What the client sends, from frame to turn; the connection sets the state up."""

    settings: Settings
    session_id: str
    options: SessionOptions
    barge_in: bool
    store: SessionStore
    control: ControlChannel
    delivery: ReplyDelivery
    _keys: Keys
    _inputs: StreamAppender
    _replies_out: StreamAppender
    _limits: SessionLimits
    _speech: UtteranceTracker
    _early: EarlyReplies
    _commands: CommandRevisions
    _onset: SpeechOnset
    _barge: BargeIn | None
    _spans: TurnSpans | None
    _turns: int
    _turn_refused: bool
    _waiting_input: deque[VoiceCommand | AudioInput]
    _releaser: asyncio.Task[None] | None
    _keys_kept_at: float

    @property
    def replying(self) -> bool:
        return self.delivery.busy_turn() is not None

    def _refuse(self, code: str, message: str) -> None:
        if not code or (code == protocol.NO_SPEECH and self._turn_refused):
            return  # refused again, or the end of an utterance refused: the client knows
        turn = self._speech.current.turn_id if self._speech.current else None
        self.delivery.send_error(code, message, turn)

    async def _keep_keys(self) -> None:
        """A client that stays connected without a turn pings: its session's keys live
        on (refreshed at most every quarter of ``SESSION_TTL_SECONDS``)."""
        now = asyncio.get_running_loop().time()
        if now - self._keys_kept_at >= self.settings.session_ttl_seconds / 4:
            self._keys_kept_at = now
            try:
                await self.store.keep(self.session_id)
            except RedisError:  # the next turn or ping refreshes them; a ping is no request
                log.debug("could not refresh the session's keys", exc_info=True)

    async def _handle_audio(self, pcm: bytes) -> None:
        """A binary frame: ``_handle_frame``'s checks in its order, without the parsing
        and dispatch a text frame needs (nearly every frame is one of these)."""
        if len(pcm) > self.settings.max_frame_bytes:
            raise ProtocolError(
                protocol.FRAME_TOO_LARGE,
                f"frame of {len(pcm)} bytes exceeds the limit of {self.settings.max_frame_bytes}",
            )
        protocol.check_pcm(pcm)
        metrics.count_event("in", "binary_audio")
        audio = AudioInput(pcm, False)
        self._check_rate(audio)
        if self._waiting_input or (not self.barge_in and self.replying):
            self._wait_for_reply(audio)
        else:
            await self._on_audio(audio)

    async def _handle_frame(self, text: str | None, data: bytes | None) -> None:
        size = len(text) if text is not None else len(data or b"")  # chars: no copy per frame
        if size > self.settings.max_frame_bytes:
            raise ProtocolError(
                protocol.FRAME_TOO_LARGE,
                f"frame of {size} bytes exceeds the limit of {self.settings.max_frame_bytes}",
            )
        if text is not None:
            event = protocol.parse_text_frame(
                text, self.session_id, self.settings.max_command_chars
            )
        else:
            pcm = data or b""
            protocol.check_pcm(pcm)
            event = AudioInput(pcm=pcm, is_final=False)
        metrics.count_event("in", _event_name(event, text is None))
        if isinstance(event, Ping):
            await self._keep_keys()
            self.delivery.control(protocol.server_frame("pong", {"server_ms": now_ms()}))
        elif isinstance(event, Cancel):
            await self._on_cancel(event)
        else:
            self._check_rate(event)
            if self._waiting_input or (
                not self.barge_in and self.replying and not self._continues(event)
            ):
                self._wait_for_reply(event)
            else:
                await self._process(event)

    def _check_rate(self, event: VoiceCommand | AudioInput) -> None:
        if isinstance(event, VoiceCommand):
            counts = self._commands.counts_as_request(event.command, event.is_final)
            if counts and not self._limits.allow_command():
                raise ProtocolError(
                    protocol.RATE_LIMITED,
                    f"more than {self._limits.commands_per_minute} requests and cancels a "
                    "minute; this one was dropped",
                )
        elif event.pcm and not self._limits.allow_audio(len(event.pcm) / BYTES_PER_SECOND):
            raise ProtocolError(
                protocol.RATE_LIMITED,
                f"audio arrives faster than {self._limits.audio_speed:g}x real time; "
                "this frame was dropped",
            )

    def _continues(self, event: VoiceCommand | AudioInput) -> bool:
        """A device transcript of the utterance in progress (or its final text again)."""
        return isinstance(event, VoiceCommand) and self._commands.continues(
            event.command, event.is_final
        )

    def _wait_for_reply(self, event: VoiceCommand | AudioInput) -> None:
        """Barge-in off: a new request waits until the current reply has been sent."""
        if len(self._waiting_input) >= WAITING_INPUT_LIMIT:
            raise ProtocolError(protocol.BUSY, "still replying; too much input is waiting")
        self._waiting_input.append(event)
        if self._releaser is None or self._releaser.done():
            self._releaser = asyncio.create_task(self._release_waiting_input())

    async def _release_waiting_input(self) -> None:
        while self._waiting_input:
            await self.delivery.idle.wait()
            event = self._waiting_input.popleft()
            try:
                await self._process(event)
            except ProtocolError as exc:
                self._refuse(exc.code, exc.message)
            except RedisError:
                self._refuse(protocol.UNAVAILABLE, "the service is briefly unavailable; try again")

    async def _process(self, event: VoiceCommand | AudioInput) -> None:
        if isinstance(event, VoiceCommand):
            await self._commands.command(event.command, event.is_final)
        else:
            await self._on_audio(event)

    # --- interruptions ---------------------------------------------------------------

    async def _on_cancel(self, event: Cancel) -> None:
        """A client's ``cancel``: rate-limited with commands; a turn this connection does
        not know is refused (``unknown_turn``) and nothing is written anywhere. The
        refusals carry no ``turn_id``: they end no turn."""
        if not self._limits.allow_command():
            self.delivery.send_error(
                protocol.RATE_LIMITED,
                f"more than {self._limits.commands_per_minute} requests and cancels a minute; "
                "this cancel was dropped",
            )
            return
        if event.turn_id is not None and not self._knows(event.turn_id):
            self.delivery.send_error(
                protocol.UNKNOWN_TURN,
                f"this session has no turn {event.turn_id} to cancel (turns so far: "
                f"{self._turns}; only turns of this connection can be cancelled)",
            )
            return
        await self.cancel(event.turn_id, "cancel")

    def _knows(self, turn_id: str) -> bool:
        """The turn was started by this session and this connection has seen it."""
        current = self._speech.current
        if current is not None and current.turn_id == turn_id:
            return True
        if self._commands.pending_turn == turn_id:
            return True
        if turn_number(turn_id) > self._turns:
            return False
        return self.delivery.knows(turn_id) or self.delivery.was_cancelled(turn_id)

    async def cancel(self, turn_id: str | None, reason: str) -> None:
        """Stop a reply (the newest one by default): the client gets no more of it, the
        workers drop it, and the history keeps only what was heard. Nothing playing, or
        the turn already stopped: nothing to do, nothing written."""
        utterance = self._speech.current
        if turn_id is None:
            turn_id = utterance.turn_id if utterance else self._commands.pending_turn
            turn_id = turn_id or self.delivery.playing_turn()
        if turn_id is None or self.delivery.was_cancelled(turn_id):
            return
        self._commands.cancel(turn_id)
        await self._speech.cancel(turn_id)
        record, events = self.delivery.interrupt(turn_id, reason)
        metrics.CANCELS.labels(reason).inc()
        stop_tts = InputChunk(seq=0, end=True, cancelled=True)
        await asyncio.gather(
            self.control.cancel(self.session_id, turn_id, record),
            self._inputs.append(self._keys.tts_input(self.session_id, turn_id), stop_tts),
            self._write_interruption(events),
            self._early.stop_turn(turn_id, record),
        )
        self._onset.reset()

    async def _write_interruption(self, events: list[ReplyEvent]) -> None:
        """``interrupted`` (and ``streaming_complete``) go to the reply stream, in order,
        and reach the client through the relay like every reply event: one ``event_id``
        each, the same live and in a replay."""
        key = self._keys.reply(self.session_id)
        for written, event in enumerate(events):
            try:
                await self._replies_out.append(key, event)
            except RedisError:
                self.delivery.send_unrecorded(events[written:])
                raise

    # --- requests --------------------------------------------------------------------

    def _next_turn(self) -> tuple[str, int]:
        self._turn_refused = False  # a turn opens: a later refused utterance is told again
        self._turns += 1
        return f"t{self._turns}", self._turns

    # --- device transcripts (gateway.command_revisions.CommandIO) ----------------------

    def new_turn(self) -> tuple[str, int]:
        turn_id, number = self._next_turn()
        if self._spans is not None:
            self._spans.begin(turn_id, "command")
        return turn_id, number

    async def replace_reply(self) -> None:
        if self.barge_in and (busy := self.delivery.busy_turn()):
            await self.cancel(busy, "barge_in")  # a new question replaces the unfinished reply

    async def revise_reply(self, turn_id: str) -> None:
        await self.cancel(turn_id, "revised")

    def send_error(self, code: str, message: str, turn_id: str | None = None) -> None:
        self.delivery.send_error(code, message, turn_id)

    async def use_command_attempt(
        self,
        turn_id: str,
        number: int,
        attempt: tuple[str, str],
        text: str,
        timings: dict[str, object],
    ) -> None:
        await self.store.count_turn(self.session_id, number)
        self._command_complete(turn_id, timings)

        async def answer_anew() -> None:  # the attempt broke before it could be used
            await self._publish_command_job(turn_id, number, text)

        self._early.decide(attempt[0], attempt[1], answer_anew)

    async def publish_command(
        self, turn_id: str, number: int, command: str, timings: dict[str, object]
    ) -> None:
        await self._publish_command_job(turn_id, number, command)
        self._command_complete(turn_id, timings)

    def _command_complete(self, turn_id: str, timings: dict[str, object]) -> None:
        self.delivery.expect(turn_id, "command")
        if timings:  # an utterance of device transcripts: how it ended
            self.delivery.add_timings(turn_id, timings)
        if self._spans is not None:
            self._spans.received(turn_id)
            if timings:
                self._spans.end_of_speech(turn_id, timings)

    async def _publish_command_job(self, turn_id: str, number: int, command: str) -> None:
        job = LlmJob(
            session_id=self.session_id,
            turn_id=turn_id,
            text=command,
            source="command",
            created_ms=now_ms(),
            options=self.options.as_job_options(),
            trace=self._spans.traceparent(turn_id) if self._spans is not None else "",
        )
        stream = self._keys.jobs_for("llm", self.session_id)
        maxlen = self.settings.jobs_maxlen
        await self.store.publish_turn(self.session_id, number, stream, job, maxlen)

    async def _on_audio(self, audio: AudioInput) -> None:
        if not self.settings.speech_input_enabled:
            raise ProtocolError(
                protocol.ASR_DISABLED,
                "this server does not recognise speech (ASR_PROVIDER=none); "
                "recognise on the device and send voice_command",
            )
        immediate = self._barge is None
        if immediate and self.barge_in and audio.pcm and (playing := self.delivery.playing_turn()):
            if self._onset.push(audio.pcm):
                await self.cancel(playing, "barge_in")
        await self._speech.push(audio)
        if self._barge is not None and self.barge_in and audio.pcm:
            utterance = self._speech.current
            turn_id, key = (utterance.turn_id, utterance.input_key) if utterance else (None, "")
            judging = self._barge.listen(audio.pcm, turn_id, key)
            if judging is not None:
                await judging


def _event_name(event: object, binary: bool) -> str:
    if binary:
        return "binary_audio"
    if isinstance(event, VoiceCommand):
        return "voice_command"
    if isinstance(event, Cancel | Ping):
        return type(event).__name__.lower()
    return "voice_data"
