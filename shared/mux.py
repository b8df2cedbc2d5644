"""Follow many Redis streams with one blocking reader per process.

A gateway relays hundreds of reply streams and a worker follows the input streams of
all its turns. One blocked ``XREAD`` per stream would cost one Redis connection each;
``StreamMux`` instead issues a single ``XREAD BLOCK`` over every followed stream plus a
per-process "doorbell" stream. Subscribing rings the doorbell, so a new stream joins the
read at once. Ids are tracked per stream, never ``$``, so no entry is missed between
two reads.

With ``push`` (``STREAM_PUSH``, the default) the reader does not poll: every append is
also pushed over pub/sub with its id (``shared/bells.py``), and the mux delivers the
pushes as they come. It reads a stream only to catch up, once its subscription is
confirmed and after the pub/sub connection was lost; pushes that arrive meanwhile are
deferred and delivered after that read, newer ids only. No entry waits for a read, and a
hundred followed streams cost Redis nothing between entries.

On a Redis Cluster one ``XREAD`` may only name keys of one slot (any other is refused
with ``CROSSSLOT``), so the followed streams are grouped by slot: one blocking read per
slot, on a connection to that slot's master, each with its own doorbell in the slot
(``<wake_key>{<tag>}``). The system's keys carry their partition's hash tag
(``shared/keys.py``), so a process reads at most ``JOB_PARTITIONS`` slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.backoff import Backoff
from shared.bells import BellListener
from shared.input_follow import InputFollow, InputIdle
from shared.keys import hash_tag
from shared.lifecycle import shutting_down
from shared.messages import FIELD, InputChunk
from shared.resp import Lane, pack
from shared.stream_reads import (
    Deliver,
    Entry,
    _newer,
    _ReadGroup,
    _Subscription,
    catch_up_read,
    parse_xread,
    read_start,
)
from shared.write_batcher import write_batcher

log = logging.getLogger(__name__)

__all__ = ["Deliver", "Entry", "InputIdle", "StreamMux", "parse_xread", "read_start"]

_STOP_WAIT_S = 2.0
# 40 us against 20 us at 100 sessions (bench.capacity, 30 Nov): relay p99 the same
# (12-16 ms), p50 +1.3 ms, gateway CPU per frame -8 %, ASR worker -25 %, Redis's XREAD
# share 13 % -> 7 % of a core
_PAUSE_PER_STREAM_S = 4e-5


class StreamMux:
    def __init__(
        self, redis: aioredis.Redis, wake_key: str, block_ms: int = 2000, push: bool = True
    ) -> None:
        self._redis = redis
        self._wake_key = wake_key
        self._push = push
        self._cluster = isinstance(redis, RedisCluster)
        # a BLOCK as long as the client's socket timeout (redis-py's default is 5 s) ends
        # in a timeout error instead of an empty reply, then a retry backoff that delays
        # the next entries: always block for well under the socket timeout
        if self._cluster:
            timeout = redis.get_connection_kwargs().get("socket_timeout")  # type: ignore[attr-defined]
        else:
            timeout = redis.connection_pool.connection_kwargs.get("socket_timeout")
        self._block_ms = min(block_ms, int(timeout * 500)) if timeout else block_ms
        self._groups: dict[int | None, _ReadGroup] = {}  # by slot (None: one Redis)
        self._started = ""
        self._stopping = False

    @property
    def followed(self) -> int:
        return sum(len(group.subs) for group in self._groups.values())

    def start(self, name: str = "stream-mux") -> None:
        self._started = name
        if not self._cluster:
            self._group(None)
        for slot, group in self._groups.items():
            self._start_reader(slot, group)

    def _slot(self, key: str) -> int | None:
        return key_slot(key.encode()) if self._cluster else None

    def _group(self, slot: int | None, key: str = "") -> _ReadGroup:
        group = self._groups.get(slot)
        if group is None:
            wake_key = self._wake_key
            if slot is not None:  # a doorbell in the same slot as ``key``
                wake_key = f"{self._wake_key}{{{hash_tag(key) or key}}}"
            group = self._groups[slot] = _ReadGroup(wake_key)
            if self._push:
                group.bells = BellListener(
                    self._redis,
                    key or wake_key,
                    lambda key, payload: self._on_push(group, key, payload),
                    lambda key: self._on_subscribed(group, key),
                    lambda: self._on_lost(group),
                )
            if self._started:
                self._start_reader(slot, group)
        return group

    def _start_reader(self, slot: int | None, group: _ReadGroup) -> None:
        if group.task is None:
            name = self._started if slot is None else f"{self._started}-{slot}"
            group.task = asyncio.create_task(self._run(group), name=name)
        if group.bells is not None and group.bells_task is None:
            group.bells_task = asyncio.create_task(group.bells.run(), name=f"{name}-bells")

    async def stop(self) -> None:
        self._stopping = True
        # a cancellation that lands inside redis-py's read can come back as a connection
        # error, which the read loop retries: cancel again until the task is done
        deadline = time.monotonic() + _STOP_WAIT_S  # and never hang a shutdown
        tasks = [
            task
            for group in self._groups.values()
            for task in (group.task, group.bells_task)
            if task is not None
        ]
        while any(not task.done() for task in tasks) and time.monotonic() < deadline:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=0.5)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_STOP_WAIT_S):
                for group in self._groups.values():  # one by one: their slots differ
                    await self._redis.delete(group.wake_key)
        for group in self._groups.values():
            if group.lane is not None:
                with contextlib.suppress(Exception):
                    await group.lane.release()

    async def subscribe(self, key: str, deliver: Deliver, from_id: str = "0-0") -> None:
        """Call ``deliver(entry_id, fields)`` for every entry of ``key`` after ``from_id``.

        Rings the doorbell unless it was rung since the reader took its list of streams:
        that ring ends the read, and the next one takes every stream subscribed by then
        (a hundred utterances opening at once ring about once).
        """
        group = self._group(self._slot(key), key)
        group.subs[key] = _Subscription(key, from_id, deliver)
        group.packed_keys = None
        if group.bells is not None:
            group.bells.add(key)  # read from ``from_id`` again once Redis confirms it
            # and at once: what is there already (an utterance's first audio chunk) need
            # not wait for the confirmation's round trip
            self._ring(group, key)
            return
        if group.ringing:
            return
        group.ringing = True
        wake = group.wake_key.encode()
        ring = pack(b"XADD", wake, b"MAXLEN", b"16", b"*", b"r", b"1")
        ring += pack(b"EXPIRE", wake, b"3600")

        async def through_redis_py() -> object:
            await self._redis.xadd(group.wake_key, {b"r": b"1"}, maxlen=16, approximate=False)
            return await self._redis.expire(group.wake_key, 3600)

        try:
            await write_batcher(self._redis).call(group.wake_key, ring, 2, through_redis_py)
        except BaseException:
            group.ringing = False  # not rung: the next subscription tries again
            raise

    def unsubscribe(self, key: str) -> None:
        group = self._groups.get(self._slot(key))
        if group is not None and group.subs.pop(key, None) is not None:
            group.packed_keys = None
            if group.bells is not None:
                group.bells.remove(key)

    @staticmethod
    def _ring(group: _ReadGroup, key: str) -> None:
        group.rung[key] = None
        group.wakeup.set()

    def _on_push(self, group: _ReadGroup, key: str, payload: bytes) -> None:
        sub = group.subs.get(key)
        if sub is None:
            return
        raw_id, _, value = payload.partition(b" ")
        entry_id = raw_id.decode()
        if not sub.synced:
            if sub.confirmed:  # a catch-up read is under way: after it
                sub.deferred_pushes.append((entry_id, value))
            return  # else the read that follows the confirmation has it
        if _newer(entry_id, sub.last_id):  # not delivered by a catch-up read already
            sub.advance(entry_id)
            sub.deliver(entry_id, {FIELD: value})

    def _on_subscribed(self, group: _ReadGroup, key: str) -> None:
        sub = group.subs.get(key)
        if sub is not None:
            sub.confirmed, sub.synced = True, False
            sub.confirmations += 1
            self._ring(group, key)

    def _on_lost(self, group: _ReadGroup) -> None:
        for sub in group.subs.values():  # until each is subscribed again and caught up
            sub.confirmed = sub.synced = False
            sub.deferred_pushes.clear()

    async def wait_listening(self) -> None:
        """Until every bell listener is connected (tests; startup needs no wait: a
        subscription reads its stream once confirmed)."""
        for group in list(self._groups.values()):
            if group.bells is not None:
                await group.bells.connected.wait()

    async def follow(
        self, key: str, idle_timeout: float, from_id: str = "0-0", read: Sequence[Entry] = ()
    ) -> AsyncIterator[tuple[str, InputChunk]]:
        """Yield a turn's ``InputChunk``s in order until (and including) the end marker
        (``shared/input_follow.py``; a hot path uses ``InputFollow`` directly).

        ``read``: the entries after ``from_id`` the caller already has (``read_start``),
        yielded first; the stream is followed from the last of them. Raises
        ``InputIdle`` after ``idle_timeout`` seconds without a new entry.
        """
        async with InputFollow(self, key, idle_timeout, read, from_id) as chunks:
            while True:
                entry_id, message = await chunks.next()
                yield entry_id, message
                if message.end:
                    return

    async def _run(self, group: _ReadGroup) -> None:
        backoff = Backoff()
        while not self._stopping:
            try:
                await (self._read_rung(group) if group.bells else self._read_once(group))
                backoff.reset()
                continue
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError) as exc:
                delay = backoff.next_delay()
                # quiet on the first failure (a signal to stop may be a moment behind it,
                # as with compose down) and whenever stopping on purpose
                if backoff.repeated and not (self._stopping or shutting_down()):
                    log.warning("stream mux lost Redis (%s); retrying in %.2fs", exc, delay)
            except Exception:
                delay = backoff.next_delay()
                log.warning("stream mux read failed; retrying in %.2fs", delay, exc_info=True)
            await asyncio.sleep(delay)  # jittered: no herd

    async def _read_once(self, group: _ReadGroup) -> None:
        subs = dict(group.subs)
        group.ringing = False  # this read has every stream so far; later ones ring again
        started = time.monotonic()
        result = await self._xread(group, subs)
        for key, entries in result:
            if key == group.wake_key:
                group.wake_id = entries[-1][0]
                continue
            sub = subs.get(key)
            if sub is None or group.subs.get(key) is not sub:
                continue  # unsubscribed while we were reading
            for entry_id, fields in entries:
                sub.advance(entry_id)
                sub.deliver(entry_id, fields)
        if result:
            # Under load every read returns at once, and each costs Redis (and this
            # process) O(followed streams): reading again no sooner than 40 us per
            # followed stream (at most 10 ms) after the last read began lets entries
            # of many streams share one read and keeps Redis's share bounded (about 3 %
            # of a core per reader, whatever the streams). A few streams: no pause.
            pause = min(len(subs) * _PAUSE_PER_STREAM_S, 0.01) - (time.monotonic() - started)
            if pause > 0.0002:
                await asyncio.sleep(pause)

    async def _read_rung(self, group: _ReadGroup) -> None:
        """Catch up the streams that asked for it (a confirmed subscription, more than
        one read's worth of entries), without blocking; then deliver the pushes deferred
        meanwhile."""
        await group.wakeup.wait()
        group.wakeup.clear()
        rung, group.rung = group.rung, {}
        subs = {key: sub for key in rung if (sub := group.subs.get(key)) is not None}
        if not subs:
            return
        for sub in subs.values():
            sub.deferred_pushes.clear()  # pushed before this read was sent: the read has them
        command = catch_up_read(subs)
        if group.lane is None:
            group.lane = Lane(self._redis, "stream_reads")
        syncing = [(sub, sub.confirmations) for sub in subs.values() if sub.confirmed]
        try:
            (reply,) = await group.lane.round_trip(
                command, 1, idempotent=True, key=next(iter(subs))
            )
            # an error in place (a slot moved, a node loading) fails the read as a
            # raised one does: the streams are read again
            read = parse_xread(reply)
        except BaseException:
            for key in subs:  # read them again once Redis is back
                self._ring(group, key)
            raise
        finally:
            if group.bells is not None:
                group.bells.follow_slot_owner()  # the read may have learnt a new slot map
        full: set[str] = set()
        for key, entries in read:
            sub = subs.get(key)
            if sub is None or group.subs.get(key) is not sub:
                continue  # unsubscribed while we were reading
            for entry_id, fields in entries:
                if _newer(entry_id, sub.last_id):  # a push may have delivered it
                    sub.advance(entry_id)
                    sub.deliver(entry_id, fields)
            if len(entries) == 256:  # COUNT: there is more
                full.add(key)
                self._ring(group, key)
        for sub, confirmations in syncing:
            if (
                sub.key in full
                or group.subs.get(sub.key) is not sub
                or not sub.confirmed
                # subscribed again (a reconnect) while this read was under way: entries
                # written in between are in neither, and the read that follows has them
                or sub.confirmations != confirmations
            ):
                continue
            sub.synced = True
            deferred, sub.deferred_pushes = sub.deferred_pushes, []
            for entry_id, value in deferred:
                if _newer(entry_id, sub.last_id):
                    sub.advance(entry_id)
                    sub.deliver(entry_id, {FIELD: value})

    async def _xread(
        self, group: _ReadGroup, subs: dict[str, _Subscription]
    ) -> list[tuple[str, list[Entry]]]:
        """``XREAD COUNT 256 BLOCK ms STREAMS wake *keys wake_id *ids`` (``blocking_read``)."""
        if group.lane is None:
            group.lane = Lane(self._redis, "stream_reads")
        (reply,) = await group.lane.round_trip(
            group.blocking_read(subs, self._block_ms),
            1,
            reply_timeout=self._block_ms / 1000 + 10,
            idempotent=True,
            key=group.wake_key,
        )
        return parse_xread(reply)
