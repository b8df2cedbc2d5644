"""Memory: RSS of each service as its own process, of the all-in-one process, and the
gateway's cost per session, printed as JSON.

1. Separate services: an embedded valkey, then ``python -m gateway``, ``asr_worker``,
   ``llm_worker`` and ``tts_worker`` with the offline engines and local fixture feeds.
   Peak RSS of each (sampled every 50 ms) idle, then while ``--sessions`` concurrent
   sessions run spoken and typed turns.
2. Gateway per-session cost: ``--idle-sessions`` WebSocket sessions held open (connected,
   silent); (RSS with them - RSS before) / sessions. The streaming cost per session is in
   ``bench/capacity.py`` (``gateway_kb_per_session``).
3. All-in-one: ``voice-agent up`` with its embedded valkey (``bench/memory_all_in_one.py``).

Goals: gateway <= 80 MB + <= 100 KB per session; all-in-one well under 512 MB.

    python -m bench.memory [--rounds 1] [--sessions 4] [--idle-sessions 500]
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import websockets

from bench.memory_all_in_one import (
    MB,
    Sampler,
    measure_all_in_one,
    rss,
    run_turns,
)
from shared.embedded_redis import start_embedded_redis
from tests.support import E2E_FEEDS, free_port, serve_fixtures, wait_for_http

ROOT = Path(__file__).resolve().parent.parent

SERVICES = ("gateway", "asr_worker", "llm_worker", "tts_worker")


@contextlib.contextmanager
def separate_services(max_sessions: int) -> Iterator[tuple[str, dict[str, int]]]:
    """Valkey + the four services as processes; yields (ws url, {name: pid}) once ready."""
    base = serve_fixtures()
    port = free_port()
    feeds = ",".join(f"{s.split('=')[0]}={base}{s.split('=')[1]}" for s in E2E_FEEDS)
    with start_embedded_redis() as server:
        env = {
            **os.environ,
            "REDIS_URL": server.url,
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "NEWS_FEEDS": feeds,
            "LOG_LEVEL": "WARNING",
            "MAX_WEBSOCKET_CONNECTIONS": str(max_sessions + 10),
        }
        procs = {
            name: subprocess.Popen([sys.executable, "-m", name], cwd=ROOT, env=env)
            for name in SERVICES
        }
        try:
            wait_for_http(f"http://127.0.0.1:{port}/ready", procs["gateway"])
            yield f"ws://127.0.0.1:{port}/ws/voice", {n: p.pid for n, p in procs.items()}
        finally:
            for proc in procs.values():
                proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                proc.wait(30)


async def hold_idle_sessions(ws_url: str, count: int, gateway_pid: int) -> dict[str, float]:
    """Open ``count`` silent sessions; the gateway's RSS before and with them."""
    before = rss(gateway_pid)
    sockets = []
    for start in range(0, count, 50):
        batch = [
            websockets.connect(ws_url, open_timeout=60, compression=None)
            for _ in range(min(50, count - start))
        ]
        opened = await asyncio.gather(*batch)
        await asyncio.gather(*(ws.recv() for ws in opened))  # connected
        sockets += opened
    await asyncio.sleep(1.0)
    with_sessions = rss(gateway_pid)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {
        "sessions": count,
        "gateway_rss_mb_before": round(before / MB, 1),
        "gateway_rss_mb_with_sessions": round(with_sessions / MB, 1),
        "gateway_kb_per_idle_session": round((with_sessions - before) / 1024 / count, 1),
    }


def measure_services(rounds: int, sessions: int, idle_sessions: int) -> dict[str, Any]:
    with separate_services(max(idle_sessions, sessions)) as (ws_url, pids):
        time.sleep(3)  # engines loaded, feeds warm
        sampler = Sampler(pids)
        time.sleep(2)
        idle = sampler.mark()
        started = time.perf_counter()
        turns = asyncio.run(run_turns(ws_url, rounds, sessions))
        busy_seconds = time.perf_counter() - started
        busy = sampler.mark()
        per_session = asyncio.run(hold_idle_sessions(ws_url, idle_sessions, pids["gateway"]))
        sampler.stop()
    return {
        "idle_rss_mb": idle,
        "busy_peak_rss_mb": busy,
        "busy": {"sessions": sessions, "seconds": round(busy_seconds, 1), "turns": turns},
        "gateway_per_session": per_session,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of 3 spoken + 3 typed turns")
    parser.add_argument("--sessions", type=int, default=4, help="concurrent busy sessions")
    parser.add_argument("--idle-sessions", type=int, default=500)
    args = parser.parse_args()
    report = {
        "machine": {
            "cores": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "separate_services": measure_services(args.rounds, args.sessions, args.idle_sessions),
        "all_in_one": measure_all_in_one(args.rounds, args.sessions),
        "goals": {"gateway_mb": 80, "gateway_kb_per_session": 100, "all_in_one_mb": 512},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
