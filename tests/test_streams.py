"""WriteBatcher: concurrent stream writes share round trips and keep each stream's order."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from shared.write_batcher import WriteBatcher


async def test_concurrent_writes_share_round_trips_in_order(redis: Redis) -> None:
    batcher = WriteBatcher(redis)

    async def writer(key: str) -> None:
        for seq in range(20):  # each awaits its own write, as a session does
            await batcher.xadd(key, {b"m": b"%d" % seq}, ttl=60 if seq == 0 else None)

    keys = [f"s{n}" for n in range(50)]
    await asyncio.gather(*(writer(key) for key in keys))
    for key in keys:
        entries = await redis.xrange(key)
        assert [fields[b"m"] for _id, fields in entries] == [b"%d" % n for n in range(20)]
        assert 0 < await redis.ttl(key) <= 60
    assert batcher.round_trips <= 25, "1,000 writes of 50 writers in about 20 round trips"


async def test_one_failing_write_fails_alone(redis: Redis) -> None:
    await redis.set("not-a-stream", "x")
    batcher = WriteBatcher(redis)
    results = await asyncio.gather(
        batcher.xadd("ok-1", {b"m": b"1"}),
        batcher.xadd("not-a-stream", {b"m": b"2"}),
        batcher.xadd("ok-2", {b"m": b"3"}, maxlen=10),
        return_exceptions=True,
    )
    assert isinstance(results[1], Exception) and "WRONGTYPE" in str(results[1])
    assert all(isinstance(r, bytes) for r in (results[0], results[2]))
    assert await redis.xlen("ok-1") == await redis.xlen("ok-2") == 1
