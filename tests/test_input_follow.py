"""Following one turn's input stream (``InputFollow``), against the real server."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from shared.input_follow import InputFollow
from shared.messages import FIELD, InputChunk, ReplyEvent, encode
from shared.mux import InputIdle, StreamMux, read_start
from shared.write_batcher import write_batcher


async def test_chunks_read_with_the_job_then_pushed_ones_in_order(redis_url: str) -> None:
    """The audio read with the job's checkpoint comes first, then every later chunk, each
    once and in order; entries that are not chunks, or not decodable, are skipped."""
    redis = aioredis.Redis.from_url(redis_url)
    mux = StreamMux(redis, "test:wake-utterance")
    key = "test:utterance-input"
    mux.start()
    batcher = write_batcher(redis)
    try:
        for seq in (1, 2):
            await batcher.xadd(key, encode(InputChunk(seq=seq, audio=b"\0\0")))
        sent = await read_start(redis, key)
        heard: list[int] = []
        async with InputFollow(mux, key, 30.0, sent) as chunks:
            while True:
                _entry_id, chunk = await chunks.next()
                heard.append(chunk.seq)
                if chunk.seq == 2:
                    await batcher.xadd(key, {FIELD: b"\xc1 not msgpack"})
                    await batcher.xadd(key, encode(ReplyEvent("partial", "s", "t")))
                    for seq in (3, 4):
                        await batcher.xadd(key, encode(InputChunk(seq=seq, audio=b"\0\0")))
                    await batcher.xadd(key, encode(InputChunk(seq=5, end=True)))
                if chunk.end:
                    break
    finally:
        await mux.stop()
        await redis.delete(key)
        await redis.aclose()
    assert heard == [1, 2, 3, 4, 5]


async def test_silence_past_the_idle_timeout_ends_the_follow(redis_url: str) -> None:
    """A writer that went away: ``InputIdle`` once no entry came for the idle timeout,
    after the chunks that did come."""
    redis = aioredis.Redis.from_url(redis_url)
    mux = StreamMux(redis, "test:wake-utterance-idle")
    key = "test:utterance-idle"
    mux.start()
    heard: list[int] = []
    try:
        await write_batcher(redis).xadd(key, encode(InputChunk(seq=1, audio=b"\0\0")))
        async with InputFollow(mux, key, 0.5) as chunks:
            with pytest.raises(InputIdle):
                while True:
                    heard.append((await chunks.next())[1].seq)
    finally:
        await mux.stop()
        await redis.delete(key)
        await redis.aclose()
    assert heard == [1]
