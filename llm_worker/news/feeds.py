"""RSS/Atom headlines: which feeds to read, fetching them, and caching them in Redis.

Feeds are fetched with our own httpx client (bounded time and size) and the bytes are
handed to feedparser, which must never open URLs itself. Parsed stories are cached per
feed URL under ``Keys.news_feed(url)`` so many sessions share one fetch per TTL.
"""

from __future__ import annotations

import asyncio
import calendar
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from typing import Any

import feedparser
import httpx
import msgpack
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.keys import Keys

log = logging.getLogger(__name__)

DEFAULT_NEWS_FEEDS = (
    "general=https://feeds.bbci.co.uk/news/rss.xml,"
    "world=https://feeds.bbci.co.uk/news/world/rss.xml,"
    "technology=https://feeds.bbci.co.uk/news/technology/rss.xml,"
    "business=https://feeds.bbci.co.uk/news/business/rss.xml,"
    "science=https://feeds.bbci.co.uk/news/science_and_environment/rss.xml,"
    "sports=https://feeds.bbci.co.uk/sport/rss.xml"
)

# A language's own feeds when neither NEWS_FEEDS_<LANG> nor NEWS_FEEDS is set (general
# news only; set NEWS_FEEDS_<LANG> for topics). English uses DEFAULT_NEWS_FEEDS.
DEFAULT_NEWS_FEEDS_BY_LANGUAGE = {
    "zh-CN": "general=https://feeds.bbci.co.uk/zhongwen/simp/rss.xml",
    "es": "general=https://feeds.bbci.co.uk/mundo/rss.xml",
    "fr": "general=https://www.france24.com/fr/rss",
    "de": "general=https://rss.dw.com/xml/rss-de-all",
}

# Names people give the same feed topic in the NEWS_FEEDS setting.
TOPIC_ALIASES = {
    "tech": "technology",
    "sport": "sports",
    "top": "general",
    "headlines": "general",
    "international": "world",
    "markets": "business",
    "economy": "business",
    "finance": "business",
}

USER_AGENT = "VoiceNewsAgent/0.1"
MAX_FEED_BYTES = 2_000_000  # a feed larger than this is not a headline feed
MAX_STORIES_PER_FEED = 30  # keeps cache values small (a free Key Value has 25 MB)
MAX_SUMMARY_CHARS = 600
_CACHE_FORMAT = 1


class FeedError(Exception):
    """One feed could not be fetched or parsed."""


@dataclass(frozen=True, slots=True)
class FeedSource:
    topic: str
    url: str


@dataclass(frozen=True, slots=True)
class Story:
    """One headline as the agent speaks it: plain text only, no HTML."""

    title: str
    summary: str
    link: str
    published: float | None  # Unix time, None when the feed gives no date
    source: str  # the feed's own title, e.g. "BBC News"
    topic: str


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Stories from every feed that answered, in feed order, and the feeds that did not."""

    stories: list[Story] = field(default_factory=list)
    failed: list[FeedSource] = field(default_factory=list)
    requested: int = 0
    demo: str = ""  # "chosen" (NEWS_FEEDS=demo) or "offline": stories from the demo set

    @property
    def all_failed(self) -> bool:
        return self.requested > 0 and len(self.failed) == self.requested


def canonical_topic(name: str) -> str:
    """Lower-case a topic name and map common aliases ("sport") to one spelling ("sports")."""
    topic = name.strip().lower()
    return TOPIC_ALIASES.get(topic, topic)


def parse_feed_sources(spec: str, language: str = "en") -> list[FeedSource]:
    """Parse ``NEWS_FEEDS``: comma-separated ``topic=url`` items; a bare URL is "general";
    ``demo`` stands for the bundled demo headlines in ``language``.

    Raises ValueError on an item that is not an http(s) URL, so a typo fails at start.
    """
    from llm_worker.news.demo import DEMO, demo_sources  # demo imports this module

    sources: list[FeedSource] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.lower() == DEMO:
            sources.extend(demo_sources(language))
            continue
        topic, sep, url = item.partition("=")
        if not sep or "://" in topic:
            topic, url = "general", item
        url = url.strip()
        if not url.startswith(("http://", "https://")) or not topic.strip():
            raise ValueError(f"NEWS_FEEDS item {item!r} is not 'topic=http(s)://url'")
        sources.append(FeedSource(canonical_topic(topic), url))
    return sources


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "li"):
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def strip_html(text: str) -> str:
    """Plain text of an HTML fragment with whitespace collapsed (feeds put markup in summaries)."""
    if "<" in text:
        extractor = _TextExtractor()
        extractor.feed(text)
        extractor.close()
        text = "".join(extractor.parts)
    return re.sub(r"\s+", " ", unescape(text)).strip()


def parse_feed(data: bytes, source: FeedSource) -> list[Story]:
    """Parse fetched RSS/Atom bytes. Raises FeedError when nothing usable came back."""
    parsed = feedparser.parse(io.BytesIO(data), response_headers={"content-location": source.url})
    if parsed.bozo and not parsed.entries:
        raise FeedError(f"unparseable feed: {type(parsed.get('bozo_exception')).__name__}")
    feed_title = strip_html(parsed.feed.get("title", "")) or "the news"
    stories = []
    for entry in parsed.entries[:MAX_STORIES_PER_FEED]:
        title = strip_html(entry.get("title", ""))
        if not title:
            continue
        summary = strip_html(entry.get("summary", ""))[:MAX_SUMMARY_CHARS]
        when = entry.get("published_parsed") or entry.get("updated_parsed")
        stories.append(
            Story(
                title=title,
                summary=summary,
                link=entry.get("link", ""),
                published=float(calendar.timegm(when)) if when else None,
                source=feed_title,
                topic=source.topic,
            )
        )
    return stories


def _encode(stories: Sequence[Story]) -> bytes:
    rows = [[s.title, s.summary, s.link, s.published, s.source] for s in stories]
    return msgpack.packb({"v": _CACHE_FORMAT, "s": rows})


def _decode(blob: bytes, topic: str) -> list[Story] | None:
    """Stories from a cache value, or None when it is from another format version."""
    try:
        value = msgpack.unpackb(blob)
        if value.get("v") != _CACHE_FORMAT:
            return None
        return [Story(t, s, lk, p, src, topic) for t, s, lk, p, src in value["s"]]
    except (ValueError, TypeError, KeyError, AttributeError, msgpack.UnpackException):
        return None


def make_http_client(timeout_seconds: float = 3.0) -> httpx.AsyncClient:
    """An httpx client suited to feed fetching: short timeouts, redirects, a clear agent."""
    return httpx.AsyncClient(
        timeout=timeout_seconds,
        follow_redirects=True,
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
    )


class FeedReader:
    """Reads many feeds at once through a shared Redis cache.

    Every fetch is bounded by ``fetch_timeout_seconds`` overall (not per phase, as httpx
    timeouts are), so with the network down a request fails within that time.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        http_client: httpx.AsyncClient,
        *,
        cache_ttl_seconds: int = 600,
        fetch_timeout_seconds: float = 3.0,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._http = http_client
        self._ttl = cache_ttl_seconds
        self._timeout = fetch_timeout_seconds

    async def read(self, sources: Sequence[FeedSource]) -> FetchResult:
        """Stories of all ``sources``: from the cache when fresh, else fetched concurrently."""
        from llm_worker.news.demo import demo_stories, is_demo

        sources = list(dict.fromkeys(sources))
        if not sources:
            return FetchResult()
        if all(is_demo(s) for s in sources):
            stories = [story for s in sources for story in demo_stories(s)]
            return FetchResult(stories=stories, requested=len(sources), demo="chosen")
        cached = await self._cache_get(sources)
        misses = [s for s, hit in zip(sources, cached, strict=True) if hit is None]
        fetched = await asyncio.gather(*(self._fetch(s) for s in misses))
        by_source: dict[FeedSource, list[Story] | None] = dict(zip(sources, cached, strict=True))
        by_source.update(zip(misses, fetched, strict=True))
        await self._cache_set([(s, got) for s, got in zip(misses, fetched, strict=True) if got])
        failed = [s for s in sources if by_source[s] is None]
        stories = [story for s in sources for story in by_source[s] or ()]
        return FetchResult(stories=stories, failed=failed, requested=len(sources))

    async def _fetch(self, source: FeedSource) -> list[Story] | None:
        try:
            async with asyncio.timeout(self._timeout):
                data = await self._download(source.url)
            return await asyncio.to_thread(parse_feed, data, source)
        except (TimeoutError, httpx.HTTPError, FeedError) as exc:
            log.warning("news feed %s failed: %s", source.url, type(exc).__name__)
            return None

    async def _download(self, url: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async with self._http.stream(
            "GET", url, follow_redirects=True, timeout=self._timeout
        ) as response:
            if response.status_code != httpx.codes.OK:
                raise FeedError(f"HTTP {response.status_code}")
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_FEED_BYTES:
                    raise FeedError("feed too large")
                chunks.append(chunk)
        return b"".join(chunks)

    async def _cache_get(self, sources: Sequence[FeedSource]) -> list[list[Story] | None]:
        """Cached stories per source (None for a miss); a Redis error counts as all misses."""
        try:
            blobs = await self._redis.mget([self._keys.news_feed(s.url) for s in sources])
        except RedisError as exc:
            log.warning("news cache read failed: %s", type(exc).__name__)
            return [None] * len(sources)
        return [
            _decode(blob, s.topic) if isinstance(blob, bytes) else None
            for s, blob in zip(sources, blobs, strict=True)
        ]

    async def _cache_set(self, fresh: Sequence[tuple[FeedSource, list[Story]]]) -> None:
        if not fresh:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for source, stories in fresh:
                    pipe.set(self._keys.news_feed(source.url), _encode(stories), ex=self._ttl)
                await pipe.execute()
        except RedisError as exc:
            log.warning("news cache write failed: %s", type(exc).__name__)
