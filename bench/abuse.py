"""Abuse: the gateway's memory and Redis's keys before and after hostile clients, as JSON.

The gateway runs alone (``python -m gateway``, no workers: none of this reaches them)
on an embedded valkey. Each round: one session cancels 300 turns that never existed
(``t100``..``t249``, malformed ids), one client floods malformed frames and never reads
its answers until the gateway closes it (1008), and ``--dropped`` sockets connect and
vanish without a close. Drivers: ``tests/abuse_driver.py`` (shared with
``tests/test_abuse.py``, which asserts the key figure).

Goal (issue 12): gateway RSS within 30 MB of where it started; Redis at most a few keys
above its baseline besides the resume records of the connections (which expire with
``RESUME_WINDOW_SECONDS``).

    python -m bench.abuse [--rounds 3] [--dropped 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from bench.memory_all_in_one import MB, rss
from shared.embedded_redis import start_embedded_redis
from tests.abuse_driver import (
    cancel_flood,
    dropped_connections,
    made_up_cancels,
    unread_flood,
)
from tests.support import ROOT, free_port, wait_for_http

PREFIX = "abuse"
NOT_READING = b"does not read its events"


async def _log_says(log: Path, after: int) -> None:
    """Until the gateway logs that it gave up on a client that does not read."""
    for _poll in range(6000):
        if NOT_READING in (await asyncio.to_thread(log.read_bytes))[after:]:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the gateway never closed the flooding client")


async def _sessions_closed(http_url: str) -> None:
    """Until the gateway has let go of every socket."""
    async with httpx.AsyncClient() as http:
        for _poll in range(6000):
            if not (await http.get(f"{http_url}/health", timeout=10)).json()["sessions"]:
                return
            await asyncio.sleep(0.05)
    raise RuntimeError("the gateway still holds sessions")


async def _keys(redis: aioredis.Redis) -> tuple[set[str], int]:
    """(keys other than resume records, resume records)."""
    keys = {key.decode() async for key in redis.scan_iter(count=1000)}
    records = {key for key in keys if key.startswith(f"{PREFIX}:session:")}
    return keys - records, len(records)


async def _round(ws_url: str, http_url: str, log: Path, dropped: int) -> dict[str, int]:
    _session, codes, _ = await cancel_flood(ws_url, made_up_cancels(300))
    mark = (await asyncio.to_thread(log.stat)).st_size
    sent, _answered, code = await unread_flood(ws_url, lambda: _log_says(log, mark))
    await dropped_connections(ws_url, dropped)
    await _sessions_closed(http_url)
    return {"cancel_errors": sum(codes.values()), "flood_frames": sent, "flood_close": code or 0}


async def _abuse(
    gateway_pid: int, redis_url: str, port: int, log: Path, rounds: int, dropped: int
) -> dict[str, Any]:
    http_url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/voice"
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await _round(ws_url, http_url, log, 20)  # warm: imports, pools, first sessions
        start_rss = rss(gateway_pid)
        baseline, _ = await _keys(redis)
        results = [await _round(ws_url, http_url, log, dropped) for _ in range(rounds)]
        end_rss = rss(gateway_pid)
        others, records = await _keys(redis)
    finally:
        await redis.aclose()
    growth = (end_rss - start_rss) / MB
    extra = len(others - baseline)
    return {
        "rounds": rounds,
        "dropped_per_round": dropped,
        "flood_frames": sum(r["flood_frames"] for r in results),
        "flood_closes": sorted({r["flood_close"] for r in results}),
        "cancel_errors": sum(r["cancel_errors"] for r in results),
        "gateway_rss_mb_start": round(start_rss / MB, 1),
        "gateway_rss_mb_end": round(end_rss / MB, 1),
        "gateway_rss_growth_mb": round(growth, 1),
        "redis_keys_above_baseline": extra,
        "resume_records": records,
        "goal_met": growth <= 30 and extra <= 3,
    }


def measure(rounds: int, dropped: int) -> dict[str, Any]:
    port = free_port()
    with start_embedded_redis() as server, tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "gateway.log"
        env = {
            **os.environ,
            "REDIS_URL": server.url,
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "STREAM_PREFIX": PREFIX,
            "LOG_LEVEL": "WARNING",
        }
        with open(log, "wb") as out:
            gateway = subprocess.Popen(
                [sys.executable, "-m", "gateway"], cwd=ROOT, env=env, stdout=out, stderr=out
            )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/health", gateway)
            return asyncio.run(_abuse(gateway.pid, server.url, port, log, rounds, dropped))
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dropped", type=int, default=300)
    args = parser.parse_args()
    started = time.perf_counter()
    result = measure(args.rounds, args.dropped)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
