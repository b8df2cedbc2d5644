"""The offline news agent in the session's language: its own phrases, the language's own
feeds (a local Chinese RSS fixture over real HTTP), real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from llm_worker.news.agent import NewsAgent
from llm_worker.news.demo import demo_notice, demo_sources, demo_stories
from llm_worker.news.feeds import FeedSource
from llm_worker.news.phrases import PHRASES
from llm_worker.providers import language_feeds
from shared.engines import AgentRequest
from shared.keys import Keys
from shared.settings import load_settings
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


async def say(agent: NewsAgent, text: str, lang: str, session: str = "s1") -> str:
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
