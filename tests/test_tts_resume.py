"""A reply whose worker died in the middle of a sentence: the next worker speaks that
sentence again whole and numbers its chunks on from where the first one stopped.
Real espeak audio, real Redis; the "crash" is the first handler's task being cancelled
between two chunks of sentence two, which leaves exactly what a kill -9 leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from shared.engines import AudioSegment, Voice
from shared.messages import InputChunk, ReplyEvent, TtsJob, decode, encode
from shared.mux import StreamMux
from shared.settings import load_settings
from shared.worker import JobContext
from tests.audio_checks import decode_mp3
from tts_worker.espeak_engine import EspeakEngine
from tts_worker.worker import make_tts_handler

SENTENCES = ["The first sentence is here.", "The second one is longer than that.", "Bye now."]


class HalvingEngine:
    """espeak, each sentence in two segments; can stall before a sentence's second half."""

    name = "espeak"

    def __init__(self, stall_on: str | None) -> None:
        self._espeak = EspeakEngine()
        self._stall_on = stall_on
        self.stalled = asyncio.Event()

    async def synthesize(self, text: str, voice: Voice) -> AsyncIterator[AudioSegment]:
        async for segment in self._espeak.synthesize(text, voice):
            half = len(segment.data) // 4 * 2
            yield AudioSegment(segment.data[:half], "pcm16", segment.sample_rate)
            if text == self._stall_on:
                self.stalled.set()
                await asyncio.sleep(3600)
            yield AudioSegment(segment.data[half:], "pcm16", segment.sample_rate)


async def test_sentence_cut_by_a_crash_is_spoken_again_with_numbering_going_on(
    redis: Redis,
) -> None:
    settings = load_settings(stream_prefix="resume", audio_chunk_size=512)
    job = TtsJob("s", "t1", 0)
    input_key = settings.keys.tts_input("s", "t1")
    for seq, text in enumerate(SENTENCES, 1):
        await redis.xadd(input_key, encode(InputChunk(seq, text=text)))
    await redis.xadd(input_key, encode(InputChunk(4, end=True)))
    mux = StreamMux(redis, settings.keys.mux_wake("test"))
    mux.start()

    def context() -> JobContext:
        return JobContext("1-0", 1, None, mux)  # type: ignore[arg-type]

    crashing = HalvingEngine(stall_on=SENTENCES[1])
    first = asyncio.create_task(make_tts_handler(redis, settings, crashing)(job, context()))
    await asyncio.wait_for(crashing.stalled.wait(), 10)
    first.cancel()
    events = [decode(f) for _, f in await redis.xrange(settings.keys.reply("s"))]
    cut_at = len(events)
    await make_tts_handler(redis, settings, HalvingEngine(None))(job, context())
    await mux.stop()

    events = [decode(f) for _, f in await redis.xrange(settings.keys.reply("s"))]
    assert all(isinstance(e, ReplyEvent) for e in events)
    chunks = [e for e in events if e.event == "tts_chunk"]  # type: ignore[union-attr]
    assert [c.data["chunk_index"] for c in chunks] == list(range(len(chunks)))
    assert 0 < cut_at < len(chunks)
    done = events[-1]
    assert done.event == "streaming_complete" and done.data["total_chunks_sent"] == len(chunks)
    _pcm, seconds = decode_mp3(b"".join(c.audio for c in chunks))
    espeak, clean = EspeakEngine(), 0
    for text in SENTENCES:
        async for segment in espeak.synthesize(text, Voice("en-us")):
            clean += len(segment.data)
    clean_seconds = clean / 2 / espeak.sample_rate
    # everything once, plus the first half of sentence two again (minus encoder tails)
    assert clean_seconds < seconds < clean_seconds + 1.5, (clean_seconds, seconds)


async def test_an_end_marker_that_says_cancelled_ends_the_turn_without_completing_it(
    redis: Redis,
) -> None:
    """The LLM heard the client's cancel and ended the sentence stream before this worker
    heard the cancel itself (no control channel here at all): no ``streaming_complete``."""
    settings = load_settings(stream_prefix="cutend", audio_chunk_size=512)
    input_key = settings.keys.tts_input("s", "t1")
    await redis.xadd(input_key, encode(InputChunk(1, text=SENTENCES[0])))
    await redis.xadd(input_key, encode(InputChunk(2, end=True, cancelled=True)))
    mux = StreamMux(redis, settings.keys.mux_wake("test-cut"))
    mux.start()
    try:
        context = JobContext("1-0", 1, None, mux)  # type: ignore[arg-type]
        await make_tts_handler(redis, settings, EspeakEngine())(TtsJob("s", "t1", 0), context)
    finally:
        await mux.stop()
    events = [decode(f) for _, f in await redis.xrange(settings.keys.reply("s"))]
    assert [e.event for e in events if e.event == "tts_chunk"], "the sentence was spoken"  # type: ignore[union-attr]
    assert "streaming_complete" not in [e.event for e in events]  # type: ignore[union-attr]
