"""What a news request means, from free text.

Input is a final ASR transcript (lower case, no punctuation, filler words) or typed text,
so rules work on normalised words and prefer the most specific reading: a story
reference ("the second one") beats navigation ("next"), which beats a search
("news about X"), which beats a topic ("business news"), which beats plain "news".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class IntentKind(StrEnum):
    HEADLINES = "headlines"  # read headlines for ``topic``
    DETAILS = "details"  # more about story ``index`` (None: the current story)
    NEXT = "next"  # the next story after one read in detail, else more headlines
    MORE_HEADLINES = "more_headlines"
    PREVIOUS = "previous"
    REPEAT = "repeat"
    STOP = "stop"
    SEARCH = "search"  # stories matching ``query``
    GREETING = "greeting"
    HELP = "help"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Intent:
    kind: IntentKind
    topic: str | None = None
    index: int | None = None  # 0-based among the stories last read; -1 is the last one
    query: str | None = None


# Canonical topics, most specific first: "the world of tech" is technology.
TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "technology": ("technology", "technologies", "tech", "gadgets", "computing", "ai"),
    "business": (
        "business",
        "businesses",
        "markets",
        "market",
        "stock market",
        "stocks",
        "economy",
        "economic",
        "finance",
        "financial",
        "money",
    ),
    "sports": ("sports", "sport", "sporting", "football", "soccer"),
    "science": ("science", "scientific", "health", "environment", "environmental", "climate"),
    "world": ("world", "international", "global", "politics", "political", "foreign"),
    "general": ("general", "top", "latest", "headlines", "headline", "breaking", "main"),
}
TOPICS = tuple(TOPIC_WORDS)


def _alternation(words: Iterable[str]) -> str:
    """A regex alternation that tries longer phrases first ("stock market" before "market")."""
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_TOPIC_RES = {t: re.compile(rf"\b(?:{_alternation(w)})\b") for t, w in TOPIC_WORDS.items()}

# Words that say "news" without saying what about.
_NEWS_WORDS = frozenset(
    "news headlines headline stories story updates update briefing bulletin happening "
    "happened going latest top breaking new events current brief rundown roundup".split()
)
_STOP_WORDS = frozenset(
    "the a an of and or in on at for to from me my us some any all about todays today "
    "tonight now right please is are was whats what there this that it its with lately "
    "these days week recent recently good big important interesting major more other "
    "give read tell show hear get find let play last past hour hours day morning evening "
    "night yesterday quick first few couple several one two three four five ten".split()
)
_FILLERS = (
    "ok",
    "okay",
    "um",
    "uh",
    "er",
    "erm",
    "hmm",
    "so",
    "well",
    "alright",
    "all right",
    "right",
    "please",
    "now",
    "and",
    "but",
    "just",
    "hey",
    "hi",
    "hello",
    "can you",
    "could you",
    "would you",
    "will you",
    "would you mind",
    "i want to",
    "i want",
    "i wanna",
    "id like to",
    "id like",
    "i would like to",
    "i would like",
    "lets",
    "let me",
    "yes",
    "yeah",
)
_FILLER_RE = re.compile(rf"^(?:(?:{_alternation(_FILLERS)})\b\s*)+")
_TRAILER_RE = re.compile(r"(?:\s+\b(?:please|thanks|thank you|for me|now|then))+$")

_ORDINALS = {
    "first": 0,
    "1st": 0,
    "second": 1,
    "2nd": 1,
    "third": 2,
    "3rd": 2,
    "fourth": 3,
    "4th": 3,
    "fifth": 4,
    "5th": 4,
    "last": -1,
    "final": -1,
}
_NUMBERS = {"one": 0, "two": 1, "three": 2, "four": 3, "five": 4, "1": 0, "2": 1, "3": 2}
_NUMBERS |= {"4": 3, "5": 4}
_NOT_ITEM = "time|times|night|week|year|day|month|hour|minute|few|couple|thing|of all"
_ITEM = r"(?:one|story|stories|headline|item|article|piece|news)"
_ORDINAL_RE = re.compile(
    rf"\b(?:(?P<the>the|that)\s+)?(?P<ord>{_alternation(_ORDINALS)})\b"
    rf"(?!\s+(?:{_NOT_ITEM})\b)(?:\s+(?P<item>{_ITEM})\b)?"
)
_NUMBER_RE = re.compile(
    rf"\b(?:story|headline|item|article|number)\s+(?:number\s+)?(?P<num>{_alternation(_NUMBERS)})\b"
)
_REFERENCE_RE = re.compile(
    r"^(?:(?:the|that|this|it|its|one|story|headline|article|again|please|last|same|"
    r"previous|current)\s*)+$"
)

_GREETING_RE = re.compile(
    r"^(?:hi|hello|hey|hiya|howdy|yo|greetings|good (?:morning|afternoon|evening|day))"
    r"(?: there| you| again)?$"
)
_STOP_RE = re.compile(
    r"\b(?:stop|cancel|enough|thats (?:enough|all|it)|be quiet|quiet|shut up|silence|"
    r"never ?mind|no thanks|no thank you|im done|im good|forget it|pause|hush|goodbye|bye|"
    r"thanks|thank you)\b"
)
_REPEAT_RE = re.compile(
    r"\b(?:repeat|say (?:that|it|this|them) again|say again|again|come again|pardon|"
    r"what did you (?:just )?say|didnt (?:catch|hear|get|understand) (?:that|it|you)|"
    r"one more time|sorry what|excuse me)\b"
)
_PREVIOUS_RE = re.compile(
    r"\b(?:previous|go back|back up|the one before|before that|back to the last)\b"
)
_NEXT_RE = re.compile(
    r"\b(?:next|skip|move on|go on|carry on|keep going|continue|another (?:one|story|headline)|"
    r"more please|what else|and then)\b|^(?:more|another)$"
)
_MORE_HEADLINES_RE = re.compile(
    r"\b(?:more|other|remaining|next|different|rest of the) (?:headlines|news|stories)\b"
)
_MORE_ABOUT_RE = re.compile(
    r"\bmore (?:about|on|regarding|of|details on|detail on|info on|information on) (?P<q>.+)$"
)
_DETAILS_RE = re.compile(
    r"\b(?:tell me more|more (?:details?|info|information)|elaborate|expand|go into detail|"
    r"what (?:is|was|s) (?:that|it|this) (?:story |one )?about|whats (?:that|it|this) about|"
    r"read (?:it|that|the story|the whole story)|tell me about (?:it|that|this)|"
    r"details|full story|go deeper)\b"
)
_SEARCH_RES = (
    re.compile(
        r"^(?:search|look|find|check|google|look up)(?: up| for| on)?(?: the)?"
        r"(?: news| stories| headlines| articles)?(?: about| on| for| regarding)? (?P<q>.+)$"
    ),
    re.compile(
        r"\b(?:news|stories|story|headlines|articles|anything|something|updates?|latest|new|"
        r"happening|happened|going on|developments|coverage|reports?)(?: today| now)? "
        r"(?:about|on|regarding|concerning|with|around|related to|involving|in|from) (?P<q>.+)$"
    ),
    re.compile(r"\b(?:tell me|what do you know|what about|how about|and) about (?P<q>.+)$"),
    re.compile(r"^(?:what about|how about|and what about|and) (?P<q>.+)$"),
)
_HELP_RE = re.compile(
    r"\b(?:help|what can you do|what do you do|how does this work|how do i use|"
    r"what can i (?:say|ask)|options|commands|who are you|what are you)\b"
)
_CATCH_UP_RE = re.compile(r"\b(?:whats up|catch me up|update me|fill me in|brief me)\b")
_QUERY_EDGE_RE = re.compile(
    r"^(?:(?:the|a|an|any|some|latest|recent|news|stories)\s+)+|"
    r"(?:\s+(?:news|stories|headlines|today|right now|now|lately|at the moment|this week|"
    r"these days|please|going on|happening))+$"
)


def normalize(text: str) -> str:
    """Lower case, apostrophes dropped ("what's" -> "whats"), punctuation to spaces."""
    text = text.lower().replace("’", "").replace("'", "").replace("‘", "")
    text = re.sub(r"[^\w\s]|_", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def topic_of(text: str) -> str | None:
    """The most specific topic named in normalised ``text``, or None."""
    for topic, pattern in _TOPIC_RES.items():
        if pattern.search(text):
            return topic
    return None


def mentions_topic(text: str, topic: str) -> bool:
    """True when ``text`` uses one of ``topic``'s words (filters general stories by topic)."""
    pattern = _TOPIC_RES.get(topic)
    return bool(pattern and pattern.search(normalize(text)))


def keywords(query: str) -> list[str]:
    """The content words of a search query ("the olympics today" -> ["olympics"])."""
    words = normalize(query).split()
    return [w for w in words if w not in _STOP_WORDS and w not in _NEWS_WORDS] or words


def _is_topic_only(query: str) -> bool:
    """True when ``query`` names a topic and nothing else ("the world of tech")."""
    rest = query
    for pattern in _TOPIC_RES.values():
        rest = pattern.sub(" ", rest)
    return all(w in _STOP_WORDS or w in _NEWS_WORDS for w in rest.split())


def _story_index(text: str) -> int | None:
    for m in _ORDINAL_RE.finditer(text):
        if m["item"] or m["the"] or m.group() == text:
            return _ORDINALS[m["ord"]]
    number = _NUMBER_RE.search(text)
    return _NUMBERS[number["num"]] if number else None


def _about(query: str) -> Intent | None:
    """Intent for the subject of "news about <query>": a reference, a topic or a search."""
    query = _QUERY_EDGE_RE.sub("", query).strip()
    if not query or _REFERENCE_RE.match(query):
        return Intent(IntentKind.DETAILS) if query else None
    topic = topic_of(query)
    if topic and _is_topic_only(query):
        return Intent(IntentKind.HEADLINES, topic=topic)
    if all(w in _STOP_WORDS or w in _NEWS_WORDS for w in query.split()):
        return None
    return Intent(IntentKind.SEARCH, query=query)


def _subject_before_news(words: list[str]) -> str | None:
    """The words just before "news"/"headlines" ("any cricket news" -> "cricket")."""
    for i, word in enumerate(words):
        if word in ("news", "headlines", "stories", "updates") and i > 0:
            subject: list[str] = []
            for prev in reversed(words[max(0, i - 3) : i]):
                if prev in _STOP_WORDS or prev in _NEWS_WORDS:
                    break
                subject.insert(0, prev)
            if subject:
                return " ".join(subject)
    return None


def parse_intent(text: str) -> Intent:
    """Read one user utterance as a news request."""
    t = normalize(text)
    if _GREETING_RE.match(t):
        return Intent(IntentKind.GREETING)
    t = _TRAILER_RE.sub("", _FILLER_RE.sub("", t)).strip()
    if not t:
        return Intent(IntentKind.UNKNOWN)
    short = len(t.split()) <= 7

    if short and _STOP_RE.search(t):
        return Intent(IntentKind.STOP)
    index = _story_index(t)
    if index is not None and not re.search(r"\b(?:few|couple|top)\b", t):
        return Intent(IntentKind.DETAILS, index=index)
    if short and _REPEAT_RE.search(t):
        return Intent(IntentKind.REPEAT)
    if short and _PREVIOUS_RE.search(t):
        return Intent(IntentKind.PREVIOUS)
    if short and _MORE_HEADLINES_RE.search(t):
        return Intent(IntentKind.MORE_HEADLINES)
    if short and _NEXT_RE.search(t):
        return Intent(IntentKind.NEXT)
    if m := _MORE_ABOUT_RE.search(t):
        return _about(m["q"]) or Intent(IntentKind.DETAILS)
    if _DETAILS_RE.search(t):
        return Intent(IntentKind.DETAILS)
    for pattern in _SEARCH_RES:
        if (m := pattern.search(t)) and (intent := _about(m["q"])):
            return intent
    if topic := topic_of(t):
        if topic == "general" and (subject := _subject_before_news(t.split())):
            return _about(subject) or Intent(IntentKind.HEADLINES, topic=topic)
        return Intent(IntentKind.HEADLINES, topic=topic)
    if subject := _subject_before_news(t.split()):
        return _about(subject) or Intent(IntentKind.HEADLINES, topic="general")
    if _HELP_RE.search(t):
        return Intent(IntentKind.HELP)
    if set(t.split()) & _NEWS_WORDS or _CATCH_UP_RE.search(t):
        return Intent(IntentKind.HEADLINES, topic="general")
    return Intent(IntentKind.UNKNOWN)
