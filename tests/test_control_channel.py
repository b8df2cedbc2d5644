"""The control channel keeps listening after a message it could not handle."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from shared.control import CancelRecord, ControlChannel
from shared.keys import Keys


async def test_a_failing_takeover_handler_does_not_stop_the_listener(redis: Redis) -> None:
    keys = Keys("ctl")
    hearing = ControlChannel(redis, keys, 60)
    telling = ControlChannel(redis, keys, 60)
    await hearing.start()
    try:

        def broken_handler() -> None:
            raise RuntimeError("a bug in one connection's takeover handler")

        hearing.on_takeover("s1", "c1", broken_handler)
        await telling.announce_takeover("s1", "c2")
        await telling.cancel("s2", "t1", CancelRecord(chunks_sent=0, sentences_heard=0, at_ms=0))
        async with asyncio.timeout(10):  # a hang guard, not a speed goal
            while not hearing.is_cancelled("s2", "t1"):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert hearing.listening
    finally:
        await hearing.stop()
