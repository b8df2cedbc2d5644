"""The hand-packed Redis layer on a Redis Cluster that changes under it (3 masters with a
replica each): a manual failover of every master, a slot moved between masters, a master
killed. Reads follow ``MOVED``/``ASK``; writes refused by a node that no longer serves
their slot are sent again where it went; a followed stream keeps delivering."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from shared import resp
from shared.messages import FIELD, LlmJob
from shared.mux import StreamMux
from shared.resp import pack, round_trip
from shared.settings import load_settings
from shared.streams import connect, publish_job
from shared.worker import JobContext, stage_worker
from shared.write_batcher import write_batcher
from tests.audio_checks import speech_16k, word_error_rate
from tests.support import System, running_system
from tests.support.redis_cluster import LocalCluster, started_cluster
from voice_agent.client import Turn, VoiceClient


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


async def test_reads_and_writes_follow_a_slot_while_it_moves(
    changing: LocalCluster, client: aioredis.Redis
) -> None:
    """Half-way through a reshard a key already moved is asked for on the target
    (``ASK``), one not moved yet on the source; afterwards the slot's new master
    (``MOVED``, learnt here by the writes). Writes refused meanwhile are sent again
    where they belong: each entry lands exactly once."""
    keys = [f"moving:{{m}}:{n}" for n in range(4)]
    slot = key_slot(keys[0].encode())
    for key in keys:
        await client.set(key, key)
    source = changing.master_of_slot(slot)
    target = next(master for master in changing.masters() if master != source)
    resp.redirected.clear()
    batcher = write_batcher(client)
    resent = batcher.resent
    await asyncio.to_thread(changing.begin_move, slot, target)
    await asyncio.to_thread(changing.migrate_keys, slot, target, 2)
    for key in keys:
        got = await round_trip(client, pack(b"GET", key.encode()), 1, idempotent=True, key=key)
        assert got == [key.encode()]
    assert "AskError" in resp.redirected
    # new streams of the slot: they are created on the target (ASK), several at once in
    # one pipeline (refused in place, then sent again one by one)
    streams = [f"moving:{{m}}:stream{n}" for n in range(6)]
    await asyncio.gather(*(batcher.xadd(stream, {FIELD: b"during"}) for stream in streams))
    await asyncio.to_thread(changing.move_slot, slot, target)  # the rest, and done
    await asyncio.gather(*(batcher.xadd(stream, {FIELD: b"after"}) for stream in streams))
    assert batcher.resent > resent
    for stream in streams:
        entries = await client.xrange(stream)
        assert [fields[FIELD] for _id, fields in entries] == [b"during", b"after"], stream
    for key in keys:
        got = await round_trip(client, pack(b"GET", key.encode()), 1, idempotent=True, key=key)
        assert got == [key.encode()]


async def test_a_worker_reads_its_jobs_through_a_failover_of_every_master(
    changing: LocalCluster, client: aioredis.Redis
) -> None:
    """The job reads (one blocked ``XREADGROUP`` per partition) are unblocked or refused
    when their master becomes a replica; the worker reads on from the new masters."""
    settings = load_settings(redis_url=changing.url, stream_prefix="wk", reclaim_idle_ms=60_000)
    handled: list[str] = []
    arrived = asyncio.Event()

    async def handler(job: LlmJob, ctx: JobContext) -> None:
        handled.append(job.text)
        arrived.set()

    async def publish_and_wait(label: str) -> None:
        for n in range(8):
            session_id = f"{label}-{n}"
            stream = settings.keys.jobs_for("llm", session_id)
            await publish_job(client, stream, LlmJob(session_id, "t1", session_id), 100)
        async with asyncio.timeout(60):
            while sum(text.startswith(label) for text in handled) < 8:
                arrived.clear()
                await arrived.wait()

    worker = stage_worker(client, settings, "llm", LlmJob, handler)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await publish_and_wait("before")
        resp.redirected.clear()
        for master in changing.masters():
            await asyncio.to_thread(changing.failover, master)
            await publish_and_wait(f"after{master}")
            assert not running.done()
    finally:
        stop.set()
        await running
    print(f"job reads refused and sent again: {Counter(resp.redirected)}")
    assert resp.redirected, "no read was refused: nothing was failed over under it"
    assert len(handled) == len(set(handled)) == 8 * 4


# --- the whole system through the same events ------------------------------------------

SPOKEN = "read me the sports headlines"


@pytest.fixture(scope="module")
def system(
    changing: LocalCluster, fixture_http: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    log_dir = Path(tmp_path_factory.mktemp("changing-system"))
    with running_system(changing.url, fixture_http, log_dir, STREAM_PREFIX="cf") as up:
        yield up


def session_slot(system: System, session_id: str) -> int:
    keys = load_settings(redis_url=system.redis_url, stream_prefix="cf").keys
    return key_slot(keys.reply(session_id).encode())


async def spoken_turn_through(client: VoiceClient, fault: Callable[[], object]) -> Turn:
    """A spoken request streamed in real time while ``fault`` happens, and its reply."""
    speaking = asyncio.create_task(client.say(speech_16k(SPOKEN), realtime=True))
    await asyncio.to_thread(fault)
    return await speaking


def assert_whole(turn: Turn) -> None:
    assert not turn.errors, turn.errors
    assert word_error_rate(SPOKEN, turn.transcript or "") <= 0.25, turn.transcript
    assert "striker" in turn.reply_text.lower(), turn.reply_text
    indexes = [chunk["chunk_index"] for chunk in turn.chunks]
    assert indexes == list(range(len(indexes))) and indexes, indexes
    assert turn.complete["total_chunks_sent"] == len(indexes)


def assert_still_serving(system: System) -> None:
    log = system.log_path.read_text(errors="replace")
    assert " stopped: " not in log, log[-3000:]
    assert httpx.get(f"{system.http_url}/health", timeout=10).status_code == 200


async def test_turns_go_on_through_a_failover_of_every_master(
    changing: LocalCluster, system: System
) -> None:
    def fail_over_every_master() -> None:
        for master in changing.masters():
            changing.failover(master)

    async with VoiceClient.connect(system.ws_url) as client:
        assert (await client.ask("sports headlines")).complete
        started = time.monotonic()
        turn = await spoken_turn_through(client, fail_over_every_master)
        print(f"spoken turn across three failovers: {time.monotonic() - started:.2f} s")
        assert_whole(turn)
        typed = await client.ask("what's new in technology")
        assert typed.complete and not typed.errors, typed.errors
    assert_still_serving(system)


async def test_turns_go_on_while_a_live_sessions_slot_moves(
    changing: LocalCluster, system: System
) -> None:
    async with VoiceClient.connect(system.ws_url) as client:
        assert (await client.ask("sports headlines")).complete
        slot = session_slot(system, client.session_id)
        source = changing.master_of_slot(slot)
        target = next(master for master in changing.masters() if master != source)
        turn = await spoken_turn_through(client, lambda: changing.move_slot(slot, target))
        assert changing.master_of_slot(slot) == target
        assert_whole(turn)
        typed = await client.ask("what's new in technology")
        assert typed.complete and not typed.errors, typed.errors
    assert_still_serving(system)


async def test_turns_go_on_after_a_master_is_killed(changing: LocalCluster, system: System) -> None:
    """``kill -9`` of the master of a live session's slot while a typed request is under
    way: its replica takes over after the node timeout, the work the request's stages
    could not write meanwhile is taken up again (not failed), and the turn completes;
    the session's next turns (spoken and typed) complete."""
    async with VoiceClient.connect(system.ws_url) as client:
        assert (await client.ask("sports headlines")).complete
        victim = changing.master_of_slot(session_slot(system, client.session_id))
        if victim == changing.ports[0]:  # the URL's node: new clients start from it
            victim = next(m for m in changing.masters() if m != changing.ports[0])
        started = time.monotonic()
        killing = asyncio.create_task(asyncio.to_thread(changing.kill, victim))
        in_flight = await client.ask("business news please")
        promoted = await killing
        print(
            f"master killed, replica {promoted} serving, typed turn done after "
            f"{time.monotonic() - started:.2f} s"
        )
        assert in_flight.complete and not in_flight.errors, in_flight.errors
        turn = await client.say(speech_16k(SPOKEN), realtime=True)
        assert_whole(turn)
        typed = await client.ask("what's new in technology")
        assert typed.complete and not typed.errors, typed.errors
    assert_still_serving(system)


async def test_writes_to_other_masters_go_on_while_a_killed_master_is_replaced(
    changing: LocalCluster, client: aioredis.Redis
) -> None:
    """The batched writes of a process go out in one pipeline per node: a write to a
    killed master's slot waits for its replica's promotion, writes to the other masters
    do not wait behind it."""
    victim = next(  # not the URL's node: new clients start from it
        master
        for master in changing.masters()
        if master != changing.ports[0] and changing.replicas_of(master)
    )
    keys = keys_on_every_master(changing, "killed")
    doomed = next(k for k in keys if changing.master_of_slot(key_slot(k.encode())) == victim)
    others = [key for key in keys if key != doomed]
    batcher = write_batcher(client)
    for key in keys:
        await batcher.xadd(key, {FIELD: b"before"})
    await asyncio.to_thread(changing.replicated, victim)
    replica = await asyncio.to_thread(changing.sigkill, victim)
    promoted = asyncio.create_task(asyncio.to_thread(changing.wait_promoted, replica))
    stalled = asyncio.create_task(batcher.xadd(doomed, {FIELD: b"during"}))
    for key in others:
        await batcher.xadd(key, {FIELD: b"during"})
    assert not promoted.done(), "the replica took over before the other writes were done"
    await promoted
    await stalled
    for key in keys:
        assert [f[FIELD] for _id, f in await client.xrange(key)] == [b"before", b"during"]
