"""Agent providers by name (setting ``LLM_PROVIDER``); imported only when chosen."""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis

from llm_worker.worker import build_llm_worker
from shared.engines import ReplyAgent
from shared.settings import Settings
from shared.worker import StageWorker


def _news(redis: aioredis.Redis, settings: Settings) -> ReplyAgent:
    from llm_worker.news import DEFAULT_NEWS_FEEDS, NewsAgent, parse_feed_sources

    feeds = parse_feed_sources(settings.news_feeds or DEFAULT_NEWS_FEEDS)
    return NewsAgent(
        redis,
        settings.keys,
        feeds,
        cache_ttl_seconds=settings.news_cache_ttl,
        fetch_timeout_seconds=settings.news_fetch_timeout,
    )


PROVIDERS: dict[str, Callable[[aioredis.Redis, Settings], ReplyAgent]] = {"news": _news}


def create_agent(redis: aioredis.Redis, settings: Settings) -> ReplyAgent:
    try:
        factory = PROVIDERS[settings.llm_provider]
    except KeyError:
        raise ValueError(
            f"LLM_PROVIDER={settings.llm_provider!r} is unknown; choose one of {sorted(PROVIDERS)}"
        ) from None
    return factory(redis, settings)


async def build(redis: aioredis.Redis, settings: Settings) -> StageWorker:  # type: ignore[type-arg]
    return build_llm_worker(redis, settings, create_agent(redis, settings))
