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


def test_servers_started_together_on_one_chosen_port_all_come_up(monkeypatch) -> None:
    """The worst case of choosing a port and binding it later: every starter is handed the
    same port. One binds it; the rest see it taken and choose again."""
    from concurrent.futures import ThreadPoolExecutor

    import redis as sync_redis

    from shared import embedded_redis

    contested = embedded_redis._free_port()
    handed = iter([contested] * 4)
    monkeypatch.setattr(embedded_redis, "_free_port", lambda: next(handed, 0) or _kernel_port())
    with ThreadPoolExecutor(4) as pool:
        servers = list(pool.map(lambda _: embedded_redis.start_embedded_redis(), range(4)))
    try:
        assert len({server.port for server in servers}) == 4
        assert contested in {server.port for server in servers}
        for server in servers:
            assert sync_redis.Redis.from_url(server.url).ping()
    finally:
        for server in servers:
            server.stop()


def _kernel_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
