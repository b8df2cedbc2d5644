"""Checkpointed writes: output and progress land together, and only one worker writes."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from shared.checkpoint import Append, StaleTurn, TurnCheckpoint
from shared.messages import ReplyEvent, decode
from shared.write_batcher import write_batcher


async def test_output_and_progress_are_written_together(redis: Redis) -> None:
    checkpoint = await TurnCheckpoint(redis, "ck:t1", 60).load()
    event = ReplyEvent("tts_chunk", "s", "t1", {"chunk_index": 0}, b"\xff\xf3")
    await checkpoint.commit([Append("reply:s", event, ttl=60, maxlen=100)], chunks=1)
    again = await TurnCheckpoint(redis, "ck:t1", 60).load()
    assert again.resumed and again.number("chunks") == 1
    assert decode((await redis.xrange("reply:s"))[0][1]) == event
    assert 0 < await redis.ttl("reply:s") <= 60 and 0 < await redis.ttl("ck:t1") <= 60


async def test_a_worker_that_lost_the_turn_cannot_write(redis: Redis) -> None:
    stalled = await TurnCheckpoint(redis, "ck:t2", 60).load()
    taker = await TurnCheckpoint(redis, "ck:t2", 60).load()
    await taker.commit([Append("reply:s2", ReplyEvent("tts_chunk", "s2", "t2"))], chunks=1)
    with pytest.raises(StaleTurn):
        await stalled.commit([Append("reply:s2", ReplyEvent("tts_chunk", "s2", "t2"))], chunks=1)
    assert await redis.xlen("reply:s2") == 1
    assert await redis.ttl("reply:s2") == -1  # ttl 0: a stream that must never expire


async def test_commits_of_many_turns_share_round_trips_and_survive_a_script_flush(
    redis: Redis,
) -> None:
    """An ASR worker commits a partial per audio chunk of every utterance: the commits of
    concurrent turns go out in shared pipelines; a Redis that forgot the script (restart,
    ``SCRIPT FLUSH``) gets it again instead of failing the turn."""
    batcher = write_batcher(redis)
    before = batcher.round_trips
    await redis.script_flush()  # the first commits of all 40 turns find no script
    loads_before = await _script_loads(redis)

    async def turn(n: int) -> None:
        checkpoint = await TurnCheckpoint(redis, f"ck:many:{n}", 60).load()
        for seq in range(1, 11):
            event = ReplyEvent("partial_transcription", "s", f"t{n}", {"text": str(seq)})
            await checkpoint.commit([Append(f"reply:many:{n}", event, ttl=60)], heard=seq)
            if n == 0 and seq == 5:
                await redis.script_flush()

    await asyncio.gather(*(turn(n) for n in range(40)))
    for n in range(40):
        texts = [decode(f).data["text"] for _id, f in await redis.xrange(f"reply:many:{n}")]
        assert texts == [str(seq) for seq in range(1, 11)], "each turn's commits, in order, once"
        assert (await TurnCheckpoint(redis, f"ck:many:{n}", 60).load()).number("heard") == 10
    assert 0 < batcher.round_trips - before <= 100, "400 commits of 40 turns share round trips"
    loads = await _script_loads(redis) - loads_before
    assert loads <= 4, f"{loads} SCRIPT LOADs: once per flush, not once per turn"


async def _script_loads(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_script|load", {}).get("calls", 0))
