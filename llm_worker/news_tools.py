"""News tools a chat model can call: headlines by topic, one story's details, keyword search.

They read the same feeds through the same Redis cache (``FeedReader``) as the offline
news agent, and keep the list last given to a session in the same Redis key
(``Keys.news_state``), so "the second one" means the same story whichever agent answers.
A session in a language with feeds of its own (``NEWS_FEEDS_DE``...) reads those, as the
offline agent does. Results are compact JSON without links: the model reads them, the
listener never should. When no feed answers, the tools read the bundled demo headlines,
as the offline agent does, and their result carries the demo notice (``note``) so the
model can say that they are samples; ``NEWS_FEEDS=demo`` gives the same notice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis

from llm_worker.news.agent import SessionState
from llm_worker.news.demo import demo_notice, demo_sources, demo_stories
from llm_worker.news.feeds import FeedReader, FeedSource, FetchResult, Story
from llm_worker.news.intents import keywords, mentions_topic
from llm_worker.news.search import search
from shared.keys import Keys
from shared.languages import language

log = logging.getLogger(__name__)

MAX_LISTED = 5  # stories per tool result: enough to choose from, few tokens
MAX_SUMMARY_CHARS = 500
PROMPT_HEADLINES = 6  # titles put in the system prompt when the model has no tools

HEADLINES = "get_headlines"
DETAILS = "get_story_details"
SEARCH = "search_news"


def _function(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": schema},
    }


class NewsTools:
    """Runs the news tools for one agent; every result is a JSON string for a tool message."""

    def __init__(
        self,
        redis: Redis,
        reader: FeedReader,
        feeds: Sequence[FeedSource],
        keys: Keys,
        *,
        state_ttl_seconds: int = 3600,
        feeds_by_language: Mapping[str, Sequence[FeedSource]] | None = None,
    ) -> None:
        self._redis = redis
        self._reader = reader
        self._feeds = list(feeds)
        self._by_language = {
            language(code).code: list(own) for code, own in (feeds_by_language or {}).items()
        }
        self._keys = keys
        self._state_ttl = state_ttl_seconds

    def feeds(self, lang: str = "en") -> list[FeedSource]:
        """A session's feeds: its language's own, else the default list."""
        return self._by_language.get(language(lang).code) or self._feeds

    def topics(self, lang: str = "en") -> list[str]:
        """Configured topics, "general" first (it always works: it falls back to all feeds)."""
        return list(dict.fromkeys(["general", *(f.topic for f in self.feeds(lang))]))

    def specs(self, lang: str = "en") -> list[dict[str, Any]]:
        """The tools in the Chat Completions ``tools`` format, for a session in ``lang``."""
        return [
            _function(
                HEADLINES,
                "Latest news headlines for a topic, as a numbered list of stories.",
                {"topic": {"type": "string", "enum": self.topics(lang)}},
            ),
            _function(
                DETAILS,
                "Details of one story from the last list of headlines or search results "
                "given in this conversation, by its number in that list (1 is the first).",
                {"number": {"type": "integer", "minimum": 1}},
            ),
            _function(
                SEARCH,
                "Search recent stories in all news feeds by keywords, such as a name or subject.",
                {"query": {"type": "string"}},
            ),
        ]

    async def run(self, session_id: str, name: str, arguments: str, lang: str = "en") -> str:
        """Run one call for a session in ``lang``; a bad call gets an error result the model
        can recover from."""
        try:
            args = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            return _error("the arguments were not valid JSON")
        if not isinstance(args, dict):
            return _error("the arguments must be a JSON object")
        if name == HEADLINES:
            topic = str(args.get("topic") or "general")
            return await self._headlines(session_id, topic, lang)
        if name == DETAILS:
            number = args.get("number")
            if isinstance(number, str) and number.strip().isdigit():
                number = int(number)
            if not isinstance(number, int) or isinstance(number, bool):
                return _error("number must be an integer, 1 for the first story")
            return await self._details(session_id, number)
        if name == SEARCH:
            return await self._search(session_id, str(args.get("query") or ""), lang)
        return _error(f"there is no tool called {name[:40]}")

    # --- tools ---------------------------------------------------------------------

    async def current_headlines(self, lang: str = "en") -> tuple[list[str], str]:
        """A handful of current titles for a session in ``lang`` and the demo notice if they
        are demo headlines: what a model without tools is told in its prompt."""
        feeds = self.feeds(lang)
        result = await self._read([f for f in feeds if f.topic == "general"] or feeds, lang)
        titles = [s.title for s in _unique(result.stories)[:PROMPT_HEADLINES]]
        return titles, _notice(result, lang)

    async def _read(self, feeds: list[FeedSource], lang: str, topic: str = "") -> FetchResult:
        """The feeds' stories; when none answers, the demo set's (``demo="offline"``): the
        ``topic``'s demo stories (else the general ones), or every topic's for a search."""
        result = await self._reader.read(feeds)
        if result.requested and not result.all_failed:
            return result
        demo = demo_sources(language(lang).code)
        if topic:
            demo = [d for d in demo if d.topic == topic] or [
                d for d in demo if d.topic == "general"
            ]
        stories = [story for source in demo for story in demo_stories(source)]
        log.info("no news source answered; the news tools read the demo headlines")
        return FetchResult(stories=stories, requested=len(demo), demo="offline")

    async def _headlines(self, session_id: str, topic: str, lang: str) -> str:
        topic = topic.strip().lower() or "general"
        feeds = self.feeds(lang)
        own = [f for f in feeds if f.topic == topic]
        general = [f for f in feeds if f.topic == "general"] or feeds
        result = await self._read(own or general, lang, topic)
        stories = _unique(result.stories)
        if not own and topic != "general" and not result.demo:
            stories = [s for s in stories if mentions_topic(f"{s.title} {s.summary}", topic)]
        about = {"topic": topic} | _note(result, lang)
        if not stories:
            return json.dumps({**about, "stories": [], "note": "nothing on this topic"})
        return await self._listed(session_id, f"{topic} headlines", stories, about)

    async def _search(self, session_id: str, query: str, lang: str) -> str:
        if not keywords(query):
            return _error("the query has no keywords")
        result = await self._read(self.feeds(lang), lang)
        stories = search(_unique(result.stories), query)
        about = {"query": query} | _note(result, lang)
        if not stories:
            return json.dumps({**about, "stories": [], "note": "no matching stories"})
        return await self._listed(session_id, f"stories about {query}", stories, about)

    async def _details(self, session_id: str, number: int) -> str:
        blob = await self._redis.get(self._keys.news_state(session_id))
        state = SessionState.decode(blob) if isinstance(blob, bytes) else None
        if state is None or not state.stories:
            return _error("no stories have been listed in this conversation yet")
        if not 1 <= number <= len(state.stories):
            return _error(f"the last list has {len(state.stories)} stories")
        story = state.stories[number - 1]
        return json.dumps(
            {
                "number": number,
                "title": story.title,
                "summary": story.summary[:MAX_SUMMARY_CHARS],
                "source": story.source,
                "published": _date(story),
            }
        )

    async def _listed(
        self, session_id: str, label: str, stories: list[Story], about: dict[str, str]
    ) -> str:
        """Remember the list for "the second one", and describe it to the model."""
        listed = stories[:MAX_LISTED]
        state = SessionState(label, listed, 0, len(listed), -1, [], "")
        await self._redis.set(self._keys.news_state(session_id), state.encode(), ex=self._state_ttl)
        rows = [
            {"number": n, "title": s.title, "source": s.source, "published": _date(s)}
            for n, s in enumerate(listed, start=1)
        ]
        return json.dumps({**about, "stories": rows})


def _notice(result: FetchResult, lang: str) -> str:
    """The demo notice for stories from the demo set, else nothing."""
    if not result.demo:
        return ""
    return demo_notice(language(lang).code, offline=result.demo == "offline")


def _note(result: FetchResult, lang: str) -> dict[str, str]:
    notice = _notice(result, lang)
    return {"note": f"{notice} Say this to the listener first."} if notice else {}


def _error(message: str) -> str:
    return json.dumps({"error": message})


def _date(story: Story) -> str | None:
    if story.published is None:
        return None
    return dt.datetime.fromtimestamp(story.published, dt.UTC).strftime("%Y-%m-%d")


def _unique(stories: Sequence[Story]) -> list[Story]:
    seen: set[str] = set()
    unique = []
    for story in stories:
        if story.title.lower() not in seen:
            seen.add(story.title.lower())
            unique.append(story)
    return unique
