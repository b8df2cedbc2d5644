"""StreamMux: one XREAD for many streams, against the real server."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from shared.messages import InputChunk, encode
from shared.mux import InputIdle, StreamMux


async def test_many_streams_are_followed_in_order_through_one_reader(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    mux = StreamMux(redis, "test:wake")
    got: dict[str, list[bytes]] = {}
    mux.start()
    try:
        keys = [f"test:mux:{n}" for n in range(60)]
        for key in keys:
            await mux.subscribe(
                key, lambda _id, f, key=key: got.setdefault(key, []).append(f[b"m"])
            )
        for seq in range(3):
            for key in keys:
                await redis.xadd(key, {"m": f"{key}/{seq}"})
        while sum(map(len, got.values())) < 3 * len(keys):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        mux.unsubscribe(keys[0])
        await redis.xadd(keys[0], {"m": "after unsubscribe"})
        # a later entry on a followed stream proves the mux has read past the first one
        await redis.xadd(keys[1], {"m": "marker"})
        while got[keys[1]][-1] != b"marker":  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        got[keys[1]].pop()
    finally:
        await mux.stop()
        await redis.delete(*keys)
        await redis.aclose()
    assert all(got[key] == [f"{key}/{seq}".encode() for seq in range(3)] for key in keys)


async def test_idle_longer_than_the_socket_timeout_is_no_error(redis_url: str, caplog) -> None:
    """A BLOCK as long as the socket timeout used to end in an error and a retry backoff."""
    redis = aioredis.Redis.from_url(redis_url, socket_timeout=0.5)
    mux = StreamMux(redis, "test:wake2")
    arrived = asyncio.Event()
    mux.start()
    try:
        await mux.subscribe("test:idle", lambda *_: arrived.set())
        await asyncio.sleep(1.3)  # several socket timeouts' worth of silence
        await redis.xadd("test:idle", {"m": "late"})
        await arrived.wait()  # no read error, no retry backoff: see the log check below
    finally:
        await mux.stop()
        await redis.delete("test:idle")
        await redis.aclose()
    assert not [r for r in caplog.records if r.name == "shared.mux"], "no read failed"


async def test_follow_ends_only_after_idle_timeout_without_entries(redis_url: str) -> None:
    """Entries arriving closer together than the idle timeout keep a follow going (over a
    span several times that timeout); then silence ends it with ``InputIdle``."""
    redis = aioredis.Redis.from_url(redis_url)
    mux = StreamMux(redis, "test:wake3")
    key = "test:follow-idle"
    mux.start()
    heard: list[int] = []

    async def writer() -> None:
        for seq in range(15):  # 15 entries 0.1 s apart: 1.5 s, past the idle timeout
            await redis.xadd(key, encode(InputChunk(seq=seq, audio=b"\0\0")))
            await asyncio.sleep(0.1)

    writing = asyncio.create_task(writer())
    try:
        with pytest.raises(InputIdle):
            async for _entry_id, chunk in mux.follow(key, idle_timeout=1.0):
                heard.append(chunk.seq)
        await writing
    finally:
        await mux.stop()
        await redis.delete(key)
        await redis.aclose()
    assert heard == list(range(15)), "no idle timeout while entries kept coming"


async def test_a_burst_of_subscriptions_rings_the_doorbell_about_once(redis_url: str) -> None:
    """A hundred utterances opening at once: every stream is followed, with a handful of
    doorbell rings (one XADD each) instead of one per subscription."""
    redis = aioredis.Redis.from_url(redis_url)
    mux = StreamMux(redis, "test:wake4")
    keys = [f"test:burst:{n}" for n in range(100)]
    got: set[str] = set()
    all_heard = asyncio.Event()

    def heard(key: str) -> None:
        got.add(key)
        if len(got) == len(keys):
            all_heard.set()

    mux.start()
    try:
        await mux.subscribe("test:burst:first", lambda *_: None)  # the reader is blocked
        xadds_before = (await redis.info("commandstats"))["cmdstat_xadd"]["calls"]
        await asyncio.gather(
            *(mux.subscribe(key, lambda _id, _f, key=key: heard(key)) for key in keys)
        )
        rings = (await redis.info("commandstats"))["cmdstat_xadd"]["calls"] - xadds_before
        for key in keys:
            await redis.xadd(key, {"m": "1"})
        await all_heard.wait()
    finally:
        await mux.stop()
        await redis.delete(*keys)
        await redis.aclose()
    assert rings <= 3, f"{rings} doorbell rings for 100 subscriptions"
