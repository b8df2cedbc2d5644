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

        heard_later = asyncio.Event()
        hearing.on_takeover("s1", "c1", broken_handler)
        hearing.on_takeover("s2", "c1", heard_later.set)
        await telling.announce_takeover("s1", "c2")
        await telling.cancel("s3", "t1", CancelRecord(chunks_sent=0, sentences_heard=0, at_ms=0))
        await telling.announce_takeover("s2", "c2")
        await heard_later.wait()  # the listener outlived the failing handler
        assert hearing.is_cancelled("s3", "t1") and hearing.listening
    finally:
        await hearing.stop()
