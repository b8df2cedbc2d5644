"""News requests in many phrasings, typed and as lower-case unpunctuated ASR output."""

from __future__ import annotations

import pytest

from llm_worker.news.intents import Intent, IntentKind, mentions_topic, parse_intent

K = IntentKind


def headlines(topic: str) -> Intent:
    return Intent(K.HEADLINES, topic=topic)


def details(index: int | None = None) -> Intent:
    return Intent(K.DETAILS, index=index)


def search(query: str) -> Intent:
    return Intent(K.SEARCH, query=query)


CASES = [
    ("What's the latest in technology?", headlines("technology")),
    ("give me the tech news", headlines("technology")),
    ("whats new in ai", headlines("technology")),
    ("whats going on in the world of tech", headlines("technology")),
    ("read me the sports headlines", headlines("sports")),
    ("um can you tell me the football news please", headlines("sports")),
    ("Any business news today?", headlines("business")),
    ("how are the markets doing", headlines("business")),
    ("give me an update on the stock market", headlines("business")),
    ("tell me more about the economy", headlines("business")),
    ("latest environment stories", headlines("science")),
    ("health news please", headlines("science")),
    ("whats happening in the world", headlines("world")),
    ("International headlines.", headlines("world")),
    ("politics news", headlines("world")),
    ("and what about sports", headlines("sports")),
    ("what's the news", headlines("general")),
    ("headlines", headlines("general")),
    ("okay so whats happening", headlines("general")),
    ("brief me", headlines("general")),
    ("what happened in the last hour", headlines("general")),
    ("tell me about the second one", details(1)),
    ("More about the first story.", details(0)),
    ("more on the third", details(2)),
    ("read the second headline", details(1)),
    ("story number two", details(1)),
    ("second", details(1)),
    ("what about the last one", details(-1)),
    ("tell me more about that", details()),
    ("Tell me more.", details()),
    ("what is this story about", details()),
    ("next", Intent(K.NEXT)),
    ("Next story, please.", Intent(K.NEXT)),
    ("skip", Intent(K.NEXT)),
    ("ok skip this one", Intent(K.NEXT)),
    ("more headlines", Intent(K.MORE_HEADLINES)),
    ("any other stories", Intent(K.MORE_HEADLINES)),
    ("go back", Intent(K.PREVIOUS)),
    ("repeat", Intent(K.REPEAT)),
    ("Say that again?", Intent(K.REPEAT)),
    ("sorry i didnt catch that", Intent(K.REPEAT)),
    ("stop", Intent(K.STOP)),
    ("Cancel.", Intent(K.STOP)),
    ("that's enough", Intent(K.STOP)),
    ("okay thats all for now thanks", Intent(K.STOP)),
    ("search for climate change", search("climate change")),
    ("news about NASA", search("nasa")),
    ("whats the latest on the election", search("election")),
    ("any updates on ukraine", search("ukraine")),
    ("whats going on with tesla", search("tesla")),
    ("tell me more about bitcoin", search("bitcoin")),
    ("any cricket news", search("cricket")),
    ("hello", Intent(K.GREETING)),
    ("Good morning!", Intent(K.GREETING)),
    ("what can you do", Intent(K.HELP)),
    ("help", Intent(K.HELP)),
    ("what's the weather like", Intent(K.UNKNOWN)),
    ("", Intent(K.UNKNOWN)),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] or "empty" for c in CASES])
def test_parse_intent(text: str, expected: Intent) -> None:
    assert parse_intent(text) == expected


def test_story_numbers_ignore_time_phrases() -> None:
    assert parse_intent("what happened the first time").kind is not K.DETAILS
    assert parse_intent("read me the first few headlines") == headlines("general")


def test_mentions_topic_matches_whole_words() -> None:
    assert mentions_topic("Hospital waiting lists fall, health service says", "science")
    assert not mentions_topic("Wealthy donors back new gallery", "science")
