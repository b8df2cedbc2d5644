from redis.asyncio import Redis


async def test_embedded_server_runs_streams_with_groups(redis: Redis) -> None:
    await redis.xgroup_create("s", "g", id="0", mkstream=True)
    await redis.xadd("s", {"m": b"x"})
    got = await redis.xreadgroup("g", "c1", {"s": ">"}, count=10, block=100)
    assert got[0][1][0][1] == {b"m": b"x"}
    assert (await redis.config_get("maxmemory-policy"))["maxmemory-policy"] == "noeviction"
