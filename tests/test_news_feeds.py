"""Feed settings, fetching, parsing and caching against a real local HTTP server and Redis."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from redis.asyncio import Redis

from llm_worker.news.feeds import (
    DEFAULT_NEWS_FEEDS,
    FeedError,
    FeedReader,
    FeedSource,
    make_http_client,
    parse_feed,
    parse_feed_sources,
)
from shared.keys import Keys

FIXTURES = Path(__file__).parent / "fixtures" / "news"
KEYS = Keys("t")


class FeedServer(ThreadingHTTPServer):
    """Serves the fixture feeds; ``/broken*`` answers 500; counts requests per path."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FeedHandler)
        self.hits: Counter[str] = Counter()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_port}/{path}"


class FeedHandler(SimpleHTTPRequestHandler):
    server: FeedServer

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, directory=str(FIXTURES), **kwargs)  # type: ignore[arg-type]

    def do_GET(self) -> None:
        self.server.hits[self.path] += 1
        if self.path.startswith("/broken"):
            self.send_error(500)
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def dead_url() -> str:
    """A loopback port with nothing listening: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/rss.xml"


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A port that accepts connections but never answers, like a black-holed network."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/rss.xml"


@pytest.fixture
async def reader(redis: Redis) -> AsyncIterator[FeedReader]:
    http = make_http_client(0.5)
    # generous: a healthy local feed must never time out on a busy machine
    yield FeedReader(redis, KEYS, http, cache_ttl_seconds=60, fetch_timeout_seconds=3.0)
    await http.aclose()


def test_parse_news_feeds_setting() -> None:
    spec = " tech=https://a.test/t.xml, https://b.test/top.xml ,Sport=http://c.test/s.xml,"
    assert parse_feed_sources(spec) == [
        FeedSource("technology", "https://a.test/t.xml"),
        FeedSource("general", "https://b.test/top.xml"),
        FeedSource("sports", "http://c.test/s.xml"),
    ]


@pytest.mark.parametrize("spec", ["tech=ftp://a.test/x", "not a url", "=https://a.test/x"])
def test_parse_news_feeds_rejects_bad_items(spec: str) -> None:
    with pytest.raises(ValueError, match="NEWS_FEEDS"):
        parse_feed_sources(spec)


def test_default_feeds_cover_every_topic() -> None:
    sources = parse_feed_sources(DEFAULT_NEWS_FEEDS)
    topics = {s.topic for s in sources}
    assert topics == {"general", "world", "technology", "business", "science", "sports"}
    assert all(s.url.startswith("https://feeds.bbci.co.uk/") for s in sources)


def test_parse_feed_strips_html_and_reads_atom() -> None:
    rss = parse_feed((FIXTURES / "technology.xml").read_bytes(), FeedSource("technology", "u"))
    atom = parse_feed((FIXTURES / "world.atom").read_bytes(), FeedSource("world", "u"))
    assert rss[0].summary.startswith("The new chip is twice as fast")
    assert not any("<" in s.summary or "&amp;" in s.summary for s in rss + atom)
    assert [s.title for s in atom][1] == "Election results expected in Chile"
    assert atom[0].published is not None and rss[-1].published is None


def test_parse_feed_never_fetches_a_url_itself(feed_server: FeedServer) -> None:
    with pytest.raises(FeedError):
        parse_feed(feed_server.url("top.xml").encode(), FeedSource("general", "u"))
    assert not feed_server.hits


async def test_fetch_then_serve_from_cache(
    reader: FeedReader, feed_server: FeedServer, redis: Redis
) -> None:
    sources = [FeedSource("technology", feed_server.url("technology.xml"))]
    sources.append(FeedSource("world", feed_server.url("world.atom")))
    first = await reader.read(sources)
    second = await reader.read(sources)
    assert len(first.stories) == 8 and second == first
    assert feed_server.hits == {"/technology.xml": 1, "/world.atom": 1}
    assert 0 < await redis.ttl(KEYS.news_feed(sources[0].url)) <= 60


async def test_one_feed_down_does_not_break_the_others(
    reader: FeedReader, feed_server: FeedServer, dead_url: str, redis: Redis
) -> None:
    good = FeedSource("business", feed_server.url("business.xml"))
    broken = FeedSource("world", feed_server.url("broken.xml"))
    result = await reader.read([broken, good, FeedSource("sports", dead_url)])
    assert [s.topic for s in result.stories] == ["business"] * 3
    assert result.failed == [broken, FeedSource("sports", dead_url)] and not result.all_failed
    assert not await redis.exists(KEYS.news_feed(broken.url))


async def test_network_down_fails_fast(reader: FeedReader, dead_url: str, hanging_url: str) -> None:
    # refused at once, and the hanging one given up after the reader's fetch timeout (one
    # that ignored it would hang until pytest's timeout)
    result = await reader.read([FeedSource("general", dead_url), FeedSource("world", hanging_url)])
    assert result.all_failed and not result.stories
