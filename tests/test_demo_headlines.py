"""A first run without internet: the whole system reads the bundled demo headlines aloud
and says once that they are demo headlines (feeds on a closed local port)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_worker.news.demo import demo_notice
from tests.support import free_port
from tests.support.processes import System, running_system
from voice_agent.client import VoiceClient


@pytest.fixture(scope="module")
def offline(
    redis_url: str, fixture_http: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    closed = f"http://127.0.0.1:{free_port()}"
    feeds = f"general={closed}/top.xml,technology={closed}/technology.xml"
    log_dir = tmp_path_factory.mktemp("offline")
    with running_system(f"{redis_url}/11", fixture_http, Path(log_dir), NEWS_FEEDS=feeds) as up:
        yield up


async def test_offline_session_hears_demo_headlines_and_the_notice_once(offline: System) -> None:
    notice = demo_notice("en", offline=True)
    async with VoiceClient.connect(offline.ws_url) as client:
        headlines = await client.ask("what's new in technology")
        detail = await client.ask("tell me more about the first one")
    assert headlines.reply_text.count(notice) == 1, headlines.reply_text
    assert "Chipmaker shows a processor" in headlines.reply_text and headlines.chunks
    assert detail.reply_text.startswith("First story: Chipmaker shows a processor")
    assert "Demo headlines" in detail.reply_text and notice not in detail.reply_text


def test_readme_quotes_what_an_offline_user_hears() -> None:
    readme = " ".join((Path(__file__).parent.parent / "README.md").read_text().split())
    assert f'"{demo_notice("en", offline=True)}"' in readme
