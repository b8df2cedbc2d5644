"""What a general-purpose chat model is told, so its reply sounds right when spoken.

Every word the model writes goes to a speech synthesiser, so the system prompt asks for
short plain sentences and no visual formatting, in the session's language (the voice
that reads the reply is chosen for that language). The conversation memory is bounded twice:
by turns in Redis, then here by an approximate token budget, so a long session never
pushes the prompt past what a small local model accepts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from shared import languages
from shared.engines import HistoryTurn

CHARS_PER_TOKEN = 4  # a rough average for English; good enough for a budget

SYSTEM_PROMPT = """\
You are a friendly news assistant that people talk to by voice. Everything you write is \
read aloud by a speech synthesiser, so write only what should be heard.
Speak in short, simple sentences, usually two to five of them. Use plain text only: no \
markdown, no bullet points or list symbols, no emojis, no headings, no tables.
Never read out web addresses or email addresses.
Write numbers, money, percentages, dates and times the way a newsreader says them, for \
example three point five percent, twelve dollars, or twenty twenty-five.
When you read several headlines, introduce each one by its position: first, second, \
third and so on.
{news}
End your reply with one short follow-up question, such as which story they would like \
to hear more about.
{language_rule}"""

_WITH_TOOLS = """\
For anything about current events, use the news tools and never invent a headline. The \
stories a tool returns are numbered; when the listener asks about one by its position, \
such as the second one, call get_story_details with that number. If a tool reports an \
error, say briefly that the news is not available right now.
Today is {today}. News topics you can fetch: {topics}."""

# For a model called without tools (LLM_MAX_TOOL_ROUNDS=0): the news comes in the prompt.
_WITH_HEADLINES = """\
Today is {today}. These are the current headlines, the only news you know; never invent \
a headline or details that are not here, and when asked for more than a headline says, \
say that you only have the headlines.
{notice}{headlines}"""
_NO_HEADLINES = """\
Today is {today}. No news source can be reached right now: when asked for news, say \
briefly that the news is not available right now, and never invent a headline."""

_ENGLISH_RULE = "Reply in English."
_OTHER_RULE = "Reply in {name} ({native}), the listener's language, whatever language a tool's \
stories are written in: say their content in {name}. Use the words a {name} newsreader \
uses for positions, numbers and dates."
_CJK_RULE = (
    " End every sentence with 。, ！ or ？ so each one can be spoken as soon as it is written."
)


def system_prompt(topics: Sequence[str], today: dt.date | None = None, language: str = "en") -> str:
    """The voice-first system prompt for a model with the news tools, naming the date, the
    configured news topics and the language to reply in."""
    named = ", ".join(topics) if topics else "general"
    news = _WITH_TOOLS.format(today=_day(today), topics=named)
    return SYSTEM_PROMPT.format(news=news, language_rule=language_rule(language))


def headlines_prompt(
    headlines: Sequence[str], notice: str = "", today: dt.date | None = None, language: str = "en"
) -> str:
    """The voice-first system prompt for a model without tools: the current headlines
    themselves (numbered, as a newsreader would list them), and the demo notice to say
    first when they are demo headlines."""
    if not headlines:
        news = _NO_HEADLINES.format(today=_day(today))
    else:
        listed = "\n".join(f"{n}. {title}" for n, title in enumerate(headlines, start=1))
        said = f"{notice} Say this first when you read them.\n" if notice else ""
        news = _WITH_HEADLINES.format(today=_day(today), notice=said, headlines=listed)
    return SYSTEM_PROMPT.format(news=news, language_rule=language_rule(language))


def _day(today: dt.date | None) -> str:
    return (today or dt.datetime.now(dt.UTC).date()).strftime("%A, %d %B %Y")


def language_rule(code: str) -> str:
    """The prompt's last line: which language to answer in."""
    lang = languages.language(code)
    if lang.code == "en":
        return _ENGLISH_RULE
    rule = _OTHER_RULE.format(name=lang.name.split(" (")[0], native=lang.native)
    return rule + (_CJK_RULE if lang.cjk else "")


def approx_tokens(text: str) -> int:
    """Tokens a model will count for ``text``, estimated from its length (no tokenizer)."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def trim_history(history: Sequence[HistoryTurn], budget_tokens: int) -> list[HistoryTurn]:
    """The most recent whole exchanges that fit in ``budget_tokens``, oldest first."""
    kept: list[HistoryTurn] = []
    used = 0
    for turn in reversed(history):
        cost = approx_tokens(turn.user) + approx_tokens(turn.assistant)
        if used + cost > budget_tokens:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    return kept


def build_messages(
    system: str, history: Sequence[HistoryTurn], text: str, budget_tokens: int
) -> list[dict[str, Any]]:
    """Chat messages: the system prompt, the history that fits the budget, the new request."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for turn in trim_history(history, budget_tokens):
        messages.append({"role": "user", "content": turn.user})
        messages.append({"role": "assistant", "content": turn.assistant})
    messages.append({"role": "user", "content": text})
    return messages
