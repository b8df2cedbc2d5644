"""The hosted model's news tools and the demo headlines: ``NEWS_FEEDS=demo`` and no feed
answering both give demo stories, and the tool result carries the notice the model says.

The real SDK against the OpenAI stand-in asks for the tools; the feeds are the bundled set
or a closed local port.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from llm_worker.news import FeedReader, FeedSource, make_http_client
from llm_worker.news.demo import demo_notice
from llm_worker.news.feeds import parse_feed_sources
from llm_worker.news_tools import NewsTools
from llm_worker.openai_agent import OpenAIAgent
from shared.engines import AgentRequest
from shared.keys import Keys
from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import free_port

KEYS = Keys("demo")


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with running_standin(StandIn(), free_port()) as server:
        yield server


async def tool_result(redis: Redis, standin: StandIn, feeds: list[FeedSource], call) -> dict:
    """The reply to one turn whose first round calls ``call``, and that call's result."""
    standin.chat = ChatScript(tool_calls=[call])
    async with make_http_client(1.0) as http:
        reader = FeedReader(redis, KEYS, http, fetch_timeout_seconds=3.0)
        agent = OpenAIAgent(
            NewsTools(redis, reader, feeds, KEYS),
            model="m",
            base_url=standin.base_url,
            api_key=standin.api_key,
            timeout=30.0,
            max_retries=0,
        )
        request = AgentRequest("s1", f"t{time.monotonic_ns()}", "the news")
        reply = "".join([delta async for delta in agent.reply(request)])
    result = json.loads(standin.chat.requests[1]["messages"][-1]["content"])
    return {"reply": reply, **result}


@pytest.mark.parametrize("chosen", [True, False], ids=["NEWS_FEEDS=demo", "no feed answers"])
async def test_headline_tool_reads_demo_headlines(redis: Redis, standin, chosen: bool) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    feeds = (
        parse_feed_sources("demo")
        if chosen
        else [FeedSource("general", f"{closed}/top.xml"), FeedSource("technology", closed)]
    )
    call = ("get_headlines", {"topic": "technology"})
    result = await tool_result(redis, standin, feeds, call)
    assert "Chipmaker shows a processor that runs on a tenth of the power" in result["reply"]
    assert demo_notice("en", offline=not chosen) in result["note"]
    assert "error" not in result


async def test_search_without_feeds_searches_the_demo_set(redis: Redis, standin) -> None:
    feeds = [FeedSource("general", f"http://127.0.0.1:{free_port()}/top.xml")]
    result = await tool_result(redis, standin, feeds, ("search_news", {"query": "night train"}))
    assert "New night train links three capitals" in result["reply"]
    assert demo_notice("en", offline=True) in result["note"]
