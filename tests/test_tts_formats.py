"""Reply audio formats through the real TTS worker: mp3, pcm16 and wav, one rate per reply."""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
import wave
from collections.abc import Sequence
from dataclasses import dataclass

import miniaudio
import pytest
from redis.asyncio import Redis

from shared.audio import pcm16_duration_ms, wav_to_pcm16
from shared.engines import TtsEngine
from shared.messages import InputChunk, ReplyEvent, TtsJob, decode
from shared.settings import Settings, load_settings
from shared.streams import append_with_ttl, now_ms, publish_job
from tests.audio_checks import decode_mp3
from tests.edge_standin import (
    EdgeStandIn,
    point_edge_tts_at,
    running_edge_standin,
    speech_mp3,
)
from tests.test_mp3 import whole_frames
from tts_worker.espeak_engine import synthesize_pcm
from tts_worker.providers import create_tts_engine
from tts_worker.worker import build_tts_worker

SENTENCES = ("Markets rise after the rate decision.", "Coffee prices fall again today.")


@dataclass
class Reply:
    chunks: list[ReplyEvent]
    complete: ReplyEvent

    @property
    def rates(self) -> set[int]:
        return {c.data["sample_rate"] for c in self.chunks}

    def seconds(self) -> float:
        """Duration of the reply's audio, decoding it the way a client would."""
        fmt = self.chunks[0].data["format"]
        if fmt == "mp3":
            assert all(whole_frames(c.audio) for c in self.chunks)
            return decode_mp3(b"".join(c.audio for c in self.chunks))[1]
        if fmt == "wav":
            pieces = [wav_to_pcm16(c.audio) for c in self.chunks]
            assert {rate for _, rate in pieces} == self.rates
            return pcm16_duration_ms(b"".join(pcm for pcm, _ in pieces), pieces[0][1]) / 1000
        assert all(len(c.audio) % 2 == 0 for c in self.chunks)
        pcm = b"".join(c.audio for c in self.chunks)
        return pcm16_duration_ms(pcm, self.chunks[0].data["sample_rate"]) / 1000


async def speak_reply(
    redis: Redis, settings: Settings, engine: TtsEngine, sentences: Sequence[str], fmt: str = "mp3"
) -> Reply:
    """Run the real TTS worker on one reply and return what the client would receive."""
    keys, session = settings.keys, uuid.uuid4().hex
    task = asyncio.create_task(build_tts_worker(redis, settings, engine).run(asyncio.Event()))
    try:
        job = TtsJob(session, "t1", created_ms=now_ms(), options={"format": fmt})
        await publish_job(redis, keys.jobs("tts"), job, 100)
        for seq, text in enumerate([*sentences, ""], start=1):
            chunk = InputChunk(seq, text=text, end=seq > len(sentences))
            await append_with_ttl(redis, keys.tts_input(session, "t1"), chunk, 60)
        while True:  # polling the reply stream: its last event is the signal
            events = [decode(f) for _, f in await redis.xrange(keys.reply(session))]
            if any(e.event == "streaming_complete" for e in events):  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()  # not a graceful stop: that waits out the worker's 1 s read block
        with contextlib.suppress(asyncio.CancelledError):
            await task
    chunks = [e for e in events if isinstance(e, ReplyEvent) and e.event == "tts_chunk"]
    assert [c.data["chunk_index"] for c in chunks] == list(range(len(chunks)))
    complete = events[-1]
    assert isinstance(complete, ReplyEvent) and complete.event == "streaming_complete"
    assert complete.data["total_chunks_sent"] == len(chunks)
    return Reply(chunks, complete)


def _espeak_seconds(sentences: Sequence[str]) -> float:
    return sum(pcm16_duration_ms(synthesize_pcm(s), 22050) for s in sentences) / 1000


@pytest.fixture(scope="module")
def espeak() -> TtsEngine:
    return create_tts_engine(load_settings())


@pytest.mark.parametrize("fmt", ["mp3", "pcm16", "wav"])
async def test_every_format_gives_the_same_audio(redis: Redis, espeak, fmt) -> None:
    reply = await speak_reply(redis, load_settings(audio_chunk_size=2048), espeak, SENTENCES, fmt)
    spoken = _espeak_seconds(SENTENCES)
    assert reply.rates == {22050}, "espeak's own rate: nothing resampled when not needed"
    assert all(len(c.audio) <= 2048 for c in reply.chunks) and len(reply.chunks) > 4
    assert 3.0 < spoken and abs(reply.seconds() - spoken) < 0.15
    assert reply.complete.data["format"] == fmt
    assert abs(reply.complete.data["audio_ms"] / 1000 - reply.seconds()) < 0.1


async def test_wav_chunks_are_each_a_playable_file(redis: Redis, espeak) -> None:
    reply = await speak_reply(redis, load_settings(), espeak, SENTENCES, "wav")
    for chunk in reply.chunks:
        with wave.open(io.BytesIO(chunk.audio)) as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (22050, 1, 2)
            assert wav.getnframes() > 0


@pytest.mark.parametrize("fmt", ["mp3", "pcm16", "wav"])
async def test_edge_then_espeak_is_one_stream_at_one_rate(redis: Redis, monkeypatch, fmt) -> None:
    """Edge speaks sentence one (24 kHz MP3), is refused, espeak (22.05 kHz PCM) the rest."""
    # the stand-in refuses at once: no timeout is involved, so a generous one (a busy
    # machine must not turn a slow healthy sentence into a fallback)
    settings = load_settings(tts_fallback="edge,espeak", tts_timeout=30)
    async with running_edge_standin(EdgeStandIn(mode="reject", fail_from=1)) as standin:
        point_edge_tts_at(monkeypatch, standin.url)
        reply = await speak_reply(redis, settings, create_tts_engine(settings), SENTENCES, fmt)
    assert [r.text for r in standin.requests] == [SENTENCES[0]]
    assert reply.rates == {24000}
    if fmt == "mp3":
        rates = {miniaudio.mp3_get_info(c.audio).sample_rate for c in reply.chunks}
        assert rates == {24000}
    expected = decode_mp3(speech_mp3(SENTENCES[0]))[1] + _espeak_seconds(SENTENCES[1:])
    assert abs(reply.seconds() - expected) < 0.15, (reply.seconds(), expected)
