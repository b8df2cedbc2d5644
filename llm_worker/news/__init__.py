"""Built-in offline news agent: RSS/Atom headlines read aloud, with follow-up questions."""

from llm_worker.news.agent import NO_SOURCES, NewsAgent
from llm_worker.news.feeds import (
    DEFAULT_NEWS_FEEDS,
    DEFAULT_NEWS_FEEDS_BY_LANGUAGE,
    FeedReader,
    FeedSource,
    FetchResult,
    Story,
    make_http_client,
    parse_feed_sources,
)
from llm_worker.news.intents import Intent, IntentKind, parse_intent

__all__ = [
    "DEFAULT_NEWS_FEEDS",
    "DEFAULT_NEWS_FEEDS_BY_LANGUAGE",
    "NO_SOURCES",
    "FeedReader",
    "FeedSource",
    "FetchResult",
    "Intent",
    "IntentKind",
    "NewsAgent",
    "Story",
    "make_http_client",
    "parse_feed_sources",
    "parse_intent",
]
