"""At start-up the LLM worker says which news feeds it reads and whether each answers."""

from __future__ import annotations

import logging

import pytest

from llm_worker.feed_report import report_news_feeds, shown_url
from shared.settings import load_settings
from tests.support import free_port


async def test_one_line_per_feed_reachable_or_not(
    fixture_http: str, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/gone.xml"
    feeds = f"technology={fixture_http}/e2e/technology.xml,world={dead}"
    with caplog.at_level(logging.INFO, logger="llm_worker.feed_report"):
        await report_news_feeds(load_settings(news_feeds=feeds))
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "news feeds (NEWS_FEEDS): 2"
    assert f"news feed technology: {fixture_http}/e2e/technology.xml reachable" in lines
    assert any(line.startswith(f"news feed world: {dead} not reachable") for line in lines)
    assert not any("no news feed is reachable" in line for line in lines)


async def test_none_reachable_says_which_setting_to_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="llm_worker.feed_report"):
        await report_news_feeds(load_settings(news_feeds=f"http://127.0.0.1:{free_port()}/x"))
    assert "set NEWS_FEEDS" in caplog.records[-1].getMessage()
    assert "demo headlines" in caplog.records[-1].getMessage()
    assert caplog.records[-1].levelname == "WARNING"


def test_feed_addresses_are_shown_without_their_query() -> None:
    assert shown_url("https://feeds.example/rss?key=s3cret") == "https://feeds.example/rss"


async def test_demo_feeds_are_named_and_not_probed(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="llm_worker.feed_report"):
        await report_news_feeds(load_settings(news_feeds="demo"))
    assert [r.getMessage() for r in caplog.records] == [
        "news feeds (NEWS_FEEDS): the bundled demo headlines, nothing is fetched"
    ]
