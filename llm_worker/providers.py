"""Agent providers by name (setting ``LLM_PROVIDER``); imported only when chosen."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from llm_worker.worker import build_llm_worker
from shared.engines import ReplyAgent
from shared.settings import Settings
from shared.worker import StageWorker

if TYPE_CHECKING:
    from llm_worker.news import FeedSource

log = logging.getLogger(__name__)


def is_remote(base_url: str) -> bool:
    """True when ``base_url`` names a host on the internet: not loopback, not a private or
    link-local address, not a single-label or ``.local``/``.internal`` name (a compose
    service, a laptop on the LAN). No DNS lookup: start-up must not wait on one."""
    host = (urlsplit(base_url).hostname or "").lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or "." not in host:
            return False
        return not host.endswith((".localhost", ".local", ".internal", ".lan", ".home.arpa"))
    return address.is_global


def language_feeds(settings: Settings) -> dict[str, str]:
    """Each non-English language's feed list: ``NEWS_FEEDS_<LANG>``; else ``NEWS_FEEDS`` if
    set (the operator chose the feeds); else that language's built-in feeds."""
    from llm_worker.news import DEFAULT_NEWS_FEEDS_BY_LANGUAGE

    chosen = {
        "zh-CN": settings.news_feeds_zh,
        "es": settings.news_feeds_es,
        "fr": settings.news_feeds_fr,
        "de": settings.news_feeds_de,
    }
    return {
        code: own or settings.news_feeds or DEFAULT_NEWS_FEEDS_BY_LANGUAGE[code]
        for code, own in chosen.items()
    }


def _feeds_by_language(settings: Settings) -> dict[str, list[FeedSource]]:
    from llm_worker.news import parse_feed_sources

    return {
        code: parse_feed_sources(spec, code)  # "demo": the demo headlines in that language
        for code, spec in language_feeds(settings).items()
    }


def _news(redis: aioredis.Redis, settings: Settings) -> ReplyAgent:
    from llm_worker.news import DEFAULT_NEWS_FEEDS, NewsAgent, parse_feed_sources

    feeds = parse_feed_sources(settings.news_feeds or DEFAULT_NEWS_FEEDS)
    by_language = _feeds_by_language(settings)
    return NewsAgent(
        redis,
        settings.keys,
        feeds,
        cache_ttl_seconds=settings.news_cache_ttl,
        fetch_timeout_seconds=settings.news_fetch_timeout,
        feeds_by_language=by_language,  # type: ignore[arg-type]
    )


def _openai(redis: aioredis.Redis, settings: Settings) -> ReplyAgent:
    from llm_worker.news import DEFAULT_NEWS_FEEDS, FeedReader, make_http_client, parse_feed_sources
    from llm_worker.news_tools import NewsTools
    from llm_worker.openai_agent import OpenAIAgent, key_required, server_name

    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else ""
    if not key and key_required(settings.llm_base_url) and settings.openai_api_key:
        key = settings.openai_api_key.get_secret_value()  # only ever sent to OpenAI itself
    if not key and key_required(settings.llm_base_url):
        raise ValueError("LLM_PROVIDER=openai with OpenAI's endpoint needs LLM_API_KEY to be set")
    if not key and is_remote(settings.llm_base_url):
        log.warning(
            "LLM_BASE_URL points at %s, a remote host, and LLM_API_KEY is not set: "
            "hosted models refuse requests without a key",
            server_name(settings.llm_base_url),
        )
    feeds = parse_feed_sources(settings.news_feeds or DEFAULT_NEWS_FEEDS)
    reader = FeedReader(
        redis,
        settings.keys,
        make_http_client(settings.news_fetch_timeout),
        cache_ttl_seconds=settings.news_cache_ttl,
        fetch_timeout_seconds=settings.news_fetch_timeout,
    )
    return OpenAIAgent(
        NewsTools(
            redis, reader, feeds, settings.keys, feeds_by_language=_feeds_by_language(settings)
        ),
        model=settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=key,
        timeout=settings.llm_timeout,
        max_tool_rounds=settings.llm_max_tool_rounds,
        history_tokens=settings.llm_history_tokens,
        max_retries=settings.llm_max_retries,
    )


def _echo(redis: aioredis.Redis, settings: Settings) -> ReplyAgent:
    from llm_worker.echo_agent import EchoAgent

    return EchoAgent()


PROVIDERS: dict[str, Callable[[aioredis.Redis, Settings], ReplyAgent]] = {
    "news": _news,
    "openai": _openai,
    "echo": _echo,
}


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
