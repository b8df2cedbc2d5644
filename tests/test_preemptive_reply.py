"""Replies started during a pause: used when the request was complete, gone without a
trace when the user went on speaking.

The gateway decides on audio time (its voice activity detector) and on the recogniser's
latest hypothesis; the tests send silence only once that hypothesis has arrived, and
wait on the metrics for the early reply to start, so no step depends on how fast this
machine is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import redis.asyncio as aioredis

from llm_worker.history import ConversationMemory
from shared.keys import Keys
from shared.messages import ReplyEvent, decode
from tests.audio_checks import speech_16k
from tests.test_metrics import _value
from voice_agent.client import Turn, VoiceClient

PIECE = 3200  # 100 ms
SILENCE = b"\x00\x00" * 1600
REQUEST = "read me the sports headlines"


class _Talk:
    """One hands-free client: frames out, events in (collected as one turn)."""

    def __init__(self, client: VoiceClient) -> None:
        self.client = client
        self.turn = Turn()
        self.heard = asyncio.Event()
        self.final = asyncio.Event()  # the final transcript arrived
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            event = await self.client.next_event(60)
            self.turn.events.append(event)
            self.turn.arrival_ms.append(0.0)
            data = event["data"]
            if event["event"] == "partial_transcription" and data.get("complete") is True:
                if data["text"] == REQUEST:
                    self.heard.set()
            if event["event"] == "partial_transcription" and data.get("is_final"):
                self.final.set()
            if event["event"] in ("streaming_complete", "error"):
                return

    async def send(self, pcm: bytes) -> None:
        for offset in range(0, len(pcm), PIECE):
            await self.client.ws.send(pcm[offset : offset + PIECE])


async def _early_replies(http_url: str) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{http_url}/metrics", timeout=5)).text
    name = "vna_preemptive_replies_total"
    return {o: _value(text, name, outcome=o) or 0.0 for o in ("started", "used", "discarded")}


async def _until_metrics(http_url: str, ready: Callable[[dict[str, float]], bool]) -> None:
    # another process's counter: no event to await, so poll it (the test's timeout bounds it)
    while not ready(await _early_replies(http_url)):  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def _stored(system, session_id: str) -> tuple[list[ReplyEvent], int]:
    """The session's reply stream and how many exchanges its history holds."""
    redis = aioredis.Redis.from_url(system.redis_url)
    try:
        # the client has its reply before the LLM worker is done with the turn (it keeps
        # the history once the attempt's verdict is in, then acknowledges the job): wait
        # for the acknowledgement, bounded by the test's timeout
        while (await redis.xpending(Keys().jobs("llm"), "llm"))["pending"]:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        entries = await redis.xrange(Keys().reply(session_id))
        history = await ConversationMemory(redis, Keys(), 8, 60).load(session_id)
    finally:
        await redis.aclose()
    return [e for _, f in entries if isinstance(e := decode(f), ReplyEvent)], len(history)


async def read_turn(redis_url: str, reply_key: str) -> list[ReplyEvent]:
    """A reply stream (what a resume replays) up to the end of its first turn."""
    redis = aioredis.Redis.from_url(redis_url)
    last, events = "0-0", []
    try:
        for _wait in range(90):  # a hang guard: a turn never answered fails, not hangs
            if any(e.ends_turn for e in events):
                break
            answer = await redis.xread({reply_key: last}, block=1000)
            for _key, entries in answer or []:
                for entry_id, fields in entries:
                    last = entry_id
                    if isinstance(event := decode(fields), ReplyEvent):
                        events.append(event)
    finally:
        await redis.aclose()
    return events


def _one_clean_reply(turn: Turn, events: list[ReplyEvent]) -> None:
    assert {e.turn_id for e in events} == {"t1"}, "no attempt's own turn id is ever stored"
    finals = [e for e in events if e.event == "agent_response" and e.data["is_final"]]
    assert len(finals) == 1
    assert [c["chunk_index"] for c in turn.chunks] == list(range(len(turn.chunks)))
    assert turn.complete["total_chunks_sent"] == len(turn.chunks) > 0


async def test_a_complete_request_gets_the_reply_started_in_the_pause(system) -> None:
    before = await _early_replies(system.http_url)
    async with VoiceClient.connect(system.ws_url) as client:
        talk = _Talk(client)
        await talk.send(speech_16k(REQUEST, 300, 0))
        await talk.heard.wait()
        await talk.send(SILENCE * 15)
        await asyncio.wait_for(talk.reader, 60)
        session_id = client.session_id
    after = await _early_replies(system.http_url)
    assert after["used"] - before["used"] == 1
    assert "striker" in talk.turn.reply_text.lower()
    assert talk.turn.complete["timings"]["end_of_speech_rule"] == "complete"
    events, remembered = await _stored(system, session_id)
    _one_clean_reply(talk.turn, events)
    assert remembered == 1


async def test_speaking_on_after_a_complete_request_leaves_no_trace(system) -> None:
    before = await _early_replies(system.http_url)
    async with VoiceClient.connect(system.ws_url) as client:
        talk = _Talk(client)
        await talk.send(speech_16k(REQUEST, 300, 0))
        await talk.heard.wait()
        await talk.send(SILENCE * 2)  # enough to start a reply, too little to end the turn
        await _until_metrics(system.http_url, lambda m: m["started"] > before["started"])
        await talk.send(speech_16k("today", 0, 0) + SILENCE * 15)
        await asyncio.wait_for(talk.reader, 60)
        session_id = client.session_id
    after = await _early_replies(system.http_url)
    assert after["discarded"] - before["discarded"] >= 1
    finals = [p["text"] for p in talk.turn.of("partial_transcription") if p["is_final"]]
    assert len(finals) == 1 and finals[0].endswith("today")
    events, remembered = await _stored(system, session_id)
    _one_clean_reply(talk.turn, events)
    assert remembered == 1  # the dropped reply is not in the conversation memory


async def test_a_client_gone_at_the_end_of_speech_gets_its_turn_answered_once(system) -> None:
    """The connection ends with the early reply waiting for the final transcript: the
    gateway withdraws it (the normal reply answers the turn, and a resume replays that)
    unless the recogniser used it first (then the rest of it is copied without the
    client, from the early stream). Either way the reply stream holds one whole reply."""
    before = await _early_replies(system.http_url)
    async with VoiceClient.connect(system.ws_url) as client:
        talk = _Talk(client)
        await talk.send(speech_16k(REQUEST, 300, 0))
        await talk.heard.wait()
        await talk.send(SILENCE * 4)  # the pause ends the request; the client leaves at once
        session_id = client.session_id
        talk.reader.cancel()
    events = await read_turn(system.redis_url, Keys().reply(session_id))
    redis = aioredis.Redis.from_url(system.redis_url)
    try:
        early = [decode(f) for _, f in await redis.xrange(Keys().early_replies(session_id))]
    finally:
        await redis.aclose()
    after = await _early_replies(system.http_url)
    started, used, discarded = (after[o] - before[o] for o in ("started", "used", "discarded"))
    assert started == 1 and used + discarded == 1
    assert events[-1].event == "streaming_complete"
    assert {e.turn_id for e in events} == {"t1"}
    assert len([e for e in events if e.event == "agent_response" and e.data["is_final"]]) == 1
    chunks = [e.data["chunk_index"] for e in events if e.event == "tts_chunk"]
    assert chunks == list(range(len(chunks))) and chunks
    early_chunks = [e for e in early if e.turn_id == "t1.p1" and e.event == "tts_chunk"]
    assert not used or len(chunks) == len(early_chunks)  # used: its chunks are the reply
