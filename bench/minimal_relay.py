"""The shape's floor for ``bench/capacity.py``: the least a relay through a separate worker
process can do.

The system's shape puts recognition in its own process behind Redis Streams, so every
partial makes four Redis hops through three processes (gateway -> Redis -> ASR worker ->
Redis -> gateway) where ``bench/minimal_server.py`` makes one. This reference makes the same
four hops with nothing else: a front (``websockets`` on uvloop) appends each binary frame,
its audio with it, to one input stream; a worker, pushed each entry (``shared/bells.py``),
appends a partial naming the frame to the front's reply stream; the front, pushed that
entry, answers the connection with a ``partial_transcription``. The audio goes to the
worker because the shape sends it there: the recogniser lives in that process. No ASGI,
sessions, VAD, consumer groups or checkpoints. From the minimal server to this is what
the shape costs; from this to the gateway is what the project adds.

    python -m bench.minimal_relay front PORT REDIS_URL
    python -m bench.minimal_relay worker REDIS_URL
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys

import uvloop
from websockets.asyncio.server import ServerConnection, serve

from shared.bells import BellListener
from shared.messages import FIELD
from shared.streams import connect
from shared.write_batcher import write_batcher

INPUT = "bench:relay:in"
MAXLEN = 10_000
CONNECTED = json.dumps({"event": "connected", "data": {}})


def _partial(frame: bytes) -> str:
    return json.dumps(
        {"event": "partial_transcription", "data": {"text": frame.decode(), "is_final": False}}
    )


async def _listen(redis: object, key: str, on_push: object) -> asyncio.Task[None]:
    """Pushes of ``key`` to ``on_push``; returns once Redis confirmed the subscription."""
    subscribed = asyncio.Event()
    bells = BellListener(redis, key, on_push, lambda _k: subscribed.set(), lambda: None)  # type: ignore[arg-type]
    bells.add(key)
    task = asyncio.create_task(bells.run())
    await subscribed.wait()
    return task


async def front(port: int, redis_url: str) -> None:
    redis = connect(redis_url)
    batcher = write_batcher(redis)
    reply_key = f"bench:relay:out:{os.getpid()}"
    outboxes: dict[bytes, asyncio.Queue[str]] = {}
    ids = itertools.count(1)

    def on_reply(_key: str, push: bytes) -> None:  # b"<entry id> <connection> <frame>"
        _entry, connection, frame = push.split(b" ")
        outbox = outboxes.get(connection)
        if outbox is not None:
            outbox.put_nowait(_partial(frame))

    async def send_loop(ws: ServerConnection, outbox: asyncio.Queue[str]) -> None:
        while True:
            await ws.send(await outbox.get())

    async def handler(ws: ServerConnection) -> None:
        connection = b"%d" % next(ids)
        outbox = outboxes[connection] = asyncio.Queue()
        prefix = reply_key.encode() + b" " + connection + b" "
        await ws.send(CONNECTED)
        sender = asyncio.create_task(send_loop(ws, outbox))
        n = 0
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    n += 1
                    value = prefix + b"%d " % n + message  # the audio goes to the worker
                    await batcher.xadd(INPUT, {FIELD: value}, maxlen=MAXLEN)
        finally:
            sender.cancel()
            del outboxes[connection]

    listener = await _listen(redis, reply_key, on_reply)
    async with serve(
        handler, "127.0.0.1", port, max_size=1 << 20, compression=None, backlog=2048
    ) as server:
        print("ready", flush=True)
        await server.serve_forever()
    listener.cancel()


async def worker(redis_url: str) -> None:
    redis = connect(redis_url)
    batcher = write_batcher(redis)
    appends: set[asyncio.Task[bytes]] = set()

    def on_input(_key: str, push: bytes) -> None:  # b"<id> <reply key> <conn> <frame> <audio>"
        _entry, reply_key, connection, frame, _audio = push.split(b" ", 4)
        answer = connection + b" " + frame
        task = asyncio.create_task(batcher.xadd(reply_key.decode(), {FIELD: answer}, maxlen=MAXLEN))
        appends.add(task)
        task.add_done_callback(appends.discard)

    await _listen(redis, INPUT, on_input)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["front"]:
        uvloop.run(front(int(sys.argv[2]), sys.argv[3]))
    else:
        uvloop.run(worker(sys.argv[2]))
