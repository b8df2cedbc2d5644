"""The consumer-group runtime against a real server: ack after work, dead letters, reclaim."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from shared.messages import DeadLetter, LlmJob, decode, encode
from shared.resp import Lane, ReplyLostTimeout
from shared.settings import load_settings
from shared.streams import publish_job
from shared.worker import JobContext, StageWorker

STREAM, GROUP = "test:jobs", "g"


@contextlib.asynccontextmanager
async def running(
    redis: Redis, handler: Callable, **settings: object
) -> AsyncIterator[StageWorker]:
    config = load_settings(**{"reclaim_idle_ms": 500, "shutdown_grace_seconds": 1, **settings})
    worker = StageWorker(
        redis, config, kind="llm", streams=(STREAM,), group=GROUP, job_type=LlmJob, handler=handler
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await task


async def _wait_for(predicate: Callable[[], object]) -> None:
    """Poll until ``predicate()`` holds (no wall-clock limit: pytest's timeout is the bound)."""
    while not predicate():  # noqa: ASYNC110 - polling state that has no event to wait on
        await asyncio.sleep(0.02)


async def _wait_for_redis(predicate: Callable[[], Awaitable[object]]) -> None:
    while not await predicate():  # noqa: ASYNC110 - polling Redis-side state
        await asyncio.sleep(0.02)


async def test_job_is_acked_only_after_the_handler_finished(redis: Redis) -> None:
    release = asyncio.Event()
    seen: list[str] = []

    async def handler(job: LlmJob, ctx: JobContext) -> None:
        seen.append(job.text)
        await release.wait()

    async with running(redis, handler):
        await publish_job(redis, STREAM, LlmJob("s", "t1", "hello"), 100)
        await _wait_for(lambda: seen)
        assert (await redis.xpending(STREAM, GROUP))["pending"] == 1
        release.set()
        await _wait_for_redis(async_pending_is(redis, 0))


def async_pending_is(redis: Redis, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await redis.xpending(STREAM, GROUP))["pending"] == count

    return check


def _counter(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"stage": "llm"}) or 0.0


async def test_undecodable_job_goes_to_dead_letters(redis: Redis) -> None:
    async def handler(job: LlmJob, ctx: JobContext) -> None:
        raise AssertionError("must not be called")

    dead_before = _counter("vna_dead_letters_total")
    async with running(redis, handler):
        await redis.xadd(STREAM, {b"m": b"\xc1garbage"})
        await _wait_for_redis(lambda: redis.xlen("vna:dead"))
    letters = await redis.xrange("vna:dead")
    assert len(letters) == 1
    letter = decode(letters[0][1])
    assert isinstance(letter, DeadLetter) and "undecodable" in letter.reason
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0
    assert _counter("vna_dead_letters_total") == dead_before + 1


async def test_a_dead_consumers_job_is_reclaimed(redis: Redis) -> None:
    handled: list[str] = []

    async def handler(job: LlmJob, ctx: JobContext) -> None:
        handled.append(f"{job.text}:{ctx.deliveries}")

    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    await redis.xadd(STREAM, encode(LlmJob("s", "t1", "orphan")))
    await redis.xreadgroup(GROUP, "crashed-worker", {STREAM: ">"}, count=1)
    reclaims_before = _counter("vna_reclaims_total")
    async with running(redis, handler):
        await _wait_for(lambda: handled)
    assert handled == ["orphan:2"]
    assert _counter("vna_reclaims_total") == reclaims_before + 1


@pytest.mark.parametrize("concurrency", [2])
async def test_jobs_run_concurrently_up_to_the_limit(redis: Redis, concurrency: int) -> None:
    active, peak = 0, 0
    done = asyncio.Event()

    async def handler(job: LlmJob, ctx: JobContext) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.1)
        active -= 1
        if job.text == "5":
            done.set()

    async with running(redis, handler, worker_concurrency=concurrency):
        for n in range(6):
            await publish_job(redis, STREAM, LlmJob("s", f"t{n}", str(n)), 100)
        await done.wait()
    assert peak == concurrency


async def test_a_job_that_keeps_killing_its_workers_is_dead_lettered_and_reported(
    redis: Redis,
) -> None:
    """Three workers took the job and died (never acked): the fourth delivery is refused."""

    async def handler(job: LlmJob, ctx: JobContext) -> None:
        raise AssertionError("must not be called past the delivery budget")

    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    entry_id = await redis.xadd(STREAM, encode(LlmJob("s", "t7", "poison")))
    await redis.xreadgroup(GROUP, "died-1", {STREAM: ">"}, count=1)
    for consumer in ("died-2", "died-3"):  # each takeover counts as a delivery
        await redis.xclaim(STREAM, GROUP, consumer, min_idle_time=0, message_ids=[entry_id])
    async with running(redis, handler, max_deliveries=3):
        await _wait_for_redis(lambda: redis.xlen("vna:reply:s"))
    letter = decode((await redis.xrange("vna:dead"))[0][1])
    assert isinstance(letter, DeadLetter) and letter.reason == "delivered 4 times"
    error = decode((await redis.xrange("vna:reply:s"))[0][1])
    assert (error.event, error.turn_id, error.data["code"]) == ("error", "t7", "stage_failed")
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0
    assert await redis.xlen(STREAM) == 0  # acked entries are deleted, not kept


async def test_a_failed_hand_back_is_logged_in_one_line(redis: Redis, caplog) -> None:
    """The jobs stay pending (another worker takes them after the idle time): say so."""
    worker = StageWorker(
        redis,
        load_settings(),
        kind="llm",
        streams=(STREAM,),
        group=GROUP,
        job_type=LlmJob,
        handler=lambda job, ctx: None,
    )
    await redis.delete(STREAM)  # no group any more: the XCLAIM fails with NOGROUP
    with caplog.at_level("INFO", logger="shared.worker"):
        await worker._hand_back([(STREAM, "1-0")])
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "could not hand back 1 job" in warnings[0].getMessage()
    assert "RECLAIM_IDLE_MS" in warnings[0].getMessage() and not warnings[0].exc_info


async def test_the_ack_deletes_the_entry_and_the_keys_the_turn_left(redis: Redis) -> None:
    """Acked in one MULTI with the per-turn keys the handler named (``ctx.cleanup``), for
    every job of a burst that ends at once."""
    finished = asyncio.Event()
    handled = 0

    async def handler(job: LlmJob, ctx: JobContext) -> None:
        nonlocal handled
        await redis.set(f"spent:{job.turn_id}", "x")
        ctx.cleanup.append(f"spent:{job.turn_id}")
        handled += 1
        if handled == 20:
            finished.set()

    async with running(redis, handler, worker_concurrency=20) as worker:
        for n in range(20):
            await publish_job(redis, STREAM, LlmJob("s", f"t{n}", str(n)), 100)
        await finished.wait()
        await _wait_for(lambda: worker.handled == 20)  # counted once acked
    assert await redis.xlen(STREAM) == 0
    assert not [key async for key in redis.scan_iter("spent:*")], "per-turn keys deleted"


async def test_a_read_whose_reply_was_lost_re_reads_its_own_pending_entries(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read ran (the job is ours in Redis) but its reply never came: the worker reads
    its own pending entries again instead of leaving the job until it is reclaimed as
    idle (a minute here)."""
    real = Lane.round_trip
    lost = asyncio.Event()

    async def reply_lost_once(lane: Lane, packed: bytes, *args: object, **kwargs: object):
        replies = await real(lane, packed, *args, **kwargs)
        if b"$1\r\n>\r\n" in packed and replies[0] and not lost.is_set():
            lost.set()
            raise ReplyLostTimeout("Timeout reading from Redis")
        return replies

    monkeypatch.setattr(Lane, "round_trip", reply_lost_once)
    seen: list[str] = []

    async def handler(job: LlmJob, ctx: JobContext) -> None:
        seen.append(job.text)

    async with running(redis, handler, reclaim_idle_ms=60_000) as worker:
        await publish_job(redis, STREAM, LlmJob("s", "t1", "lost reply"), 100)
        await lost.wait()
        await _wait_for(lambda: worker.handled == 1)
    assert seen == ["lost reply"]


async def test_partition_reads_take_no_more_than_the_worker_can_start_and_keep_claims(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One read loop per partition (as on a cluster), two slots: the loops share one
    budget, so the worker is handed far fewer than the eight jobs waiting; those it holds
    but cannot start yet stay claimed (never idle long enough to be taken over)."""
    monkeypatch.setattr("shared.worker.is_cluster", lambda _redis: True)
    streams = tuple(f"test:part{n}" for n in range(4))
    config = load_settings(reclaim_idle_ms=500, shutdown_grace_seconds=1, worker_concurrency=2)
    release = asyncio.Event()
    started: list[str] = []

    async def handler(job: LlmJob, ctx: JobContext) -> None:
        started.append(job.text)
        await release.wait()

    worker = StageWorker(
        redis,
        config,
        kind="llm",
        streams=streams,
        group=GROUP,
        job_type=LlmJob,
        handler=handler,
    )
    refreshed = 0
    real_refresh = worker._refresh_claims

    async def counting_refresh() -> None:
        nonlocal refreshed
        await real_refresh()
        refreshed += 1

    monkeypatch.setattr(worker, "_refresh_claims", counting_refresh)
    for stream in streams:
        await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        for n in range(2):
            await publish_job(redis, stream, LlmJob("s", f"{stream}-{n}", f"{stream}-{n}"), 100)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await _wait_for(lambda: len(started) == 2)
        read_before = time.monotonic()  # every job the worker holds was read by now
        start = refreshed
        await _wait_for(lambda: refreshed >= start + 3)  # a few reclaim periods later
        held = [
            row
            for stream in streams
            for row in await redis.xpending_range(stream, GROUP, "-", "+", 10)
        ]
        assert len(held) <= 2 + len(streams) - 1, len(held)  # not all eight
        # claimed again since: idle for less than the time since they were read
        since_read_ms = (time.monotonic() - read_before) * 1000
        assert all(row["time_since_delivered"] < since_read_ms for row in held), held
        release.set()
        await _wait_for(lambda: worker.handled == 8)
    finally:
        release.set()
        stop.set()
        await task
    assert sorted(started) == sorted(f"{s}-{n}" for s in streams for n in range(2))
    await redis.delete(*streams)


async def test_a_failed_early_reply_reports_under_its_own_id_aside(redis: Redis) -> None:
    """An attempt's failure is one of its events: kept aside with them (the gateway shows
    it as the turn's only if the attempt is used), never sent to the client under an id
    it was never shown."""

    async def handler(job: LlmJob, ctx: JobContext) -> None:
        raise RuntimeError("the agent broke")

    job = LlmJob("s", "t3.p1", "news", options={"early": True, "reply_turn": "t3"})
    await publish_job(redis, STREAM, job, 100)
    async with running(redis, handler):
        await _wait_for_redis(lambda: redis.exists("vna:early:s", "vna:reply:s"))
    assert not await redis.xlen("vna:reply:s")
    error = decode((await redis.xrange("vna:early:s"))[0][1])
    assert (error.event, error.turn_id) == ("error", "t3.p1")
