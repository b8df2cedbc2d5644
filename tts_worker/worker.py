"""TTS stage: speak a reply sentence by sentence as the LLM stage produces it.

The worker that claims a ``TtsJob`` follows that reply's sentence stream to its end, so
the whole reply is one audio stream (one format, one sample rate, see
``tts_worker.audio_format``) with contiguous ``chunk_index`` values, even when the
fallback chain switches engines mid-reply; audio for sentence one is on its way while
sentence two is still being written. Every chunk is written with the reply's progress
(``tts_worker.progress``), so a worker that takes over a reply goes on where it stopped.
"""

from __future__ import annotations

import contextlib
import logging

import redis.asyncio as aioredis

from shared import metrics
from shared.engines import AudioSegment, TtsEngine, Voice
from shared.messages import ReplyEvent, TtsJob
from shared.settings import Settings
from shared.streams import now_ms
from shared.worker import JobContext, StageWorker, stage_worker
from tts_worker.audio_format import FORMATS, OutputFormat, ReplyEncoder
from tts_worker.progress import ReplyProgress

log = logging.getLogger(__name__)


def output_format(job: TtsJob) -> OutputFormat:
    """The client's ``format`` option (validated at the gateway); MP3 when absent."""
    wanted = (job.options or {}).get("format", "mp3")
    return wanted if wanted in FORMATS else "mp3"


class _ReplyAudio:
    """Turns engine segments into numbered ``tts_chunk`` events for one reply."""

    def __init__(
        self, job: TtsJob, ctx: JobContext, settings: Settings, progress: ReplyProgress
    ) -> None:
        self.job = job
        self.ctx = ctx
        self.settings = settings
        self.progress = progress
        self.chunks_sent = progress.next_chunk  # > 0 when taking over a reply
        self.sentence = 0  # the sentence being spoken (1-based), told to the gateway per chunk
        self.first_chunk_ms: int | None = progress.first_chunk_ms
        self._audio_ms_before = progress.audio_ms_before  # spoken before a takeover
        self._audio = ReplyEncoder(output_format(job), settings.mp3_bitrate_kbps)
        self._unsent = bytearray()  # audio not yet sent (all of it when not streaming)
        self.voices: list[str] = []  # "engine:voice" that spoke this reply, in order

    @property
    def audio_ms(self) -> float:
        return self._audio_ms_before + self._audio.duration_ms

    @property
    def all_sent(self) -> bool:
        """No audio is waiting to be sent (a finished sentence can be checkpointed)."""
        return not self._unsent

    @property
    def format(self) -> OutputFormat:
        return self._audio.format

    @property
    def sample_rate(self) -> int | None:
        return self._audio.sample_rate

    async def add(self, segment: AudioSegment) -> None:
        if segment.voice and segment.voice not in self.voices:
            self.voices.append(segment.voice)
        self._unsent += self._audio.add(segment)
        if self.settings.stream_tts_chunks:
            await self._send_unsent()

    async def finish(self) -> None:
        self._unsent += self._audio.flush()
        await self._send_unsent()

    async def _send_unsent(self) -> None:
        if not self._unsent:
            return
        audio, self._unsent = bytes(self._unsent), bytearray()
        for piece in self._audio.pieces(audio, self.settings.audio_chunk_size):
            data = {
                "chunk_index": self.chunks_sent,
                "format": self.format,
                "sample_rate": self.sample_rate,
                "sentence": self.sentence,
            }
            event = ReplyEvent("tts_chunk", self.job.session_id, self.job.turn_id, data, piece)
            await self.progress.chunk(event)
            if self.first_chunk_ms is None:
                self.first_chunk_ms = now_ms()
                if self.ctx.trace is not None:
                    self.ctx.trace.first_output("audio")
            self.chunks_sent += 1


def voice_for(job: TtsJob, settings: Settings) -> Voice:
    """The session's voice and language; rate and pitch are offsets on ``TTS_RATE``/
    ``TTS_PITCH``. Without ``?voice=`` each engine picks its voice for the language."""
    options = job.options or {}
    return Voice(
        name=str(options["voice"]) if options.get("voice") else None,
        rate=max(-50, min(100, settings.tts_rate + int(options.get("rate", 0)))),
        pitch=max(-50, min(50, settings.tts_pitch + int(options.get("pitch", 0)))),
        language=str(options.get("lang") or settings.default_language),
    )


def for_reply(engine: TtsEngine) -> TtsEngine:
    """The engine to speak one reply with: engines that keep per-reply state (the fallback
    chain remembers which engines failed during this reply) hand out a fresh view."""
    begin = getattr(engine, "begin_reply", None)
    return begin() if callable(begin) else engine


def make_tts_handler(redis: aioredis.Redis, settings: Settings, engine: TtsEngine):
    keys = settings.keys

    async def handle(job: TtsJob, ctx: JobContext) -> None:
        progress = await ReplyProgress(redis, settings, job).load()
        ctx.cleanup.extend([progress.checkpoint.key, progress.input_key])
        if progress.done:  # finished before a crash, just not acknowledged
            return
        if progress.checkpoint.resumed:
            log.info("turn %s: resuming speech at chunk %d", job.turn_id, progress.next_chunk)
        audio = _ReplyAudio(job, ctx, settings, progress)
        voice = voice_for(job, settings)
        speaker = for_reply(engine)
        input_key = keys.tts_input(job.session_id, job.turn_id)
        cut = False  # the end marker says the client cut the reply (the LLM heard it first)
        async for entry_id, chunk in ctx.inputs.follow(
            input_key, settings.input_idle_timeout, from_id=progress.resume_after
        ):
            if chunk.cancelled or ctx.cancelled(job):
                cut = True
                break
            if chunk.text:
                audio.sentence = chunk.seq
                segments = speaker.synthesize(chunk.text, voice)
                async with contextlib.aclosing(segments):  # type: ignore[type-var]
                    async for segment in segments:
                        if ctx.cancelled(job):
                            break  # the client cut this reply off: stop speaking now
                        await audio.add(segment)
                if audio.all_sent and not ctx.cancelled(job):
                    await progress.sentence_done(entry_id, audio.audio_ms)
            if chunk.end:
                break
        if cut or ctx.cancelled(job):
            metrics.CANCELLED_WORK.labels("tts").inc()
            return  # the gateway already told the client how the reply ended
        await audio.finish()
        done = now_ms()
        if job.created_ms:
            first = (audio.first_chunk_ms or done) - job.created_ms
            metrics.observe_ms(
                metrics.STAGE_LATENCY.labels("tts", engine.name, "first_chunk"), first
            )
            metrics.observe_ms(
                metrics.STAGE_LATENCY.labels("tts", engine.name, "complete"), done - job.created_ms
            )
        data = {
            "total_chunks_sent": audio.chunks_sent,
            "duration_ms": done - job.created_ms if job.created_ms else 0,
            "audio_ms": round(audio.audio_ms),
            "format": audio.format,
            "sample_rate": audio.sample_rate,
            "lang": voice.language,
            "voices": audio.voices,
            "timings": {
                "first_chunk_ms": (audio.first_chunk_ms or done) - job.created_ms,
                "complete_ms": done - job.created_ms,
            },
        }
        await progress.complete(ReplyEvent("streaming_complete", job.session_id, job.turn_id, data))

    return handle


def build_tts_worker(
    redis: aioredis.Redis, settings: Settings, engine: TtsEngine
) -> StageWorker[TtsJob]:
    return stage_worker(redis, settings, "tts", TtsJob, make_tts_handler(redis, settings, engine))
