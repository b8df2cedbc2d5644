"""REDIS_PLAIN_CALLS: the lean Redis path's uses sent through redis-py's public API.

The switch exists to measure each use against plain redis-py (docs/performance.md), so
both sides must do the same thing: the same replies, errors in place, and a whole system
that converses with every use switched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from shared import resp
from shared.resp import Lane, pack
from shared.settings import SettingsError, load_settings
from shared.streams import connect
from tests.audio_checks import speech_16k
from tests.support import System, running_system
from voice_agent.client import VoiceClient


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = connect(f"{redis_url}/12", max_connections=4)
    await redis.flushdb()
    yield redis
    resp.send_through_redis_py(())
    await redis.aclose()


TRIP = (
    pack(b"SET", b"text", b"one")
    + pack(b"XADD", b"s", b"*", b"m", b"entry")
    + pack(b"INCR", b"text")  # WRONGTYPE-like error: not an integer
    + pack(b"XRANGE", b"s", b"-", b"+")
    + pack(b"GET", b"text")
)


def _shape(replies: list[object]) -> list[object]:
    """Replies with entry ids and error texts reduced to what both paths must share."""
    shaped: list[object] = []
    for reply in replies:
        if isinstance(reply, Exception):
            shaped.append((type(reply).__name__, str(reply)))
        elif isinstance(reply, bytes) and b"-" in reply and reply[:1].isdigit():
            shaped.append("entry-id")
        elif isinstance(reply, list):
            shaped.append([[b"entry-id", fields] for _entry_id, fields in reply])
        else:
            shaped.append(reply)
    return shaped


async def test_a_plain_round_trip_gives_what_the_lean_one_gives(client: aioredis.Redis) -> None:
    lean = await Lane(client, "writes").round_trip(TRIP, 5, idempotent=False)
    await client.flushdb()
    resp.send_through_redis_py(["writes"])
    plain_lane = Lane(client, "writes")
    plain = await plain_lane.round_trip(TRIP, 5, idempotent=False)
    assert _shape(plain) == _shape(lean)
    assert plain[1] != lean[1]  # a new entry: both really ran
    assert "not an integer" in str(plain[2]) and plain[4] == b"one"
    await plain_lane.release()


def test_unknown_uses_and_clusters_are_refused() -> None:
    with pytest.raises(SettingsError, match="REDIS_PLAIN_CALLS"):
        load_settings(redis_plain_calls="writes,mux")
    with pytest.raises(SettingsError, match="REDIS_PLAIN_CALLS"):
        load_settings(redis_plain_calls="all", redis_cluster=True)
    assert load_settings(redis_plain_calls="all").redis_plain_uses == resp.USES
    assert load_settings(redis_plain_calls=" bells, writes").redis_plain_uses == (
        "writes",
        "bells",
    )


@pytest.fixture(scope="module")
def plain_system(
    redis_url: str, fixture_http: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    log_dir = Path(tmp_path_factory.mktemp("plain"))
    env = {"STREAM_PREFIX": "plain", "REDIS_PLAIN_CALLS": "all"}
    with running_system(f"{redis_url}/12", fixture_http, log_dir, **env) as up:
        yield up


async def test_a_system_with_every_use_through_redis_py_converses(plain_system: System) -> None:
    """Writes, stream reads, job reads and pushed entries all through redis-py: a typed
    turn and a spoken one (partials pushed to the gateway) come back whole."""
    async with VoiceClient.connect(plain_system.ws_url) as voice:
        typed = await voice.ask("sports headlines")
        spoken = await voice.say(speech_16k("any business news today"), binary=True)
    assert "striker" in typed.reply_text.lower()
    assert typed.complete["total_chunks_sent"] == len(typed.chunks) >= 2
    assert not spoken.errors, spoken.errors
    assert any(not e["is_final"] for e in spoken.of("partial_transcription"))
    assert "coffee" in spoken.reply_text.lower()
