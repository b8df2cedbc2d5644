from redis.asyncio import Redis


async def test_embedded_server_runs_streams_with_groups(redis: Redis) -> None:
    await redis.xgroup_create("s", "g", id="0", mkstream=True)
    await redis.xadd("s", {"m": b"x"})
    got = await redis.xreadgroup("g", "c1", {"s": ">"}, count=10, block=100)
    assert got[0][1][0][1] == {b"m": b"x"}
    assert (await redis.config_get("maxmemory-policy"))["maxmemory-policy"] == "noeviction"


async def test_appender_sets_a_ttl_and_skips_needless_refreshes(redis: Redis) -> None:
    from shared.messages import InputChunk
    from shared.streams import StreamAppender

    appender = StreamAppender(redis, ttl_seconds=100)
    await appender.append("k", InputChunk(1, audio=b"\x00\x00"))
    await redis.expire("k", 50)  # a refresh now would put it back to 100
    for seq in range(2, 12):
        await appender.append("k", InputChunk(seq, audio=b"\x00\x00"))
    assert await redis.xlen("k") == 11
    assert 40 < await redis.ttl("k") <= 50
