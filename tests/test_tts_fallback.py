"""The fallback chain: when edge fails, espeak speaks the rest of the reply, through the worker."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from shared.engines import AudioSegment, TtsEngine, Voice
from shared.settings import load_settings
from tests.audio_checks import decode_mp3
from tests.edge_standin import EdgeStandIn, point_edge_tts_at, running_edge_standin, speech_mp3
from tests.support import free_port
from tests.test_tts_formats import Reply, speak_reply
from tts_worker.edge_engine import EdgeTtsEngine
from tts_worker.errors import TtsProviderError
from tts_worker.espeak_engine import EspeakEngine, synthesize_pcm
from tts_worker.fallback import FallbackTts
from tts_worker.openai_engine import OpenAITtsEngine
from tts_worker.providers import create_tts_engine

SENTENCES = (
    "Markets rise after the rate decision.",
    "Coffee prices fall again today.",
    "The local team wins the final.",
)
# Long enough that a healthy sentence never times out on a busy machine; the stalls of
# the stand-in are endless, so only the stall test waits it out.
TIMEOUT = 3.0


class Recording:
    """The real espeak engine, noting which sentences it was asked to speak."""

    name = "espeak"

    def __init__(self) -> None:
        self.engine = EspeakEngine()
        self.texts: list[str] = []

    async def synthesize(self, text: str, voice: Voice) -> AsyncIterator[AudioSegment]:
        self.texts.append(text)
        async for segment in self.engine.synthesize(text, voice):
            yield segment


def _seconds(edge: list[str], espeak: list[str]) -> float:
    edge_s = sum(decode_mp3(speech_mp3(text))[1] for text in edge)
    return edge_s + sum(len(synthesize_pcm(text)) / 2 / 22050 for text in espeak)


async def _reply(
    redis: Redis, monkeypatch, standin: EdgeStandIn
) -> tuple[Reply, Recording, FallbackTts]:
    espeak = Recording()
    chain = FallbackTts([EdgeTtsEngine(timeout=TIMEOUT), espeak], timeout=TIMEOUT)
    async with running_edge_standin(standin):
        point_edge_tts_at(monkeypatch, standin.url)
        reply = await speak_reply(redis, load_settings(), chain, SENTENCES)
    return reply, espeak, chain


def _fallback_counters() -> tuple[float, float]:
    """(edge -> espeak fallbacks, edge failures) counted so far in this process."""
    fallbacks = {"stage": "tts", "from_provider": "edge", "to_provider": "espeak"}
    return (
        REGISTRY.get_sample_value("vna_provider_fallbacks_total", fallbacks) or 0.0,
        REGISTRY.get_sample_value(
            "vna_provider_failures_total", {"stage": "tts", "provider": "edge"}
        )
        or 0.0,
    )


async def test_edge_refused_after_sentence_one_espeak_speaks_the_rest(redis, monkeypatch) -> None:
    standin = EdgeStandIn(mode="reject", fail_from=1)
    before = _fallback_counters()
    reply, espeak, chain = await _reply(redis, monkeypatch, standin)
    after = _fallback_counters()
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1), "counted once each"
    assert [r.text for r in standin.requests] == [SENTENCES[0]]
    assert espeak.texts == list(SENTENCES[1:])
    assert standin.connections == 2, "a failed engine is skipped for the rest of the reply"
    assert chain.failures == {"edge": 1}
    assert abs(reply.seconds() - _seconds(SENTENCES[:1], SENTENCES[1:])) < 0.15


async def test_cut_mid_sentence_goes_on_with_the_next_sentence(redis, monkeypatch) -> None:
    standin = EdgeStandIn(mode="cut", fail_from=1, audio_before_failure=2)
    reply, espeak, _ = await _reply(redis, monkeypatch, standin)
    assert [r.text for r in standin.requests] == list(SENTENCES[:2])
    assert espeak.texts == [SENTENCES[2]], "half-heard sentence not repeated"
    partial = 2 * standin.message_bytes * 8 / 48000  # two audio messages at 48 kbit/s
    expected = _seconds(SENTENCES[:1], SENTENCES[2:]) + partial
    assert abs(reply.seconds() - expected) < 0.15


async def test_stall_before_audio_respeaks_the_sentence_after_the_timeout(
    redis, monkeypatch
) -> None:
    standin = EdgeStandIn(mode="stall", fail_from=1, audio_before_failure=0)
    started = time.monotonic()
    reply, espeak, _ = await _reply(redis, monkeypatch, standin)
    assert time.monotonic() - started > TIMEOUT, "the stalled sentence was waited out"
    assert espeak.texts == list(SENTENCES[1:])
    assert abs(reply.seconds() - _seconds(SENTENCES[:1], SENTENCES[1:])) < 0.15
    assert reply.rates == {24000}


async def test_every_engine_failing_is_one_clear_error(monkeypatch) -> None:
    dead = f"127.0.0.1:{free_port()}"
    point_edge_tts_at(monkeypatch, f"ws://{dead}/edge/v1?TrustedClientToken=x")
    chain = FallbackTts([OpenAITtsEngine("sk-x", base_url=f"http://{dead}/v1"), EdgeTtsEngine()])
    with pytest.raises(TtsProviderError, match="every engine failed"):
        _ = [s async for s in chain.synthesize("Hello there.", Voice())]
    assert chain.failures == {"openai": 1, "edge": 1}


def test_tts_fallback_setting_builds_the_chain() -> None:
    engine: TtsEngine = create_tts_engine(load_settings(tts_fallback="edge, espeak"))
    assert isinstance(engine, FallbackTts)
    assert [e.name for e in engine.engines] == ["edge", "espeak"]
    # unknown names and missing keys now fail when the settings are read, before any start
    with pytest.raises(ValueError, match="TTS_FALLBACK='edge,polly': 'polly' is no TTS engine"):
        load_settings(tts_fallback="edge,polly")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        load_settings(tts_fallback="openai,espeak", openai_api_key=None)
