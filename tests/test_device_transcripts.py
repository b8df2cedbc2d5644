"""Transcripts recognised on the device: one reply per utterance, however often revised.

The iOS client of the design document sends every partial result of its recogniser as a
plain ``voice_command`` (a growing text), then the final text once more; newer clients
mark interims ``is_final: false``. The agent is the OpenAI stand-in, so every model call
is counted: the calls started, and those streamed to their end. Frames are sent back to
back (ordered by the socket); where a step must wait for the system (a reply attempt
under way), the test waits on that event itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from shared.keys import Keys
from shared.messages import ReplyEvent, decode
from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import System, free_port, running_system
from tests.test_metrics import _value
from voice_agent.client import Turn, VoiceClient

PREFIX = "device"
REPLY = "Here is the news. Markets were calm today. Want to hear more?"
# 13 words, 14 commands: more than the rate limit's burst of 10 if each were a request;
# "what is the latest news" on the way is a complete request (an attempt starts)
SPOKEN = "what is the latest news about the football match in london this weekend"


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with running_standin(StandIn(), free_port()) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_script(standin: StandIn) -> None:
    standin.chat = ChatScript(reply=REPLY)


@pytest.fixture(scope="module")
def device(
    redis_url: str, fixture_http: str, standin: StandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    env = {
        **standin.llm_env(),
        "STREAM_PREFIX": PREFIX,
        "TTS_FALLBACK": "",
        # commands sent back to back must not be split by a machine that stalls for
        # 150 ms: the end of a complete request waits longer here (no time is measured)
        "END_OF_SPEECH_COMPLETE_MS": "500",
        "COMMAND_REVISION_MS": "10000",  # the final text again, however busy the machine
    }
    log_dir = Path(tmp_path_factory.mktemp("device"))
    with running_system(f"{redis_url}/8", fixture_http, log_dir, **env) as up:
        yield up


@pytest.fixture
async def store(device: System) -> AsyncIterator[Redis]:
    client = Redis.from_url(device.redis_url)
    yield client
    await client.aclose()


async def _counts(system: System) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{system.http_url}/metrics", timeout=5)).text
    name = "vna_preemptive_replies_total"
    return {o: _value(text, name, outcome=o) or 0.0 for o in ("started", "used", "discarded")}


async def _stored(store: Redis, key: str) -> list[ReplyEvent]:
    entries = await store.xrange(key)
    return [e for _, f in entries if isinstance(e := decode(f), ReplyEvent)]


async def _until(check) -> None:  # type: ignore[no-untyped-def]
    # the stand-in and the held stream have no event to await: poll them (the test's
    # timeout bounds it)
    while not await check():  # noqa: ASYNC110
        await asyncio.sleep(0.02)


def _one_whole_reply(turn: Turn, turn_id: str) -> None:
    assert {e["data"].get("turn_id") for e in turn.events} == {turn_id}
    assert not turn.errors
    assert [c["chunk_index"] for c in turn.chunks] == list(range(len(turn.chunks)))
    assert turn.complete["total_chunks_sent"] == len(turn.chunks) > 0
    assert turn.reply_text == REPLY


async def test_the_seed_clients_partials_and_final_get_one_reply(device, standin, store) -> None:
    before = await _counts(device)
    words = SPOKEN.split()
    async with VoiceClient.connect(device.ws_url) as client:
        for n in range(1, len(words) + 1):
            await client.send_command(" ".join(words[:n]), 0.95, is_final=None)
        turn = Turn()
        turn.events.append(await client.next_event())  # the utterance has ended
        turn.arrival_ms.append(0.0)
        turn.turn_id = turn.events[0]["data"]["turn_id"]
        await client.send_command(SPOKEN, 0.95, is_final=None)  # the final result, again
        turn = await client.collect_turn(turn=turn)
        # the next question is turn 2: nothing else was started in between
        after = await client.ask("top headlines")
        session_id = client.session_id
    _one_whole_reply(turn, "t1")
    assert turn.complete["timings"]["end_of_speech_rule"] == "complete"
    assert turn.complete["timings"]["transcripts"] == len(words)
    assert after.turn_id == "t2" and after.complete and not after.errors
    counts = {k: v - before[k] for k, v in (await _counts(device)).items()}
    assert (counts["started"], counts["used"]) == (2, 1)
    assert counts["discarded"] <= 1  # one not yet opened when dropped may not count
    asked = [r["messages"][-1]["content"] for r in standin.chat.requests]
    assert asked[-2:] == [SPOKEN, "top headlines"]  # the attempt dropped at once may not run
    assert len(asked) <= 3 and standin.chat.completed == 2
    stored = await _stored(store, Keys(PREFIX).reply(session_id))
    assert {e.turn_id for e in stored} == {"t1", "t2"}


async def test_an_interim_attempt_replaced_by_a_revision_is_never_heard(
    device, standin, store
) -> None:
    standin.chat.hold_after_words = 4  # each reply's first sentence, then the model waits
    standin.chat.chunk_delay = 0.05  # then goes on slowly: a call cut off ends unfinished
    first, revised = "read me the sports headlines", "read me the sports headlines from today"
    async with VoiceClient.connect(device.ws_url) as client:
        held = Keys(PREFIX).early_replies(client.session_id)
        await client.send_command(first, is_final=False)  # complete: an attempt starts
        await _until(lambda: _has_audio(store, held, "t1.p1"))  # ... and is speaking
        await client.send_command(revised, is_final=False)  # the user went on speaking
        await _until(lambda: _asked(standin, 2))
        standin.chat.release.set()
        await client.send_command(revised, is_final=True)
        turn = await client.collect_turn()
        attempts = await _stored(store, held)
        session_id = client.session_id
    _one_whole_reply(turn, "t1")
    assert turn.complete["timings"]["end_of_speech_rule"] == "is_final"
    audio = {a: b"".join(e.audio for e in attempts if e.turn_id == a) for a in ("t1.p1", "t1.p2")}
    assert audio["t1.p1"], "the replaced attempt had audio ready"
    assert turn.audio == audio["t1.p2"]  # all of the used attempt, nothing else
    assert [r["messages"][-1]["content"] for r in standin.chat.requests] == [first, revised]
    assert standin.chat.completed == 1  # the replaced attempt was cut off mid-reply
    stored = await _stored(store, Keys(PREFIX).reply(session_id))
    assert {e.turn_id for e in stored} == {"t1"}


async def _has_audio(store: Redis, key: str, attempt: str) -> bool:
    return any(e.turn_id == attempt and e.event == "tts_chunk" for e in await _stored(store, key))


async def _asked(standin: StandIn, calls: int) -> bool:
    return len(standin.chat.requests) >= calls


async def test_a_corrected_transcript_is_the_one_answered(device, standin) -> None:
    async with VoiceClient.connect(device.ws_url) as client:
        for text in ("what is the latest in tech", "what is the latest in sports"):
            await client.send_command(text, is_final=None)
        await client.send_command("what is the latest in sports", is_final=None)
        turn = await client.collect_turn()
    _one_whole_reply(turn, "t1")
    assert turn.complete["timings"]["end_of_speech_rule"] == "default"
    assert [r["messages"][-1]["content"] for r in standin.chat.requests] == [
        "what is the latest in sports"
    ]


async def test_two_different_questions_in_a_row_get_two_replies(device, standin) -> None:
    async with VoiceClient.connect(device.ws_url) as client:
        await client.send_command("top headlines", is_final=None)
        first = await client.collect_turn()
        await client.send_command("any science stories", is_final=None)  # within the window
        second = await client.collect_turn()
    _one_whole_reply(first, "t1")
    _one_whole_reply(second, "t2")
    asked = [r["messages"][-1]["content"] for r in standin.chat.requests]
    assert asked == ["top headlines", "any science stories"]


async def test_revisions_can_be_turned_off_per_session(device, standin) -> None:
    async with VoiceClient.connect(f"{device.ws_url}?command_revisions=false") as client:
        await client.send_command("top headlines", is_final=None)
        first = await client.collect_turn()
        await client.send_command("top headlines today", is_final=None)
        second = await client.collect_turn()
    assert (first.turn_id, second.turn_id) == ("t1", "t2")
    assert "timings" not in first.complete or "end_of_speech_rule" not in first.complete["timings"]
