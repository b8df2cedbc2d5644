"""The edge-tts engine: the real edge-tts client against a local stand-in of the service."""

from __future__ import annotations

import pytest

from shared.engines import AudioSegment, Voice
from tests.audio_checks import decode_mp3
from tests.edge_standin import EdgeStandIn, point_edge_tts_at, running_edge_standin, speech_mp3
from tests.support import free_port
from tests.test_mp3 import whole_frames
from tts_worker.edge_engine import EdgeTtsEngine
from tts_worker.errors import TtsProviderError

TEXT = "Markets rise after the rate decision today."


async def _speak(engine: EdgeTtsEngine, voice: Voice) -> list[AudioSegment]:
    return [segment async for segment in engine.synthesize(TEXT, voice)]


async def test_streams_whole_mp3_frames_of_the_right_length(monkeypatch) -> None:
    async with running_edge_standin(EdgeStandIn()) as standin:
        point_edge_tts_at(monkeypatch, standin.url)
        segments = await _speak(EdgeTtsEngine(), Voice("en-us"))
    assert len(segments) > 3, "audio should stream in several pieces"
    assert all(s.encoding == "mp3" and s.sample_rate == 24000 for s in segments)
    assert all(whole_frames(s.data) for s in segments)
    _, seconds = decode_mp3(b"".join(s.data for s in segments))
    _, expected = decode_mp3(speech_mp3(TEXT))
    assert 1.0 < seconds and abs(seconds - expected) < 0.1
    assert "AriaNeural" in standin.requests[0].voice, "a non-Edge voice maps to the default"


async def test_voice_rate_and_pitch_reach_the_ssml(monkeypatch) -> None:
    async with running_edge_standin(EdgeStandIn()) as standin:
        point_edge_tts_at(monkeypatch, standin.url)
        await _speak(EdgeTtsEngine(), Voice("en-GB-RyanNeural", rate=25, pitch=-5))
    request = standin.requests[0]
    assert request.voice == "Microsoft Server Speech Text to Speech Voice (en-GB, RyanNeural)"
    assert (request.rate, request.pitch, request.text) == ("+25%", "-5Hz", TEXT)
    assert request.output_format == "audio-24khz-48kbitrate-mono-mp3"


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("cut", "dropped mid-sentence"),
        ("stall", "no audio for 2 s"),
        ("no_audio", "returned no audio"),
        ("reject", "HTTP 503"),
    ],
)
async def test_service_failures_raise_one_clear_error(monkeypatch, mode, reason) -> None:
    async with running_edge_standin(EdgeStandIn(mode=mode, audio_before_failure=2)) as standin:
        point_edge_tts_at(monkeypatch, standin.url)
        with pytest.raises(TtsProviderError, match=reason):
            await _speak(EdgeTtsEngine(timeout=2), Voice())  # each failure named, not a hang


async def test_unreachable_service_fails_at_once(monkeypatch) -> None:
    point_edge_tts_at(monkeypatch, f"ws://127.0.0.1:{free_port()}/edge/v1?TrustedClientToken=x")
    # at once: the refused connection is the error, not a wait for the (long) timeout,
    # which would end the test in pytest's own timeout instead
    with pytest.raises(TtsProviderError, match="edge: unreachable"):
        await _speak(EdgeTtsEngine(timeout=600), Voice())
