"""The offline recogniser on speech from the offline voice, fed 100 ms at a time.

Phrasings here were written before the grammar's current version and are not in it
verbatim; bench/asr_wer.py measures a larger held-out set.
"""

from __future__ import annotations

import threading
from functools import cache

import pytest

from asr_worker.pocketsphinx_engine import PocketsphinxEngine, PocketsphinxStream
from shared.audio import resample_pcm16
from tests.audio_checks import word_error_rate as wer
from tts_worker.espeak_engine import espeak_sample_rate, synthesize_pcm

CHUNK = 3200  # 100 ms of 16 kHz 16-bit audio
SILENCE_300MS = b"\x00\x00" * 4800


@cache
def speech(text: str) -> bytes:
    pcm = resample_pcm16(synthesize_pcm(text), espeak_sample_rate(), 16000)
    return SILENCE_300MS + pcm + SILENCE_300MS


def recognise(engine: PocketsphinxEngine, text: str) -> tuple[list[str], str, PocketsphinxStream]:
    stream = engine.open_stream()
    pcm = speech(text)
    partials = [p for i in range(0, len(pcm), CHUNK) if (p := stream.feed(pcm[i : i + CHUNK]))]
    return partials, stream.finish(), stream


@pytest.fixture(scope="module")
def engine() -> PocketsphinxEngine:
    return PocketsphinxEngine(mode="grammar", fallback=True, decoder_pool_size=2)


def test_partials_come_several_per_second_before_the_final(engine: PocketsphinxEngine) -> None:
    text = "give me the latest business headlines"
    partials, final, _ = recognise(engine, text)
    seconds = (len(speech(text)) - 2 * len(SILENCE_300MS)) / 32000
    assert len(partials) / seconds >= 1.5, partials
    assert wer(text, final) <= 0.2, final  # at most one word of six wrong


def test_news_requests_are_transcribed_closely(engine: PocketsphinxEngine) -> None:
    # Threshold between what the grammar measured (0.03 on these, 0.10 on 200 development
    # utterances) and what the open-vocabulary model did (0.22 on these, 0.43 there).
    texts = [
        "what is happening around the world today",
        "go to the next story",
        "repeat that please",
        "search for news about elections",
        "tell me about the sports news",
    ]
    errors = [wer(text, recognise(engine, text)[1]) for text in texts]
    assert sum(errors) / len(errors) <= 0.15, errors


def test_silence_gives_an_empty_transcript(engine: PocketsphinxEngine) -> None:
    stream = engine.open_stream()
    assert all(stream.feed(b"\x00\x00" * 1600) is None for _ in range(10))
    assert stream.finish() == "" and not stream.rejected


def test_two_streams_in_two_threads_do_not_mix(engine: PocketsphinxEngine) -> None:
    texts = ("any business news today", "skip to the next one")
    results: dict[str, str] = {}
    start = threading.Barrier(2)

    def run(text: str) -> None:
        start.wait()
        results[text] = recognise(engine, text)[1]

    threads = [threading.Thread(target=run, args=(text,)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for own, other in (texts, texts[::-1]):
        assert wer(own, results[own]) < wer(other, results[own]), results


def test_finish_and_close_return_the_decoder_to_the_pool() -> None:
    engine = PocketsphinxEngine(decoder_pool_size=1, min_score=None, acquire_timeout=0.2)
    stream = engine.open_stream()
    with pytest.raises(TimeoutError):
        engine.open_stream()  # the only decoder is lent out
    stream.feed(speech("stop"))
    stream.close()
    assert engine.pool.idle == 1
    _, final, _ = recognise(engine, "stop")
    assert final == "stop" and engine.pool.idle == 1 and engine.pool.created == 1


def test_out_of_domain_speech_is_not_forced_into_a_news_command() -> None:
    # a fresh engine: the open model starts from the cepstral mean the grammar decoder
    # carries, which depends on everything that decoder heard before (in the whole suite
    # the same sentence scored anywhere from 0.00 to 0.71); from the initial mean the
    # result is the same every run
    engine = PocketsphinxEngine(mode="grammar", fallback=True, decoder_pool_size=1)
    text = "please water the plants on the balcony"
    _, final, stream = recognise(engine, text)
    assert stream.rejected
    # the open-vocabulary model's reading: not a news command, and mostly right. On this
    # synthetic (espeak-ng) sentence a fresh engine scored WER 0.43 when run alone, but
    # 0.57 once inside the whole suite (2026-11-30: "the why of the planets on the
    # balcony"), so some decoder state outlives an engine; an open model that stopped
    # working, or heard half the audio, scores 0.8-1.0: the bound sits between the two
    assert final and not {"news", "headlines", "story", "stories"} & set(final.split()), final
    assert wer(text, final) <= 0.72, final  # at most five words of seven wrong


def test_asr_fallback_setting_turns_the_open_model_off() -> None:
    from asr_worker.providers import create_asr_engine
    from shared.settings import load_settings

    engine = create_asr_engine(load_settings(asr_fallback=False))
    assert engine.fallback is False  # type: ignore[attr-defined]
    assert create_asr_engine(load_settings()).fallback is True  # type: ignore[attr-defined]
