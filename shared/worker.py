"""The consumer-group loop every worker kind runs.

Read with the group, handle each job in its own named task under a concurrency bound,
acknowledge only after the handler finished (at-least-once). In-flight jobs have their
idle time reset periodically, so only a dead worker's jobs go idle; those are taken
over with XAUTOCLAIM. A job that cannot be decoded, or was delivered too often, goes to
the dead-letter stream and the client is told, instead of the worker crash-looping.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ClusterDownError, RedisError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import metrics, protocol
from shared.checkpoint import StaleTurn, preload_scripts
from shared.control import ControlChannel
from shared.job_reads import JobReads, ReadBudget
from shared.logs import session_id_var, turn_id_var
from shared.messages import DeadLetter, MessageError, ReplyEvent, decode, encode
from shared.mux import StreamMux
from shared.resp import pack
from shared.settings import Settings
from shared.streams import ReplyWriter, ensure_group, is_cluster
from shared.tracing import JobSpan, tracer_for
from shared.write_batcher import write_batcher

log = logging.getLogger(__name__)

JobT = TypeVar("JobT")
HEARTBEAT_STALE_MS = 15_000


@dataclass(frozen=True, slots=True)
class JobContext:
    entry_id: str
    deliveries: int
    replies: ReplyWriter
    inputs: StreamMux  # follow a turn's input stream: ``ctx.inputs.follow(key, timeout)``
    cleanup: list[str] = field(default_factory=list)  # keys to delete with the ack
    control: ControlChannel | None = None  # ``is_cancelled(session, turn)`` between chunks
    entry: dict[bytes, bytes] = field(default_factory=dict)  # the job's fields (FIRST_AUDIO)
    fresh: bool = False  # its first delivery ever (not a restart's or a reclaim's)
    trace: JobSpan | None = None  # the job's span (tracing on): ``trace.first_output(...)``

    def cancelled(self, job: object) -> bool:
        """Whether the client cancelled this job's turn (free: a local lookup)."""
        session_id, turn_id = getattr(job, "session_id", ""), getattr(job, "turn_id", "")
        return self.control is not None and self.control.is_cancelled(session_id, turn_id)

    def trace_for(self, job: object) -> str:
        """The ``trace`` of the job this one hands on: this job's span, or (tracing off
        here) the trace it came with, so a traced turn stays one trace."""
        return self.trace.traceparent if self.trace is not None else getattr(job, "trace", "")


Handler = Callable[[JobT, JobContext], Awaitable[None]]


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


class StageWorker(Generic[JobT]):
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

    async def _turn_cancelled(self, job: object, deliveries: int) -> bool:
        """A reply the client already cancelled is not worth starting (ASR jobs always run:
        their input stream says itself when the utterance was abandoned). Redis is asked
        only when the signal may have been missed: a redelivery, or no live subscription."""
        if self.kind == "asr" or not hasattr(job, "turn_id"):
            return False
        session_id, turn_id = job.session_id, job.turn_id  # type: ignore[attr-defined]
        if deliveries > 1 or not self.control.listening:
            return await self.control.check(session_id, turn_id)
        return self.control.is_cancelled(session_id, turn_id)

    async def _handle(
        self,
        stream: str,
        entry_id: str,
        fields: dict[bytes, bytes],
        deliveries: int,
        fresh: bool = False,
    ) -> None:
        try:
            job = decode(fields)
        except MessageError as exc:
            await self._dead_letter(stream, entry_id, f"undecodable: {exc}", fields)
            return
        if not isinstance(job, self.job_type):
            await self._dead_letter(stream, entry_id, f"unexpected {type(job).__name__}", fields)
            return
        if deliveries > self.settings.max_deliveries:
            await self._dead_letter(stream, entry_id, f"delivered {deliveries} times", fields)
            await self._tell_client(job, "this request failed repeatedly and was dropped")
            return
        started = time.perf_counter()
        outcome = "ok"
        session_id_var.set(getattr(job, "session_id", None))  # this task's log lines
        turn_id_var.set(getattr(job, "turn_id", None))
        ctx = JobContext(
            entry_id,
            deliveries,
            self.replies,
            self.inputs,
            control=self.control,
            entry=fields,
            fresh=fresh,
            trace=self.tracer.job(job, deliveries) if self.tracer is not None else None,
        )
        try:
            if await self._turn_cancelled(job, deliveries):
                outcome = "cancelled"
                metrics.CANCELLED_WORK.labels(self.kind).inc()
                await asyncio.shield(self._ack(stream, entry_id, ctx.cleanup))
                return
            await self.handler(job, ctx)
        except asyncio.CancelledError:
            outcome = "handed_back"
            raise  # shutting down: leave it pending for another worker
        except StaleTurn:
            outcome = "taken_over"
            # another worker reclaimed it while we stalled: it finishes and acks the job
            log.warning("%s job %s taken over by another worker", self.kind, entry_id)
            metrics.JOBS.labels(self.kind, "taken_over").inc()
            return
        except (RedisConnectionError, RedisTimeoutError, ClusterDownError, TryAgainError) as exc:
            # Redis went away under the job (a master died and its replica is taking
            # over, a restart): not the job's fault. It stays pending and is taken over
            # once idle for RECLAIM_IDLE_MS (by this worker too), going on from its
            # checkpoint, instead of ending the turn with an error
            outcome = "left_pending"
            log.warning(
                "%s job %s left pending: Redis unavailable (%s)",
                self.kind,
                entry_id,
                type(exc).__name__,
            )
            metrics.JOBS.labels(self.kind, "left_pending").inc()
            return
        except Exception:
            outcome = "failed"
            log.exception("%s job %s failed", self.kind, entry_id)
            await self._tell_client(job, f"the {self.kind} stage failed on this request")
        finally:
            if ctx.trace is not None:
                ctx.trace.end(outcome)
        await asyncio.shield(self._ack(stream, entry_id, ctx.cleanup))
        metrics.JOBS.labels(self.kind, outcome).inc()
        metrics.JOB_SECONDS.labels(self.kind).observe(time.perf_counter() - started)
        self.handled += 1

    async def _ack(self, stream: str, entry_id: str, cleanup: list[str]) -> None:
        """Acknowledge and delete the job entry, with the turn's keys that are now spent
        (on a cluster they share the stream's slot: ``shared/keys.py``), in one MULTI.

        In the process's shared write pipeline: a hundred utterances ending together
        are a hundred acks, which through redis-py's own pipelines each took a pooled
        connection (and opening one costs milliseconds of CPU in redis-py).
        """
        commands = [
            pack(b"XACK", stream.encode(), self.group.encode(), entry_id.encode()),
            pack(b"XDEL", stream.encode(), entry_id.encode()),
        ]
        if cleanup:
            commands.append(pack(b"DEL", *(key.encode() for key in cleanup)))
        packed = b"".join([pack(b"MULTI"), *commands, pack(b"EXEC")])

        async def through_redis_py() -> object:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xack(stream, self.group, entry_id)
                pipe.xdel(stream, entry_id)
                if cleanup:
                    pipe.delete(*cleanup)
                return await pipe.execute()

        await write_batcher(self.redis).call(stream, packed, len(commands) + 2, through_redis_py)

    async def _tell_client(self, job: object, message: str) -> None:
        session_id = getattr(job, "session_id", None)
        turn_id = getattr(job, "turn_id", "")
        if session_id:
            data = {"code": protocol.STAGE_FAILED, "message": message}
            event = ReplyEvent("error", session_id, turn_id, data)
            await self.replies.emit(event, getattr(job, "options", None))

    async def _dead_letter(
        self, stream: str, entry_id: str, reason: str, fields: dict[bytes, bytes]
    ) -> None:
        log.warning("%s job %s dead-lettered: %s", self.kind, entry_id, reason)
        metrics.DEAD_LETTERS.labels(self.kind).inc()
        metrics.JOBS.labels(self.kind, "dead_lettered").inc()
        letter = DeadLetter(stream, entry_id, reason, fields.get(b"m", b""))
        partition = self.streams.index(stream) if stream in self.streams else 0
        dead = self.settings.keys.dead_letters_of(partition)  # the stream's slot on a cluster
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(dead, encode(letter), maxlen=1000, approximate=True)
            pipe.xack(stream, self.group, entry_id)
            pipe.xdel(stream, entry_id)
            await pipe.execute()

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
