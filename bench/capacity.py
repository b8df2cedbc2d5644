"""Capacity: N concurrent real-time audio sessions against ONE gateway process, as JSON.

Every session streams 100 ms binary PCM frames at real-time pace. The ASR stage runs the
``echo`` engine, which answers every chunk with a partial naming the chunk, so each
partial can be matched to its frame: the relay latency is the time from sending a frame
to receiving its partial, through gateway -> Redis -> ASR worker -> Redis -> gateway.

The sessions are driven by separate load-generator processes (``bench/load_client.py``,
about 250 sessions each), so the client's own Python does not queue behind the gateway's
on one event loop. Every process is measured from ``/proc``: CPU percent is of ONE core
(100 = one core busy) over the level's wall time; the machine's core count and load
average are reported with the results, since all processes share those cores.
Reported per session count: p50/p99 relay latency, CPU of gateway, ASR worker, Redis and
load generators, gateway RSS peak and per-session cost, Redis memory.

    python -m bench.capacity [--sessions 10,100,500,1000] [--seconds 10] [--clients N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from shared.embedded_redis import start_embedded_redis
from tests.support import free_port, wait_for_http

ROOT = Path(__file__).resolve().parent.parent

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 2**20


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds used so far, RSS bytes) of a process, from /proc; zeros once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except OSError:
        return 0.0, 0
    return (int(fields[11]) + int(fields[12])) / TICKS, rss_pages * PAGE


def redis_pid(client: redis.Redis) -> int:
    return int(client.info("server")["process_id"])


@contextlib.contextmanager
def services(redis_url: str, max_sessions: int, extra_env: dict[str, str]) -> Iterator[tuple]:
    """One gateway process and one echo ASR worker; yields (ws url, gateway pid, worker pid)."""
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
        **extra_env,
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


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _command_costs(before: dict, after: dict, seconds: float) -> dict[str, dict[str, float]]:
    """Per Redis command over the level: calls per second and Redis CPU in % of a core."""
    costs = {}
    for name, stats in after.items():
        calls = stats["calls"] - before.get(name, {}).get("calls", 0)
        usec = stats["usec"] - before.get(name, {}).get("usec", 0)
        if calls:
            costs[name.removeprefix("cmdstat_")] = {
                "per_second": round(calls / seconds),
                "cpu_percent": round(usec / 1e4 / seconds, 1),
            }
    return dict(sorted(costs.items(), key=lambda item: -item[1]["cpu_percent"])[:5])


def run_level(
    url: str, pids: dict[str, int], sessions: int, seconds: float, clients: int, r: redis.Redis
) -> dict:
    shares = [sessions // clients + (i < sessions % clients) for i in range(clients)]
    redis_before = r.info("memory")["used_memory"]
    commands_before = r.info("commandstats")
    gateway_rss_before = proc_stats(pids["gateway"])[1]
    before = {name: proc_stats(pid)[0] for name, pid in pids.items()}
    wall = time.perf_counter()
    outs = [tempfile.TemporaryFile() for n in shares if n]  # a pipe would fill up and block
    loaders = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "bench/load_client.py"), url, str(n), str(seconds)],
            stdout=out,
        )
        for n, out in zip([n for n in shares if n], outs, strict=True)
    ]
    client_cpu = dict.fromkeys((p.pid for p in loaders), 0.0)
    peak_rss = redis_peak = 0
    while any(p.poll() is None for p in loaders):
        peak_rss = max(peak_rss, proc_stats(pids["gateway"])[1])
        redis_peak = max(redis_peak, r.info("memory")["used_memory"])
        for p in loaders:
            client_cpu[p.pid] = max(client_cpu[p.pid], proc_stats(p.pid)[0])
        time.sleep(0.25)
    elapsed = time.perf_counter() - wall
    after = {name: proc_stats(pid)[0] for name, pid in pids.items()}
    outputs = []
    for out in outs:
        out.seek(0)
        outputs.append(json.loads(out.read() or b"{}"))
        out.close()
    latencies = [ms for out in outputs for ms in out.get("latencies", [])]
    errors = [code for out in outputs for code in out.get("errors", [])]
    failures = [f for out in outputs for f in out.get("failures", [])]
    cpu = {
        f"{name}_cpu_percent": round(100 * (after[name] - before[name]) / elapsed, 1)
        for name in pids
    }
    gateway_cpu_s = after["gateway"] - before["gateway"]
    commands = _command_costs(commands_before, r.info("commandstats"), elapsed)
    return {
        "sessions": sessions,
        "load_processes": len(loaders),
        "frames_sent": sum(out.get("sent", 0) for out in outputs),
        "partials_received": len(latencies),
        "partials_lost": sum(out.get("lost", 0) for out in outputs),
        "relay_ms_p50": pct(latencies, 0.50),
        "relay_ms_p90": pct(latencies, 0.90),
        "relay_ms_p99": pct(latencies, 0.99),
        "relay_ms_max": pct(latencies, 1.0),
        **cpu,
        "load_generator_cpu_percent": round(100 * sum(client_cpu.values()) / elapsed, 1),
        # gateway CPU per relayed frame (one binary frame in, one partial out): the cost
        # that decides how many sessions one dedicated core carries at 10 frames/s
        "gateway_cpu_us_per_frame": (
            round(1e6 * gateway_cpu_s / len(latencies)) if latencies else None
        ),
        "gateway_sessions_per_core_projected": (
            int(len(latencies) / gateway_cpu_s / 10) if latencies and gateway_cpu_s else None
        ),
        "gateway_rss_mb_peak": round(peak_rss / MB, 1),
        "gateway_kb_per_session": round((peak_rss - gateway_rss_before) / 1024 / sessions, 1),
        "redis_used_memory_mb_peak": round(redis_peak / MB, 1),
        "redis_memory_added_mb": round((redis_peak - redis_before) / MB, 1),
        "redis_commands": commands,
        "error_events": len(errors),
        "error_codes": sorted(set(errors)),
        "failures": len(failures),
        "failure_kinds": sorted(set(failures))[:5],
        "seconds": round(elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", default="10,100,500,1000")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio streamed per session")
    parser.add_argument(
        "--clients", type=int, default=0, help="load-generator processes (0: one per 250 sessions)"
    )
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the services")
    args = parser.parse_args()
    levels = [int(n) for n in args.sessions.split(",")]
    extra_env = dict(item.split("=", 1) for item in args.env)
    results = []
    load_at_start = os.getloadavg()
    with start_embedded_redis() as server, services(server.url, max(levels), extra_env) as svc:
        url, gateway_pid, worker_pid = svc
        client = redis.Redis.from_url(server.url)
        pids = {"gateway": gateway_pid, "asr_worker": worker_pid, "redis": redis_pid(client)}
        time.sleep(1.0)
        idle_rss = proc_stats(gateway_pid)[1]
        for sessions in levels:
            clients = args.clients or max(1, math.ceil(sessions / 250))
            results.append(run_level(url, pids, sessions, args.seconds, clients, client))
            print(json.dumps(results[-1]), file=sys.stderr)
            time.sleep(2.0)  # let the previous level's sockets close
    report = {
        "machine": {
            "cores": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in load_at_start],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "services_env": extra_env,
        "gateway_rss_mb_idle": round(idle_rss / MB, 1),
        "levels": results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
