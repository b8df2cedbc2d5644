"""Capacity: N concurrent real-time audio sessions against ONE gateway process, as JSON.

Every session streams 100 ms binary PCM frames at real-time pace. The ASR stage runs the
``echo`` engine, which answers every chunk with a partial naming the chunk, so each
partial can be matched to its frame: the relay latency is the time from sending a frame
to receiving its partial, through gateway -> Redis -> ASR worker -> Redis -> gateway.
Reported per session count: p50/p99 relay latency, gateway CPU and RSS, Redis memory.

    python bench/capacity.py [--sessions 10,100,500,1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.embedded_redis import start_embedded_redis  # noqa: E402
from tests.conftest import free_port, wait_for_http  # noqa: E402

FRAME = b"\x00\x01" * 1600  # 100 ms of 16 kHz s16le
TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds used so far, RSS bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return cpu, rss_pages * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def services(redis_url: str, max_sessions: int):
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "ASR_PROVIDER": "echo",
        "LOG_LEVEL": "WARNING",
        "MAX_WEBSOCKET_CONNECTIONS": str(max_sessions + 10),
        "WORKER_CONCURRENCY": str(max_sessions + 10),
        "MAX_UTTERANCE_SECONDS": "3600",
    }
    procs = [
        subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env)
        for module in ("gateway", "asr_worker")
    ]
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", procs[0])
        yield f"ws://127.0.0.1:{port}/ws/voice", procs[0].pid, procs[1].pid
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)


async def _session(url: str, seconds: float, latencies: list[float], errors: list[str]) -> None:
    sent_at: dict[str, float] = {}
    async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
        await ws.recv()  # connected

        async def receive() -> None:
            async for frame in ws:
                event = json.loads(frame)
                if event["event"] == "partial_transcription" and not event["data"]["is_final"]:
                    started = sent_at.pop(event["data"]["text"], None)
                    if started is not None:
                        latencies.append((time.perf_counter() - started) * 1000)
                elif event["event"] == "error":
                    errors.append(event["data"]["code"])

        reader = asyncio.create_task(receive())
        start = time.perf_counter()
        frames = int(seconds * 10)
        for n in range(1, frames + 1):
            sent_at[str(n)] = time.perf_counter()
            await ws.send(FRAME)
            delay = start + n * 0.1 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.sleep(1.0)  # let the last partials arrive
        reader.cancel()
        errors.extend(["lost"] * len(sent_at))


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def run_level(
    url: str, gateway_pid: int, worker_pid: int, sessions: int, seconds: float, r
) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    cpu_before, _ = _proc_stats(gateway_pid)
    worker_cpu_before, _ = _proc_stats(worker_pid)
    client_cpu_before, _ = _proc_stats(os.getpid())
    wall = time.perf_counter()
    tasks = []
    for _ in range(sessions):  # ramp up: 100 connections per 100 ms
        tasks.append(asyncio.create_task(_session(url, seconds, latencies, errors)))
        if len(tasks) % 100 == 0:
            await asyncio.sleep(0.1)
    peak_rss = 0
    while not all(t.done() for t in tasks):
        peak_rss = max(peak_rss, _proc_stats(gateway_pid)[1])
        await asyncio.sleep(0.5)
    failures = [t.exception() for t in tasks if t.exception()]
    cpu_after, rss = _proc_stats(gateway_pid)
    worker_cpu_after, _ = _proc_stats(worker_pid)
    client_cpu_after, _ = _proc_stats(os.getpid())
    elapsed = time.perf_counter() - wall
    return {
        "sessions": sessions,
        "frames_sent": sessions * int(seconds * 10),
        "partials_received": len(latencies),
        "relay_ms_p50": _pct(latencies, 0.50),
        "relay_ms_p99": _pct(latencies, 0.99),
        "gateway_cpu_percent": round(100 * (cpu_after - cpu_before) / elapsed, 1),
        "asr_worker_cpu_percent": round(100 * (worker_cpu_after - worker_cpu_before) / elapsed, 1),
        "client_cpu_percent": round(100 * (client_cpu_after - client_cpu_before) / elapsed, 1),
        "gateway_rss_mb_peak": round(peak_rss / 2**20, 1),
        "gateway_rss_mb_after": round(rss / 2**20, 1),
        "redis_used_memory_mb": round(r.info("memory")["used_memory"] / 2**20, 1),
        "errors": len(errors),
        "failed_sessions": len(failures),
        "failure_kinds": sorted({type(f).__name__ + ": " + str(f)[:80] for f in failures}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", default="10,100,500,1000")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    levels = [int(n) for n in args.sessions.split(",")]
    results = []
    with start_embedded_redis() as server, services(server.url, max(levels)) as (url, pid, wpid):
        client = redis.Redis.from_url(server.url)
        _, idle_rss = _proc_stats(pid)
        for sessions in levels:
            results.append(asyncio.run(run_level(url, pid, wpid, sessions, args.seconds, client)))
            print(json.dumps(results[-1]), file=sys.stderr)
    print(
        json.dumps({"gateway_rss_mb_idle": round(idle_rss / 2**20, 1), "levels": results}, indent=2)
    )


if __name__ == "__main__":
    main()
