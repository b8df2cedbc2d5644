"""One client connection: validate its frames, publish its turns, relay its replies.

The gateway stays thin: it never recognises, thinks or speaks. Audio frames go to the
utterance's own input stream (so one ASR worker hears the whole utterance); commands go
straight to the LLM stage. Replies arrive through ``ReplyRelay`` and are sent by one
sender task, so frames from the relay and error frames never interleave mid-send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.endpointing import Endpointer
from gateway.relay import ReplyRelay
from shared import metrics, protocol
from shared.logs import session_id_var
from shared.messages import AsrJob, InputChunk, LlmJob, ReplyEvent
from shared.protocol import AudioInput, ProtocolError, SessionOptions, VoiceCommand
from shared.settings import Settings
from shared.streams import StreamAppender, now_ms, publish_job

log = logging.getLogger(__name__)

OUTBOX_LIMIT = 4096
_BYTES_PER_SECOND = protocol.INPUT_SAMPLE_RATE * 2


@dataclass
class _Utterance:
    turn_id: str
    input_key: str
    seq: int = 0
    audio_bytes: int = 0
    refused: bool = False


class VoiceSession:
    def __init__(
        self,
        websocket: WebSocket,
        settings: Settings,
        redis: aioredis.Redis,
        relay: ReplyRelay,
        user_id: str,
        options: SessionOptions,
    ) -> None:
        self.ws = websocket
        self.settings = settings
        self.redis = redis
        self.relay = relay
        self.user_id = user_id
        self.options = options
        self._job_options = options.as_job_options()
        self.session_id = uuid.uuid4().hex
        self._keys = settings.keys
        self._inputs = StreamAppender(redis, settings.turn_ttl_seconds)
        self._turns = 0
        self._utterance: _Utterance | None = None
        self._endpointer = (
            Endpointer(settings.end_of_speech_ms) if settings.end_of_speech_ms > 0 else None
        )
        self._ended_by_silence = False
        self._pre_roll: deque[bytes] = deque(maxlen=3)  # audio kept from before speech
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue(OUTBOX_LIMIT)
        self._max_utterance_bytes = int(settings.max_utterance_seconds * _BYTES_PER_SECOND)
        self._awaiting_audio: dict[str, tuple[float, str]] = {}  # turn -> (input done, source)
        self._timings: dict[str, dict[str, int]] = {}  # turn -> stage timings so far

    async def run(self) -> None:
        session_id_var.set(self.session_id)  # tags this connection's log lines
        await self.ws.send_text(
            protocol.server_frame(
                "connected",
                {
                    "session_id": self.session_id,
                    "user_id": self.user_id,
                    "protocol_version": 1,
                    "input_audio": {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1},
                    "output_format": self.options.format,
                    "voice": self.options.voice,
                },
            )
        )
        sender = asyncio.create_task(self._send_loop(), name=f"ws-send-{self.session_id}")
        await self.relay.subscribe(self.session_id, self._on_reply)
        try:
            await self._receive_loop()
        finally:
            self.relay.unsubscribe(self.session_id)
            await self._abandon_utterance()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    # --- inbound ---------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.settings.websocket_timeout):
                    message = await self.ws.receive()
            except TimeoutError:
                await self._close(1000, "idle timeout")
                return
            if message["type"] == "websocket.disconnect":
                return
            try:
                await self._handle_frame(message.get("text"), message.get("bytes"))
            except ProtocolError as exc:
                self._refuse(exc.code, exc.message)
            except RedisError:
                log.warning("Redis unavailable while handling a client frame")
                self._refuse(protocol.UNAVAILABLE, "the service is briefly unavailable; try again")
            except WebSocketDisconnect:
                return

    def _refuse(self, code: str, message: str) -> None:
        turn = self._utterance.turn_id if self._utterance else None
        self._queue(protocol.error_frame(code, message, self.session_id, turn))
        metrics.ERRORS.labels(code).inc()

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
        metrics.EVENTS.labels("in", _event_name(event, text is None)).inc()
        if isinstance(event, VoiceCommand):
            await self._start_command(event.command)
        else:
            await self._on_audio(event)

    def _next_turn_id(self) -> str:
        self._turns += 1
        return f"t{self._turns}"

    async def _start_command(self, command: str) -> None:
        job = LlmJob(
            session_id=self.session_id,
            turn_id=self._next_turn_id(),
            text=command,
            source="command",
            created_ms=now_ms(),
            options=self._job_options,
        )
        await publish_job(self.redis, self._keys.llm_jobs, job, self.settings.jobs_maxlen)
        self._awaiting_audio[job.turn_id] = (time.perf_counter(), "command")

    async def _on_audio(self, audio: AudioInput) -> None:
        if not self.settings.speech_input_enabled:
            raise ProtocolError(
                protocol.ASR_DISABLED,
                "this server does not recognise speech (ASR_PROVIDER=none); "
                "recognise on the device and send voice_command",
            )
        utterance = self._utterance
        if audio.pcm and utterance is None and self._ended_by_silence:
            # after a pause ended the last utterance, the next one starts with speech
            # (plus a little audio before it), not with the rest of the pause
            self._pre_roll.append(audio.pcm)
            if not self._endpointer or not self._endpointer.contains_speech(audio.pcm):
                return
            audio = AudioInput(b"".join(self._pre_roll), audio.is_final)
            self._pre_roll.clear()
        if audio.pcm:
            if utterance is None:
                utterance = await self._start_utterance()
            if not utterance.refused:
                await self._append_audio(utterance, audio.pcm)
                ended_by_silence = self._endpointer is not None and self._endpointer.push(audio.pcm)
                if ended_by_silence and not audio.is_final:
                    await self._finish_utterance(utterance)
                    self._ended_by_silence = True
                    return
        if audio.is_final:
            if utterance is None:
                if self._ended_by_silence:  # the pause already ended it: nothing to do
                    self._pre_roll.clear()
                    return
                raise ProtocolError(
                    protocol.NO_SPEECH, "is_final received but no audio was sent for this utterance"
                )
            await self._finish_utterance(utterance)

    async def _finish_utterance(self, utterance: _Utterance) -> None:
        """End of speech (``is_final`` or a pause): the ASR worker finishes this turn."""
        self._utterance = None
        if not utterance.refused:
            await self._end_input(utterance)
            self._awaiting_audio[utterance.turn_id] = (time.perf_counter(), "speech")

    async def _start_utterance(self) -> _Utterance:
        turn_id = self._next_turn_id()
        utterance = _Utterance(turn_id, self._keys.asr_input(self.session_id, turn_id))
        self._utterance = utterance
        self._ended_by_silence = False
        if self._endpointer is not None:
            self._endpointer.reset()
        job = AsrJob(
            self.session_id, turn_id, protocol.INPUT_SAMPLE_RATE, now_ms(), self._job_options
        )
        await publish_job(self.redis, self._keys.asr_jobs, job, self.settings.jobs_maxlen)
        return utterance

    async def _append_audio(self, utterance: _Utterance, pcm: bytes) -> None:
        if utterance.audio_bytes + len(pcm) > self._max_utterance_bytes:
            utterance.refused = True
            await self._end_input(utterance)
            raise ProtocolError(
                protocol.UTTERANCE_TOO_LONG,
                f"utterance longer than {self.settings.max_utterance_seconds:.0f} s; "
                "it was cut there, send is_final to start a new one",
            )
        utterance.audio_bytes += len(pcm)
        utterance.seq += 1
        await self._inputs.append(utterance.input_key, InputChunk(seq=utterance.seq, audio=pcm))

    async def _end_input(self, utterance: _Utterance, cancelled: bool = False) -> None:
        utterance.seq += 1
        chunk = InputChunk(seq=utterance.seq, end=True, cancelled=cancelled)
        await self._inputs.append(utterance.input_key, chunk)

    async def _abandon_utterance(self) -> None:
        """The client left mid-utterance: end its input so the ASR worker lets go now."""
        utterance, self._utterance = self._utterance, None
        if utterance and not utterance.refused:
            with contextlib.suppress(Exception):
                await self._end_input(utterance, cancelled=True)

    # --- outbound --------------------------------------------------------------------

    def _on_reply(self, event: ReplyEvent, _entry_id: str) -> None:
        data = self._with_turn_timings(event)
        frame = protocol.reply_frame(
            event.event, event.session_id, event.turn_id, data, event.audio
        )
        self._queue(frame)
        metrics.EVENTS.labels("out", event.event).inc()
        if event.event == "error":
            metrics.ERRORS.labels(event.data.get("code", "unknown")).inc()
        if event.event in ("tts_chunk", "streaming_complete", "error"):
            started = self._awaiting_audio.pop(event.turn_id, None)
            if started and event.event == "tts_chunk":
                seconds = time.perf_counter() - started[0]
                metrics.TURN_LATENCY.labels(started[1]).observe(seconds)

    def _with_turn_timings(self, event: ReplyEvent) -> dict[str, object]:
        """Collect each stage's timings of a turn; ``streaming_complete`` carries them all."""
        timings = event.data.get("timings")
        if event.event == "streaming_complete":
            merged = {**self._timings.pop(event.turn_id, {}), **(timings or {})}
            return {**event.data, "timings": merged}
        if timings and event.data.get("is_final"):
            if len(self._timings) > 64:  # turns that never completed (no speech): forget
                self._timings.clear()
            self._timings.setdefault(event.turn_id, {}).update(timings)
        return event.data

    def _queue(self, frame: str | None) -> None:
        try:
            self._outbox.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("session %s outbox full; closing slow client", self.session_id)
            while not self._outbox.empty():
                self._outbox.get_nowait()
            self._outbox.put_nowait(None)

    async def _send_loop(self) -> None:
        while True:
            frame = await self._outbox.get()
            if frame is None:
                await self._close(1008, "client too slow to receive")
                return
            await self.ws.send_text(frame)

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, reason=reason)


def _event_name(event: object, binary: bool) -> str:
    if binary:
        return "binary_audio"
    return "voice_command" if isinstance(event, VoiceCommand) else "voice_data"
