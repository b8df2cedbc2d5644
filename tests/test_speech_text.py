"""Sentences rewritten for speech: what a newsreader would say, not what the page shows."""

from __future__ import annotations

import pytest

from llm_worker.speech_text import speech_text


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("Shares rose 3.5% on Tuesday.", "Shares rose three point five percent on Tuesday."),
        (
            "It costs $12.50 or £1.01.",
            "It costs twelve dollars and fifty cents or one pound and one penny.",
        ),
        ("A $1.5bn deal and €20.", "A one point five billion dollars deal and twenty euros."),
        ("Talks run 10-12 March.", "Talks run ten to twelve March."),
        (
            "From 2020–2024 and in 1999.",
            "From twenty twenty to twenty twenty-four and in nineteen ninety-nine.",
        ),
        ("We meet at 9:30 a.m. or 7pm.", "We meet at nine thirty AM or seven PM."),
        ("Doors open at 9 a.m.", "Doors open at nine AM."),
        ("Dr. Lee met Mr. Jones in the U.S.", "Doctor Lee met Mister Jones in the US."),
        ("St. Louis is on Baker St.", "Saint Louis is on Baker Street."),
        ("England vs. France, e.g. rugby.", "England versus France, for example rugby."),
        ("Rock & roll, AT&T.", "Rock and roll, AT&T."),
        (
            "1,234 fans saw the 21st game.",
            "one thousand two hundred and thirty-four fans saw the twenty-first game.",
        ),
        ("The 1990s and the 80s.", "The nineteen nineties and the eighties."),
        ("It was -5°C today.", "It was minus five degrees Celsius today."),
        ("Read https://bbc.co.uk/news now.", "Read now."),
        ("- A **bold** claim.", "A bold claim."),
        ("No. 10 said 24/7.", "Number ten said twenty-four seven."),
        ("COVID-19 and 5G.", "COVID-nineteen and 5G."),
    ],
)
def test_spoken_form(text: str, spoken: str) -> None:
    assert speech_text(text) == spoken


@pytest.mark.parametrize("text", ["Version 3.11.2 ships.", "Plain words stay as they are."])
def test_what_is_not_recognised_is_left_alone(text: str) -> None:
    assert speech_text(text) == text


def test_rewriting_twice_changes_nothing_more() -> None:
    once = speech_text("Prices up 4 per cent to $5,000 at 14:00.")
    assert once == "Prices up four percent to five thousand dollars at fourteen hundred."
    assert speech_text(once) == once
