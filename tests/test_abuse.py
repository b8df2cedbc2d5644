"""Hostile clients get nothing: cancels of turns that never existed write nothing to
Redis, a client that never reads its answers is closed (1008) instead of piling them up
in the gateway, and hundreds of dropped sockets leave only their resume records, which
expire with the resume window. The gateway's memory under the same abuse is measured by
``bench/abuse.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from tests.abuse_driver import cancel_flood, dropped_connections, made_up_cancels, unread_flood
from tests.support import System, running_system
from voice_agent.client import VoiceClient

PREFIX = "abuse"
RESUME_WINDOW = 120
NOT_READING = "does not read its events"
# polls of another process's state (its /health, its log): a hang guard of about 40 s,
# well inside the suite's 120 s timeout so a failure says what never happened
POLLS, POLL_S = 800, 0.05


@pytest.fixture(scope="module")
def abused(
    redis_url: str, fixture_http: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    env = {"STREAM_PREFIX": PREFIX, "RESUME_WINDOW_SECONDS": str(RESUME_WINDOW)}
    log_dir = Path(tmp_path_factory.mktemp("abuse"))
    with running_system(f"{redis_url}/7", fixture_http, log_dir, **env) as up:
        yield up


@pytest.fixture
async def store(abused: System) -> Iterator[Redis]:
    client = Redis.from_url(abused.redis_url)
    yield client
    await client.aclose()


async def keys(store: Redis) -> set[str]:
    return {key.decode() async for key in store.scan_iter(count=1000)}


def resume_record(key: str) -> bool:
    return key.startswith(f"{PREFIX}:session:")


async def no_sessions_open(system: System) -> None:
    """Wait until the gateway has let go of every socket (its handlers have finished)."""
    async with httpx.AsyncClient() as http:
        for _poll in range(POLLS):  # a hang guard, not a speed goal
            if not (await http.get(f"{system.http_url}/health", timeout=10)).json()["sessions"]:
                return
            await asyncio.sleep(POLL_S)
    raise AssertionError("the gateway still holds sessions")


async def log_says(system: System, text: str, after: int) -> None:
    """Wait for a line of the system's log written after byte ``after`` to hold ``text``."""
    for _poll in range(POLLS):  # a hang guard, not a speed goal
        if text in system.log_path.read_bytes()[after:].decode(errors="replace"):
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"the log never said {text!r}")


async def test_each_cancel_of_a_turn_that_never_was_gets_one_error_and_writes_nothing(
    abused, store
) -> None:
    before = await keys(store)
    cancels = made_up_cancels(300)
    session_id, codes, others = await cancel_flood(abused.ws_url, cancels)
    assert sum(codes.values()) == len(cancels), codes  # one answer each, the empty one none
    assert others == 0
    assert set(codes) == {"unknown_turn", "invalid_field", "rate_limited"}, codes
    assert codes["invalid_field"] == 150  # the malformed ids, refused before anything else
    assert codes["unknown_turn"] >= 9  # the burst of the rate limit (the bare cancel took one)
    await no_sessions_open(abused)
    # the gateway's doorbell stream appears with its first session (one per process)
    new = {key for key in await keys(store) - before if not key.startswith(f"{PREFIX}:wake:")}
    assert new == {f"{PREFIX}:session:{session_id}"}, new  # no cancel record, reply or TTS input


async def test_a_cancel_of_a_real_turn_still_works_after_refusals(abused) -> None:
    async with VoiceClient.connect(abused.ws_url) as client:
        await client.send_event("cancel", {"turn_id": "t1"})  # nothing started yet
        refused = await client.next_event(30)
        assert refused["data"]["code"] == "unknown_turn" and "turn_id" not in refused["data"]
        await client.send_command("tell me the news")
        while (event := await client.next_event(30))["event"] != "tts_chunk":
            pass
        await client.cancel("t1")
        while (event := await client.next_event(30))["event"] != "interrupted":
            pass
        assert event["data"]["turn_id"] == "t1" and event["data"]["event_id"]


async def test_a_client_that_floods_and_never_reads_is_closed(abused) -> None:
    mark = abused.log_path.stat().st_size
    sent, errors, code = await unread_flood(
        abused.ws_url, lambda: log_says(abused, NOT_READING, mark)
    )
    assert code == 1008, (sent, errors, code)
    assert errors < sent, "every frame was answered: the gateway kept them all queued"
    await no_sessions_open(abused)


async def test_floods_and_dropped_sockets_leave_only_resume_records(abused, store) -> None:
    """The Done-when figure: a few keys above the baseline at most, besides the resume
    records of real connections, which expire with the resume window."""
    baseline = {key for key in await keys(store) if not resume_record(key)}
    await cancel_flood(abused.ws_url, made_up_cancels(300))
    mark = abused.log_path.stat().st_size
    await unread_flood(abused.ws_url, lambda: log_says(abused, NOT_READING, mark))
    await dropped_connections(abused.ws_url, 300)
    await no_sessions_open(abused)
    after = await keys(store)
    extra = {key for key in after if not resume_record(key)} - baseline
    assert len(extra) <= 3, extra
    records = [key for key in after if resume_record(key)]
    assert len(records) >= 302
    async with store.pipeline(transaction=False) as pipe:
        for record in records:
            pipe.ttl(record)
        ttls = await pipe.execute()
    assert all(0 < ttl <= RESUME_WINDOW for ttl in ttls), sorted(set(ttls))
    print(f'{{"keys_above_baseline": {len(extra)}, "resume_records": {len(records)}}}')
