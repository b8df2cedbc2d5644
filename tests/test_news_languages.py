"""Both news agents in the session's language: the offline agent's own phrases, the
language's own feeds (local Chinese and German RSS fixtures over real HTTP), keyword
search in Chinese headlines; the OpenAI-compatible agent against the model stand-in,
built from the settings as ``LLM_PROVIDER=openai`` builds it. Real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from llm_worker.news.agent import NewsAgent
from llm_worker.news.demo import demo_notice, demo_sources, demo_stories
from llm_worker.news.feeds import FeedSource
from llm_worker.news.phrases import PHRASES
from llm_worker.providers import create_agent, language_feeds
from shared.engines import AgentRequest, ReplyAgent
from shared.keys import Keys
from shared.settings import load_settings
from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import free_port

KEYS = Keys("tl")


@pytest.fixture
async def agent(redis: Redis, fixture_http: str) -> AsyncIterator[NewsAgent]:
    english = [
        FeedSource("general", f"{fixture_http}/news/top.xml"),
        FeedSource("technology", f"{fixture_http}/news/technology.xml"),
    ]
    chinese = [
        FeedSource("general", f"{fixture_http}/zh/top.xml"),
        FeedSource("technology", f"{fixture_http}/zh/technology.xml"),
    ]
    news = NewsAgent(
        redis, KEYS, english, fetch_timeout_seconds=1.0, feeds_by_language={"zh-CN": chinese}
    )
    yield news
    await news.aclose()


async def say(agent: ReplyAgent, text: str, lang: str, session: str = "s1") -> str:
    request = AgentRequest(session, f"t{time.monotonic_ns()}", text, (), lang)
    return "".join([delta async for delta in agent.reply(request)])


async def test_chinese_session_hears_chinese_headlines_from_chinese_feeds(agent) -> None:
    headlines = await say(agent, "给我讲讲科技新闻", "zh-CN")
    assert headlines.startswith("以下是最新的科技新闻。第一条，芯片公司发布更快的人工智能处理器。")
    assert "第三条，机器人帮助垃圾分类。" in headlines and " " not in headlines
    detail = await say(agent, "第二条详细说说", "zh-CN")
    story = "第二条新闻：新型电池让手机续航翻倍。研究人员展示了一种新型电池。"
    assert detail == story + "来源：测试新闻。"
    assert (await say(agent, "下一条", "zh-CN")).startswith("第三条新闻：机器人帮助垃圾分类。")


async def test_sessions_in_two_languages_at_once_keep_their_own(agent) -> None:
    zh, en = await asyncio.gather(
        say(agent, "今天有什么新闻？", "zh-CN", "a"), say(agent, "top headlines", "en", "b")
    )
    assert zh.startswith("以下是今天的要闻。第一条，国家天文台发现一颗新的彗星。")
    assert en.startswith("Here are the top headlines. First,") and "彗星" not in en


@pytest.mark.parametrize("lang", sorted(PHRASES))
async def test_no_reachable_feed_reads_demo_headlines_in_the_language(
    redis: Redis, lang: str
) -> None:
    dead = [FeedSource("general", f"http://127.0.0.1:{free_port()}/rss.xml")]
    news = NewsAgent(redis, KEYS, dead, fetch_timeout_seconds=0.5)
    try:
        reply = await say(news, "news", lang)
    finally:
        await news.aclose()
    first_title = demo_stories(demo_sources(lang)[0])[0].title
    assert reply.startswith(demo_notice(lang, offline=True))
    assert PHRASES[lang].intro_top in reply and first_title in reply


def test_each_language_reads_its_own_feed_setting_else_news_feeds() -> None:
    own = load_settings(news_feeds="general=http://en.example/rss", news_feeds_zh="http://zh/rss")
    feeds = language_feeds(own)
    assert feeds["zh-CN"] == "http://zh/rss" and feeds["es"] == "general=http://en.example/rss"
    built_in = language_feeds(load_settings(news_feeds=""))
    assert "zhongwen" in built_in["zh-CN"] and "mundo" in built_in["es"]


# --- keyword search in Chinese, and both agents on the session language's feeds ---------


async def test_chinese_keyword_request_finds_chinese_headlines(agent) -> None:
    reply = await say(agent, "有没有关于彗星的新闻？", "zh-CN")
    assert (
        reply.startswith("我找到了一条关于彗星的新闻。") and "国家天文台发现一颗新的彗星" in reply
    )
    found = await say(agent, "搜索高铁线路的消息", "zh-CN")
    assert "高铁新线路正式开通运营" in found and "彗星" not in found


@pytest.fixture(scope="module")
def model() -> Iterator[StandIn]:
    with running_standin(StandIn(), free_port()) as standin:
        yield standin


@pytest.fixture
async def llm(redis: Redis, fixture_http: str, model: StandIn) -> AsyncIterator[ReplyAgent]:
    """The OpenAI-compatible agent as ``LLM_PROVIDER=openai`` builds it from the settings."""
    feeds = {
        "news_feeds": f"general={fixture_http}/news/top.xml",
        "news_feeds_zh": f"general={fixture_http}/zh/top.xml,tech={fixture_http}/zh/technology.xml",
        "news_feeds_de": f"general={fixture_http}/de/top.xml",
    }
    settings = load_settings(
        llm_provider="openai", llm_base_url=model.base_url, llm_api_key=model.api_key, **feeds
    )
    llm = create_agent(redis, settings)
    yield llm
    await llm.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("lang", "headline", "topics"),
    [
        ("de", "Bundestag beschließt neues Heizungsgesetz", ["general"]),
        ("zh-CN", "国家天文台发现一颗新的彗星", ["general", "technology"]),
        ("fr", "Storm Ada brings flooding to coastal towns", ["general"]),  # NEWS_FEEDS
    ],
)
async def test_llm_agent_reads_the_session_languages_feeds(llm, model, lang, headline, topics):
    model.chat = ChatScript(tool_calls=[("get_headlines", {"topic": "general"})])
    reply = await say(llm, "news", lang)
    assert f"Here is what I found: {headline}." in reply
    offered = model.chat.requests[0]["tools"][0]["function"]["parameters"]
    assert offered["properties"]["topic"]["enum"] == topics


@pytest.mark.parametrize(
    ("lang", "query", "headline"),
    [("zh-CN", "高铁线路", "高铁新线路正式开通运营"), ("de", "die Bahn", "Bahn streicht ca.")],
)
async def test_llm_agent_keyword_search_in_the_sessions_language(llm, model, lang, query, headline):
    model.chat = ChatScript(tool_calls=[("search_news", {"query": query})])
    assert headline in await say(llm, "search", lang)
