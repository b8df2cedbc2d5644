"""One client connection: validate its frames, publish its turns, relay its replies.

The gateway stays thin: it never recognises, thinks or speaks. Audio frames go to the
utterance's own input stream (so one ASR worker hears the whole utterance); commands go
straight to the LLM stage. Replies arrive through ``ReplyRelay`` and leave through
``ReplyDelivery``, which also knows what the client actually received: that is what a
cancel or a barge-in records. A session outlives its socket for the resume window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections import deque

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.barge_in import BargeIn
from gateway.command_revisions import CommandRevisions
from gateway.delivery import ReplyDelivery
from gateway.early_reply import EarlyReplies
from gateway.endpointing import SpeechOnset
from gateway.rate_limit import SessionLimits
from gateway.relay import ReplyRelay
from gateway.session_store import Replay, ResumeLimited, ResumeRefused, SessionStore, turn_number
from gateway.utterance import EndOfSpeechPolicy, UtteranceTracker
from shared import metrics, protocol
from shared.control import ControlChannel
from shared.logs import session_id_var
from shared.messages import FIRST_AUDIO, AsrJob, InputChunk, LlmJob, ReplyEvent
from shared.protocol import (
    AudioInput,
    Cancel,
    ConnectParams,
    Ping,
    ProtocolError,
    SessionOptions,
    VoiceCommand,
)
from shared.settings import Settings
from shared.streams import StreamAppender, now_ms
from shared.tracing import TurnSpans, tracer_for

log = logging.getLogger(__name__)

CONTROL_LIMIT = 256  # errors/pongs waiting for the socket; beyond: close 1008
WAITING_INPUT_LIMIT = 2000  # frames waiting for the current reply to end (barge-in off)
CLOSE_GRACE_SECONDS = 10.0  # a closing socket's last frames get this long to go out
_BYTES_PER_SECOND = protocol.INPUT_SAMPLE_RATE * 2


class VoiceSession:
    def __init__(
        self,
        websocket: WebSocket,
        settings: Settings,
        redis: aioredis.Redis,
        relay: ReplyRelay,
        control: ControlChannel,
        store: SessionStore,
        params: ConnectParams,
        options: SessionOptions,
    ) -> None:
        self.ws = websocket
        self.settings = settings
        self.redis = redis
        self.relay = relay
        self.control = control
        self.store = store
        self.params = params
        self.user_id = params.user_id
        self.options = options
        self.barge_in = settings.barge_in if params.barge_in is None else params.barge_in
        self.session_id = params.session_id or uuid.uuid4().hex
        self.connection_id = uuid.uuid4().hex[:12]
        self._keys = settings.keys
        self._inputs = StreamAppender(redis, settings.turn_ttl_seconds)
        self._replies_out = StreamAppender(
            redis, settings.session_ttl_seconds, settings.reply_maxlen
        )
        self._turns = 0
        self._onset = SpeechOnset(settings.barge_in_min_speech_ms)
        self._early = EarlyReplies(
            self.session_id,
            settings,
            redis,
            relay,
            control,
            lambda: self.options.as_job_options(),
            # a discarded one's model calls were one request more
            on_discarded=lambda: self._limits.charge_discarded_reply(),
        )
        self._speech = UtteranceTracker(
            self,
            _end_of_speech_policy(settings),
            int(settings.max_utterance_seconds * _BYTES_PER_SECOND),
            # an external recogniser's final never has the local partial's exact words
            early_replies=settings.preemptive_reply and not settings.use_external_asr,
        )
        revisions = params.command_revisions is not False  # the client may turn them off
        self._commands = CommandRevisions(
            self,
            _end_of_speech_policy(settings),
            settings.command_revision_ms if revisions else 0,
            early_replies=settings.preemptive_reply,
        )
        self._waiting_input: deque[VoiceCommand | AudioInput] = deque()  # barge-in off
        self._releaser: asyncio.Task[None] | None = None
        self._last_frame_at = 0.0  # loop time of the client's last frame (idle timeout)
        self._idle_timer: asyncio.TimerHandle | None = None
        self._limits = SessionLimits(
            settings.audio_rate_limit, settings.audio_burst_seconds, settings.commands_per_minute
        )
        self.delivery = ReplyDelivery(
            websocket, self.session_id, settings.outbox_max_bytes, CONTROL_LIMIT
        )
        self._turn_refused = False  # the last utterance was refused: say it once
        self._keys_kept_at = -math.inf  # loop time the session's keys were last refreshed
        self.delivery.observe(self._hear_hypothesis)
        tracer = tracer_for(settings, "gateway")  # None: tracing off, every hook skipped
        self._spans = TurnSpans(tracer, self.session_id) if tracer is not None else None
        self.delivery.spans = self._spans
        self._barge: BargeIn | None = None  # confirm mode: pause, then decide
        if settings.barge_in_mode == "confirm":
            self._barge = BargeIn(
                _BargeInIO(self),
                settings.barge_in_pause_ms,
                settings.barge_in_min_words,
                settings.false_interruption_ms,
            )
            self.delivery.observe(self._barge.observe)
        self.taken_over = False
        self._cancelled_before: list[str] = []  # turns cut on earlier connections (resume)

    @property
    def replying(self) -> bool:
        return self.delivery.busy_turn() is not None

    async def run(self) -> None:
        session_id_var.set(self.session_id)  # tags this connection's log lines
        try:
            token, replay = await self._open()
        except ResumeRefused as exc:
            await self.ws.send_text(
                protocol.error_frame(protocol.RESUME_FAILED, str(exc), self.session_id)
            )
            await self.ws.close(code=1008, reason="resume refused")
            return
        except ResumeLimited as exc:
            metrics.RESUMES.labels("limited").inc()
            await self.ws.send_text(
                protocol.error_frame(protocol.RATE_LIMITED, str(exc), self.session_id)
            )
            await self.ws.close(code=1013, reason="too many resumes, retry later")
            return
        resumed = bool(self.params.resuming)
        await self.ws.send_text(self._connected_frame(token, resumed, replay.live_from))
        sender = asyncio.create_task(self.delivery.send_loop(), name=f"ws-send-{self.session_id}")
        self.control.on_takeover(self.session_id, self.connection_id, self._taken_over)
        self.delivery.replay(replay, self._replay_bytes)  # filtered by the cancel records
        self.delivery.remember_cancelled(self._cancelled_before)  # live: drop their late events
        await self.relay.subscribe(self.session_id, self.delivery.deliver, replay.live_from)
        try:
            await self._receive_loop(sender)
        finally:
            self.relay.unsubscribe(self.session_id, self.delivery.deliver)
            self.control.forget_takeover(self.session_id, self.connection_id)
            if self._spans is not None:
                self._spans.close()
            if self._releaser:
                self._releaser.cancel()
            if self._barge is not None:
                self._barge.close()
            await self._abandon_utterance()
            if not self.taken_over:
                try:
                    await self.store.detach(self.session_id)
                except Exception as exc:
                    log.warning(
                        "could not shorten the session's keys to the resume window (%s); "
                        "they expire after SESSION_TTL_SECONDS instead",
                        type(exc).__name__,
                        exc_info=log.isEnabledFor(logging.DEBUG),
                    )
            if self.delivery.closing and not sender.done():
                await asyncio.wait([sender], timeout=CLOSE_GRACE_SECONDS)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _open(self) -> tuple[str, Replay]:
        """Create the session, or resume it: (token, what to replay and relay from)."""
        if not self.params.resuming:
            token = await self.store.create(
                self.session_id, self.user_id, self.options.as_job_options(), self.barge_in
            )
            return token, Replay([], [], "0-0")
        token = self.params.resume_token or ""
        record = await self.store.resume(self.session_id, token, self.user_id)
        self.options = SessionOptions.model_validate(record.options)
        self.barge_in = record.barge_in if self.params.barge_in is None else self.barge_in
        self._turns = record.turns
        await self.control.announce_takeover(self.session_id, self.connection_id)
        cancelled = await self.control.records(self.session_id)
        self._cancelled_before = list(cancelled)
        params = self.params
        replay = await self.store.replay(
            self.session_id,
            params.last_event_id,
            params.last_turn_id,
            params.last_chunk_index,
            cancelled,
            self._replay_bytes,
        )
        metrics.RESUMES.labels("ok").inc()
        return token, replay

    @property
    def _replay_bytes(self) -> int:
        """A replay fills half the outbox at most: live events still fit behind it."""
        return self.settings.outbox_max_bytes // 2

    def _connected_frame(self, token: str, resumed: bool, last_event_id: str) -> str:
        data = {
            "session_id": self.session_id,
            "user_id": self.user_id,
            "protocol_version": protocol.PROTOCOL_VERSION,
            "input_audio": {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1},
            "output_format": self.options.format,
            "voice": self.options.voice,
            "resume_token": token,
            "resume_window_seconds": self.store.resume_window,
            "resumed": resumed,
            "barge_in": self.barge_in,
            # confirm: speech over a reply pauses it (reply_paused), words cut it
            "barge_in_mode": self.settings.barge_in_mode,
            # the session's language; with lang_auto the first request's text may change it
            "lang": self.options.lang or self.settings.default_language,
            "lang_auto": self.options.lang is None,
            # the newest event of the session (null: none yet); a resume replays after
            # the client's own last_event_id up to this one, then goes live
            "last_event_id": None if last_event_id == "0-0" else last_event_id,
        }
        return protocol.server_frame("connected", data)

    def _taken_over(self) -> None:
        self.taken_over = True
        self.delivery.close(1000, "session resumed on another connection")

    def close_for_restart(self) -> None:
        """The gateway is shutting down: the client should reconnect and resume."""
        self.delivery.close(1012, "server restarting; reconnect and resume")

    # --- inbound ---------------------------------------------------------------------

    async def _receive_loop(self, sender: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        self._last_frame_at = loop.time()
        self._idle_timer = loop.call_later(self.settings.websocket_timeout, self._check_idle)
        try:
            while not sender.done() and not self.delivery.closing:
                try:
                    message = await self.ws.receive()
                except (RuntimeError, WebSocketDisconnect):
                    return  # closed by our sender (takeover, restart, slow client, idle)
                if message["type"] == "websocket.disconnect":
                    return
                self._last_frame_at = loop.time()
                try:
                    await self._handle_frame(message.get("text"), message.get("bytes"))
                except ProtocolError as exc:
                    self._refuse(exc.code, exc.message)
                except RedisError:
                    log.warning("Redis unavailable while handling a client frame")
                    self._refuse(
                        protocol.UNAVAILABLE, "the service is briefly unavailable; try again"
                    )
                if self.delivery.outbox.control_backlog > CONTROL_LIMIT // 2:
                    # frames that arrived together are handled without a pause: let the
                    # sender hand the answers to the socket, so only a client that does
                    # not read reaches the limit
                    await asyncio.sleep(0)
        finally:
            if self._idle_timer is not None:
                self._idle_timer.cancel()

    def _check_idle(self) -> None:
        """``WEBSOCKET_TIMEOUT`` without a frame from the client: close with 1000. One
        timer per connection, re-armed only when it fires (a timeout around every
        receive cost more than the rest of a frame's handling but the VAD). The close
        ends the receive loop when the client answers it; a client that is gone
        altogether is dropped by the WebSocket pings (``gateway/server.py``)."""
        loop = asyncio.get_running_loop()
        remaining = self._last_frame_at + self.settings.websocket_timeout - loop.time()
        if remaining > 0:
            self._idle_timer = loop.call_later(remaining, self._check_idle)
        else:
            self.delivery.close(1000, "idle timeout")

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

    def _refuse(self, code: str, message: str) -> None:
        if not code or (code == protocol.NO_SPEECH and self._turn_refused):
            return  # refused again, or the end of an utterance refused: the client knows
        turn = self._speech.current.turn_id if self._speech.current else None
        self.delivery.send_error(code, message, turn)

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
        elif event.pcm and not self._limits.allow_audio(len(event.pcm) / _BYTES_PER_SECOND):
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
        return self._next_turn()

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
        self.delivery.expect(turn_id, "command")
        self.delivery.add_timings(turn_id, timings)

        async def answer_anew() -> None:  # the attempt broke before it could be used
            await self._publish_command_job(turn_id, number, text)

        self._early.decide(attempt[0], attempt[1], answer_anew)

    async def publish_command(
        self, turn_id: str, number: int, command: str, timings: dict[str, object]
    ) -> None:
        await self._publish_command_job(turn_id, number, command)
        self.delivery.expect(turn_id, "command")
        if timings:
            self.delivery.add_timings(turn_id, timings)

    async def _publish_command_job(self, turn_id: str, number: int, command: str) -> None:
        job = LlmJob(
            session_id=self.session_id,
            turn_id=turn_id,
            text=command,
            source="command",
            created_ms=now_ms(),
            options=self.options.as_job_options(),
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
            await self._barge.audio(audio.pcm, turn_id, key)

    # --- the utterance state machine's I/O (gateway.utterance.UtteranceIO) -------------

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

    async def send_input(self, input_key: str, chunk: InputChunk) -> None:
        if chunk.end and self._barge is not None:
            chunk = await self._barge.end_marker(input_key, chunk)
        await self._inputs.append(input_key, chunk)

    def input_complete(self, turn_id: str, timings: dict[str, object]) -> None:
        self.delivery.expect(turn_id, "speech")
        self.delivery.add_timings(turn_id, timings)
        metrics.END_OF_SPEECH.labels(str(timings.get("end_of_speech_rule"))).inc()
        self._onset.reset()
        if self._spans is not None:
            self._spans.end_of_speech(turn_id, timings)

    async def _abandon_utterance(self) -> None:
        """The client left mid-utterance: end its input so the ASR worker lets go now."""
        try:
            await self._speech.abandon()
        except Exception as exc:
            log.warning(
                "could not end the input of an abandoned utterance (%s); "
                "the ASR worker lets go after its idle timeout",
                type(exc).__name__,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
        try:
            await self._commands.close()  # before the early replies: it settles its own
        except RedisError:
            log.warning("Redis unavailable: a device transcript left unanswered at close")
        await self._early.close()

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

    def __init__(self, session: VoiceSession) -> None:
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


def _end_of_speech_policy(settings: Settings) -> EndOfSpeechPolicy | None:
    if settings.end_of_speech_ms <= 0:
        return None  # only is_final ends an utterance
    return EndOfSpeechPolicy(
        settings.end_of_speech_ms,
        settings.end_of_speech_complete_ms,
        settings.end_of_speech_unfinished_ms,
    )


def _event_name(event: object, binary: bool) -> str:
    if binary:
        return "binary_audio"
    if isinstance(event, VoiceCommand):
        return "voice_command"
    if isinstance(event, Cancel | Ping):
        return type(event).__name__.lower()
    return "voice_data"
