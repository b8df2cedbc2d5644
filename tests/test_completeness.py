"""Whether a hypothesis is a whole request: the grammar's verdict and the word rules."""

from __future__ import annotations

import pytest

from asr_worker.completeness import is_complete
from asr_worker.pocketsphinx_engine import PocketsphinxEngine


@pytest.fixture(scope="module")
def engine() -> PocketsphinxEngine:
    return PocketsphinxEngine(decoder_pool_size=1, min_score=None, fallback=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("read me the sports headlines", True),
        ("what's new in technology", True),
        ("next story", True),
        ("what's going on", True),
        ("read me the", False),  # the grammar cannot end here, nor can English
        ("tell me more about", False),
        ("read me the latest", None),  # complete, but "latest" usually leads on
        ("tell me more", None),
        ("read me the sports", None),  # the grammar cannot end here: no verdict
    ],
)
def test_the_news_grammar_and_the_last_word_decide(engine, text, expected) -> None:
    assert is_complete(text, engine.grammar_accepts(text)) is expected


def test_text_from_other_recognisers_is_judged_by_its_words() -> None:
    assert is_complete("please read me the business news") is True
    assert is_complete("could you tell me about") is False
    assert is_complete("what is going on with the elections") is None
    assert is_complete("") is None


def test_partials_of_a_stream_carry_the_verdict(engine) -> None:
    from tests.audio_checks import speech_16k

    stream = engine.open_stream()
    pcm = speech_16k("read me the sports headlines")
    verdicts = []
    for offset in range(0, len(pcm), 3200):
        if stream.feed(pcm[offset : offset + 3200]):
            verdicts.append(stream.complete)
    stream.close()
    assert verdicts[-1] is True and False in verdicts[:-1]
