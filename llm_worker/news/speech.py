"""Turning stories into short sentences that sound right when spoken.

Everything here returns a list of sentences because the pipeline speaks sentence by
sentence: the first one can be synthesised while later ones are still being sent.
Text is plain (no markdown, no URLs) since a TTS engine would read symbols aloud.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from llm_worker.news.feeds import Story
from llm_worker.news.phrases import EN, Phrases

ORDINAL_WORDS = EN.ordinals
HEADLINES_PER_TURN = 3
MAX_SENTENCE_CHARS = 240

_URL_RE = re.compile(r"\(?(?:https?://|www\.)[^\s()]*[^\s().,;:!?]\)?", re.IGNORECASE)
_MARKDOWN_RE = re.compile(r"[*_`#>|~\[\]{}<]+")
# A sentence ends at . ! ? followed by space and a capital/digit/quote, except after
# abbreviations such as "U.S." or "Mr." that would cut a headline in half; 。！？ end one
# whatever follows.
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\"'‘“])|(?<=[。！？])(?=.)")
_ABBREVIATION_RE = re.compile(r"(?:\b[A-Z]\.|\b(?:Mr|Mrs|Ms|Dr|St|Prof|Gen|Sen|Rep|vs|No)\.)$")


def ordinal(index: int, phrases: Phrases = EN) -> str:
    """ "First", "Second", ... for a 0-based index ("Number 9" past the table)."""
    words = phrases.ordinals
    return words[index] if 0 <= index < len(words) else phrases.number.format(n=index + 1)


def speakable(text: str) -> str:
    """Plain spoken text: URLs and markdown symbols removed, whitespace collapsed."""
    text = _URL_RE.sub("", text)
    text = _MARKDOWN_RE.sub(" ", text).replace("&", " and ")
    text = re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"\s+", " ", text))
    return text.strip(" -–—:;,")


def as_sentence(text: str, terminator: str = ".") -> str:
    """``text`` made speakable and ending with sentence punctuation (for TTS prosody and
    the sentence splitter: Chinese ends with 。)."""
    text = speakable(text)
    if text and text[-1] not in ".!?。！？…":
        text += terminator
    return text


def first_sentence(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> str:
    """The first sentence of ``text``, cut at a word boundary if it runs long."""
    text = speakable(text)
    for match in _SENTENCE_END_RE.finditer(text):
        if not _ABBREVIATION_RE.search(text[: match.start()]):
            text = text[: match.start()]
            break
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0].rstrip(",;:") + "..."
    return as_sentence(text)


def source_name(story: Story) -> str:
    """A feed title as people say it: "BBC News - Technology" -> "BBC News"."""
    return re.split(r"\s+[-–—|:]\s+", story.source, maxsplit=1)[0].strip() or "the news"


def headline_sentences(
    intro: str, stories: Sequence[Story], first_index: int = 0, phrases: Phrases = EN
) -> list[str]:
    """An intro, then one numbered sentence per headline, then a hint of what to say next."""
    end = phrases.terminator
    sentences = [as_sentence(intro, end)]
    for offset, story in enumerate(stories):
        said = phrases.headline.format(
            ordinal=ordinal(first_index + offset, phrases), title=speakable(story.title)
        )
        sentences.append(as_sentence(said, end))
    sentences.append(phrases.hint_one if len(stories) == 1 else phrases.hint_many)
    return sentences


def detail_sentences(story: Story, index: int, phrases: Phrases = EN) -> list[str]:
    """One story: its title, one sentence of summary, and where it came from."""
    end = phrases.terminator
    title = speakable(story.title)
    sentences = [
        as_sentence(
            phrases.story.format(ordinal=ordinal(index, phrases), n=index + 1, title=title), end
        )
    ]
    summary = first_sentence(story.summary) if story.summary else ""
    if summary and summary.rstrip(".!?。！？") != title.rstrip(".!?。！？"):
        sentences.append(as_sentence(summary, end))
    sentences.append(as_sentence(phrases.from_source.format(source=source_name(story)), end))
    return sentences
