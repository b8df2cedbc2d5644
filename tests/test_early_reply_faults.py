"""Early replies fail safe: whatever breaks on the early path, the turn still gets one
whole reply (the normal job's, or the attempt's), and no event names an attempt.

Real services as separate processes (``tests/cluster.py``), real speech; the faults are
real too: a Redis user that may not publish LLM jobs (the gateway's publish of the
attempt fails), and a gateway stopped at the end of speech.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.messages import ReplyEvent, decode
from shared.streams import ReplyWriter
from tests.audio_checks import speech_16k
from tests.cluster import Cluster, feeds_env
from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import free_port, wait_for_http
from tests.test_preemptive_reply import REQUEST, SILENCE, _Talk, read_turn
from voice_agent.client import VoiceClient

PREFIX = "ef"
REPLY = (
    "Here is the news for today. Markets were calm this morning. "
    "A new battery factory opened in the north. Rain is expected over the weekend."
)


@pytest.fixture
def slow_model() -> Iterator[StandIn]:
    """An OpenAI-compatible model that takes about 2 s to stream ``REPLY``: the turn is
    still going when the fault strikes."""
    state = StandIn(chat=ChatScript(reply=REPLY, chunk_delay=0.1))
    with running_standin(state, free_port()) as standin:
        yield standin


@pytest.fixture
def services(
    redis_url: str, fixture_http: str, tmp_path: Path, slow_model: StandIn
) -> Iterator[Cluster]:
    """ASR, LLM and TTS workers on database 4; the test starts its own gateway."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": f"{redis_url}/4",
        "STREAM_PREFIX": PREFIX,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "NEWS_FEEDS": feeds_env(fixture_http),
        "LOG_LEVEL": "INFO",
        "PREEMPTIVE_REPLY": "true",
        "GATEWAY_DRAIN_SECONDS": "0",
        "RECLAIM_IDLE_MS": "1000",  # a killed worker's job is taken over after a second
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": slow_model.base_url,
        "LLM_API_KEY": slow_model.api_key,
        "LLM_MAX_TOOL_ROUNDS": "0",
    }
    cluster = Cluster(f"{redis_url}/4", tmp_path, env)
    cluster.ws_url = f"ws://127.0.0.1:{port}/ws/voice"
    cluster.http_url = f"http://127.0.0.1:{port}"
    client = cluster.client()
    client.flushdb()
    client.close()
    try:
        for name in ("asr1", "llm1", "tts1"):
            cluster.start(name)
        cluster.wait_for_workers(["asr1", "llm1", "tts1"])
        yield cluster
    finally:
        cluster.stop_all()


def start_gateway(cluster: Cluster, **env: str) -> None:
    gateway = cluster.start("gateway", **env)
    wait_for_http(f"{cluster.http_url}/health", gateway)


async def speak_to_the_end(client: VoiceClient) -> _Talk:
    """The request, then the pause that ends it (an early reply starts in that pause)."""
    talk = _Talk(client)
    await talk.send(speech_16k(REQUEST, 300, 0))
    await talk.heard.wait()
    await talk.send(SILENCE * 15)
    return talk


async def stored_turn(cluster: Cluster, session_id: str) -> list[ReplyEvent]:
    return await read_turn(cluster.redis_url, Keys(PREFIX).reply(session_id))


async def attempt_events(cluster: Cluster, session_id: str) -> int:
    """Events written under an attempt's id (``t1.p1``) in any stream of the session:
    proof that the early path was taken."""
    redis = aioredis.Redis.from_url(cluster.redis_url)
    count = 0
    try:
        async for key in redis.scan_iter(match=f"{PREFIX}:*{session_id}*", _type="stream"):
            for _id, fields in await redis.xrange(key):
                event = decode(fields)
                count += isinstance(event, ReplyEvent) and event.turn_id == "t1.p1"
    finally:
        await redis.aclose()
    return count


def assert_one_whole_reply(events: list[ReplyEvent]) -> None:
    assert {e.turn_id for e in events} == {"t1"}, "an event names a turn the client never saw"
    assert events[-1].event == "streaming_complete", events[-1]
    finals = [e for e in events if e.event == "agent_response" and e.data["is_final"]]
    assert len(finals) == 1 and finals[0].data["text"].startswith("Here is the news")
    chunks = [e.data["chunk_index"] for e in events if e.event == "tts_chunk"]
    assert chunks and chunks == list(range(len(chunks)))


async def test_a_failed_publish_of_the_early_reply_falls_back_to_the_normal_reply(
    services: Cluster, redis_url: str
) -> None:
    """The gateway's user may not write the LLM work stream: the attempt is never
    published, and the recogniser's final must still get the turn its reply."""
    user, password = f"gw-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = services.client()
    try:  # everything but the LLM jobs (``ef:llm:...``) writable; all readable
        admin.execute_command(
            "ACL", "SETUSER", user, "on", f">{password}", "+@all", "&*",
            f"~{PREFIX}:[^l]*", f"~{PREFIX}:la*", f"%R~{PREFIX}:*",
        )  # fmt: skip
    finally:
        admin.close()
    host = redis_url.split("://", 1)[1]
    start_gateway(services, REDIS_URL=f"redis://{user}:{password}@{host}/4")
    async with VoiceClient.connect(services.ws_url) as client:
        talk = await speak_to_the_end(client)
        await asyncio.wait_for(talk.reader, 60)
        session_id = client.session_id
    assert not talk.turn.errors, talk.turn.errors
    assert_one_whole_reply(await stored_turn(services, session_id))
    assert "early reply I/O failed" in services.log("gateway")  # the fault did strike


async def test_a_gateway_stopped_at_the_end_of_speech_leaves_the_turn_answered(
    services: Cluster,
) -> None:
    """SIGTERM once the final transcript is out, the early reply still going: the reply
    stream (what the client resumes from on another gateway) gets the whole reply."""
    start_gateway(services)
    async with VoiceClient.connect(services.ws_url) as client:
        talk = _Talk(client)
        await talk.send(speech_16k(REQUEST, 300, 0))
        await talk.heard.wait()
        await talk.send(SILENCE * 4)  # the pause ends the request
        await talk.final.wait()
        services.signal("gateway", signal.SIGTERM)
        session_id = client.session_id
        talk.reader.cancel()
    assert_one_whole_reply(await stored_turn(services, session_id))
    assert await attempt_events(services, session_id)  # it was the early reply's


async def test_an_llm_worker_killed_during_the_early_reply_leaves_a_whole_reply(
    services: Cluster,
) -> None:
    """kill -9 of the LLM worker running the attempt: another one takes the attempt over
    from its checkpoint, and the client gets its reply once, chunks without a gap."""
    services.start("llm2")
    services.wait_for_workers(["llm2"])
    start_gateway(services)
    async with VoiceClient.connect(services.ws_url) as client:
        talk = _Talk(client)
        await talk.send(speech_16k(REQUEST, 300, 0))
        await talk.heard.wait()
        await talk.send(SILENCE * 2)  # the pause starts the early reply, not yet the end
        victim = services.owner("llm")  # the attempt's job is the only LLM job so far
        services.signal(victim, signal.SIGKILL).wait(5)
        await talk.send(SILENCE * 13)
        await asyncio.wait_for(talk.reader, 60)
        session_id = client.session_id
    assert not talk.turn.errors, talk.turn.errors
    assert_one_whole_reply(await stored_turn(services, session_id))
    assert await attempt_events(services, session_id)


async def test_an_early_reply_keeping_too_many_events_is_withdrawn_for_the_normal_reply(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More events than the gateway keeps for an undecided attempt (a long reply before a
    long pause ends): it withdraws the attempt, so the recogniser's final, the same words,
    finds it dropped and leaves the turn to the normal reply; none of it is shown."""
    from shared import early_reply
    from tests.test_gateway_limits import (
        _reply_started_in_a_pause,
        hypothesis,
        running_gateway,
        until,
    )

    monkeypatch.setattr(early_reply.attempts, "KEPT_EVENTS_LIMIT", 2)
    overrides = {"asr_provider": "pocketsphinx", "end_of_speech_complete_ms": 5000}
    async with running_gateway(redis_url, **overrides) as gateway:
        keys = gateway.settings.keys
        redis = aioredis.Redis.from_url(gateway.settings.redis_url)
        verdicts = early_reply.EarlyVerdicts(redis, keys, 60)
        try:
            async with VoiceClient.connect(gateway.url) as client:
                session_id = client.session_id
                await _reply_started_in_a_pause(client, gateway)
                record = keys.early_verdicts(session_id)
                while not await redis.hexists(record, "t1.p1"):  # noqa: ASYNC110 - Redis state
                    await asyncio.sleep(0.02)
                writer = ReplyWriter(redis, keys, 60, 1000)
                for index in range(3):  # as its TTS worker writes them: aside
                    chunk = {"chunk_index": index, "format": "mp3"}
                    event = ReplyEvent("tts_chunk", session_id, "t1.p1", chunk)
                    await writer.emit(event, {early_reply.EARLY_OPTION: True})
                while await verdicts.read(session_id, "t1.p1") == early_reply.OPEN:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                await hypothesis(gateway, client.session_id, is_final=True)  # the same words
                events = await until(client, "pong", ping=True)
            assert await verdicts.read(session_id, "t1.p1") == early_reply.DROPPED
        finally:
            await redis.aclose()
    assert not [e for e in events if e["event"] == "tts_chunk"], "nothing of it is shown"


async def test_a_gateway_killed_while_copying_the_early_reply_is_finished_on_resume(
    services: Cluster,
) -> None:
    """kill -9 of the gateway once the client has the first audio of the early reply:
    the client resumes on a new gateway from its last event and gets the rest of the
    reply, its chunks without a gap or a repeat, and the turn's end."""
    start_gateway(services)
    async with VoiceClient.connect(services.ws_url) as client:
        talk = _Talk(client)
        await talk.send(speech_16k(REQUEST, 300, 0))
        await talk.heard.wait()
        talk.reader.cancel()  # from here the test reads the events itself
        with contextlib.suppress(asyncio.CancelledError):
            await talk.reader
        first = list(talk.turn.events)
        await talk.send(SILENCE * 15)
        while first[-1]["event"] not in ("tts_chunk", "streaming_complete", "error"):
            first.append(await client.next_event(60))
        services.signal("gateway", signal.SIGKILL).wait(10)
        while first[-1]["event"] != "_closed":  # what had arrived before the kill
            first.append(await client.next_event(60))
        first.pop()
        query, session_id = client.resume_query(), client.session_id
    assert not any(e["event"] == "streaming_complete" for e in first), (
        "the reply ended before the gateway was killed: nothing left to finish"
    )
    start_gateway(services)
    rest: list[dict[str, Any]] = []
    async with VoiceClient.connect(f"{services.ws_url}?{query}") as again:
        while not rest or rest[-1]["event"] not in ("streaming_complete", "error", "_closed"):
            rest.append(await again.next_event(60))
    events = first + rest
    assert rest[-1]["event"] == "streaming_complete", rest[-1]
    assert {e["data"]["turn_id"] for e in events if e["data"].get("turn_id")} == {"t1"}
    chunks = [e["data"]["chunk_index"] for e in events if e["event"] == "tts_chunk"]
    assert chunks == list(range(len(chunks))), chunks
    assert any(e["event"] == "tts_chunk" for e in rest)  # the rest came after the resume
    assert await attempt_events(services, session_id)  # it was the early reply's
