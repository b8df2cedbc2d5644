"""The gateway's per-socket limits answer with their documented close codes and errors.

A real gateway (uvicorn, the app of ``gateway.app``, its relay and Redis) runs in this
test's event loop on a free port, so the limits can be set low and the gateway's state
(draining) driven directly; real WebSocket clients talk to it. Where a reply is needed
the test writes the reply events to the session's reply stream itself, as a worker does.
No workers run: a command's turn stays "in progress" for as long as a test needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import websockets
from redis.asyncio import Redis

from gateway import session_inputs
from gateway.server import gateway_server
from shared.early_reply import EarlyVerdicts
from shared.messages import ReplyEvent
from shared.settings import Settings, load_settings
from shared.streams import ReplyWriter
from tests.support import free_port
from tests.support.raw_websocket import close_frame, raw_websocket, read_frame
from voice_agent.client import VoiceClient


@dataclass
class Gateway:
    settings: Settings
    url: str
    app: object


@contextlib.asynccontextmanager
async def running_gateway(redis_url: str, **overrides: object) -> AsyncIterator[Gateway]:
    settings = load_settings(
        redis_url=f"{redis_url}/5",
        stream_prefix=f"lim{uuid.uuid4().hex[:6]}",
        host="127.0.0.1",
        port=free_port(),
        **{"asr_provider": "none", **overrides},
    )
    server = gateway_server(settings)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # it failed to start: say why
        await asyncio.sleep(0.01)
    try:
        yield Gateway(settings, f"ws://127.0.0.1:{settings.port}/ws/voice", server.config.app)
    finally:
        server.should_exit = True
        await serving


async def closed_before_any_event(ws: websockets.ClientConnection) -> tuple[int | None, str]:
    """The server closes the socket before sending anything more: its code and reason."""
    with pytest.raises(websockets.ConnectionClosed):
        unexpected = await ws.recv()
        pytest.fail(f"expected a close, got {unexpected!r:.200}")
    return ws.close_code, ws.close_reason or ""


async def test_a_socket_over_the_limit_is_closed_with_1013(redis_url: str) -> None:
    async with (
        running_gateway(redis_url, max_websocket_connections=2) as gateway,
        VoiceClient.connect(gateway.url),
        VoiceClient.connect(gateway.url),
        websockets.connect(gateway.url) as third,
    ):
        assert await closed_before_any_event(third) == (1013, "server full, retry later")


async def test_a_frame_far_over_the_limit_is_closed_with_1009(redis_url: str) -> None:
    async with (
        running_gateway(redis_url, max_frame_bytes=256 * 1024) as gateway,
        websockets.connect(gateway.url, max_size=None) as ws,
    ):
        await ws.recv()  # connected
        await ws.send(b"\x00" * (4 * 256 * 1024 + 2))  # past uvicorn's ws_max_size
        code, _reason = await closed_before_any_event(ws)
        assert code == 1009


async def test_input_waiting_past_the_limit_without_barge_in_is_refused_busy(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_inputs, "WAITING_INPUT_LIMIT", 2)
    async with (
        running_gateway(redis_url, barge_in=False) as gateway,
        VoiceClient.connect(gateway.url) as client,
    ):
        await client.send_command("top headlines")  # turn t1: no worker, so it stays busy
        for _ in range(2):  # waiting until t1's reply has been sent
            await client.send_command("and sports")
        await client.send_command("and science")  # one more than the limit
        await client.ws.send("not json")  # its error comes right after any earlier one
        event = await client.next_event(30)
        assert (event["event"], event["data"]["code"]) == ("error", "busy")
        assert "too much input" in event["data"]["message"]


class _Seen(logging.Handler):
    """Sets an event when a log record containing ``text`` is emitted."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


async def test_a_client_that_stops_reading_is_closed_with_1013(redis_url: str) -> None:
    """Reply events pile up for a socket that is not read: past ``OUTBOX_MAX_BYTES`` of
    them, 1013 (the client may resume); the outbox never held more than the bound."""
    bound = 64 * 1024
    async with running_gateway(redis_url, outbox_max_bytes=bound) as gateway:
        settings = gateway.settings
        reader, writer = await raw_websocket(settings.port)
        _opcode, connected = await read_frame(reader)
        session_id = json.loads(connected)["data"]["session_id"]
        (session,) = gateway.app.state.sessions
        redis = Redis.from_url(settings.redis_url)
        replies = ReplyWriter(redis, settings.keys, 60, settings.reply_maxlen)
        audio = b"\xff" * 4096  # an MP3 chunk: about 5.6 KB as a frame
        for index in range(2000):  # until the socket's buffers and then the outbox fill
            if session.delivery.closing:
                break
            chunk = ReplyEvent("tts_chunk", session_id, "t1", {"chunk_index": index}, audio)
            await replies.emit(chunk)
        closed = await close_frame(reader)
        writer.close()
        await redis.delete(settings.keys.reply(session_id))
        await redis.aclose()
    assert closed == (1013, "client too slow to receive")
    outbox = session.delivery.outbox
    assert bound - 6 * 1024 < outbox.peak_bytes <= bound, outbox.peak_bytes


async def test_a_replay_larger_than_half_the_outbox_sends_the_newest_events_and_says_so(
    redis_url: str,
) -> None:
    """Missed while away: 100 audio chunks (560 KB). The resume replays the newest that fit
    in half of ``OUTBOX_MAX_BYTES`` after an ``error`` ``replay_truncated``; the client is
    not closed for being resumed."""
    bound = 128 * 1024
    async with running_gateway(redis_url, outbox_max_bytes=bound) as gateway:
        settings = gateway.settings
        async with VoiceClient.connect(gateway.url) as client:
            session_id, query = client.session_id, client.resume_query()
        redis = Redis.from_url(settings.redis_url)
        replies = ReplyWriter(redis, settings.keys, 60, settings.reply_maxlen)
        for index in range(100):
            chunk = {"chunk_index": index}
            await replies.emit(ReplyEvent("tts_chunk", session_id, "t1", chunk, b"\xff" * 4096))
        await replies.emit(ReplyEvent("streaming_complete", session_id, "t1", {}))
        async with websockets.connect(f"{gateway.url}?{query}", max_size=None) as ws:
            assert json.loads(await ws.recv())["data"]["resumed"] is True
            notice = json.loads(await ws.recv())
            replayed = []
            while not replayed or replayed[-1]["event"] != "streaming_complete":
                replayed.append(json.loads(await ws.recv()))
        await redis.delete(settings.keys.reply(session_id))
        await redis.aclose()
    assert (notice["event"], notice["data"]["code"]) == ("error", "replay_truncated")
    assert "turn_id" not in notice["data"]
    chunks = [event["data"]["chunk_index"] for event in replayed[:-1]]
    assert chunks == list(range(100 - len(chunks), 100)) and 10 < len(chunks) < 30, chunks
    assert notice["data"]["skipped_events"] == 100 - len(chunks)
    assert notice["data"]["replay_from"] == replayed[0]["data"]["event_id"]


async def test_resumes_past_the_limit_are_refused_with_1013(redis_url: str) -> None:
    async with running_gateway(redis_url, resumes_per_minute=2) as gateway:
        async with VoiceClient.connect(gateway.url) as client:
            query = client.resume_query()
        for _ in range(2):
            async with VoiceClient.connect(f"{gateway.url}?{query}") as again:
                assert again.connected["resumed"] is True
        wrong = query.replace("resume_token=", "resume_token=x")
        async with websockets.connect(f"{gateway.url}?{wrong}") as ws:  # counts for nothing
            assert json.loads(await ws.recv())["data"]["code"] == "resume_failed"
        async with websockets.connect(f"{gateway.url}?{query}") as ws:
            refusal = json.loads(await ws.recv())
            assert (refusal["event"], refusal["data"]["code"]) == ("error", "rate_limited")
            assert "resumes of this session" in refusal["data"]["message"]
            assert await closed_before_any_event(ws) == (1013, "too many resumes, retry later")


async def test_spoken_turns_count_against_the_request_limit(redis_url: str) -> None:
    """Two requests a minute: a typed one and a spoken one pass, the next utterance is
    refused once (``rate_limited``), however many frames of speech it has."""
    from tests.audio_checks import speech_16k

    speech = speech_16k("read me the sports headlines")
    async with (
        running_gateway(redis_url, asr_provider="pocketsphinx", commands_per_minute=2) as gateway,
        VoiceClient.connect(gateway.url) as client,
    ):
        await client.send_command("top headlines")
        await client.send_audio(speech, realtime=False)  # turn t2: no worker answers it
        await client.send_audio(speech, realtime=False)  # refused: the third request
        await client.send_event("ping", {})  # every frame before it was handled
        errors = []
        while (event := await client.next_event(30))["event"] != "pong":
            if event["event"] == "error":
                errors.append(event["data"])
        # once, not once per frame of speech (nor a no_speech for its end)
        assert [e["code"] for e in errors] == ["rate_limited"], errors
        assert "utterance was not heard" in errors[0]["message"]
        turns = await Redis.from_url(gateway.settings.redis_url).hget(
            gateway.settings.keys.session(client.session_id), "turns"
        )
    assert turns == b"2"


async def _reply_started_in_a_pause(client: VoiceClient, gateway: Gateway) -> None:
    """An utterance (turn t1) whose complete hypothesis starts a reply in the pause."""
    from tests.audio_checks import speech_16k

    speech = speech_16k("read me the sports headlines", tail_silence_ms=0)
    for offset in range(0, len(speech), 3200):  # no is_final: the turn stays open
        await client.ws.send(speech[offset : offset + 3200])
    await until(client, "pong", ping=True)
    # the recogniser's hypothesis, as the ASR worker writes it: a whole request
    await hypothesis(gateway, client.session_id, is_final=False)
    await until(client, "partial_transcription")
    for _ in range(50):  # a pause of 1 s in 20 ms pieces: the reply starts in it
        await client.ws.send(b"\x00" * 640)
    await until(client, "pong", ping=True)


async def hypothesis(gateway: Gateway, session_id: str, is_final: bool) -> None:
    redis = Redis.from_url(gateway.settings.redis_url)
    heard = {"text": "read me the sports headlines", "is_final": is_final, "complete": True}
    if is_final:  # the ASR worker decides the early reply before its final goes out
        verdicts = EarlyVerdicts(redis, gateway.settings.keys, 60)
        await verdicts.decide(session_id, "t1.p1", heard["text"])
    replies = ReplyWriter(redis, gateway.settings.keys, 60, gateway.settings.reply_maxlen)
    await replies.emit(ReplyEvent("partial_transcription", session_id, "t1", heard))
    await redis.aclose()


async def until(client: VoiceClient, name: str, ping: bool = False) -> list[dict]:
    """The events up to the first ``name`` (after sending a ``ping``: every frame sent
    before it was handled)."""
    if ping:
        await client.send_event("ping", {})
    events = []
    while (event := await client.next_event(30))["event"] != name:
        events.append(event)
    return events


async def llm_jobs(gateway: Gateway, session_id: str) -> list[bytes]:
    redis = Redis.from_url(gateway.settings.redis_url)
    entries = await redis.xrange(gateway.settings.keys.jobs_for("llm", session_id))
    await redis.delete(gateway.settings.keys.reply(session_id))
    await redis.aclose()
    return [fields[b"m"] for _id, fields in entries]


EARLY = {"asr_provider": "pocketsphinx", "commands_per_minute": 2}


async def test_a_discarded_early_reply_counts_against_the_request_limit(redis_url: str) -> None:
    """Two requests a minute: an utterance (one) whose reply started in a pause and was
    discarded when the user went on speaking (two, counted though never refused) leaves
    no room for a typed command."""
    from tests.audio_checks import speech_16k

    # a long pause after a complete request: the reply starts in it, the turn goes on
    async with running_gateway(redis_url, end_of_speech_complete_ms=5000, **EARLY) as gateway:
        async with VoiceClient.connect(gateway.url) as client:
            await _reply_started_in_a_pause(client, gateway)
            more = speech_16k("and the weather", lead_silence_ms=0, tail_silence_ms=0)
            for offset in range(0, len(more), 3200):  # speaking on: the reply is discarded
                await client.ws.send(more[offset : offset + 3200])
            await client.send_command("and the weather")
            events = await until(client, "pong", ping=True)
            jobs = await llm_jobs(gateway, client.session_id)
    assert len(jobs) == 1 and b"t1.p1" in jobs[0], "the early reply's job, no other"
    assert [e["data"]["code"] for e in events if e["event"] == "error"] == ["rate_limited"]


async def test_an_early_reply_that_is_used_costs_no_more_than_its_turn(redis_url: str) -> None:
    async with running_gateway(redis_url, end_of_speech_complete_ms=5000, **EARLY) as gateway:
        async with VoiceClient.connect(gateway.url) as client:
            await _reply_started_in_a_pause(client, gateway)
            await client.send_event("voice_data", {"audio_chunk": "", "is_final": True})
            await hypothesis(gateway, client.session_id, is_final=True)  # the same words
            await until(client, "partial_transcription")
            await client.send_command("and the weather")  # the second request: allowed
            events = await until(client, "pong", ping=True)
            jobs = await llm_jobs(gateway, client.session_id)
    assert not [e for e in events if e["event"] == "error"], events
    assert len(jobs) == 2 and b"t1.p1" in jobs[0] and b"t2" in jobs[1]
