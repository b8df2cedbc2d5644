"""The consumer-group loop every worker kind runs.

Read with the group, handle each job in its own named task under a concurrency bound,
acknowledge only after the handler finished (at-least-once). In-flight jobs have their
idle time reset periodically, so only a dead worker's jobs go idle; those are taken
over with XAUTOCLAIM. A job that cannot be decoded, or was delivered too often, goes to
the dead-letter stream and the client is told, instead of the worker crash-looping
(``shared/jobs.py`` handles each job; ``shared/job_reads.py`` reads them).

An acknowledged job entry is deleted in the same MULTI as its XACK (with the turn's
checkpoint and other per-turn keys the handler names in ``JobContext.cleanup``), so job
streams hold only work in progress. On stop, claims stay fresh while in-flight turns
finish; what is still running after the grace period is handed back: its idle time is
set past ``RECLAIM_IDLE_MS`` so a live worker takes it over at its next upkeep round.

With ``JOB_PARTITIONS`` > 1 a kind has several work streams (``Keys.job_streams``), each
with the kind's group, and every worker reads them all: one ``XREADGROUP`` over all of
them on one Redis, one per stream on a cluster (its streams are in different slots).
Jobs are tracked by (stream, entry id): ids of different streams can be equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import metrics
from shared.checkpoint import preload_scripts
from shared.control import ControlChannel
from shared.job_reads import JobReads, ReadBudget
from shared.jobs import Handler, JobContext, JobHandling, JobT
from shared.mux import StreamMux
from shared.settings import Settings
from shared.streams import ReplyWriter, ensure_group, is_cluster
from shared.tracing import tracer_for

log = logging.getLogger(__name__)

__all__ = [
    "HEARTBEAT_STALE_MS",
    "Handler",
    "JobContext",
    "StageWorker",
    "consumer_name",
    "stage_worker",
]

HEARTBEAT_STALE_MS = 15_000


def stage_worker(
    redis: aioredis.Redis,
    settings: Settings,
    kind: str,
    job_type: type[JobT],
    handler: Handler[JobT],
) -> StageWorker[JobT]:
    """The worker of one stage kind (``asr``, ``llm``, ``tts``) on its job streams and group."""
    return StageWorker(
        redis,
        settings,
        kind=kind,
        streams=settings.keys.job_streams(kind),
        group=kind,
        job_type=job_type,
        handler=handler,
    )


def consumer_name(settings: Settings, kind: str) -> str:
    """Unique per process; ``WORKER_NAME`` pins it (so a restart re-reads its own pending)."""
    if settings.worker_name:
        return f"{settings.worker_name}-{kind}"
    return f"{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class StageWorker(JobHandling[JobT]):
    """Runs ``handler`` for every job of type ``job_type`` on ``streams``/``group``."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: Settings,
        *,
        kind: str,
        streams: tuple[str, ...],
        group: str,
        job_type: type[JobT],
        handler: Handler[JobT],
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.kind = kind
        self.streams = streams
        self.group = group
        self.job_type = job_type
        self.handler = handler
        self.consumer = consumer_name(settings, kind)
        self.replies = ReplyWriter(
            redis, settings.keys, settings.session_ttl_seconds, settings.reply_maxlen
        )
        self.inputs = StreamMux(
            redis, settings.keys.mux_wake(self.consumer), push=settings.stream_push
        )
        self.control = ControlChannel(redis, settings.keys, settings.session_ttl_seconds)
        self._in_flight: dict[tuple[str, str], asyncio.Task[None]] = {}  # (stream, id)
        # read but not started yet (no free slot): started in order as jobs finish
        self._queued: dict[tuple[str, str], tuple[dict[bytes, bytes], int, bool]] = {}
        self._budget = ReadBudget(self._free_slots)
        self._chores: set[asyncio.Task[None]] = set()
        self._draining = False
        self.handled = 0
        self.tracer = tracer_for(settings, kind)  # None: tracing off

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then finish in-flight jobs within the grace period."""
        await self._ensure_groups(self.streams)
        await preload_scripts(self.redis)
        await self._heartbeat()
        self.inputs.start(f"{self.kind}-inputs")
        await self.control.start()
        log.info("%s worker %s consuming %s", self.kind, self.consumer, ", ".join(self.streams))
        upkeep = asyncio.create_task(self._upkeep(stop), name=f"{self.kind}-upkeep")
        # one read over every stream on one Redis; one per stream (slot) on a cluster
        reads = [(s,) for s in self.streams] if is_cluster(self.redis) else [self.streams]
        try:
            await asyncio.gather(*(self._read_loop(streams, stop) for streams in reads))
        finally:
            await self._drain()
            upkeep.cancel()
            await self.inputs.stop()
            await self.control.stop()
            with contextlib.suppress(Exception):
                await self.redis.zrem(self.settings.keys.heartbeats(self.kind), self.consumer)

    async def _ensure_groups(self, streams: tuple[str, ...]) -> None:
        for stream in streams:
            await ensure_group(self.redis, stream, self.group)

    async def _read_loop(self, streams: tuple[str, ...], stop: asyncio.Event) -> None:
        reads = JobReads(self.redis, self.kind, self.group, self.consumer, streams, self._budget)
        await reads.run(self._start, stop)

    def _free_slots(self) -> int:
        return max(0, self.settings.worker_concurrency - len(self._in_flight) - len(self._queued))

    def _start(
        self,
        stream: str,
        entry_id: str,
        fields: dict[bytes, bytes] | None,
        deliveries: int,
        fresh: bool = False,
    ) -> None:
        """Run the job now if a slot is free, else queue it (its claim kept fresh with
        the running ones') until one is."""
        job = (stream, entry_id)
        if job in self._in_flight or job in self._queued:
            return
        if not fields:  # trimmed away while pending: nothing left to do
            self._spawn_quietly(self.redis.xack(stream, self.group, entry_id), f"xack-{entry_id}")
            return
        if len(self._in_flight) >= self.settings.worker_concurrency:
            self._queued[job] = (fields, deliveries, fresh)
            return
        self._run_job(stream, entry_id, fields, deliveries, fresh)

    def _run_job(
        self,
        stream: str,
        entry_id: str,
        fields: dict[bytes, bytes],
        deliveries: int,
        fresh: bool,
    ) -> None:
        job = (stream, entry_id)
        task = asyncio.create_task(
            self._handle(stream, entry_id, fields, deliveries, fresh),
            name=f"{self.kind}-job-{entry_id}",
        )
        self._in_flight[job] = task
        task.add_done_callback(lambda done: self._finished(job, done))

    def _spawn_quietly(self, work: Awaitable[object], name: str) -> None:
        async def run() -> None:
            with contextlib.suppress(RedisError):
                await work

        task = asyncio.create_task(run(), name=f"{self.kind}-{name}")
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    def _finished(self, job: tuple[str, str], task: asyncio.Task[None]) -> None:
        entry_id = job[1]
        self._in_flight.pop(job, None)
        if self._queued and not self._draining:
            (stream, queued_id), (fields, deliveries, fresh) = next(iter(self._queued.items()))
            del self._queued[(stream, queued_id)]
            self._run_job(stream, queued_id, fields, deliveries, fresh)
        self._budget.changed()
        if not task.cancelled() and (exc := task.exception()) is not None:
            # the job's own bookkeeping failed (Redis gone): it stays pending, so a live
            # worker reclaims it; say so instead of losing the exception
            log.warning("%s job %s left pending: %r", self.kind, entry_id, exc)

    async def _upkeep(self, stop: asyncio.Event) -> None:
        """Keep our claims fresh and take over jobs of workers that died.

        Runs until cancelled, after the in-flight jobs drained: while stopping it still
        refreshes their claims (so nobody takes over a turn that is about to finish) but
        takes on no new work.
        """
        interval = self.settings.reclaim_idle_ms / 1000 / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._refresh_claims()
                if stop.is_set():
                    continue
                await self._heartbeat()
                await self._reclaim()
                await self._report_queue()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.warning("%s upkeep: Redis unavailable (%s)", self.kind, exc)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    log.warning("%s upkeep failed: %s", self.kind, exc)
                    continue
                log.warning("%s group vanished (Redis restarted empty?); recreating", self.kind)
                with contextlib.suppress(Exception):  # the read loop recreates it otherwise
                    await self._ensure_groups(self.streams)
            except Exception:  # anything else: try again next round, with the traceback
                log.warning("%s upkeep failed", self.kind, exc_info=True)

    async def _heartbeat(self) -> None:
        key = self.settings.keys.heartbeats(self.kind)
        now = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {self.consumer: now})
            pipe.zremrangebyscore(key, 0, now - HEARTBEAT_STALE_MS)
            await pipe.execute()

    async def _report_queue(self) -> None:
        pending = lag = 0
        for stream in self.streams:
            for group in await self.redis.xinfo_groups(stream):
                if group["name"].decode() == self.group:
                    pending += group["pending"]
                    lag += group.get("lag") or 0
        metrics.QUEUE_PENDING.labels(self.kind).set(pending)
        metrics.QUEUE_LAG.labels(self.kind).set(lag)

    def _in_flight_by_stream(self, jobs: list[tuple[str, str]]) -> dict[str, list[str]]:
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id in jobs:
            by_stream.setdefault(stream, []).append(entry_id)
        return by_stream

    async def _refresh_claims(self) -> None:
        """Everything this worker holds, running or queued, stays claimed by it: only a
        dead worker's jobs go idle and are taken over."""
        held = [*self._in_flight, *self._queued]
        for stream, ids in self._in_flight_by_stream(held).items():
            await self.redis.xclaim(
                stream,
                self.group,
                self.consumer,
                min_idle_time=0,
                message_ids=ids,
                justid=True,
            )

    async def _reclaim(self) -> None:
        for stream in self.streams:
            free = self._free_slots()
            if free == 0:
                return
            _next, claimed, *_deleted = await self.redis.xautoclaim(
                stream,
                self.group,
                self.consumer,
                self.settings.reclaim_idle_ms,
                "0-0",
                count=free,
            )
            if not claimed:
                continue
            counts = await self._delivery_counts(stream, [raw_id for raw_id, _ in claimed])
            for raw_id, fields in claimed:
                entry_id = raw_id.decode()
                log.info("%s worker %s reclaimed job %s", self.kind, self.consumer, entry_id)
                metrics.RECLAIMS.labels(self.kind).inc()
                self._start(stream, entry_id, fields, deliveries=counts.get(entry_id, 2))

    async def _delivery_counts(self, stream: str, ids: list[bytes]) -> dict[str, int]:
        lo, hi = min(ids), max(ids)
        rows = await self.redis.xpending_range(stream, self.group, lo, hi, len(ids) + 50)
        return {row["message_id"].decode(): int(row["times_delivered"]) for row in rows}

    async def _drain(self) -> None:
        self._draining = True
        queued, self._queued = list(self._queued), {}  # never started: handed back at once
        tasks = list(self._in_flight.values())
        pending: set[asyncio.Task[None]] = set()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace_seconds)
        handed_back = [job for job, task in self._in_flight.items() if task in pending]
        for task in pending:  # handed back: they stay pending and another worker reclaims them
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if handed_back or queued:
            await self._hand_back([*queued, *handed_back])

    async def _hand_back(self, jobs: list[tuple[str, str]]) -> None:
        """Make our unfinished jobs look idle at once, so a live worker reclaims them now."""
        log.info("%s worker %s hands back %d job(s)", self.kind, self.consumer, len(jobs))
        try:
            for stream, entry_ids in self._in_flight_by_stream(jobs).items():
                await self.redis.xclaim(
                    stream,
                    self.group,
                    self.consumer,
                    min_idle_time=0,
                    message_ids=entry_ids,
                    idle=self.settings.reclaim_idle_ms,
                    justid=True,
                )
        except Exception as exc:  # the jobs stay pending: reclaimed after RECLAIM_IDLE_MS
            log.warning(
                "%s worker %s could not hand back %d job(s) (%s: %s); another worker takes "
                "them over once they have been idle for RECLAIM_IDLE_MS",
                self.kind,
                self.consumer,
                len(jobs),
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
