"""The offline recogniser on speech synthesised by the offline voice, 100 ms at a time."""

from __future__ import annotations

import threading

import pytest

from asr_worker.pocketsphinx_engine import PocketsphinxEngine
from tests.audio_checks import speech_16k
from tests.test_pipeline_speech import word_error_rate


@pytest.fixture(scope="module")
def engine() -> PocketsphinxEngine:
    return PocketsphinxEngine(mode="grammar", decoder_pool_size=2)


def _recognise(engine: PocketsphinxEngine, text: str) -> tuple[list[str], str]:
    stream = engine.open_stream()
    pcm = speech_16k(text)
    partials = [p for i in range(0, len(pcm), 3200) if (p := stream.feed(pcm[i : i + 3200]))]
    return partials, stream.finish()


def test_partials_arrive_while_speaking_then_a_final(engine: PocketsphinxEngine) -> None:
    partials, final = _recognise(engine, "tell me more about the second story")
    assert len(partials) >= 3
    assert word_error_rate("tell me more about the second story", final) <= 0.15


def test_silence_gives_an_empty_transcript(engine: PocketsphinxEngine) -> None:
    stream = engine.open_stream()
    for _ in range(10):
        assert stream.feed(b"\x00\x00" * 1600) is None
    assert stream.finish() == ""


def test_two_streams_in_two_threads_do_not_mix(engine: PocketsphinxEngine) -> None:
    texts = ["any business news today", "repeat that"]
    results: dict[str, str] = {}
    threads = [
        threading.Thread(target=lambda t=t: results.__setitem__(t, _recognise(engine, t)[1]))
        for t in texts
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {text: text for text in texts}


def test_closed_stream_returns_its_decoder_to_the_pool(engine: PocketsphinxEngine) -> None:
    for _ in range(5):  # more streams than the pool holds: each close must give one back
        stream = engine.open_stream()
        stream.feed(b"\x00\x00" * 1600)
        stream.close()
    assert _recognise(engine, "stop")[1] == "stop"
