"""One job, start to finish: decode it, run the stage's handler with its ``JobContext``,
then acknowledge it (deleting the entry and the turn's spent keys in one MULTI), or
dead-letter it and tell the client.

A job that cannot be decoded, or was delivered too often, goes to the dead-letter
stream instead of the worker crash-looping. A job whose Redis went away under it stays
pending (taken over once idle, from its checkpoint); one cancelled by shutdown is
handed back. ``StageWorker`` (``shared/worker.py``) reads the jobs and runs each here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ClusterDownError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import metrics, protocol
from shared.checkpoint import StaleTurn
from shared.control import ControlChannel
from shared.logs import session_id_var, turn_id_var
from shared.messages import DeadLetter, MessageError, ReplyEvent, decode, encode
from shared.mux import StreamMux
from shared.resp import pack
from shared.settings import Settings
from shared.streams import ReplyWriter
from shared.tracing import JobSpan, ServiceTracer
from shared.write_batcher import write_batcher

log = logging.getLogger("shared.worker")  # the worker's log lines, wherever they are made

JobT = TypeVar("JobT")


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


class JobHandling(Generic[JobT]):
    """How ``StageWorker`` handles, acknowledges and dead-letters one job."""

    redis: aioredis.Redis
    settings: Settings
    kind: str
    streams: tuple[str, ...]
    group: str
    job_type: type[JobT]
    handler: Handler[JobT]
    replies: ReplyWriter
    inputs: StreamMux
    control: ControlChannel
    tracer: ServiceTracer | None
    handled: int

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
