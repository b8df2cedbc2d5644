"""An ASR job sent with its first chunk of audio: heard once, before any read.

The gateway publishes a turn's job with its first audio beside the message
(``FIRST_AUDIO``) and appends the same chunk to the input stream, so a worker taking the
job up for the first time needs no read before its first partial, and a worker taking it
up again finds every chunk in the input stream. The echo engine names each chunk it is
fed, so a chunk heard twice or left out shows in the partials.
"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from asr_worker.echo_engine import EchoAsrEngine
from asr_worker.worker import build_asr_worker
from shared.checkpoint import Append, TurnCheckpoint
from shared.messages import FIRST_AUDIO, AsrJob, InputChunk, ReplyEvent, decode, encode
from shared.settings import load_settings
from shared.write_batcher import write_batcher

CHUNK = b"\x01\x00" * 1600  # 100 ms


async def _partials_until_final(redis: Redis, reply_key: str) -> list[str]:
    """The partial texts of the turn, read until its final one (blocking reads: no poll)."""
    texts: list[str] = []
    last = "0-0"
    while True:
        for _key, entries in await redis.xread({reply_key: last}, block=30_000) or []:
            for entry_id, fields in entries:
                last = entry_id.decode()
                event = decode(fields)
                if not isinstance(event, ReplyEvent) or event.event != "partial_transcription":
                    continue
                if event.data["is_final"]:
                    return [*texts, event.data["text"]]
                texts.append(event.data["text"])


@pytest.mark.parametrize("beside", [True, False], ids=["sent-with-the-job", "input-only"])
async def test_every_chunk_is_heard_once_whether_or_not_the_job_carries_the_first(
    redis: Redis, beside: bool
) -> None:
    settings = load_settings(stream_prefix=f"first-{beside}", end_of_speech_ms=0)
    keys = settings.keys
    session, turn = "s1", "t1"
    input_key = keys.asr_input(session, turn)
    batcher = write_batcher(redis)
    job = encode(AsrJob(session, turn))
    if beside:
        job[FIRST_AUDIO] = CHUNK
    # as the gateway sends them: the job (with chunk 1 beside it) and chunk 1, then the rest
    await batcher.xadd(keys.jobs_for("asr", session), job)
    for seq in range(1, 5):
        await batcher.xadd(input_key, encode(InputChunk(seq=seq, audio=CHUNK)))
    await batcher.xadd(input_key, encode(InputChunk(seq=5, end=True)))

    worker = build_asr_worker(redis, settings, EchoAsrEngine())
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        heard = await _partials_until_final(redis, keys.reply(session))
    finally:
        stop.set()
        await running
    assert heard == ["1", "2", "3", "4", "echo 4 chunks"]


def _taken_over() -> float:
    return (
        REGISTRY.get_sample_value("vna_jobs_total", {"stage": "asr", "outcome": "taken_over"})
        or 0.0
    )


async def test_a_restarted_worker_resumes_its_own_job_from_the_checkpoint(redis: Redis) -> None:
    """``WORKER_NAME`` pinned: a worker that restarts re-reads its own pending job. The job
    still carries its first audio, but the turn is under way (chunks 1 and 2 heard), so
    the worker must read the checkpoint, not start afresh with chunk 1 (whose commit would
    be refused as stale, leaving the turn to a reclaim)."""
    settings = load_settings(
        stream_prefix="first-restart", end_of_speech_ms=0, worker_name="asr-a", reclaim_idle_ms=500
    )
    keys = settings.keys
    session, turn = "s1", "t1"
    input_key, reply_key = keys.asr_input(session, turn), keys.reply(session)
    batcher = write_batcher(redis)
    worker = build_asr_worker(redis, settings, EchoAsrEngine())
    (stream,) = worker.streams
    job = encode(AsrJob(session, turn)) | {FIRST_AUDIO: CHUNK}
    await redis.xgroup_create(stream, worker.group, id="0", mkstream=True)
    await batcher.xadd(stream, job)
    for seq in (1, 2):
        await batcher.xadd(input_key, encode(InputChunk(seq=seq, audio=CHUNK)))
    # the worker's earlier life: it took the job up and committed partials 1 and 2
    await redis.xreadgroup(worker.group, worker.consumer, {stream: ">"})
    checkpoint = await TurnCheckpoint(
        redis, keys.checkpoint("asr", session, turn), settings.turn_ttl_seconds
    ).load()
    for seq in (1, 2):
        partial = {"text": str(seq), "is_final": False, "complete": None}
        event = ReplyEvent("partial_transcription", session, turn, partial)
        await checkpoint.commit([Append(reply_key, event)], heard=seq)

    taken_over = _taken_over()
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        for seq in (3, 4):
            await batcher.xadd(input_key, encode(InputChunk(seq=seq, audio=CHUNK)))
        await batcher.xadd(input_key, encode(InputChunk(seq=5, end=True)))
        heard = await _partials_until_final(redis, reply_key)
    finally:
        stop.set()
        await running
    assert heard == ["1", "2", "3", "4", "echo 4 chunks"]
    assert _taken_over() == taken_over, "the restarted worker took its own turn for stale"
