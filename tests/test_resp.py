"""shared/resp.round_trip: the retry policy of shared.streams.connect, and clean connections.

Connections are cut by the real server (``CLIENT KILL``) while a blocking command waits
on them, so the failure lands after the command was sent.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.resp import Lane, pack, round_trip
from shared.streams import connect


async def _blocked_client_id(admin: aioredis.Redis, command: str, other_than: int = 0) -> int:
    """The id of a connection now blocked in ``command`` (waits until there is one)."""
    while True:
        for client in await admin.client_list():
            blocked = client.get("cmd") == command and "b" in client.get("flags", "")
            if blocked and int(client["id"]) != other_than:
                return int(client["id"])
        await asyncio.sleep(0.01)


@pytest.fixture
async def client(redis_url: str) -> aioredis.Redis:
    redis = connect(f"{redis_url}/3", max_connections=4)
    await redis.flushdb()
    yield redis
    await redis.aclose()


async def test_an_idempotent_read_cut_by_the_server_is_retried(client: aioredis.Redis) -> None:
    read = asyncio.create_task(
        round_trip(
            client, pack(b"XREAD", b"BLOCK", b"0", b"STREAMS", b"k", b"0-0"), 1, idempotent=True
        )
    )
    victim = await _blocked_client_id(client, "xread")
    await client.client_kill_filter(_id=victim)
    resent = asyncio.create_task(_blocked_client_id(client, "xread", other_than=victim))
    await asyncio.wait([read, resent], return_when=asyncio.FIRST_COMPLETED)  # retried: resent
    resent.cancel()
    await client.xadd("k", {"m": "after the cut"})
    (reply,) = await read
    assert reply is not None and b"after the cut" in repr(reply).encode()


async def test_a_write_cut_after_sending_is_not_retried(client: aioredis.Redis) -> None:
    """It may have been applied: a second send could write it twice. It fails alone."""
    write = asyncio.create_task(
        round_trip(client, pack(b"BLPOP", b"list", b"0"), 1, idempotent=False)
    )
    victim = await _blocked_client_id(client, "blpop")
    await client.client_kill_filter(_id=victim)
    resent = asyncio.create_task(_blocked_client_id(client, "blpop", other_than=victim))
    await asyncio.wait([write, resent], return_when=asyncio.FIRST_COMPLETED)
    resent.cancel()
    await client.rpush("list", "would answer a second BLPOP")
    with pytest.raises(RedisConnectionError):
        await write
    assert await round_trip(client, pack(b"PING"), 1, idempotent=False) == [b"PONG"]


async def test_a_cancelled_blocking_read_leaves_no_reply_for_the_next_user(
    redis_url: str,
) -> None:
    single = connect(f"{redis_url}/3", max_connections=1)  # the next user gets the same slot
    try:
        read = asyncio.create_task(
            round_trip(single, pack(b"BLPOP", b"late", b"0"), 1, idempotent=True)
        )
        admin = aioredis.Redis.from_url(f"{redis_url}/3")
        await _blocked_client_id(admin, "blpop")
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        await admin.rpush("late", "stale reply")  # would answer the cancelled BLPOP
        await admin.aclose()
        replies = await round_trip(single, pack(b"ECHO", b"mine"), 1, idempotent=False)
        assert replies == [b"mine"]
    finally:
        await single.aclose()


async def test_command_errors_come_back_in_place(client: aioredis.Redis) -> None:
    await client.set("str", "x")
    replies = await round_trip(
        client, pack(b"LPUSH", b"str", b"1") + pack(b"PING"), 2, idempotent=False
    )
    assert "WRONGTYPE" in str(replies[0]) and replies[1] == b"PONG"


async def test_a_lane_reconnects_before_writing_on_a_connection_the_server_closed(
    client: aioredis.Redis,
) -> None:
    """A kept connection the server dropped while it sat idle (a restart, a timeout) is
    replaced before the next write is sent: the write lands, no error, nothing lost."""
    lane = Lane(client, "writes")
    assert await lane.round_trip(pack(b"CLIENT", b"ID"), 1, idempotent=True)
    (lane_id,) = await lane.round_trip(pack(b"CLIENT", b"ID"), 1, idempotent=True)
    await client.client_kill_filter(_id=lane_id)
    await client.ping()  # the kill is through; the lane's socket now reads EOF
    replies = await lane.round_trip(pack(b"RPUSH", b"kept", b"1"), 1, idempotent=False)
    assert replies == [1] and await client.lrange("kept", 0, -1) == [b"1"]
    (new_id,) = await lane.round_trip(pack(b"CLIENT", b"ID"), 1, idempotent=True)
    assert new_id != lane_id
    await lane.release()


async def test_a_lane_reply_past_its_deadline_fails_and_leaves_nothing_behind(
    client: aioredis.Redis,
) -> None:
    lane = Lane(client, "writes")
    with pytest.raises(RedisTimeoutError):
        await lane.round_trip(pack(b"BLPOP", b"slow", b"0"), 1, reply_timeout=0.2, idempotent=False)
    await client.rpush("slow", "would answer the abandoned BLPOP")
    assert await lane.round_trip(pack(b"ECHO", b"mine"), 1, idempotent=False) == [b"mine"]
    await lane.release()
