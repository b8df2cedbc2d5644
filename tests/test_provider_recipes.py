"""The model recipes of docs/providers.md, each run as written against the local stand-in
of the OpenAI API at the recipe's own path, so the page and the product cannot drift; and
the start-up warning for a remote model without a key."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from llm_worker.openai_agent import KEYLESS_PLACEHOLDER
from llm_worker.providers import create_agent
from shared.engines import AgentRequest
from shared.settings import load_settings
from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import ROOT, free_port

PAGE = ROOT / "docs" / "providers.md"
TECH_FIRST = "Chipmaker unveils faster AI processor"  # tests/fixtures/news/technology.xml


def recipes() -> dict[str, dict[str, str]]:
    """Heading -> settings of every ```dotenv block under "Hosted and local models"."""
    section = PAGE.read_text().split("\n## Hosted and local models\n", 1)[1].split("\n## ")[0]
    found = {}
    for part in section.split("\n### ")[1:]:
        name, _, body = part.partition("\n")
        block = re.search(r"```dotenv\n(.*?)```", body, re.S)
        assert block, f"recipe {name!r} has no dotenv block"
        found[name.strip()] = dict(ln.split("=", 1) for ln in block[1].splitlines() if ln.strip())
    return found


RECIPES = recipes()


@pytest.fixture(scope="module")
def server() -> Iterator[StandIn]:
    with running_standin(StandIn(), free_port()) as standin:
        yield standin


def test_the_page_has_the_recipes_it_promises() -> None:
    assert {"OpenAI", "Ollama", "ZhipuAI GLM", "DeepSeek"} <= set(RECIPES)
    assert {r["LLM_MAX_TOOL_ROUNDS"] for r in RECIPES.values()} == {"0", "3"}
    for name, recipe in RECIPES.items():
        assert recipe["LLM_PROVIDER"] == "openai", name
        assert recipe.get("LLM_API_KEY", "<").startswith("<"), f"{name}: a real key in the docs"


@pytest.mark.parametrize("name", sorted(RECIPES))
async def test_a_recipe_works_as_written(
    name: str, server: StandIn, redis: Redis, fixture_http: str, caplog: pytest.LogCaptureFixture
) -> None:
    recipe = RECIPES[name]
    as_written = {key.lower(): value for key, value in recipe.items()}
    load_settings(**as_written)  # valid as it stands (the placeholder stands for a key)
    path = urlsplit(recipe["LLM_BASE_URL"]).path.rstrip("/")
    keyed = "LLM_API_KEY" in recipe
    server.api_key = "sk-recipe-standin" if keyed else KEYLESS_PLACEHOLDER
    server.chat = ChatScript(tool_calls=[("get_headlines", {"topic": "technology"})])
    local = {
        "llm_base_url": f"{server.base_url.removesuffix('/v1')}{path}",
        "llm_api_key": server.api_key if keyed else None,
        "news_feeds": f"general={fixture_http}/news/top.xml,"
        f"technology={fixture_http}/news/technology.xml",
    }
    settings = load_settings(**{**as_written, **local})
    with caplog.at_level(logging.WARNING, logger="llm_worker.providers"):
        agent = create_agent(redis, settings)
    assert not caplog.records  # a keyless recipe is a local server: no warning
    request = AgentRequest("s1", f"t{time.monotonic_ns()}", "what's new in technology")
    try:
        reply = "".join([delta async for delta in agent.reply(request)])
    finally:
        await agent.aclose()  # type: ignore[attr-defined]
    sent = server.chat.requests
    assert server.chat.paths[0] == f"{path}/chat/completions"
    assert all(body["model"] == recipe["LLM_MODEL"] for body in sent)
    if recipe["LLM_MAX_TOOL_ROUNDS"] == "0":
        assert len(sent) == 1 and "tools" not in sent[0]
        assert reply.strip() == server.chat.reply
    else:
        assert "tools" in sent[0] and len(sent) == 2
        assert TECH_FIRST in reply  # the tool's headlines reached the model


async def test_a_remote_model_without_a_key_is_warned_about(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    def warnings(base_url: str, key: str | None = None) -> list[str]:
        caplog.clear()
        settings = load_settings(llm_provider="openai", llm_base_url=base_url, llm_api_key=key)
        with caplog.at_level(logging.WARNING, logger="llm_worker.providers"):
            create_agent(redis, settings)
        return [r.getMessage() for r in caplog.records]

    (line,) = warnings("https://api.deepseek.com")
    assert "LLM_API_KEY" in line and "api.deepseek.com" in line
    assert len(warnings("http://8.8.8.8:8000/v1")) == 1
    assert not warnings("https://api.deepseek.com", "sk-something")
    for local in (
        "http://localhost:11434/v1",
        "http://127.0.0.1:8080/v1",
        "http://192.168.1.20:11434/v1",
        "http://ollama:11434/v1",
        "http://host.docker.internal:11434/v1",
        "http://[::1]:11434/v1",
    ):
        assert not warnings(local), local
