"""Natural conversation against the real system: cancel, barge-in, turns, resume.

The agent is an OpenAI-compatible stand-in that streams a long reply slowly (a word
pair every 120 ms), so a reply is still being generated and spoken when the test
interrupts it, drops the socket or asks again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from redis.asyncio import Redis

from llm_worker.history import CUT_MARK
from shared.keys import Keys
from shared.messages import ReplyEvent, decode
from tests.audio_checks import speech_16k
from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import System, free_port, running_system
from voice_agent.client import VoiceClient

SENTENCES = [
    f"Story number {n} is about a town that built a new bridge over the river."
    for n in range(1, 13)
]
LONG_REPLY = " ".join(SENTENCES)
PREFIX = "conv"


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with running_standin(StandIn(), free_port()) as server:
        server.chat = ChatScript(reply=LONG_REPLY, chunk_delay=0.12)
        yield server


@pytest.fixture(autouse=True)
def long_slow_reply(standin: StandIn) -> None:
    """Each test starts with the long, slow reply; tests that need quick ones shorten it."""
    standin.chat.reply, standin.chat.chunk_delay = LONG_REPLY, 0.12


def quick_replies(standin: StandIn) -> None:
    standin.chat.reply, standin.chat.chunk_delay = "Here you go. That is all for now.", 0.0


@pytest.fixture(scope="module")
def convo(
    redis_url: str, fixture_http: str, standin: StandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    env = {
        **standin.llm_env(),
        "STREAM_PREFIX": PREFIX,
        "TTS_FALLBACK": "",
    }
    log_dir = tmp_path_factory.mktemp("convo")
    with running_system(f"{redis_url}/2", fixture_http, Path(log_dir), **env) as up:
        yield up


@pytest.fixture
async def store(convo: System) -> Iterator[Redis]:
    client = Redis.from_url(convo.redis_url)
    yield client
    await client.aclose()


async def next_of(client: VoiceClient, name: str, turn_id: str | None = None) -> dict:
    while True:
        event = await client.next_event(30)
        if event["event"] == name and (turn_id is None or event["data"]["turn_id"] == turn_id):
            return event


async def reply_events(redis: Redis, session_id: str, turn_id: str) -> list[ReplyEvent]:
    entries = await redis.xrange(Keys(PREFIX).reply(session_id))
    events = [decode(fields) for _id, fields in entries]
    return [e for e in events if isinstance(e, ReplyEvent) and e.turn_id == turn_id]


async def test_cancel_mid_reply_stops_the_reply_and_the_workers(convo, store, standin) -> None:
    async with VoiceClient.connect(convo.ws_url) as client:
        await client.send_command("tell me the news")
        first = await next_of(client, "tts_chunk")
        turn_id = first["data"]["turn_id"]
        cancelled_at = time.perf_counter()
        await client.cancel()
        quick_replies(standin)
        events = []
        while True:
            event = await client.next_event(10)
            events.append(event)
            if event["event"] == "streaming_complete":
                break
        stop_ms = (time.perf_counter() - cancelled_at) * 1000
        complete = events[-1]["data"]
        assert complete["interrupted"] is True and complete["turn_id"] == turn_id
        assert any(e["event"] == "interrupted" for e in events), events
        received = 1 + sum(e["event"] == "tts_chunk" for e in events)
        assert complete["total_chunks_sent"] == received
        # the workers stop too: both let go of the turn (its jobs are acked) long before
        # the reply's end, and nothing more of it is written afterwards
        keys = Keys(PREFIX)
        for stream, group in ((keys.jobs("llm"), "llm"), (keys.jobs("tts"), "tts")):
            while (await store.xpending(stream, group))["pending"]:  # noqa: ASYNC110 - Redis
                await asyncio.sleep(0.02)
        produced = [e for e in await reply_events(store, client.session_id, turn_id)]
        deltas = "".join(
            e.data["text"]
            for e in produced
            if e.event == "agent_response" and not e.data["is_final"]
        )
        assert len(deltas) < len(LONG_REPLY) / 2, "the LLM stage kept generating"
        assert not any(
            e.event == "streaming_complete" and not e.data.get("interrupted") for e in produced
        )
        # nothing more of that turn reaches the client, and the session goes on
        turn = await client.ask("and now?")
        assert turn.turn_id == "t2" and turn.complete
        assert not [e for e in turn.events if e["data"].get("turn_id") == turn_id]
        later = [e for e in await reply_events(store, client.session_id, turn_id)]
        assert len(later) == len(produced), "a worker kept producing after the cancel"
        print(f"cancel -> streaming_complete: {stop_ms:.1f} ms")


async def test_history_keeps_only_what_was_heard(convo, standin: StandIn, store) -> None:
    async with VoiceClient.connect(convo.ws_url) as client:
        await client.send_command("tell me the news")
        await next_of(client, "tts_chunk")
        await client.cancel()
        quick_replies(standin)
        await next_of(client, "streaming_complete")
        history_key = Keys(PREFIX).history(client.session_id)
        while not await store.llen(history_key):  # noqa: ASYNC110 - lets go at its next token
            await asyncio.sleep(0.05)
        asked = len(standin.chat.requests)
        await client.ask("what was that?")
    history = [m for m in standin.chat.requests[asked]["messages"] if m["role"] == "assistant"]
    assert history, standin.chat.requests[asked]["messages"]
    heard = history[-1]["content"]
    assert heard.endswith(CUT_MARK) and len(heard) < len(LONG_REPLY) / 2, heard


async def test_speech_during_a_reply_interrupts_it(convo, standin) -> None:
    async with VoiceClient.connect(convo.ws_url) as client:
        await client.send_command("tell me the news")
        await next_of(client, "tts_chunk")
        quick_replies(standin)
        turn = await client.say(speech_16k("read me the sports headlines"), realtime=True)
        assert turn.turn_id == "t1"  # the interrupted turn ends first...
        complete = turn.events[-1]["data"]
        assert complete["interrupted"] is True and complete["reason"] == "barge_in"
        spoken = await client.collect_turn(60)
        assert spoken.turn_id == "t2" and spoken.transcript and spoken.complete


async def test_three_turns_in_a_row_each_number_their_chunks_from_zero(convo, standin) -> None:
    quick_replies(standin)
    async with VoiceClient.connect(convo.ws_url) as client:
        for n in (1, 2, 3):
            turn = await client.ask(f"question {n}")
            assert turn.turn_id == f"t{n}" and turn.complete
            indexes = [e["data"]["chunk_index"] for e in turn.events if e["event"] == "tts_chunk"]
            assert indexes == list(range(len(indexes))) and indexes


async def test_with_barge_in_off_a_new_request_waits_for_the_reply(convo, standin) -> None:
    standin.chat.reply = " ".join(SENTENCES[:3])
    async with VoiceClient.connect(convo.ws_url + "?barge_in=false") as client:
        assert client.connected["barge_in"] is False
        await client.send_command("tell me the news")
        await next_of(client, "tts_chunk")
        first = await client.ask("and the weather?")  # sent now, held by the gateway
        # the first reply completes uninterrupted before the second begins
        assert first.turn_id == "t1" and first.complete
        assert not first.events[-1]["data"].get("interrupted")
        second = await client.collect_turn(60)
        assert second.turn_id == "t2" and second.complete


async def test_dropped_socket_resumes_from_a_protocol_2_position(convo, store, standin) -> None:
    """Clients of protocol 2 resume by the last chunk received (last_turn_id and
    last_chunk_index); exact event-for-event resume by event_id is tested in
    tests/test_resume_exact.py."""
    standin.chat.reply, standin.chat.chunk_delay = " ".join(SENTENCES[:4]), 0.05
    async with VoiceClient.connect(convo.ws_url) as client:
        session_id, token = client.session_id, client.resume_token
        assert token
        await client.send_command("tell me the news")
        for _ in range(3):
            await next_of(client, "tts_chunk")
        position = client.resume_query_v2()
        client.ws.transport.abort()  # the phone lost its network
    quick_replies(standin)
    seen = int(position.split("last_chunk_index=")[1])
    async with VoiceClient.connect(f"{convo.ws_url}?{position}") as again:
        assert again.connected["resumed"] is True and again.session_id == session_id
        turn = await again.collect_turn(60)
        chunks = [e["data"]["chunk_index"] for e in turn.events if e["event"] == "tts_chunk"]
        assert chunks == list(range(seen + 1, seen + 1 + len(chunks))), chunks
        complete = turn.events[-1]["data"]
        assert complete["total_chunks_sent"] == seen + 1 + len(chunks)
        # no duplicate: exactly one event per reply-stream entry after the position
        stored = await reply_events(store, session_id, "t1")
        stored_chunks = [e.data["chunk_index"] for e in stored if e.event == "tts_chunk"]
        assert stored_chunks[seen + 1 :] == chunks
        # and the conversation goes on live
        turn = await again.ask("what else?")
        assert turn.turn_id == "t2" and turn.complete


async def test_resume_is_refused_for_wrong_or_foreign_tokens(convo) -> None:
    async with VoiceClient.connect(convo.ws_url + "?user_id=alice") as alice:
        alice_id, alice_token = alice.session_id, alice.resume_token
    async with VoiceClient.connect(convo.ws_url + "?user_id=bob") as bob:
        bob_token = bob.resume_token
    attempts = {
        "wrong token": f"session_id={alice_id}&resume_token=nope&user_id=alice",
        "another session's token": f"session_id={alice_id}&resume_token={bob_token}&user_id=alice",
        "another user": f"session_id={alice_id}&resume_token={alice_token}&user_id=mallory",
        "unknown session": f"session_id={'0' * 32}&resume_token={alice_token}&user_id=alice",
    }
    for why, query in attempts.items():
        async with websockets.connect(f"{convo.ws_url}?{query}") as ws:
            error = await asyncio.wait_for(ws.recv(), 10)
            assert '"resume_failed"' in error, why
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd.code == 1008, why
    # the genuine token still works
    async with VoiceClient.connect(
        f"{convo.ws_url}?session_id={alice_id}&resume_token={alice_token}&user_id=alice"
    ) as again:
        assert again.connected["resumed"] is True


async def test_ping_gets_a_pong_ahead_of_queued_audio(convo) -> None:
    async with VoiceClient.connect(convo.ws_url) as client:
        await client.send_command("tell me the news")
        await next_of(client, "tts_chunk")
        await client.send_event("ping", {})
        pong = await next_of(client, "pong")
        assert pong["data"]["server_ms"] > 0
        await client.cancel()
