"""StreamMux against the real server: pushed entries (the default) and paced polling."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from redis.exceptions import BusyLoadingError

from shared.messages import FIELD, InputChunk, encode
from shared.mux import InputIdle, StreamMux, read_start
from shared.resp import Lane
from shared.streams import connect
from shared.write_batcher import write_batcher


class _Heard:
    """Integers delivered by a mux, and a wait for a condition on them (woken by each
    delivery, no polling)."""

    def __init__(self) -> None:
        self.values: list[int] = []
        self._changed = asyncio.Event()

    def deliver(self, _entry_id: str, fields: dict[bytes, bytes]) -> None:
        self.values.append(int(fields[FIELD]))
        self._changed.set()

    async def until(self, done: Callable[[list[int]], bool]) -> None:
        async with asyncio.timeout(30):
            while not done(self.values):
                self._changed.clear()
                await self._changed.wait()


class _MuxChanges:
    """Wakes a waiter after every push, confirmed subscription and catch-up read the
    mux handles: for waits on mux state that has no event of its own (deferred pushes, a
    confirmation count, a stream caught up), without polling."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._changed = asyncio.Event()
        for name in ("_on_push", "_on_subscribed"):
            original = getattr(StreamMux, name)

            def hooked(mux: StreamMux, *args: object, _original=original) -> None:
                _original(mux, *args)
                self._changed.set()

            monkeypatch.setattr(StreamMux, name, hooked)
        read = StreamMux._read_rung

        async def read_then_wake(mux: StreamMux, *args: object) -> None:
            try:
                await read(mux, *args)
            finally:
                self._changed.set()

        monkeypatch.setattr(StreamMux, "_read_rung", read_then_wake)

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not done():
                self._changed.clear()
                await self._changed.wait()


async def _append(redis: aioredis.Redis, key: str, value: bytes) -> bytes:
    """As the system writes a followed stream: appended and pushed (``shared/bells.py``)."""
    return await write_batcher(redis).xadd(key, {FIELD: value})


@pytest.mark.parametrize("push", [True, False], ids=["push", "poll"])
async def test_many_streams_are_followed_in_order_through_one_reader(
    redis_url: str, push: bool
) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    mux = StreamMux(redis, "test:wake", push=push)
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
                await _append(redis, key, f"{key}/{seq}".encode())
        while sum(map(len, got.values())) < 3 * len(keys):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        mux.unsubscribe(keys[0])
        await _append(redis, keys[0], b"after unsubscribe")
        # a later entry on a followed stream proves the mux has read past the first one
        await _append(redis, keys[1], b"marker")
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
    mux = StreamMux(redis, "test:wake2", push=False)
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


@pytest.mark.parametrize("push", [True, False], ids=["push", "poll"])
async def test_follow_ends_only_after_idle_timeout_without_entries(
    redis_url: str, push: bool
) -> None:
    """Entries arriving closer together than the idle timeout keep a follow going (over a
    span several times that timeout); then silence ends it with ``InputIdle``."""
    redis = aioredis.Redis.from_url(redis_url)
    mux = StreamMux(redis, "test:wake3", push=push)
    key = "test:follow-idle"
    mux.start()
    heard: list[int] = []

    async def writer() -> None:
        for seq in range(15):  # 15 entries 0.1 s apart: 1.5 s, past the idle timeout
            await write_batcher(redis).xadd(key, encode(InputChunk(seq=seq, audio=b"\0\0")))
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


@pytest.mark.parametrize("push", [True, False], ids=["push", "poll"])
async def test_a_follow_goes_on_from_the_entries_read_with_the_job(
    redis_url: str, push: bool
) -> None:
    """An ASR job reads the audio already sent with its checkpoint (``read_start``); the
    follow yields those entries, then every later one, each once and in order."""
    redis = aioredis.Redis.from_url(redis_url)
    mux = StreamMux(redis, "test:wake-read", push=push)
    key = "test:follow-read"
    mux.start()
    batcher = write_batcher(redis)
    try:
        for seq in (1, 2, 3):
            await batcher.xadd(key, encode(InputChunk(seq=seq, audio=b"\0\0")))
        sent = await read_start(redis, key)
        assert [entry_id for entry_id, _ in sent] == [
            entry_id.decode() for entry_id, _ in await redis.xrange(key)
        ]

        async def later() -> None:
            for seq in (4, 5):
                await batcher.xadd(key, encode(InputChunk(seq=seq, audio=b"\0\0")))
            await batcher.xadd(key, encode(InputChunk(seq=6, end=True)))

        heard: list[int] = []
        follow = mux.follow(key, idle_timeout=30, read=sent)
        async for _entry_id, chunk in follow:
            heard.append(chunk.seq)
            if chunk.seq == 3:
                await later()
    finally:
        await mux.stop()
        await redis.delete(key)
        await redis.aclose()
    assert heard == [1, 2, 3, 4, 5, 6]


async def test_a_burst_of_subscriptions_rings_the_doorbell_about_once(redis_url: str) -> None:
    """A hundred utterances opening at once: every stream is followed, with a handful of
    doorbell rings (one XADD each) instead of one per subscription."""
    redis = aioredis.Redis.from_url(redis_url)
    mux = StreamMux(redis, "test:wake4", push=False)
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


async def _kill_bells(redis: aioredis.Redis, mux: StreamMux) -> None:
    """Redis drops this mux's pub/sub connection, and no other (``CLIENT KILL ADDR``)."""
    bells = mux._groups[None].bells
    assert bells is not None and bells._conn is not None
    host, port = bells._conn._writer.get_extra_info("sockname")[:2]
    await redis.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")


async def _follow_while_writing(
    redis: aioredis.Redis, mux: StreamMux, key: str, before: int, during: int, midway=None
) -> list[int]:
    """Entries 0..before-1 already in ``key``, then ``during`` more appended while the mux
    subscribes and catches up (and ``midway()`` runs halfway); the numbers delivered."""
    for start in range(0, before, 500):
        batch = range(start, min(start + 500, before))
        await asyncio.gather(*(_append(redis, key, b"%d" % n) for n in batch))
    heard = _Heard()
    total = before + during
    await mux.subscribe(key, heard.deliver)
    for start in range(before, total, 25):  # 25 appends per pipeline, while catching up
        batch = range(start, min(start + 25, total))
        await asyncio.gather(*(_append(redis, key, b"%d" % n) for n in batch))
        if midway is not None and start <= before + during // 2 < start + 25:
            await midway()
    await heard.until(lambda got: len(got) >= total)
    await _append(redis, key, b"-1")  # a marker: nothing is delivered after it but itself
    await heard.until(lambda got: got[-1] == -1)
    return heard.values[:-1]


async def test_pushes_during_catch_up_are_deferred_then_delivered_once_in_order(
    redis_url: str,
) -> None:
    """A subscription to a stream with more than one read's worth of entries (COUNT 256)
    while a writer keeps appending: every entry once, in order, though pushes arrive
    before, during and after the catch-up reads."""
    redis = aioredis.Redis.from_url(redis_url)
    mux = StreamMux(redis, "test:wake5")
    mux.start()
    try:
        got = await _follow_while_writing(redis, mux, "test:push:catchup", 3000, 2000)
    finally:
        await mux.stop()
        await redis.delete("test:push:catchup")
        await redis.aclose()
    assert got == list(range(5000))


async def test_a_lost_push_connection_loses_no_entry(redis_url: str) -> None:
    """Redis drops the pub/sub connection mid-stream (as on a restart or an output buffer
    limit): the mux subscribes again, catches up from the stream, and delivers every
    entry once, in order."""
    redis = aioredis.Redis.from_url(redis_url)
    mux = StreamMux(redis, "test:wake6")
    mux.start()

    async def kill_pubsub() -> None:
        await _kill_bells(redis, mux)

    try:
        got = await _follow_while_writing(redis, mux, "test:push:lost", 10, 2000, kill_pubsub)
    finally:
        await mux.stop()
        await redis.delete("test:push:lost")
        await redis.aclose()
    assert got == list(range(2010))


async def test_pushed_entries_need_no_reads(redis_url: str) -> None:
    """Once caught up, entries arrive by push alone: a hundred of them on twenty streams
    cost Redis no XREAD (a polling reader makes one per batch)."""
    redis = aioredis.Redis.from_url(redis_url)
    mux = StreamMux(redis, "test:wake7")
    keys = [f"test:push:noread:{n}" for n in range(20)]
    got: list[bytes] = []
    caught_up = asyncio.Event()
    all_heard = asyncio.Event()

    def deliver(_entry_id: str, fields: dict[bytes, bytes]) -> None:
        got.append(fields[FIELD])
        if len(got) == len(keys):
            caught_up.set()
        if len(got) == len(keys) * 6:
            all_heard.set()

    mux.start()
    try:
        for key in keys:
            await _append(redis, key, b"first")
            await mux.subscribe(key, deliver)
        await caught_up.wait()  # each stream's catch-up read delivered its first entry
        reads_before = (await redis.info("commandstats"))["cmdstat_xread"]["calls"]
        for _ in range(5):
            for key in keys:
                await _append(redis, key, b"next")
        await all_heard.wait()
        reads = (await redis.info("commandstats"))["cmdstat_xread"]["calls"] - reads_before
    finally:
        await mux.stop()
        await redis.delete(*keys)
        await redis.aclose()
    assert reads == 0, f"{reads} XREADs for 100 pushed entries"


async def test_entries_pushed_while_the_catch_up_read_is_in_flight_come_after_it(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the deferred pushes exist for, made certain: entries appended after Redis ran
    the catch-up XREAD but pushed before its reply is handled are delivered after the
    read's entries, in order, once each."""
    redis = aioredis.Redis.from_url(redis_url)
    mux = StreamMux(redis, "test:wake8")
    changes = _MuxChanges(monkeypatch)
    key = "test:push:race"
    for n in range(5):
        await _append(redis, key, b"%d" % n)
    heard = _Heard()
    original = Lane.round_trip
    raced = False

    async def racing_round_trip(self: Lane, packed: bytes, *args, **kwargs):
        nonlocal raced
        sub = mux._groups[None].subs.get(key)
        syncing = sub is not None and sub.confirmed  # the read that catches the stream up
        reply = await original(self, packed, *args, **kwargs)
        if b"XREAD" in packed and syncing and not raced:
            raced = True
            for n in range(5, 10):  # written after the read ran
                await _append(redis, key, b"%d" % n)
            await changes.until(lambda: len(sub.deferred_pushes) >= 5)  # pushed before the reply
        return reply

    monkeypatch.setattr(Lane, "round_trip", racing_round_trip)
    mux.start()
    try:
        await mux.subscribe(key, heard.deliver)
        await heard.until(lambda got: len(got) >= 10)
        await _append(redis, key, b"-1")
        await heard.until(lambda got: got[-1] == -1)
    finally:
        await mux.stop()
        await redis.delete(key)
        await redis.aclose()
    assert raced
    assert heard.values == [*range(10), -1]


async def test_pushes_on_a_cluster_follow_a_stream_dropped_and_taken_up_again(
    redis_cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a Redis Cluster (sharded pub/sub, one listener per slot): streams of several
    slots are pushed; a stream unfollowed and followed again in the same moment (a resume
    on the same gateway) keeps its listener (its own ``sunsubscribe`` is not taken for a
    slot that moved) and gets the entries written since."""
    redis = connect(redis_cluster_url)
    mux = StreamMux(redis, "test:wake9")
    changes = _MuxChanges(monkeypatch)
    keys = [f"test:cluster:{{tag{n}}}:reply" for n in range(6)]  # several slots
    got: dict[str, list[bytes]] = {}
    arrived = asyncio.Event()

    def deliver(key: str, fields: dict[bytes, bytes]) -> None:
        got.setdefault(key, []).append(fields[FIELD])
        arrived.set()

    async def wait_for(key: str, count: int) -> None:
        while len(got.get(key, [])) < count:
            arrived.clear()
            await arrived.wait()

    mux.start()
    try:
        for key in keys:
            await mux.subscribe(key, lambda _id, f, key=key: deliver(key, f))
        await mux.wait_listening()
        for key in keys:
            await _append(redis, key, b"1")
        for key in keys:
            await wait_for(key, 1)
        group = mux._groups[mux._slot(keys[0])]
        listener_conn = group.bells._conn
        mux.unsubscribe(keys[0])
        await mux.subscribe(keys[0], lambda _id, f: deliver(keys[0], f), from_id="0-0")
        await _append(redis, keys[0], b"2")
        await wait_for(keys[0], 3)  # "1" again (from 0-0), then "2"
        # Redis answered the unfollow, then the follow
        await changes.until(lambda: group.subs[keys[0]].synced)
        assert group.bells._conn is listener_conn, "the listener reconnected"
        await _append(redis, keys[0], b"3")
        await wait_for(keys[0], 4)
    finally:
        await mux.stop()
        await redis.delete(*keys)
        await redis.aclose()
    assert got[keys[0]] == [b"1", b"1", b"2", b"3"]
    assert all(got[key] == [b"1"] for key in keys[2:])


async def test_a_reconnect_during_the_catch_up_read_leaves_no_gap(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pub/sub connection drops while a catch-up read is under way, entries are
    written while it is down, and it subscribes again before the read's reply is handled.
    That read cannot vouch for the entries written in between: the stream stays unsynced
    until the next read, so pushes that follow wait for it and nothing is skipped."""
    redis = aioredis.Redis.from_url(redis_url)
    mux = StreamMux(redis, "test:wake10")
    changes = _MuxChanges(monkeypatch)
    key = "test:push:reconnect-race"
    for n in range(5):
        await _append(redis, key, b"%d" % n)
    heard = _Heard()
    got = heard.values
    original = Lane.round_trip
    phase = 0
    raced = asyncio.Event()

    async def racing_round_trip(self: Lane, packed: bytes, *args, **kwargs):
        nonlocal phase
        sub = mux._groups[None].subs.get(key)
        if b"XREAD" in packed and phase == 1:
            phase = 2  # the read after the new subscription: pushes of later entries first
            for n in range(10, 15):
                await _append(redis, key, b"%d" % n)
            await changes.until(lambda: len(got) >= 10 or len(sub.deferred_pushes) >= 5)
        syncing = sub is not None and sub.confirmed  # a read that may catch the stream up
        reply = await original(self, packed, *args, **kwargs)
        if phase == 2 and b"XREAD" in packed:
            raced.set()  # that read has run: the marker comes after every entry
        if b"XREAD" in packed and phase == 0 and syncing:
            phase = 1
            await _kill_bells(redis, mux)
            for n in range(5, 10):  # written while the connection is down
                await _append(redis, key, b"%d" % n)
            await changes.until(lambda: sub.confirmations >= 2)  # subscribed again
        return reply

    monkeypatch.setattr(Lane, "round_trip", racing_round_trip)
    mux.start()
    try:
        await mux.subscribe(key, heard.deliver)
        async with asyncio.timeout(10):
            await raced.wait()
        await _append(redis, key, b"15")  # a marker: the last entry
        await heard.until(lambda got: bool(got) and got[-1] == 15)
    finally:
        await mux.stop()
        await redis.delete(key)
        await redis.aclose()
    assert phase == 2
    assert got == list(range(16))


async def test_a_catch_up_read_refused_in_place_is_read_again(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node answering a catch-up read with an error in its place (``LOADING`` after a
    restart, ``MOVED`` for a slot that moved), not raised: the streams it was for are
    read again, not forgotten with their entries."""
    redis = connect(redis_url)
    key = "test:refused-in-place"
    await redis.delete(key)
    await _append(redis, key, b"1")
    real = Lane.round_trip
    refusals = 0

    async def refused_twice(lane: Lane, packed: bytes, *args: object, **kwargs: object):
        nonlocal refusals
        if packed.startswith(b"*") and b"XREAD" in packed and refusals < 2:
            refusals += 1
            return [BusyLoadingError("Redis is loading the dataset in memory")]
        return await real(lane, packed, *args, **kwargs)

    monkeypatch.setattr(Lane, "round_trip", refused_twice)
    heard = _Heard()
    mux = StreamMux(redis, "test:wake-refused")
    mux.start()
    try:
        await mux.subscribe(key, heard.deliver)
        await heard.until(lambda got: got == [1])
        await _append(redis, key, b"2")
        await heard.until(lambda got: got == [1, 2])
    finally:
        await mux.stop()
        await redis.delete(key)
        await redis.aclose()
    assert refusals == 2
