"""Clients that stop reading while long replies stream: the gateway's memory, as JSON.

The gateway runs alone (``python -m gateway``, no workers) on an embedded valkey.
``--clients`` raw sockets read their ``connected`` frame and nothing more; each session's
reply stream then gets a long spoken reply (``--chunks`` audio chunks of 4 KiB, as a TTS
worker writes them). Reported: the gateway's resident memory before, its peak
(``VmHWM``) after, how the clients were closed. ``--root`` runs another checkout's
gateway (to compare with an earlier version of the code).

    python -m bench.slow_readers [--clients 10] [--chunks 2000] [--root DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

from shared.embedded_redis import start_embedded_redis
from shared.messages import ReplyEvent
from shared.settings import load_settings
from shared.streams import ReplyWriter
from tests.support import ROOT, free_port, wait_for_http
from tests.support.raw_websocket import close_frame, open_sessions
from tests.test_slow_readers import memory_kib

PREFIX = "slowbench"


async def _closes(readers: list[asyncio.StreamReader], pid: int, cap_s: float) -> list:
    """Each client's close (code, reason), or None if it was still open when the
    gateway's memory had stopped growing for 3 s (or after ``cap_s``)."""
    tasks = [asyncio.create_task(close_frame(reader)) for reader in readers]
    last, steady_since, start = memory_kib(pid, "VmRSS"), time.monotonic(), time.monotonic()
    while not all(t.done() for t in tasks) and time.monotonic() - start < cap_s:
        await asyncio.sleep(0.25)
        now = memory_kib(pid, "VmRSS")
        if now > last + 256:
            last, steady_since = now, time.monotonic()
        elif time.monotonic() - steady_since > 3:
            break
    for task in tasks:
        if not task.done():
            task.cancel()
    return [t.result() if t.done() and not t.cancelled() else None for t in tasks]


def _start_gateway(root: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway"], cwd=root, env=env, stdout=out, stderr=out
        )


async def run(clients: int, chunks: int, root: Path, redis_url: str, log: Path) -> dict:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "STREAM_PREFIX": PREFIX,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "ASR_PROVIDER": "none",
        "LOG_LEVEL": "WARNING",
    }
    settings = load_settings(redis_url=redis_url, stream_prefix=PREFIX, asr_provider="none")
    proc = _start_gateway(root, env, log)
    try:
        await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{port}/health", proc)
        sockets, sessions = await open_sessions(port, clients)
        before = memory_kib(proc.pid, "VmRSS")
        redis = aioredis.Redis.from_url(redis_url)
        replies = ReplyWriter(redis, settings.keys, 60, settings.reply_maxlen)
        audio = b"\xff" * 4096
        for index in range(chunks):
            await asyncio.gather(
                *(
                    replies.emit(ReplyEvent("tts_chunk", s, "t1", {"chunk_index": index}, audio))
                    for s in sessions
                )
            )
        closes = await _closes([reader for reader, _ in sockets], proc.pid, 60)
        peak = memory_kib(proc.pid, "VmHWM")
        for _reader, writer in sockets:
            writer.close()
        await redis.delete(*(settings.keys.reply(s) for s in sessions))
        await redis.aclose()
    finally:
        proc.terminate()
        proc.wait(20)
    return {
        "clients": clients,
        "reply_frames_mb_per_client": round(chunks * 5.6 / 1024, 1),
        "gateway_rss_before_mb": round(before / 1024, 1),
        "gateway_peak_rss_mb": round(peak / 1024, 1),
        "growth_mb": round((peak - before) / 1024, 1),
        "growth_per_client_mb": round((peak - before) / 1024 / clients, 2),
        "closed": [list(c) if c else None for c in closes].count(
            [1013, "client too slow to receive"]
        ),
        "closes": sorted({str(c) for c in closes}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args()
    server = start_embedded_redis()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(
                run(args.clients, args.chunks, args.root, server.url, Path(tmp) / "gateway.log")
            )
    finally:
        server.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
