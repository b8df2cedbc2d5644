"""The reference server of ``bench/capacity.py``: the least a Redis-backed relay can do.

A plain ``websockets`` server on uvloop: each binary frame is XADDed to the connection's
Redis stream through the project's ``WriteBatcher`` (one pipeline per flush, each caller
awaiting its own write, as the gateway's audio appends do) and answered with a
``partial_transcription`` naming the frame. No ASGI, no session state, no VAD, no worker:
what the gateway adds over this is what the capacity bench's ratios measure.

    python -m bench.minimal_server PORT REDIS_URL
"""

from __future__ import annotations

import itertools
import json
import sys

import uvloop
from websockets.asyncio.server import ServerConnection, serve

from shared.streams import connect
from shared.write_batcher import write_batcher

CONNECTED = json.dumps({"event": "connected", "data": {}})


async def main(port: int, redis_url: str) -> None:
    redis = connect(redis_url)
    batcher = write_batcher(redis)
    ids = itertools.count(1)

    async def handler(ws: ServerConnection) -> None:
        key = f"bench:minimal:{next(ids)}"
        await ws.send(CONNECTED)
        n = 0
        async for message in ws:
            if isinstance(message, bytes):
                n += 1
                await batcher.xadd(key, {b"a": message}, maxlen=600)
                partial = {"text": str(n), "is_final": False}
                await ws.send(json.dumps({"event": "partial_transcription", "data": partial}))

    async with serve(
        handler, "127.0.0.1", port, max_size=1 << 20, compression=None, backlog=2048
    ) as server:
        print("ready", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2]))
