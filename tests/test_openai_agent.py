"""An OpenAI-compatible model as the news agent: the real SDK against a local stand-in.

The stand-in speaks the real HTTP protocol (server-sent events, tool calls streamed in
pieces, OpenAI's error envelope); the news tools read the fixture feeds over real HTTP
through the shared Redis cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from llm_worker import errors
from llm_worker.errors import LlmError
from llm_worker.news import FeedReader, FeedSource, make_http_client
from llm_worker.news.demo import demo_notice
from llm_worker.news.feeds import parse_feed_sources
from llm_worker.news_tools import NewsTools
from llm_worker.openai_agent import OpenAIAgent
from llm_worker.tool_calls import ToolCalls
from llm_worker.worker import FALLBACK_REPLY, build_llm_worker
from shared.engines import AgentRequest, HistoryTurn
from shared.keys import Keys
from shared.messages import LlmJob, ReplyEvent, decode
from shared.settings import load_settings
from shared.streams import publish_job
from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import free_port

KEYS = Keys("t")
TECH_FIRST = "Chipmaker unveils faster AI processor"


@pytest.fixture(scope="module")
def server() -> Iterator[StandIn]:
    with running_standin(StandIn(), free_port()) as standin:
        yield standin


@pytest.fixture
def standin(server: StandIn) -> StandIn:
    server.chat = ChatScript()
    return server


@pytest.fixture
async def tools(redis: Redis, fixture_http: str) -> AsyncIterator[NewsTools]:
    feeds = [
        FeedSource("general", f"{fixture_http}/news/top.xml"),
        FeedSource("technology", f"{fixture_http}/news/technology.xml"),
        FeedSource("world", f"{fixture_http}/news/world.atom"),
    ]
    async with make_http_client(1.0) as http:
        yield NewsTools(
            redis, FeedReader(redis, KEYS, http, fetch_timeout_seconds=3.0), feeds, KEYS
        )


def agent_for(tools: NewsTools, standin: StandIn, **options: object) -> OpenAIAgent:
    settings = {"model": "test-model", "base_url": standin.base_url, "api_key": standin.api_key}
    # a generous timeout: a busy machine must not turn a slow healthy answer into an error
    return OpenAIAgent(tools, **{**settings, "max_retries": 0, "timeout": 30.0, **options})  # type: ignore[arg-type]


async def ask(agent: OpenAIAgent, text: str, session: str = "s1", history=()) -> str:
    request = AgentRequest(session, f"t{time.monotonic_ns()}", text, history)
    return "".join([delta async for delta in agent.reply(request)])


async def test_text_deltas_stream_in_order_before_the_reply_ends(tools, standin) -> None:
    standin.chat.chunk_delay = 0.05
    deltas: list[str] = []
    sent_at_first_delta = None
    async for delta in agent_for(tools, standin).reply(AgentRequest("s1", "t1", "hello")):
        if sent_at_first_delta is None:
            sent_at_first_delta = standin.chat.chunks_sent
        deltas.append(delta)
    assert "".join(deltas).strip() == standin.chat.reply
    assert len(deltas) >= 5
    # the first delta did not wait for the end: the model had not sent its last words yet
    assert sent_at_first_delta is not None and sent_at_first_delta < standin.chat.chunks_sent
    sent = standin.chat.requests[0]
    assert sent["stream"] is True and sent["model"] == "test-model"
    names = [t["function"]["name"] for t in sent["tools"]]
    assert names == ["get_headlines", "get_story_details", "search_news"]


async def test_tool_round_reads_real_headlines(tools, standin, redis: Redis, fixture_http) -> None:
    standin.chat.tool_calls = [("get_headlines", {"topic": "technology"})]
    reply = await ask(agent_for(tools, standin), "what's new in tech")
    assert TECH_FIRST in reply
    second = standin.chat.requests[1]["messages"]
    assert second[-2]["tool_calls"][0]["function"]["arguments"] == '{"topic": "technology"}'
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == "call_0"
    assert await redis.exists(KEYS.news_feed(f"{fixture_http}/news/technology.xml"))


async def test_several_tool_calls_in_one_round(tools, standin) -> None:
    standin.chat.tool_calls = [
        ("get_headlines", {"topic": "technology"}),
        ("search_news", {"query": "election"}),
    ]
    reply = await ask(agent_for(tools, standin), "tech news and the election")
    assert TECH_FIRST in reply and "Election results expected in Chile" in reply


def test_whole_tool_calls_without_index_or_id_are_accepted() -> None:
    """Some servers (Ollama, for one) send each call whole, in one chunk."""
    from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall as Piece
    from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCallFunction as Function

    calls = ToolCalls()
    calls.add(
        [Piece.model_construct(function=Function(name="search_news", arguments='{"query": "x"}'))]
    )
    calls.add([Piece(index=1, id="c9", function=Function(name="get_headlines", arguments="{}"))])
    assert [(c.id, c.name, "".join(c.arguments)) for c in calls.finished()] == [
        ("call_0", "search_news", '{"query": "x"}'),
        ("c9", "get_headlines", "{}"),
    ]


async def test_story_details_use_the_sessions_last_list(tools, standin) -> None:
    agent = agent_for(tools, standin)
    standin.chat.tool_calls = [("get_headlines", {"topic": "technology"})]
    await ask(agent, "technology headlines")
    standin.chat.tool_calls = [("get_story_details", {"number": 2})]
    assert "Social media firms face new child safety rules" in await ask(agent, "the second one")
    assert "no stories have been listed" in await ask(agent, "the second one", session="other")


async def test_tool_rounds_are_bounded(tools, standin) -> None:
    standin.chat.tool_calls = [("get_headlines", {"topic": "general"})]
    await ask(agent_for(tools, standin, max_tool_rounds=1), "news")
    first, last = standin.chat.requests
    assert "tool_choice" not in first and last["tool_choice"] == "none"
    standin.chat.requests.clear()
    await ask(agent_for(tools, standin, max_tool_rounds=0), "news")
    assert len(standin.chat.requests) == 1 and "tools" not in standin.chat.requests[0]


async def test_without_tools_the_prompt_carries_the_headlines(tools, standin) -> None:
    """A model without tool calling is told the news itself, never to call a tool."""
    await ask(agent_for(tools, standin, max_tool_rounds=0), "what's the news")
    sent = standin.chat.requests[0]
    assert "tools" not in sent and "tool_choice" not in sent
    system = sent["messages"][0]["content"]
    for title in ("Storm Ada brings flooding", "Scientists discover glowing deep-sea fish"):
        assert title in system
    assert "tool" not in system.lower() and "get_story_details" not in system
    assert "follow-up question" in system and system.endswith("Reply in English.")


async def test_without_tools_and_without_feeds_the_prompt_has_demo_headlines(
    redis: Redis, standin
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with make_http_client(1.0) as http:
        reader = FeedReader(redis, KEYS, http, fetch_timeout_seconds=3.0)
        offline = NewsTools(redis, reader, [FeedSource("general", f"{closed}/top.xml")], KEYS)
        await ask(agent_for(offline, standin, max_tool_rounds=0), "news please")
    system = standin.chat.requests[0]["messages"][0]["content"]
    assert demo_notice("en", offline=True) in system
    assert "City opens its first all-night public library" in system
    assert "tool" not in system.lower()


async def test_without_tools_the_headlines_are_the_sessions_language(
    redis: Redis, fixture_http: str, standin
) -> None:
    english = [FeedSource("general", f"{fixture_http}/news/top.xml")]
    async with make_http_client(1.0) as http:
        reader = FeedReader(redis, KEYS, http, fetch_timeout_seconds=3.0)
        by_language = {"de": parse_feed_sources("demo", "de")}
        tools = NewsTools(redis, reader, english, KEYS, feeds_by_language=by_language)
        agent = agent_for(tools, standin, max_tool_rounds=0)
        request = AgentRequest("s1", "t-de", "Nachrichten bitte", language="de")
        assert "".join([delta async for delta in agent.reply(request)])
    system = standin.chat.requests[0]["messages"][0]["content"]
    assert "Stadtbibliothek öffnet die ganze Nacht" in system
    assert demo_notice("de", offline=False) in system and "Storm Ada" not in system


async def test_history_beyond_the_token_budget_is_trimmed(tools, standin) -> None:
    history = [
        HistoryTurn(f"question {n} " + "x" * 200, f"answer {n} " + "y" * 200) for n in range(8)
    ]
    await ask(agent_for(tools, standin, history_tokens=250), "and now?", history=history)
    messages = standin.chat.requests[0]["messages"]
    contents = " ".join(m["content"] for m in messages[1:])
    assert "question 7" in contents and "answer 7" in contents and "question 5" not in contents
    assert messages[-1] == {"role": "user", "content": "and now?"}


async def test_system_prompt_is_voice_first(tools, standin) -> None:
    await ask(agent_for(tools, standin), "hi")
    system = standin.chat.requests[0]["messages"][0]
    assert system["role"] == "system"
    for phrase in ("short", "no markdown", "list symbols", "web addresses", "follow-up question"):
        assert phrase in system["content"]
    assert "general, technology, world" in system["content"]


@pytest.mark.parametrize(
    ("problem", "kind", "words"),
    [
        ("wrong_key", errors.AUTH_FAILED, "refused the API key"),
        ("unreachable", errors.UNREACHABLE, "could not reach"),
        ("rate_limit", errors.RATE_LIMITED, "rate limiting"),
        ("stall", errors.TIMEOUT, "did not answer within 0.5 seconds"),
        ("malformed", errors.BAD_RESPONSE, "malformed"),
        ("server_error", errors.SERVER_ERROR, "HTTP 500"),
        ("no_key", errors.NO_API_KEY, "needs an API key"),
        ("keyless", errors.NO_API_KEY, "asked for an API key"),
    ],
)
async def test_failures_are_clear_and_bounded(tools, standin, problem, kind, words) -> None:
    # only the stall waits for the timeout; any other failure must be its own error at
    # once (one that waited out a 600 s timeout would end in pytest's timeout)
    options: dict[str, object] = {"timeout": 0.5 if problem == "stall" else 600, "max_retries": 1}
    if problem == "wrong_key":
        options["api_key"] = "sk-wrong-secret"
    elif problem == "unreachable":  # refused at once; no retry, so no backoff races the timeout
        options.update(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    elif problem == "no_key":
        options.update(api_key="", base_url="https://api.openai.com/v1")
    elif problem == "keyless":  # a local server that turns out to want a key
        options["api_key"] = ""
    else:
        standin.chat.fault = problem
        options["max_retries"] = 0
    with pytest.raises(LlmError) as failure:
        await ask(agent_for(tools, standin, **options), "news please")
    assert failure.value.kind == kind and words in str(failure.value)
    assert "sk-" not in str(failure.value)


@contextlib.asynccontextmanager
async def llm_worker(redis: Redis, agent: OpenAIAgent) -> AsyncIterator[Keys]:
    settings = load_settings(stream_prefix="wt")
    stop = asyncio.Event()
    task = asyncio.create_task(build_llm_worker(redis, settings, agent).run(stop))
    yield settings.keys
    stop.set()
    await task


async def _events(redis: Redis, keys: Keys, turn_id: str) -> list[ReplyEvent]:
    events = [decode(f) for _, f in await redis.xrange(keys.reply("s9"))]
    return [e for e in events if isinstance(e, ReplyEvent) and e.turn_id == turn_id]


async def turn(redis: Redis, keys: Keys, turn_id: str) -> tuple[list[ReplyEvent], list[str]]:
    """Publish one request; return its reply events and the sentences sent to TTS."""
    await publish_job(redis, keys.jobs("llm"), LlmJob("s9", turn_id, "any news?"), 100)
    while True:  # polling Redis: the final agent_response ends the turn
        events = await _events(redis, keys, turn_id)
        if any(e.data.get("is_final") for e in events):
            break
        await asyncio.sleep(0.02)
    entries = await redis.xrange(keys.tts_input("s9", turn_id))
    sentences = [decode(f).text for _, f in entries]  # type: ignore[union-attr]
    return events, [t for t in sentences if t]


async def test_worker_speaks_normalised_text_and_apologises_on_failure(redis, tools, standin):
    standin.chat.reply = "Shares rose 5% to $12.50 today. Want more?"
    async with llm_worker(redis, agent_for(tools, standin)) as keys:
        events, spoken = await turn(redis, keys, "t1")
        assert spoken == [
            "Shares rose five percent to twelve dollars and fifty cents today.",
            "Want more?",
        ]
        final = next(e for e in events if e.event == "agent_response" and e.data["is_final"])
        assert final.data["text"] == standin.chat.reply  # the screen keeps the digits
        standin.chat.fault = "rate_limit"
        events, spoken = await turn(redis, keys, "t2")
    assert spoken == [FALLBACK_REPLY]
    error = next(e for e in events if e.event == "error")
    assert error.data["reason"] == errors.RATE_LIMITED
    assert error.data["message"].startswith("the language model is rate limiting requests")
