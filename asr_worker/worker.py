"""ASR stage: follow one utterance's audio, stream partial transcripts, hand the final on.

The worker that claims an ``AsrJob`` reads that utterance's own input stream to its end
marker, so one recogniser hears all of it. Partials go to the session's reply stream as
soon as the hypothesis changes; the final transcript becomes an ``LlmJob``.

A worker that takes an utterance over after a crash re-reads its audio from the start
(a recogniser's state cannot be handed over). Its checkpoint (``shared.checkpoint``)
holds the input seq of the last partial sent, so partials resume after it instead of
repeating, and marks the final transcript and its ``LlmJob`` as sent, in one step.

When the gateway started a reply early (during a pause, on a complete hypothesis), the
end marker names that attempt: the final transcript decides it in its record
(``shared.early_reply``, which owns the rule) before it goes out; an attempt that is not
used leaves the turn to the normal ``LlmJob``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import redis.asyncio as aioredis

from asr_worker.completeness import is_complete
from asr_worker.language_support import IgnoredSpeech, notice, unsupported_language
from asr_worker.openai_transcriber import TranscriptionFailed
from shared import metrics, protocol
from shared.checkpoint import Append, TurnCheckpoint
from shared.early_reply import USED, EarlyVerdicts
from shared.engines import AsrEngine, AsrStream
from shared.input_follow import InputFollow
from shared.languages import language
from shared.messages import (
    FIRST_AUDIO,
    GATEWAY_DECIDES,
    AsrJob,
    InputChunk,
    LlmJob,
    ReplyEncoder,
    ReplyEvent,
)
from shared.mux import Entry, read_start
from shared.settings import Settings
from shared.streams import now_ms
from shared.worker import JobContext, StageWorker, stage_worker

log = logging.getLogger(__name__)

# Opening a stream may wait for a decoder (the engine lends out a few); it waits on its
# own threads, never on asyncio's default pool, whose threads the streams that hold the
# decoders need to feed, finish and give them back (waiting there, eight utterances on
# two cores took every thread and the worker hung for good).
_OPENING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="asr-open")


class ExternalTranscriber(Protocol):
    async def transcribe(self, pcm: bytes, sample_rate: int, language: str | None = None) -> str:
        """``language``: ISO-639-1 hint (``?lang=``), None to let the service tell."""


async def _transcribe(
    settings: Settings,
    job: AsrJob,
    ctx: JobContext,
    stream: AsrStream,
    keep_audio: bytearray | None,
    checkpoint: TurnCheckpoint,
    sent: list[Entry],
    first: InputChunk | None,
) -> tuple[str, bool, int, str]:
    """Feed the utterance to ``stream``: ``first`` (its first chunk, sent with the job),
    then its input stream, from ``sent`` (entries read with the job's checkpoint) on.
    Returns (final text, cancelled, end-of-speech ms, the attempt the gateway started
    early, if any)."""
    input_key = settings.keys.asr_input(job.session_id, job.turn_id)
    tail = b""  # the end marker's audio
    cancelled = False
    preempted = ""
    # what a partial costs is paid per audio chunk of every utterance: everything that
    # stays the same for the turn is looked up and packed once, here
    blocking = getattr(stream, "blocking", True)
    sent_through = checkpoint.number("heard")  # partials sent before a takeover
    send_partial = checkpoint.repeated(
        settings.keys.reply(job.session_id),
        settings.session_ttl_seconds,
        settings.reply_maxlen,
        "heard",
    )
    partial_payload = ReplyEncoder("partial_transcription", job.session_id, job.turn_id)

    async def hear(chunk: InputChunk) -> None:
        if keep_audio is not None:
            keep_audio.extend(chunk.audio)
        if blocking:
            partial = await asyncio.to_thread(stream.feed, chunk.audio)
        else:  # trivially cheap (echo): a thread hop per chunk would cost more than it
            partial = stream.feed(chunk.audio)
        if partial and chunk.seq > sent_through:
            data = {"text": partial, "is_final": False, "complete": _complete(stream, partial)}
            await send_partial(partial_payload(data), chunk.seq)
            if ctx.trace is not None:
                ctx.trace.first_output("partial")

    heard_through = 0
    if first is not None:
        await hear(first)
        heard_through = first.seq  # also in the input stream: not heard twice
    async with InputFollow(ctx.inputs, input_key, settings.input_idle_timeout, sent) as chunks:
        while True:
            _entry_id, chunk = await chunks.next()
            if chunk.seq <= heard_through:
                continue
            if chunk.end:
                tail = chunk.audio
                if keep_audio is not None:
                    keep_audio.extend(chunk.audio)
                cancelled, preempted = chunk.cancelled, chunk.preempted
                break
            await hear(chunk)
    speech_end_ms = now_ms()
    if tail:
        await asyncio.to_thread(stream.feed, tail)
    if cancelled:
        return "", True, speech_end_ms, ""
    return await asyncio.to_thread(stream.finish), False, speech_end_ms, preempted


def make_asr_handler(
    redis: aioredis.Redis,
    settings: Settings,
    engine: AsrEngine,
    external: ExternalTranscriber | None = None,
):
    verdicts = EarlyVerdicts(redis, settings.keys, settings.session_ttl_seconds)

    async def handle(job: AsrJob, ctx: JobContext) -> None:
        keys = settings.keys
        checkpoint = TurnCheckpoint(
            redis, keys.checkpoint("asr", job.session_id, job.turn_id), settings.turn_ttl_seconds
        )
        input_key = keys.asr_input(job.session_id, job.turn_id)
        first, sent = _first_chunk(ctx), []
        if first is None:
            # a job taken up again (or from an older gateway): its checkpoint and the
            # audio already there, in one round trip
            _, sent = await asyncio.gather(checkpoint.load(), read_start(redis, input_key))
        # else the job's first delivery, with its first chunk: no worker wrote this turn
        # yet, so its checkpoint is empty and the first partial waits for no read
        ctx.cleanup.extend([checkpoint.key, input_key])
        if checkpoint.number("done"):  # transcript sent before a crash, just not acknowledged
            return
        # a language the local recogniser lacks: no partials (they would be English
        # guesses); the external transcriber's final, or else a notice in that language
        foreign = unsupported_language(engine, job.options, settings)
        unheard = foreign if external is None else None
        stream: AsrStream = IgnoredSpeech() if foreign else await _open_stream(engine)
        audio = bytearray() if external else None
        try:
            text, cancelled, speech_end_ms, preempted = await _transcribe(
                settings, job, ctx, stream, audio, checkpoint, sent, first
            )
        finally:
            if getattr(stream, "blocking", True):
                await asyncio.to_thread(stream.close)
            else:
                stream.close()
        if cancelled:
            return
        if external and audio:
            try:
                hint = (job.options or {}).get("lang")
                text = await external.transcribe(
                    bytes(audio), job.sample_rate, language(hint).transcription if hint else None
                )
            except TranscriptionFailed as exc:
                log.warning("turn %s: %s; using the local transcript", job.turn_id, exc)
        final_ms = now_ms()
        metrics.observe_ms(
            metrics.STAGE_LATENCY.labels("asr", engine.name, "transcript_final"),
            final_ms - speech_end_ms,
        )
        data = {
            "text": text,
            "is_final": True,
            "timings": {"transcript_final_ms": final_ms - speech_end_ms},
        }
        final = ReplyEvent("partial_transcription", job.session_id, job.turn_id, data)
        if preempted and preempted != GATEWAY_DECIDES and not text:
            # nothing to answer: not the attempt's words either
            await verdicts.decide(job.session_id, preempted, None)
        if not text:
            no_speech = {"code": protocol.NO_SPEECH, "message": "no speech was recognised"}
            failure = notice(unheard) if unheard else no_speech
            event = ReplyEvent("error", job.session_id, job.turn_id, failure)
            outputs = [_to_client(settings, final), _to_client(settings, event)]
        elif preempted == GATEWAY_DECIDES:
            # the gateway decides from this final whether the utterance was a request at all
            outputs = [_to_client(settings, final)]
        elif preempted and await verdicts.decide(job.session_id, preempted, text) == USED:
            outputs = [_to_client(settings, final)]  # the attempt started early is the reply
        else:
            llm_job = LlmJob(
                job.session_id,
                job.turn_id,
                text,
                "speech",
                speech_end_ms,
                dict(job.options),
                ctx.trace_for(job),
            )
            llm_jobs = keys.jobs_for("llm", job.session_id)
            job_stream = Append(llm_jobs, llm_job, maxlen=settings.jobs_maxlen)
            outputs = [_to_client(settings, final), job_stream]
        await checkpoint.commit(outputs, done=1)
        if ctx.trace is not None:
            ctx.trace.first_output("final")  # no partial came before it

    return handle


def _first_chunk(ctx: JobContext) -> InputChunk | None:
    """The first audio the gateway sent beside the job (``FIRST_AUDIO``), on the job's
    first delivery only: a worker taking a job up again (after a restart, or reclaimed
    from a dead one) reads its checkpoint first."""
    audio = ctx.entry.get(FIRST_AUDIO) if ctx.fresh else None
    return InputChunk(seq=1, audio=audio) if audio else None


async def _open_stream(engine: AsrEngine) -> AsrStream:
    """On a thread of its own (a recogniser may load a model or wait for a free decoder),
    unless the engine says opening is trivial (echo): a hundred utterances opening at
    once then cost no thread hops."""
    if getattr(engine, "blocking", True):
        opening = contextvars.copy_context().run  # its log lines name the turn
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_OPENING, opening, engine.open_stream)
    return engine.open_stream()


def _complete(stream: AsrStream, partial: str) -> bool | None:
    """Whether the hypothesis is a whole request: the engine's own verdict (a grammar
    knows), else rules on the words (``asr_worker.completeness``)."""
    verdict = getattr(stream, "complete", "unknown")
    return is_complete(partial) if verdict == "unknown" else verdict


def _to_client(settings: Settings, event: ReplyEvent) -> Append:
    key = settings.keys.reply(event.session_id)
    return Append(key, event, settings.session_ttl_seconds, settings.reply_maxlen)


def build_asr_worker(
    redis: aioredis.Redis,
    settings: Settings,
    engine: AsrEngine,
    external: ExternalTranscriber | None = None,
) -> StageWorker[AsrJob]:
    return stage_worker(
        redis, settings, "asr", AsrJob, make_asr_handler(redis, settings, engine, external)
    )
