"""Clients that stop reading while long replies stream keep the gateway's memory flat.

A real gateway process (``python -m gateway``) and N clients on raw sockets that read
their ``connected`` frame and nothing more. Each session's reply stream then gets a long
spoken reply (audio chunks written as a worker writes them), far more than
``OUTBOX_MAX_BYTES``. The gateway must close every such client (1013) and its resident
memory, read from /proc (the peak, ``VmHWM``), must grow by no more than the clients'
bounds together plus a fixed allowance for the interpreter; with the outbox bounded in
events it grew by the whole replies.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from redis.asyncio import Redis

from shared.messages import ReplyEvent
from shared.settings import load_settings
from shared.streams import ReplyWriter
from tests.support import ServiceProcesses, free_port, wait_for_http
from tests.support.raw_websocket import close_frame, open_sessions

CLIENTS = 6
BOUND = 256 * 1024  # OUTBOX_MAX_BYTES for the test
CHUNKS = 2000  # per reply: 2,000 chunks of 4 KiB audio, 11 MB of frames each
# the interpreter's own growth: allocator, and the relay's reads (up to 256 entries a
# stream at once, about 1 MB each, when it lags behind the writes on a busy machine)
ALLOWANCE = 16 * 1024 * 1024


def memory_kib(pid: int, field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


async def test_clients_that_stop_reading_keep_the_gateway_memory_flat(
    redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": f"{redis_url}/7",
        "STREAM_PREFIX": f"slow{uuid.uuid4().hex[:6]}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "ASR_PROVIDER": "none",
        "OUTBOX_MAX_BYTES": str(BOUND),
        "LOG_LEVEL": "WARNING",
    }
    settings = load_settings(
        redis_url=env["REDIS_URL"], stream_prefix=env["STREAM_PREFIX"], asr_provider="none"
    )
    with ServiceProcesses(env, tmp_path) as services:
        gateway = services.start("gateway")
        await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{port}/health", gateway)
        sockets, sessions = await open_sessions(port, CLIENTS)
        before = memory_kib(gateway.pid, "VmRSS")
        limit_kib = (CLIENTS * BOUND + ALLOWANCE) // 1024

        redis = Redis.from_url(settings.redis_url)
        replies = ReplyWriter(redis, settings.keys, 60, settings.reply_maxlen)
        audio = b"\xff" * 4096
        try:
            for index in range(CHUNKS):  # the replies stream to every client at once
                await asyncio.gather(
                    *(
                        replies.emit(
                            ReplyEvent("tts_chunk", s, "t1", {"chunk_index": index}, audio)
                        )
                        for s in sessions
                    )
                )
                grown = memory_kib(gateway.pid, "VmHWM") - before
                assert grown <= limit_kib, f"gateway grew {grown} KiB past {limit_kib}"
            closes = [await close_frame(reader) for reader, _writer in sockets]
            grown = memory_kib(gateway.pid, "VmHWM") - before
        finally:
            for _reader, writer in sockets:
                writer.close()
            await redis.delete(*(settings.keys.reply(s) for s in sessions))
            await redis.aclose()
    assert closes == [(1013, "client too slow to receive")] * CLIENTS
    assert grown <= limit_kib, f"gateway grew {grown} KiB, bound {limit_kib} KiB"
    print(f"gateway peak growth {grown} KiB with {CLIENTS} clients not reading")
