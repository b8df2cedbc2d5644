"""One client connection: open or resume its session, receive its frames, close.

The gateway stays thin: it never recognises, thinks or speaks. Audio frames go to the
utterance's own input stream (so one ASR worker hears the whole utterance); commands go
straight to the LLM stage. Replies arrive through ``ReplyRelay`` and leave through
``ReplyDelivery``, which also knows what the client actually received: that is what a
cancel or a barge-in records. A session outlives its socket for the resume window.
Its inputs (frames to turns, cancel) are ``gateway.session_inputs``; its speech (the
utterance's and the barge-in's I/O) is ``gateway.session_speech``.
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
from gateway.session_inputs import BYTES_PER_SECOND
from gateway.session_speech import SessionSpeech, _BargeInIO
from gateway.session_store import Replay, ResumeLimited, ResumeRefused, SessionStore
from gateway.utterance import EndOfSpeechPolicy, UtteranceTracker
from shared import metrics, protocol
from shared.control import ControlChannel
from shared.logs import session_id_var
from shared.protocol import (
    AudioInput,
    ConnectParams,
    ProtocolError,
    SessionOptions,
    VoiceCommand,
)
from shared.settings import Settings
from shared.streams import StreamAppender
from shared.tracing import TurnSpans, tracer_for

log = logging.getLogger(__name__)

CONTROL_LIMIT = 256  # errors/pongs waiting for the socket; beyond: close 1008
CLOSE_GRACE_SECONDS = 10.0  # a closing socket's last frames get this long to go out


class VoiceSession(SessionSpeech):
    """One connection: open or resume the session, receive frames until it closes."""

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
            int(settings.max_utterance_seconds * BYTES_PER_SECOND),
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
        if resumed:  # an early reply whose gateway died mid-copy is finished from here
            await self._early.resume(self._cancelled_before)
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
                    data = message.get("bytes")
                    if data is not None:
                        await self._handle_audio(data)
                    else:
                        await self._handle_frame(message.get("text"), None)
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


def _end_of_speech_policy(settings: Settings) -> EndOfSpeechPolicy | None:
    if settings.end_of_speech_ms <= 0:
        return None  # only is_final ends an utterance
    return EndOfSpeechPolicy(
        settings.end_of_speech_ms,
        settings.end_of_speech_complete_ms,
        settings.end_of_speech_unfinished_ms,
    )
