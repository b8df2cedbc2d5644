"""Checkpointed writes: output and progress land together, and only one worker writes."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from shared.checkpoint import Append, StaleTurn, TurnCheckpoint
from shared.messages import ReplyEvent, decode


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
