"""A worker's job reads: one loop per group of job streams (all of them on one Redis,
one per partition on a cluster, whose partitions are in different slots).

Each loop reads its own pending entries first (after a restart with the same
``WORKER_NAME``), then new ones, and reads its pending entries again after a read whose
reply was lost (it may have handed it entries nobody would run until they were reclaimed
as idle). A Redis error never ends a loop: it backs off and reads again. What the loops
ask for is bounded by one budget (``ReadBudget``) over all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from shared.backoff import Backoff
from shared.lifecycle import shutting_down
from shared.resp import Lane, ReplyLost, pack
from shared.stream_reads import parse_xread
from shared.streams import ensure_group

log = logging.getLogger("shared.worker")

# (stream, entry id, fields, deliveries, fresh): hands a job read to the worker
Start = Callable[[str, str, dict[bytes, bytes] | None, int, bool], None]


class ReadBudget:
    """How many jobs the read loops may still ask for: the free slots less what reads
    under way asked for. Every loop asks for at least one (a partition whose loop waited
    for budget would wait for its entries while the worker idles), so a worker with
    fewer free slots than partitions can be handed a few more jobs than it can start:
    those wait in its queue with their claims kept fresh, and no loop reads again until
    the queue is empty and a slot is free."""

    def __init__(self, free: Callable[[], int]) -> None:
        self._free = free
        self.borrowed = 0
        self._changed = asyncio.Event()

    async def take(self, stop: asyncio.Event) -> int:
        """Reserve what the next read may ask for; 0 once ``stop`` is set."""
        while self._free() <= 0 and not stop.is_set():
            self._changed.clear()
            waits = [
                asyncio.ensure_future(self._changed.wait()),
                asyncio.ensure_future(stop.wait()),
            ]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
        if stop.is_set():
            return 0
        count = max(1, self._free() - self.borrowed)
        self.borrowed += count
        return count

    def give_back(self, count: int) -> None:
        self.borrowed -= count

    def changed(self) -> None:
        self._changed.set()


class JobReads:
    """The reads of one group of job streams for one consumer."""

    def __init__(
        self,
        redis: aioredis.Redis,
        kind: str,
        group: str,
        consumer: str,
        streams: tuple[str, ...],
        budget: ReadBudget,
    ) -> None:
        self.redis = redis
        self.kind = kind
        self.group = group
        self.consumer = consumer
        self._streams = streams
        self._budget = budget

    async def run(self, start: Start, stop: asyncio.Event) -> None:
        """Read until ``stop`` is set, handing every entry to ``start``."""
        lane = Lane(self.redis, "job_reads")
        streams = self._streams
        try:
            await self._read_own(lane, streams, start)  # ours, after a restart
            await self._read_new(lane, streams, start, stop)
        finally:
            await lane.release()

    async def _ensure_groups(self, streams: tuple[str, ...]) -> None:
        for stream in streams:
            await ensure_group(self.redis, stream, self.group)

    async def _read_new(
        self, lane: Lane, streams: tuple[str, ...], start: Start, stop: asyncio.Event
    ) -> None:
        backoff = Backoff()
        reread = False  # a read's reply was lost: it may have handed us entries
        while not stop.is_set():
            try:
                if reread:
                    await self._read_own(lane, streams, start)
                    reread = False
                await self._read_entries(lane, streams, ">", start, block_ms=1000, stop=stop)
                backoff.reset()
                continue
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    log.warning("%s group vanished (stream deleted?); recreating", self.kind)
                    with contextlib.suppress(RedisError):
                        await self._ensure_groups(streams)
                        continue
                # a node that kept refusing (a cluster still electing its masters), or
                # an answer we do not know: never worth stopping the worker for
                problem = f"{type(exc).__name__}: {exc}"
            except RedisError as exc:
                # quiet on the first failure, as the mux: a read that was sent is not
                # retried, so a Redis going down with the signal to stop (compose down)
                # fails it before that signal is handled; and whenever stopping
                reread = reread or isinstance(exc, ReplyLost)
                problem = type(exc).__name__
            delay = backoff.next_delay()
            if backoff.repeated and not (stop.is_set() or shutting_down()):
                log.warning(
                    "%s worker lost Redis (%s); retrying in %.2fs", self.kind, problem, delay
                )
            await asyncio.sleep(delay)

    async def _read_own(self, lane: Lane, streams: tuple[str, ...], start: Start) -> None:
        """Re-read this consumer's own pending entries (``0``): after a restart with the
        same ``WORKER_NAME``, and after a read whose reply was lost (it may have handed
        us entries that nobody would run until they were reclaimed as idle)."""
        await self._read_entries(lane, streams, "0", start, block_ms=None, count=1000)

    async def _read_entries(
        self,
        lane: Lane,
        streams: tuple[str, ...],
        after: str,
        start: Start,
        block_ms: int | None,
        count: int | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        """One ``XREADGROUP``, packed by hand on the loop's own connection, as the mux
        reads streams: through redis-py it cost 230 µs a call here against 60, paid
        about once per job when jobs arrive one by one.

        A read of new entries asks for no more than this worker can start now, counted
        over all its read loops (``ReadBudget``): on a cluster each partition has its own
        loop, and a job handed to a worker that cannot start it waits for nothing.
        """
        if count is None:
            count = await self._budget.take(stop or asyncio.Event())
            if count == 0:
                return
        else:
            self._budget.borrowed += count
        try:
            words = [b"XREADGROUP", b"GROUP", self.group.encode(), self.consumer.encode()]
            words += [b"COUNT", b"%d" % count]
            if block_ms is not None:
                words += [b"BLOCK", b"%d" % block_ms]
            words += [b"STREAMS", *(s.encode() for s in streams), *[after.encode()] * len(streams)]
            (reply,) = await lane.round_trip(
                pack(*words),
                1,
                reply_timeout=(block_ms or 0) / 1000 + 10,
                idempotent=False,  # it hands the entries to this consumer: never sent twice
                key=streams[0],
            )
            fresh = after == ">"  # never delivered: no worker has written their turns
            for stream, entries in parse_xread(reply):
                for entry_id, fields in entries:
                    start(stream, entry_id, fields, 1, fresh)
        finally:
            self._budget.give_back(count)
