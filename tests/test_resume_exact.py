"""Resume by ``last_event_id`` is exact: after a dropped socket, the client's events equal,
event for event (name, turn, chunk index, ``event_id``, data), what a client that never
dropped got.

Ground truth twice over, both from the real system: the session's reply stream (every
event a live client is shown, in order, with its entry id as ``event_id``; a cut turn's
late events excepted), and a third connection that resumes with no position and so is
replayed the whole session from the start. The socket is dropped (a) during the partial
transcripts of an utterance, (b) during the agent's text and audio, (c) right after
``interrupted``, (d) between turns. Every wait is on an event, never on the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.session_store import is_interruption
from shared.keys import Keys
from shared.messages import ReplyEvent, decode
from shared.protocol import event_id_key
from tests.audio_checks import speech_16k
from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import System, free_port, running_system
from voice_agent.client import VoiceClient

PREFIX = "exact"
SLOW_REPLY = " ".join(
    f"Story number {n} is about a town that built a new bridge over the river." for n in range(1, 7)
)
Event = dict[str, Any]


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with running_standin(StandIn(), free_port()) as server:
        server.chat = ChatScript(reply=SLOW_REPLY, chunk_delay=0.06)
        yield server


@pytest.fixture(autouse=True)
def slow_reply(standin: StandIn) -> None:
    standin.chat.reply, standin.chat.chunk_delay = SLOW_REPLY, 0.06


@pytest.fixture(scope="module")
def exact(
    redis_url: str, fixture_http: str, standin: StandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    env = {
        **standin.llm_env(),
        "STREAM_PREFIX": PREFIX,
        "TTS_FALLBACK": "",
    }
    log_dir = Path(tmp_path_factory.mktemp("exact"))
    with running_system(f"{redis_url}/6", fixture_http, log_dir, **env) as up:
        yield up


@pytest.fixture
async def store(exact: System) -> Iterator[Redis]:
    client = Redis.from_url(exact.redis_url)
    yield client
    await client.aclose()


class Recorder:
    """Every event one client received about its session, in order (``pong`` answers a
    ping of the test's own and is not part of the session)."""

    def __init__(self, client: VoiceClient) -> None:
        self.client = client
        self.events: list[Event] = []

    async def until(self, done: Callable[[Event], bool]) -> Event:
        while True:
            event = await self.client.next_event(60)
            assert event["event"] != "_closed", "the server closed the connection"
            if event["event"] != "pong":
                self.events.append(event)
            if done(event):
                return event

    def drop(self) -> str:
        """The phone loses its network now: what arrived so far is all it got."""
        self.client._reader.cancel()
        while not self.client.inbox.empty():
            event = self.client.inbox.get_nowait()
            if event["event"] != "pong":
                self.events.append(event)
        query = self.client.resume_query()
        self.client.ws.transport.abort()
        return query


def named(name: str, turn_id: str | None = None, **data: object) -> Callable[[Event], bool]:
    def done(event: Event) -> bool:
        d = event["data"]
        return (
            event["event"] == name
            and (turn_id is None or d.get("turn_id") == turn_id)
            and all(d.get(k) == v for k, v in data.items())
        )

    return done


def key(event: Event) -> tuple[object, ...]:
    d = event["data"]
    return (event["event"], d.get("turn_id"), d.get("chunk_index"), d.get("event_id"))


async def stream_truth(
    store: Redis, session_id: str, cut: str | None = None, shown: set[str] = frozenset()
) -> list[tuple[object, ...]]:
    """What a live client is shown: every reply-stream entry, in order, except the events
    of the cut turn ``cut`` that it never got (``shown``: the ids it did get before the
    cut) other than the interruption itself."""
    truth = []
    for raw_id, fields in await store.xrange(Keys(PREFIX).reply(session_id)):
        event, entry_id = decode(fields), raw_id.decode()
        assert isinstance(event, ReplyEvent)
        if event.turn_id == cut and entry_id not in shown and not is_interruption(event):
            continue
        truth.append((event.event, event.turn_id, event.data.get("chunk_index"), entry_id))
    return truth


async def replayed_from_the_start(url: str, session_id: str, token: str, last: Event) -> list:
    """A third connection resumes with no position: the whole session, replayed."""
    query = f"session_id={session_id}&resume_token={token}"
    async with VoiceClient.connect(f"{url}?{query}") as witness:
        assert witness.connected["resumed"] is True
        recorder = Recorder(witness)
        await recorder.until(lambda e: e["data"].get("event_id") == last["data"]["event_id"])
        return recorder.events


async def finish(
    exact: System, store: Redis, standin: StandIn, first: Recorder, query: str, turn: str
) -> tuple[list[Event], VoiceClient]:
    """Resume, receive the rest of ``turn``, then one more turn live; returns every
    event the client got, before and after the drop."""
    async with VoiceClient.connect(f"{exact.ws_url}?{query}") as again:
        assert again.connected["resumed"] is True
        assert again.connected["protocol_version"] >= 4
        newest = again.connected["last_event_id"]
        second = Recorder(again)
        if not any(named("streaming_complete", turn)(e) for e in first.events):
            await second.until(lambda e: e["event"] in ("streaming_complete", "error"))
        standin.chat.reply, standin.chat.chunk_delay = "Here you go. That is all.", 0.0
        await again.send_command("and what else?")
        await second.until(named("streaming_complete", f"t{int(turn[1:]) + 1}"))
    received = first.events + second.events
    # `connected` named the session's newest event: at least what the client had
    assert event_id_key(newest) >= event_id_key(first.client.last_event_id or "0-0")
    return received, again


def assert_exact(received: list[Event], truth: list[tuple[object, ...]], witness: list) -> None:
    keys = [key(e) for e in received]
    assert len(set(keys)) == len(keys), "an event arrived twice"
    assert keys == truth, "the client's events differ from what a live client is shown"
    assert [(e["event"], e["data"]) for e in witness] == [
        (e["event"], e["data"]) for e in received
    ], "a replay of the whole session differs from what this client got"


async def test_drop_during_partial_transcripts(exact, store, standin) -> None:
    async with VoiceClient.connect(exact.ws_url) as client:
        session_id, token = client.session_id, client.resume_token
        first = Recorder(client)
        await client.send_audio(speech_16k("what is the latest technology news"), realtime=False)
        await client.send_event("ping", {})  # every frame before it was handled
        await first.until(named("pong"))
        await first.until(named("partial_transcription", "t1", is_final=False))
        query = first.drop()
    received, _ = await finish(exact, store, standin, first, query, "t1")
    after = received[len(first.events) :]
    assert any(named("partial_transcription", "t1", is_final=False)(e) for e in after), (
        "the drop was meant to fall within the partial transcripts"
    )
    truth = await stream_truth(store, session_id)
    witness = await replayed_from_the_start(exact.ws_url, session_id, token, received[-1])
    assert_exact(received, truth, witness)


async def test_drop_during_agent_text_and_audio(exact, store, standin) -> None:
    async with VoiceClient.connect(exact.ws_url) as client:
        session_id, token = client.session_id, client.resume_token
        first = Recorder(client)
        await client.send_command("tell me the news")
        await first.until(named("tts_chunk", "t1", chunk_index=1))
        await first.until(named("agent_response", "t1", is_final=False))
        query = first.drop()
    received, _ = await finish(exact, store, standin, first, query, "t1")
    after = [e["event"] for e in received[len(first.events) :]]
    assert "agent_response" in after and "tts_chunk" in after, after
    truth = await stream_truth(store, session_id)
    witness = await replayed_from_the_start(exact.ws_url, session_id, token, received[-1])
    assert_exact(received, truth, witness)


async def test_drop_right_after_interrupted(exact, store, standin) -> None:
    async with VoiceClient.connect(exact.ws_url) as client:
        session_id, token = client.session_id, client.resume_token
        first = Recorder(client)
        await client.send_command("tell me the news")
        await first.until(named("tts_chunk", "t1", chunk_index=0))
        await client.cancel()
        await first.until(named("interrupted", "t1"))
        query = first.drop()
    shown = {e["data"].get("event_id") for e in first.events if e["data"]["turn_id"] == "t1"}
    received, _ = await finish(exact, store, standin, first, query, "t1")
    assert [e["event"] for e in received if e["data"]["turn_id"] == "t1"][-2:] == [
        "interrupted",
        "streaming_complete",
    ]
    truth = await stream_truth(store, session_id, cut="t1", shown=shown)
    witness = await replayed_from_the_start(exact.ws_url, session_id, token, received[-1])
    assert_exact(received, truth, witness)


async def test_drop_between_turns(exact, store, standin) -> None:
    standin.chat.reply, standin.chat.chunk_delay = "Here you go. That is all.", 0.0
    async with VoiceClient.connect(exact.ws_url) as client:
        session_id, token = client.session_id, client.resume_token
        first = Recorder(client)
        await client.send_command("tell me the news")
        await first.until(named("streaming_complete", "t1"))
        query = first.drop()
    assert "last_event_id=" in query and "last_chunk_index" not in query
    received, _ = await finish(exact, store, standin, first, query, "t1")
    after = received[len(first.events) :]
    assert after and all(e["data"]["turn_id"] == "t2" for e in after), "t1 was replayed again"
    truth = await stream_truth(store, session_id)
    witness = await replayed_from_the_start(exact.ws_url, session_id, token, received[-1])
    assert_exact(received, truth, witness)


async def test_drop_after_cancelling_a_spoken_request(exact, store, standin) -> None:
    """Cancelling an utterance still being spoken: the partial transcripts shown before
    the cut are replayed, nothing of the turn produced after it is (the recogniser may
    write a little more meanwhile)."""
    async with VoiceClient.connect(exact.ws_url) as client:
        session_id, token = client.session_id, client.resume_token
        first = Recorder(client)
        speech = speech_16k("what is the latest technology news")
        for offset in range(0, len(speech), 3200):  # no is_final: the utterance stays open
            await client.ws.send(speech[offset : offset + 3200])
        await first.until(named("partial_transcription", "t1", is_final=False))
        await client.cancel("t1")
        await first.until(named("interrupted", "t1"))
        query = first.drop()
    shown = {e["data"].get("event_id") for e in first.events if e["data"]["turn_id"] == "t1"}
    received, _ = await finish(exact, store, standin, first, query, "t1")
    truth = await stream_truth(store, session_id, cut="t1", shown=shown)
    witness = await replayed_from_the_start(exact.ws_url, session_id, token, received[-1])
    assert_exact(received, truth, witness)
