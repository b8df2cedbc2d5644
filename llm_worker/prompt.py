"""What a general-purpose chat model is told, so its reply sounds right when spoken.

Every word the model writes goes to a speech synthesiser, so the system prompt asks for
short plain sentences and no visual formatting. The conversation memory is bounded twice:
by turns in Redis, then here by an approximate token budget, so a long session never
pushes the prompt past what a small local model accepts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

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
When you read several headlines, introduce each one with First, Second, Third and so on.
For anything about current events, use the news tools and never invent a headline. The \
stories a tool returns are numbered; when the listener asks about one by its position, \
such as the second one, call get_story_details with that number. If a tool reports an \
error, say briefly that the news is not available right now.
End your reply with one short follow-up question, such as which story they would like \
to hear more about.
Today is {today}. News topics you can fetch: {topics}."""


def system_prompt(topics: Sequence[str], today: dt.date | None = None) -> str:
    """The voice-first system prompt, naming the date and the configured news topics."""
    day = today or dt.datetime.now(dt.UTC).date()
    named = ", ".join(topics) if topics else "general"
    return SYSTEM_PROMPT.format(today=day.strftime("%A, %d %B %Y"), topics=named)


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
