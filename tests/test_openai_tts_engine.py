"""The OpenAI speech engine: the real openai SDK against a local stand-in over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.audio import pcm16_duration_ms
from shared.engines import AudioSegment, Voice
from tests.audio_checks import decode_mp3
from tests.openai_standin import StandIn, running_standin
from tests.support import free_port
from tests.test_mp3 import whole_frames
from tts_worker.errors import TtsProviderError
from tts_worker.espeak_engine import espeak_sample_rate, synthesize_pcm
from tts_worker.openai_engine import OpenAITtsEngine

TEXT = "Coffee prices fall again in the city markets."


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with running_standin(StandIn(), free_port()) as state:
        yield state


def _engine(standin: StandIn, **options: object) -> OpenAITtsEngine:
    # generous: a busy machine must not turn a slow healthy answer into a timeout
    options = {"timeout": 30.0, **options}
    return OpenAITtsEngine(standin.api_key, base_url=standin.base_url, **options)  # type: ignore[arg-type]


async def _speak(engine: OpenAITtsEngine, voice: Voice | None = None) -> list[AudioSegment]:
    return [segment async for segment in engine.synthesize(TEXT, voice or Voice())]


async def test_pcm_streams_in_pieces_of_whole_samples(standin: StandIn) -> None:
    segments = await _speak(_engine(standin), Voice("en-us", rate=50))
    assert len(segments) > 3, "audio should stream in several pieces"
    assert all(s.encoding == "pcm16" and s.sample_rate == 24000 for s in segments)
    assert all(len(s.data) % 2 == 0 for s in segments)
    seconds = pcm16_duration_ms(b"".join(s.data for s in segments), 24000) / 1000
    expected = pcm16_duration_ms(synthesize_pcm(TEXT), espeak_sample_rate()) / 1000
    assert 1.0 < seconds and abs(seconds - expected) < 0.05
    request = standin.speech.requests[0]
    assert request["voice"] == "alloy" and request["model"] == "gpt-4o-mini-tts"
    assert (request["response_format"], request["input"], request["speed"]) == ("pcm", TEXT, 1.5)


async def test_mp3_streams_whole_frames(standin: StandIn) -> None:
    segments = await _speak(_engine(standin, response_format="mp3"), Voice("nova"))
    assert all(s.encoding == "mp3" and whole_frames(s.data) for s in segments)
    _, seconds = decode_mp3(b"".join(s.data for s in segments))
    assert 1.0 < seconds < 5.0
    assert standin.speech.requests[0]["voice"] == "nova"


@pytest.mark.parametrize(
    ("problem", "reason"),
    [
        ("bad_key", "API key was refused"),
        ("rate_limit", "rate limited"),
        ("unreachable", "unreachable"),
        ("stall", "no audio within 0.5 s"),
        ("cut", "stream broke"),
    ],
)
async def test_failures_raise_one_clear_error_at_once(standin: StandIn, problem, reason) -> None:
    """Only the stall waits for the timeout (0.5 s); every other failure is its own error at
    once: one that waited out the 600 s timeout would end in pytest's timeout instead."""
    timeout = 0.5 if problem == "stall" else 600.0
    engine = _engine(standin, timeout=timeout)
    if problem == "bad_key":
        engine = OpenAITtsEngine("sk-wrong", base_url=standin.base_url, timeout=timeout)
    elif problem == "unreachable":
        engine = OpenAITtsEngine("sk-x", base_url=f"http://127.0.0.1:{free_port()}/v1")
    standin.speech.status = 429 if problem == "rate_limit" else 200
    standin.speech.stall_after = 1 if problem == "stall" else None
    standin.speech.cut_after = 1 if problem == "cut" else None
    with pytest.raises(TtsProviderError, match=reason):
        await _speak(engine)
