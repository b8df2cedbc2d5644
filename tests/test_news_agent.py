"""The news agent end to end: real local feeds over HTTP, real Redis, multi-turn sessions."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from llm_worker.news.agent import FILLER, NewsAgent
from llm_worker.news.demo import demo_notice
from llm_worker.news.feeds import FeedSource, parse_feed_sources
from shared.engines import AgentRequest
from shared.keys import Keys
from tests.support import free_port

FIXTURES = Path(__file__).parent / "fixtures" / "news"
KEYS = Keys("t")
UNSPEAKABLE = re.compile(r"https?://|www\.|[*_#`<>\[\]]")


@pytest.fixture
def base_url(fixture_http: str) -> str:
    return f"{fixture_http}/news"


@pytest.fixture
async def agent(redis: Redis, base_url: str) -> AsyncIterator[NewsAgent]:
    feeds = [
        FeedSource("general", f"{base_url}/top.xml"),
        FeedSource("technology", f"{base_url}/technology.xml"),
        FeedSource("business", f"{base_url}/business.xml"),
        FeedSource("world", f"{base_url}/world.atom"),
    ]
    news = NewsAgent(redis, KEYS, feeds, cache_ttl_seconds=60, fetch_timeout_seconds=3.0)
    yield news
    await news.aclose()


async def deltas(agent: NewsAgent, text: str, turn: str = "", session: str = "s1") -> list[str]:
    request = AgentRequest(session, turn or f"turn-{time.monotonic_ns()}", text)
    return [delta async for delta in agent.reply(request)]


async def say(agent: NewsAgent, text: str, turn: str = "") -> str:
    spoken = "".join(await deltas(agent, text, turn))
    assert not UNSPEAKABLE.search(spoken), spoken
    return spoken


async def test_headlines_details_next_repeat(agent: NewsAgent) -> None:
    headlines = await say(agent, "what's the latest in technology")
    assert "First, Chipmaker unveils faster AI processor." in headlines
    assert "Third, Smartphone sales" in headlines and "Fourth" not in headlines
    second = await say(agent, "tell me more about the second one")
    assert second.startswith("Second story: Social media firms face new child safety rules.")
    assert "Mr. Jones said on Monday." in second and "fined" not in second
    after = await say(agent, "next")
    assert after.startswith("Third story: Smartphone sales rise")
    assert await say(agent, "say that again") == after


async def test_reply_streams_one_sentence_per_delta(agent: NewsAgent) -> None:
    parts = await deltas(agent, "read me the business headlines")
    assert parts[0] == "Here are the latest business headlines."
    assert len(parts) == 5 and all(p.startswith(" ") and p.endswith(".") for p in parts[1:])


async def test_next_reads_the_next_page_of_headlines(agent: NewsAgent) -> None:
    await say(agent, "technology news")
    more = await say(agent, "next")
    assert "First, Space start-up" in more and "Second, Video game studio" in more
    assert "That's all" in await say(agent, "next")


async def test_topic_without_feed_falls_back_to_general(agent: NewsAgent) -> None:
    spoken = await say(agent, "any science news")
    assert "I don't have a science news source" in spoken
    assert "deep-sea fish" in spoken and "Storm Ada" not in spoken


async def test_search_across_feeds(agent: NewsAgent) -> None:
    spoken = await say(agent, "news about the election")
    assert "I found one story about election." in spoken and "Chile" in spoken


async def test_follow_up_before_any_headlines(agent: NewsAgent) -> None:
    assert "haven't read you any headlines" in await say(agent, "more about the first story")


async def test_redelivered_turn_replays_instead_of_advancing(agent: NewsAgent) -> None:
    await say(agent, "top headlines")
    first = await say(agent, "next", turn="t-next")
    assert await say(agent, "next", turn="t-next") == first
    assert await say(agent, "next") != first


async def test_session_state_expires(agent: NewsAgent, redis: Redis) -> None:
    await say(agent, "headlines")
    assert 0 < await redis.ttl(KEYS.news_state("s1")) <= 3600


async def test_no_reachable_feed_reads_demo_headlines_after_the_fetch_timeout(
    redis: Redis,
) -> None:
    with socket.socket() as hanging, socket.socket() as closed:
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(8)
        closed.bind(("127.0.0.1", 0))
        feeds = [
            FeedSource("general", f"http://127.0.0.1:{s.getsockname()[1]}/rss.xml")
            for s in (hanging, closed)
        ]
        # a fetch that ignored its timeout would hang on ``hanging`` until pytest's timeout
        news = NewsAgent(redis, KEYS, feeds, fetch_timeout_seconds=1.0)
        parts = await deltas(news, "what's the news")
        await news.aclose()
    notice = demo_notice("en", offline=True)
    assert parts[:2] == [FILLER, f" {notice}"]
    assert notice.startswith("Demo headlines: no news source reachable")
    assert parts[2:4] == [
        " Here are the top headlines.",
        " First, City opens its first all-night public library.",
    ]


async def test_offline_session_hears_demo_headlines_and_the_notice_once(redis: Redis) -> None:
    closed = [
        FeedSource(t, f"http://127.0.0.1:{free_port()}/{t}.xml") for t in ("general", "sports")
    ]
    news = NewsAgent(redis, KEYS, closed, fetch_timeout_seconds=1.0)
    try:
        sports = await say(news, "read me the sports headlines")
        detail = await say(news, "tell me more about the second one")
        found = await say(news, "news about the comet")
    finally:
        await news.aclose()
    notice = demo_notice("en", offline=True)
    assert sports.count(notice) == 1 and sports.count("Demo headlines") == 1
    assert "First, Underdogs win the cup final on penalties." in sports
    assert detail.startswith("Second story: Marathon record falls") and notice not in detail
    assert detail.endswith("That's from Demo headlines.")
    assert found.count(notice) == 1 and "Astronomers spot a comet" in found


async def test_news_feeds_demo_reads_the_demo_set_without_fetching(redis: Redis) -> None:
    news = NewsAgent(redis, KEYS, parse_feed_sources("demo"))
    try:
        parts = await deltas(news, "technology news")
    finally:
        await news.aclose()
    assert parts[0] == demo_notice("en", offline=False) and FILLER not in parts
    assert parts[1:3] == [
        " Here are the latest technology headlines.",
        " First, Chipmaker shows a processor that runs on a tenth of the power.",
    ]
