"""The hand-packed Redis layer on a Redis Cluster that changes under it (3 masters with a
replica each): a manual failover of every master, a slot moved between masters, a master
killed. Reads follow ``MOVED``/``ASK``; writes refused by a node that no longer serves
their slot are sent again where it went; a followed stream keeps delivering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from shared import resp
from shared.messages import FIELD
from shared.mux import StreamMux
from shared.resp import pack, round_trip
from shared.streams import connect
from shared.write_batcher import write_batcher
from tests.support.redis_cluster import LocalCluster, started_cluster


@pytest.fixture(scope="module")
def changing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with started_cluster(Path(tmp_path_factory.mktemp("changing-cluster")), replicas=1) as up:
        yield up


@pytest.fixture
async def client(changing: LocalCluster) -> AsyncIterator[aioredis.Redis]:
    redis = connect(changing.url)
    yield redis
    await redis.aclose()


def keys_on_every_master(cluster: LocalCluster, prefix: str) -> list[str]:
    """One key per master (each in its own slot)."""
    by_master: dict[int, str] = {}
    n = 0
    while len(by_master) < len(cluster.masters()):
        key = f"{prefix}:{{k{n}}}"
        by_master.setdefault(cluster.master_of_slot(key_slot(key.encode())), key)
        n += 1
    return list(by_master.values())


async def test_a_read_follows_every_master_failing_over(
    changing: LocalCluster, client: aioredis.Redis
) -> None:
    keys = keys_on_every_master(changing, "read")
    for key in keys:
        await client.set(key, key)
    resp.redirected.clear()
    for master in changing.masters():
        await asyncio.to_thread(changing.failover, master)
        for key in keys:
            got = await round_trip(client, pack(b"GET", key.encode()), 1, idempotent=True, key=key)
            assert got == [key.encode()]
    assert "MovedError" in resp.redirected  # it was refused, then sent where the slot went


async def test_a_followed_stream_keeps_delivering_through_failovers(
    changing: LocalCluster, client: aioredis.Redis
) -> None:
    """Streams followed before a failover, and streams of the same slots followed after
    it (on a listener connected to the old master, now a replica), get every entry."""
    mux = StreamMux(client, "test:wake-failover")
    got: dict[str, list[bytes]] = {}
    arrived = asyncio.Event()

    def deliver(key: str, fields: dict[bytes, bytes]) -> None:
        got.setdefault(key, []).append(fields[FIELD])
        arrived.set()

    async def wait_for(key: str, count: int) -> None:
        async with asyncio.timeout(30):
            while len(got.get(key, [])) < count:
                arrived.clear()
                await arrived.wait()

    async def follow(key: str) -> None:
        await mux.subscribe(key, lambda _id, fields, key=key: deliver(key, fields))

    before = keys_on_every_master(changing, "followed")
    mux.start()
    try:
        for key in before:
            await follow(key)
        for round_, master in enumerate(changing.masters(), start=1):
            await asyncio.to_thread(changing.failover, master)
            after = [f"{key}:after{round_}" for key in before]  # the same slots
            for key in after:
                await follow(key)
            for key in [*before, *after]:
                await write_batcher(client).xadd(key, {FIELD: b"%d" % round_})
            for key in before:
                await wait_for(key, round_)
            for key in after:
                await wait_for(key, 1)
                mux.unsubscribe(key)
    finally:
        await mux.stop()
    assert all(got[key] == [b"1", b"2", b"3"] for key in before), got


async def test_a_stream_followed_after_a_failover_on_an_idle_listener_is_delivered(
    changing: LocalCluster, client: aioredis.Redis
) -> None:
    """A slot's listener that follows nothing when its master fails over (between two
    turns) stays connected to the old master, now a replica: a stream of that slot
    followed later is still pushed and read."""
    mux = StreamMux(client, "test:wake-idle")
    got: list[bytes] = []
    arrived = asyncio.Event()

    def deliver(_id: str, fields: dict[bytes, bytes]) -> None:
        got.append(fields[FIELD])
        arrived.set()

    mux.start()
    try:
        for round_ in range(1, 4):
            key = keys_on_every_master(changing, f"idle{round_}")[0]
            await mux.subscribe(key, deliver)
            await mux.wait_listening()
            mux.unsubscribe(key)
            master = changing.master_of_slot(key_slot(key.encode()))
            await asyncio.to_thread(changing.failover, master)
            later = f"{key}:later"
            got.clear()
            await mux.subscribe(later, deliver)
            await write_batcher(client).xadd(later, {FIELD: b"x"})
            async with asyncio.timeout(30):
                while not got:
                    arrived.clear()
                    await arrived.wait()
            mux.unsubscribe(later)
    finally:
        await mux.stop()
