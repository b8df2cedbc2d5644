"""CPU cost of the hot Redis paths of one process, as JSON: batched XADDs and mux reads.

Every audio frame a gateway relays is one ``WriteBatcher`` XADD (``shared/streams.py``)
and, on the way back, one entry delivered by the ``StreamMux`` (``shared/mux.py``), both
sent through ``shared/resp.py``. This measures this process's CPU time (not wall time)
per write and per delivered entry against an embedded valkey-server, for the code of the
checkout it runs from:

    python -m bench.stream_io [--writers 100] [--writes 100] [--rounds 3]

Prints the median of the rounds; compare two checkouts by running it from each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from shared.embedded_redis import start_embedded_redis
from shared.mux import StreamMux
from shared.streams import connect
from shared.write_batcher import WriteBatcher

AUDIO = b"\x00" * 3200  # one 100 ms frame of 16 kHz PCM


async def one_round(url: str, writers: int, writes: int) -> dict[str, float]:
    redis = connect(url)
    await redis.flushdb()
    batcher = WriteBatcher(redis)
    mux = StreamMux(redis, "bench:wake")
    delivered = 0
    all_in = asyncio.Event()
    total = writers * writes

    def deliver(_entry_id: str, _fields: dict[bytes, bytes]) -> None:
        nonlocal delivered
        delivered += 1
        if delivered == total:
            all_in.set()

    keys = [f"bench:s{n}" for n in range(writers)]
    mux.start()
    for key in keys:
        await mux.subscribe(key, deliver)

    async def writer(key: str) -> None:
        for _ in range(writes):  # each awaits its own write, as a session does
            await batcher.xadd(key, {b"a": AUDIO}, maxlen=1000, ttl=60)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(writer(key) for key in keys))
    await all_in.wait()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await mux.stop()
    await redis.delete(*keys)
    await redis.aclose()
    return {
        "cpu_us_per_frame": 1e6 * cpu / total,  # one write plus one delivery
        "frames_per_s": total / wall,
        "round_trips_per_1000_writes": 1000 * batcher.round_trips / total,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writers", type=int, default=100)
    parser.add_argument("--writes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with start_embedded_redis() as server:
        rounds = [
            await one_round(server.url, args.writers, args.writes) for _ in range(args.rounds)
        ]
    report = {name: round(statistics.median(r[name] for r in rounds), 1) for name in rounds[0]}
    report.update(writers=args.writers, writes_each=args.writes, rounds=args.rounds)
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
