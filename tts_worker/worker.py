"""TTS stage: speak a reply sentence by sentence as the LLM stage produces it.

The worker that claims a ``TtsJob`` follows that reply's sentence stream to its end, so
the whole reply comes from one voice with one continuous MP3 encoder and contiguous
``chunk_index`` values; audio for sentence one is on its way while sentence two is
still being written.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from shared import keys as key_names
from shared.engines import AudioSegment, TtsEngine, Voice
from shared.messages import ReplyEvent, TtsJob
from shared.settings import Settings
from shared.streams import follow_input, now_ms
from shared.worker import JobContext, StageWorker
from tts_worker.mp3 import Mp3Encoder, split_frames

log = logging.getLogger(__name__)


class _ReplyAudio:
    """Turns engine segments into numbered ``tts_chunk`` events for one reply."""

    def __init__(self, job: TtsJob, ctx: JobContext, settings: Settings) -> None:
        self.job = job
        self.ctx = ctx
        self.settings = settings
        self.chunks_sent = 0
        self.first_chunk_ms: int | None = None
        self._encoder: Mp3Encoder | None = None
        self._held = bytearray()  # frames not yet sent (all of them when not streaming)

    @property
    def audio_ms(self) -> float:
        return self._encoder.duration_ms if self._encoder else 0.0

    async def add(self, segment: AudioSegment) -> None:
        if segment.encoding == "mp3":
            frames = segment.data
        else:
            if self._encoder is None:
                self._encoder = Mp3Encoder(segment.sample_rate, self.settings.mp3_bitrate_kbps)
            frames = self._encoder.encode(segment.data)
        self._held += frames
        if self.settings.stream_tts_chunks:
            await self._send_held()

    async def finish(self) -> None:
        if self._encoder is not None:
            self._held += self._encoder.flush()
        await self._send_held()

    async def _send_held(self) -> None:
        if not self._held:
            return
        frames, self._held = bytes(self._held), bytearray()
        for piece in split_frames(frames, self.settings.audio_chunk_size):
            data = {"chunk_index": self.chunks_sent, "format": "mp3"}
            event = ReplyEvent("tts_chunk", self.job.session_id, self.job.turn_id, data, piece)
            await self.ctx.replies.emit(event)
            if self.first_chunk_ms is None:
                self.first_chunk_ms = now_ms()
            self.chunks_sent += 1


def voice_for(job: TtsJob, settings: Settings) -> Voice:
    options = job.options or {}
    return Voice(
        name=str(options.get("voice") or settings.tts_voice),
        rate=int(options.get("rate", 0)),
        pitch=int(options.get("pitch", 0)),
    )


def make_tts_handler(redis: aioredis.Redis, settings: Settings, engine: TtsEngine):
    keys = settings.keys

    async def handle(job: TtsJob, ctx: JobContext) -> None:
        audio = _ReplyAudio(job, ctx, settings)
        voice = voice_for(job, settings)
        input_key = keys.tts_input(job.session_id, job.turn_id)
        async for _entry_id, chunk in follow_input(redis, input_key, settings.input_idle_timeout):
            if chunk.text:
                async for segment in engine.synthesize(chunk.text, voice):
                    await audio.add(segment)
            if chunk.end:
                break
        await audio.finish()
        done = now_ms()
        data = {
            "total_chunks_sent": audio.chunks_sent,
            "duration_ms": done - job.created_ms if job.created_ms else 0,
            "audio_ms": round(audio.audio_ms),
            "timings": {
                "first_chunk_ms": (audio.first_chunk_ms or done) - job.created_ms,
                "complete_ms": done - job.created_ms,
            },
        }
        await ctx.replies.emit(ReplyEvent("streaming_complete", job.session_id, job.turn_id, data))

    return handle


def build_tts_worker(
    redis: aioredis.Redis, settings: Settings, engine: TtsEngine
) -> StageWorker[TtsJob]:
    return StageWorker(
        redis,
        settings,
        kind="tts",
        stream=settings.keys.tts_jobs,
        group=key_names.TTS_GROUP,
        job_type=TtsJob,
        handler=make_tts_handler(redis, settings, engine),
    )
