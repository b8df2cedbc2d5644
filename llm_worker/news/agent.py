"""The built-in offline "LLM": a news agent that reads RSS headlines aloud.

It keeps what it last presented to each session in Redis (``Keys.news_state``) so
follow-ups such as "more about the second one", "next" and "repeat" work across turns
and across worker processes. A job delivered twice (same turn id) replays the reply it
already composed instead of moving the session forward again.

It speaks the session's language: its own phrases come from ``llm_worker.news.phrases``,
requests are read through ``llm_worker.news.keywords``, and a language with feeds of its
own (``NEWS_FEEDS_ZH``...) reads those, so a Chinese session hears Chinese headlines.
When no feed of a turn answers, the turn is read from the bundled demo headlines
(``llm_worker.news.demo``), and the reply says so first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import httpx
from redis.asyncio import Redis

from llm_worker.news.compose import Composer, SessionState
from llm_worker.news.demo import demo_sources, demo_stories
from llm_worker.news.feeds import FeedReader, FeedSource, FetchResult, make_http_client
from llm_worker.news.intents import Intent, IntentKind, parse_intent
from llm_worker.news.keywords import as_english_request
from llm_worker.news.phrases import EN, phrases_for
from shared.engines import AgentRequest
from shared.keys import Keys

log = logging.getLogger(__name__)

NO_SOURCES = " ".join(EN.no_sources)  # said when no feed is configured at all
NOTHING_READ = EN.nothing_read
FILLER = EN.filler
FILLER_AFTER_SECONDS = 0.7  # say something while a slow fetch runs, not silence


class NewsAgent:
    """ReplyAgent over RSS/Atom feeds; replies stream one sentence per delta."""

    name = "news"

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        feeds: Sequence[FeedSource],
        cache_ttl_seconds: int = 600,
        fetch_timeout_seconds: float = 3.0,
        http_client: httpx.AsyncClient | None = None,
        *,
        state_ttl_seconds: int = 3600,
        feeds_by_language: dict[str, Sequence[FeedSource]] | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._default_feeds = list(feeds)
        self._feeds_by_language = {k: list(v) for k, v in (feeds_by_language or {}).items()}
        self._owns_http = http_client is None
        self._http = http_client or make_http_client(fetch_timeout_seconds)
        self._reader = FeedReader(
            redis,
            keys,
            self._http,
            cache_ttl_seconds=cache_ttl_seconds,
            fetch_timeout_seconds=fetch_timeout_seconds,
        )
        self._state_ttl = state_ttl_seconds

    async def aclose(self) -> None:
        """Close the HTTP client if this agent created it."""
        if self._owns_http:
            await self._http.aclose()

    async def reply(self, request: AgentRequest) -> AsyncIterator[str]:
        """Yield the reply one sentence at a time; later deltas start with a space (none
        in Chinese, which has no spaces between sentences)."""
        p = phrases_for(request.language)
        composer = Composer(p, self._feeds_by_language.get(p.code) or self._default_feeds)
        gap = "" if p.terminator == "。" else " "
        intent = parse_intent(as_english_request(request.text, p.code))
        state = await self._load(request.session_id)
        log.info("news turn %s/%s intent %s", request.session_id, request.turn_id, intent.kind)
        spoke = False
        if state and state.turn_id == request.turn_id and state.last:
            sentences = state.last  # redelivered job: say the same thing again
        else:
            result = None
            if intent.kind in (IntentKind.HEADLINES, IntentKind.SEARCH):
                fetch = asyncio.create_task(
                    self._reader.read(composer.sources_for(intent)),
                    name=f"news-fetch-{request.turn_id}",
                )
                try:
                    done, _ = await asyncio.wait({fetch}, timeout=FILLER_AFTER_SECONDS)
                    if not done:
                        yield p.filler
                        spoke = True
                    result = await fetch
                finally:
                    fetch.cancel()
                if result.all_failed:
                    composer, result = _demo_instead(composer, intent, p.code)
            sentences, new_state = composer.compose(intent, state, result)
            if new_state is not None:
                new_state.turn_id = request.turn_id
                await self._save(request.session_id, new_state)
        for sentence in sentences:
            yield f"{gap}{sentence}" if spoke else sentence
            spoke = True

    # --- session state -------------------------------------------------------------

    async def _load(self, session_id: str) -> SessionState | None:
        blob = await self._redis.get(self._keys.news_state(session_id))
        return SessionState.decode(blob) if isinstance(blob, bytes) else None

    async def _save(self, session_id: str, state: SessionState) -> None:
        key = self._keys.news_state(session_id)
        await self._redis.set(key, state.encode(), ex=self._state_ttl)


def _demo_instead(
    composer: Composer, intent: Intent, language: str
) -> tuple[Composer, FetchResult]:
    """No feed answered: the same turn over the bundled demo headlines, marked as such."""
    demo = Composer(composer.p, demo_sources(language))
    sources = demo.sources_for(intent)
    stories = [story for source in sources for story in demo_stories(source)]
    return demo, FetchResult(stories=stories, requested=len(sources), demo="offline")
