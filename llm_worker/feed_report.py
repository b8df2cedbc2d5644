"""At start-up, one log line per configured news feed: where it is and whether it answers.

A machine that cannot reach its feeds hears the bundled demo headlines from the agent;
the log says why at once, and which setting changes the feeds (``NEWS_FEEDS``).
The check runs beside the worker's start, never holding it up.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import httpx

from shared.settings import Settings

log = logging.getLogger(__name__)
_running: set[asyncio.Task[None]] = set()  # a reference, so the check is not collected


def shown_url(url: str) -> str:
    """Scheme, host and path only: a feed URL's query may carry a key."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


async def _probe(client: httpx.AsyncClient, url: str) -> str | None:
    """None when the feed answers; else a short reason."""
    try:
        async with client.stream("GET", url) as response:
            return None if response.status_code < 400 else f"HTTP {response.status_code}"
    except httpx.TimeoutException:
        return "no answer in time"
    except httpx.HTTPError as exc:
        return str(exc)[:80] or type(exc).__name__


async def report_news_feeds(settings: Settings) -> None:
    from llm_worker.news import DEFAULT_NEWS_FEEDS, make_http_client, parse_feed_sources

    sources = parse_feed_sources(settings.news_feeds or DEFAULT_NEWS_FEEDS)
    if settings.news_feeds.strip().lower() == "demo":
        log.info("news feeds (NEWS_FEEDS): the bundled demo headlines, nothing is fetched")
        return
    origin = "NEWS_FEEDS" if settings.news_feeds else "built-in defaults; NEWS_FEEDS sets others"
    log.info("news feeds (%s): %d", origin, len(sources))
    async with make_http_client(settings.news_fetch_timeout) as client:
        outcomes = await asyncio.gather(*(_probe(client, source.url) for source in sources))
    for source, problem in zip(sources, outcomes, strict=True):
        if problem is None:
            log.info("news feed %s: %s reachable", source.topic, shown_url(source.url))
        else:
            log.warning(
                "news feed %s: %s not reachable (%s)", source.topic, shown_url(source.url), problem
            )
    if sources and all(outcomes):
        log.warning(
            "no news feed is reachable: replies read the demo headlines and say so; "
            "set NEWS_FEEDS to feeds this machine can reach"
        )


def start_feed_report(settings: Settings) -> None:
    """Check the feeds in the background (agents that read them: news, openai)."""
    if settings.llm_provider not in ("news", "openai"):
        return
    task = asyncio.create_task(report_news_feeds(settings), name="news-feed-report")
    _running.add(task)
    task.add_done_callback(_running.discard)
