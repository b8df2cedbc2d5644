import pytest

from llm_worker.sentences import SentenceSplitter


def _split(deltas: list[str]) -> list[str]:
    splitter = SentenceSplitter(max_chars=80)
    out = [s for d in deltas for s in splitter.push(d)]
    return out + splitter.flush()


def test_sentences_are_released_as_soon_as_complete() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("Here are the ") == []
    assert splitter.push("headlines. First") == ["Here are the headlines."]


@pytest.mark.parametrize(
    "text",
    ["Dr. Jones met Mr. Smith in the U.S. today.", "Stocks rose 3.5 percent.", "J. Smith won."],
)
def test_abbreviations_and_numbers_do_not_split(text: str) -> None:
    assert _split([text[:7], text[7:]]) == [text]


def test_long_run_without_punctuation_is_cut_at_a_comma() -> None:
    long = "word " * 10 + "then a comma, " + "more words " * 10
    pieces = _split([long])
    assert len(pieces) >= 2 and all(len(p) <= 80 for p in pieces)
    assert " ".join(pieces).split() == long.split()


def test_question_and_exclamation_end_sentences() -> None:
    assert _split(["Really? Yes! Done"]) == ["Really?", "Yes!", "Done"]
