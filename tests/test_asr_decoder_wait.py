"""More utterances at once than the recogniser has decoders: the ones waiting for a
decoder must not take the threads that the ones holding a decoder need to finish.

The worker feeds audio on asyncio's default thread pool (a few threads: cores + 4). An
utterance that waited for a decoder on that pool held a thread while it waited; with
enough waiting at once (eight utterances on two cores, two decoders) every thread was
waiting and no holder could feed, finish or give its decoder back: the ASR worker hung
for good and every spoken turn after it went without an end.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from asr_worker.pocketsphinx_engine import PocketsphinxEngine
from asr_worker.worker import _open_stream

SPEECH = b"\x00\x10" * 3200  # 200 ms of a low tone: something to feed


def test_a_stream_waiting_for_a_decoder_leaves_the_holder_a_thread() -> None:
    # a loop of its own: its default pool is made as small as it gets
    asyncio.run(
        _holder_and_waiter(PocketsphinxEngine(min_score=None, fallback=False, decoder_pool_size=1))
    )


async def _holder_and_waiter(engine: PocketsphinxEngine) -> None:
    pool = ThreadPoolExecutor(max_workers=1)
    asyncio.get_running_loop().set_default_executor(pool)
    holder = await _open_stream(engine)  # the one decoder is lent out
    try:
        waiting = asyncio.create_task(_open_stream(engine))  # waits for it
        await asyncio.sleep(0)  # the waiting open has asked for its decoder
        # the holder goes on through the default pool; with the waiter in that pool's
        # only thread this never ran (the guard below turns the hang into a failure)
        async with asyncio.timeout(60):
            await asyncio.to_thread(holder.feed, SPEECH)
            await asyncio.to_thread(holder.close)
            second = await waiting
        second.close()
    finally:
        holder.close()  # a hung waiter gets the decoder and its thread ends
