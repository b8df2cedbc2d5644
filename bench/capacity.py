"""Capacity: real-time audio sessions against the gateway and the minimal reference, as JSON.

Every session streams 100 ms binary PCM frames of speech-like audio at real-time pace.
The ASR stage runs the ``echo`` engine, which answers every chunk with a partial naming
it, so each partial is matched to its frame: the relay latency is the time from sending a
frame to receiving its partial, through gateway -> Redis -> ASR worker -> Redis ->
gateway. ``bench/minimal_server.py`` (``websockets`` + uvloop, an XADD and a reply per
frame) runs the same load in the same run, so every level reports the two ratios issue 17
sets goals for: gateway relay p99 / minimal p99 (goal <= 2) and gateway CPU per frame /
minimal CPU per frame (goal <= 1.2), plus the ASR worker's CPU per frame over the
gateway's (goal <= 0.5). Runs alternate (minimal, gateway, minimal, gateway, ...), each
server started fresh, so the machine's changing load falls on both.

``--relay`` adds ``bench/minimal_relay.py`` to every round: the same four Redis hops
through a separate worker process as the gateway makes, and nothing else, so the report
splits the gateway's distance from the minimal server into what the system's shape costs
(floor / minimal) and what the project adds (gateway / floor). Each level also reports
the first partial of every utterance apart (``first_partial_ms_*``: it waits for the turn
to open) and the p99 of the other frames (``relay_ms_p99_after_first``).

Load generators (``bench/load_client.py``, one per 100 sessions) are separate processes;
servers' CPU is read from ``/proc`` over the streaming window only (a handshake with the
generators). With 4 or more cores the generators are pinned (``taskset``) to their own
cores, away from the servers; with fewer they share every core with them, which the
report says.

A run that relays nothing, or loses more than ``--max-lost`` of its partials, makes the
bench exit 1 with one line saying which (after printing the JSON): a benchmark that
silently measures nothing is worse than none.

    python -m bench.capacity [--sessions 10,100] [--rounds 2] [--seconds 10] [--relay]
    python -m bench.capacity --find-capacity --processes 1,2,4 [--p99-ms 50]

``--find-capacity`` raises the sessions in steps of ``--step`` for each gateway process
count until relay p99 exceeds ``--p99-ms`` (or partials are lost) and reports the last
level held. With ``--pin`` (``os.sched_setaffinity``) one gateway process runs alone on
core 0 and the ASR worker, Redis and the load generators on core 1, so the level held is
the sessions one gateway core holds (``sessions_per_gateway_core``); ``--pin asr_worker``
puts the echo ASR worker alone on core 0 instead.

    python -m bench.capacity --find-capacity --pin [gateway|asr_worker] [--step 50]

``--variant NAME=VALUE[,NAME=VALUE...]`` (repeatable) adds, to every round, the gateway and
worker started again with those settings, and reports its CPU per frame and latencies over
the unchanged gateway's of the same round (``variants``): e.g. each use of the lean Redis
path against plain redis-py, ``--variant REDIS_PLAIN_CALLS=writes``.

    python -m bench.capacity --sessions 10,100 --variant REDIS_PLAIN_CALLS=all
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from shared.embedded_redis import start_embedded_redis
from tests.support import free_port, wait_for_http

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 2**20
SESSIONS_PER_GENERATOR = 100


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc; 0 once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except OSError:
        return 0


def children(pid: int) -> list[int]:
    """Direct child processes (a ``GATEWAY_PROCESSES`` supervisor's gateways)."""
    found = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


@dataclass
class Stack:
    """The servers under test: a ws URL and, per role, the pids whose CPU is counted."""

    url: str
    pids: dict[str, list[int]]
    server_cpus: str | None


@dataclass
class Placement:
    """Which cores servers and load generators may use (``taskset -c`` lists)."""

    cores: int
    servers: str | None = None
    generators: str | None = None
    note: str = ""
    alone: str | None = None  # --pin: this role alone on core 0, every other process on 1

    @classmethod
    def for_machine(cls, pin: bool, alone: str | None = None) -> Placement:
        cores = len(os.sched_getaffinity(0))
        if alone:
            note = f"{alone} alone on core 0; the other servers and load generators on core 1"
            return cls(cores, note=note, alone=alone)
        if not pin or cores < 4:
            note = f"{cores} cores: load generators share every core with the servers"
            return cls(cores, note=note if cores < 4 else "pinning off")
        split = cores - max(1, cores // 4)  # a quarter of the cores drive the load
        return cls(
            cores,
            servers=f"0-{split - 1}",
            generators=f"{split}-{cores - 1}",
            note=f"servers on cores 0-{split - 1}, load generators on {split}-{cores - 1}",
        )

    def command(self, cpus: str | None, argv: list[str]) -> list[str]:
        return ["taskset", "-c", cpus, *argv] if cpus else argv

    def pin(self, role: str, pid: int) -> None:
        """With ``--pin``: ``role`` to core 0 if it is the one measured, else to core 1."""
        if self.alone:
            os.sched_setaffinity(pid, {0 if role == self.alone else 1})


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def minimal_stack(redis_url: str, place: Placement) -> Iterator[Stack]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.minimal_server", str(port), redis_url]
    proc = subprocess.Popen(place.command(place.servers, argv), cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise SystemExit("bench.capacity: the minimal server did not start")
        yield Stack(f"ws://127.0.0.1:{port}/", {"server": [proc.pid]}, place.servers)
    finally:
        _stop([proc])


@contextlib.contextmanager
def relay_stack(redis_url: str, place: Placement) -> Iterator[Stack]:
    """``bench/minimal_relay.py``: the same four Redis hops as the gateway, nothing else."""
    port = free_port()
    roles = {
        "front": ["front", str(port), redis_url],
        "worker": ["worker", redis_url],
    }
    procs: dict[str, subprocess.Popen] = {}
    try:
        for role in ("worker", "front"):  # the worker listens before any frame is sent
            argv = [sys.executable, "-m", "bench.minimal_relay", *roles[role]]
            procs[role] = subprocess.Popen(
                place.command(place.servers, argv), cwd=ROOT, stdout=subprocess.PIPE
            )
            stdout = procs[role].stdout
            assert stdout is not None
            if stdout.readline().strip() != b"ready":
                raise SystemExit(f"bench.capacity: the minimal relay's {role} did not start")
        pids = {role: [proc.pid] for role, proc in procs.items()}
        yield Stack(f"ws://127.0.0.1:{port}/", pids, place.servers)
    finally:
        _stop(list(procs.values()))


@contextlib.contextmanager
def gateway_stack(
    redis_url: str, place: Placement, processes: int, max_sessions: int, extra: dict[str, str]
) -> Iterator[Stack]:
    """``GATEWAY_PROCESSES`` gateways behind one port and one echo ASR worker."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "ASR_PROVIDER": "echo",
        "LOG_LEVEL": "WARNING",
        "GATEWAY_PROCESSES": str(processes),
        "MAX_WEBSOCKET_CONNECTIONS": str(max_sessions + 10),
        "WORKER_CONCURRENCY": str(max_sessions + 10),
        "MAX_UTTERANCE_SECONDS": "3600",
        **extra,
    }
    procs = [
        subprocess.Popen(
            place.command(place.servers, [sys.executable, "-m", module]), cwd=ROOT, env=env
        )
        for module in ("gateway", "asr_worker")
    ]
    for module, proc in zip(("gateway", "asr_worker"), procs, strict=True):
        place.pin(module, proc.pid)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", procs[0])
        gateways = children(procs[0].pid) if processes > 1 else [procs[0].pid]
        pids = {"gateway": gateways, "asr_worker": [procs[1].pid]}
        yield Stack(f"ws://127.0.0.1:{port}/ws/voice", pids, place.servers)
    finally:
        _stop(procs)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _command_costs(before: dict, after: dict, seconds: float) -> dict[str, dict[str, float]]:
    """Per Redis command over the window: calls per second and Redis CPU in % of a core."""
    costs = {}
    for name, stats in after.items():
        calls = stats["calls"] - before.get(name, {}).get("calls", 0)
        usec = stats["usec"] - before.get(name, {}).get("usec", 0)
        if calls:
            costs[name.removeprefix("cmdstat_")] = {
                "per_second": round(calls / seconds),
                "cpu_percent": round(usec / 1e4 / seconds, 1),
            }
    return dict(sorted(costs.items(), key=lambda item: -item[1]["cpu_percent"])[:4])


@dataclass
class _Generators:
    procs: list[subprocess.Popen] = field(default_factory=list)
    outs: list[str] = field(default_factory=list)

    def expect(self, word: bytes) -> None:
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != word:
                raise SystemExit(f"bench.capacity: a load generator said {line!r}, not {word!r}")

    def tell(self, line: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()


def run_level(
    stack: Stack, sessions: int, seconds: float, place: Placement, r: redis.Redis
) -> dict:
    count = max(1, math.ceil(sessions / SESSIONS_PER_GENERATOR))
    shares = [sessions // count + (i < sessions % count) for i in range(count)]
    gen = _Generators()
    with tempfile.TemporaryDirectory() as tmp:
        for i, n in enumerate(shares):
            out = f"{tmp}/gen{i}.json"
            argv = [sys.executable, "-m", "bench.load_client", stack.url, str(n), str(seconds), out]
            gen.procs.append(
                subprocess.Popen(
                    place.command(place.generators, argv),
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
            )
            gen.outs.append(out)
            place.pin("load_generator", gen.procs[-1].pid)
        try:
            gen.expect(b"READY")
            rss_before = {p: rss_bytes(p) for p in stack.pids.get("gateway", [])}
            load_average = os.getloadavg()[0]
            commands_before = r.info("commandstats")
            cpu_before = {p: cpu_seconds(p) for pids in stack.pids.values() for p in pids}
            cpu_before |= {p.pid: cpu_seconds(p.pid) for p in gen.procs}
            wall = time.monotonic()
            begin = wall + 0.3
            gen.tell(f"GO {begin}")
            gen.expect(b"DONE")
            window = time.monotonic() - wall
            cpu = {p: cpu_seconds(p) - before for p, before in cpu_before.items()}
            commands = _command_costs(commands_before, r.info("commandstats"), window)
            rss_after = {p: rss_bytes(p) for p in stack.pids.get("gateway", [])}
            gen.tell("CLOSE")
            for proc in gen.procs:
                proc.wait(60)
        finally:
            _stop([p for p in gen.procs if p.poll() is None])
        outputs = [json.loads(Path(out).read_text()) for out in gen.outs]
    timed = [(sent_at - begin, ms) for out in outputs for sent_at, ms, _n in out["latencies"]]
    latencies = [ms for _at, ms in timed]
    # an utterance's first partial waits for its turn to open (the job, the worker taking
    # it up); with one utterance per session these are 1 % of the frames: the p99's share
    first = [ms for out in outputs for _at, ms, n in out["latencies"] if n == 1]
    later = [ms for out in outputs for _at, ms, n in out["latencies"] if n > 1]
    sent = sum(out["sent"] for out in outputs)
    relayed = len(latencies)
    result: dict[str, object] = {
        "sessions": sessions,
        "load_average_1m": round(load_average, 2),
        "frames_sent": sent,
        "partials_received": relayed,
        "partials_lost": sum(out["lost"] for out in outputs),
        "relay_ms_p50": pct(latencies, 0.50),
        "relay_ms_p90": pct(latencies, 0.90),
        "relay_ms_p99": pct(latencies, 0.99),
        "relay_ms_max": pct(latencies, 1.0),
        "relay_ms_p99_by_second": _p99_by_second(timed),
        "first_partial_ms_p50": pct(first, 0.50),
        "first_partial_ms_p99": pct(first, 0.99),
        "relay_ms_p99_after_first": pct(later, 0.99),
    }
    for role, pids in stack.pids.items():
        used = sum(cpu[p] for p in pids)
        result[f"{role}_cpu_percent"] = round(100 * used / window, 1)
        result[f"{role}_cpu_us_per_frame"] = round(1e6 * used / relayed) if relayed else None
    for role in ("gateway",):
        if role in stack.pids:
            result["gateway_rss_mb"] = round(sum(rss_after.values()) / MB, 1)
            grown = sum(rss_after.values()) - sum(rss_before.values())
            result["gateway_kb_per_session_while_streaming"] = round(grown / 1024 / sessions, 1)
    generator_cpu = sum(cpu[p.pid] for p in gen.procs)
    result["load_generator_cpu_percent"] = round(100 * generator_cpu / window, 1)
    result["load_generator_late_sends"] = sum(out["late_sends"] for out in outputs)
    result["redis_commands"] = commands
    errors = [code for out in outputs for code in out["errors"]]
    failures = [f for out in outputs for f in out["failures"]]
    result["error_events"], result["error_codes"] = len(errors), sorted(set(errors))
    result["failures"], result["failure_kinds"] = len(failures), sorted(set(failures))[:5]
    result["window_seconds"] = round(window, 1)
    return result


def _p99_by_second(timed: list[tuple[float, float]]) -> list[float | None]:
    """Relay p99 of the frames sent in each second of the window: a stall shows where
    it happened (e.g. every utterance opening at once in the first second)."""
    seconds: dict[int, list[float]] = {}
    for at, ms in timed:
        seconds.setdefault(max(0, int(at)), []).append(ms)
    return [pct(seconds.get(n, []), 0.99) for n in range(max(seconds, default=-1) + 1)]


def lost_share(level: dict) -> float:
    return 1.0 - level["partials_received"] / level["frames_sent"] if level["frames_sent"] else 1.0


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _settings(variant: str) -> dict[str, str]:
    """``NAME=VALUE,NAME=VALUE`` as a dict (a value may hold commas: ``A=x,y,B=z``)."""
    return dict(item.split("=", 1) for item in re.split(r",(?=[A-Z_]+=)", variant))


def _over(variant: dict, gateway: dict) -> dict[str, float | None]:
    """A variant's figures over the unchanged gateway's of the same round."""
    return {
        f"{figure}_over_unchanged": _ratio(variant[figure], gateway[figure])
        for figure in (
            "gateway_cpu_us_per_frame",
            "asr_worker_cpu_us_per_frame",
            "relay_ms_p50",
            "relay_ms_p99",
            "relay_ms_p99_after_first",
        )
    }


def compare(
    redis_url: str, place: Placement, args: argparse.Namespace, extra: dict[str, str]
) -> tuple[dict, list[str]]:
    """Interleaved minimal / gateway runs per level; the ratios per pair."""
    r = redis.Redis.from_url(redis_url)
    levels = [int(n) for n in args.sessions.split(",")]
    report: dict[str, list] = {"levels": []}
    problems: list[str] = []
    for sessions in levels:
        pairs = []
        for round_index in range(args.rounds):
            pair = {}
            gateways = ["gateway", *args.variant]
            if round_index % 2:  # the order alternates: neither side always runs first
                gateways.reverse()
            names = ["minimal", "relay"] if args.relay else ["minimal"]
            for name in names + gateways:
                r.flushall()
                if name == "minimal":
                    stack = minimal_stack(redis_url, place)
                elif name == "relay":
                    stack = relay_stack(redis_url, place)
                else:
                    env = extra | (_settings(name) if name != "gateway" else {})
                    stack = gateway_stack(redis_url, place, args.processes, sessions, env)
                with stack as running:
                    time.sleep(1.0)  # let it settle after start
                    pair[name] = run_level(running, sessions, args.seconds, place, r)
                print(json.dumps({name: pair[name]}), file=sys.stderr)
                share = lost_share(pair[name])
                if share > args.max_lost:
                    problems.append(
                        f"{name} at {sessions} sessions relayed {pair[name]['partials_received']}"
                        f" of {pair[name]['frames_sent']} frames ({100 * share:.1f}% lost,"
                        f" more than --max-lost {100 * args.max_lost:g}%)"
                    )
            gw, mini = pair["gateway"], pair["minimal"]
            pair["ratios"] = {
                "relay_p99_gateway_over_minimal": _ratio(gw["relay_ms_p99"], mini["relay_ms_p99"]),
                "relay_p50_gateway_over_minimal": _ratio(gw["relay_ms_p50"], mini["relay_ms_p50"]),
                "relay_p99_after_first_gateway_over_minimal": _ratio(
                    gw["relay_ms_p99_after_first"], mini["relay_ms_p99_after_first"]
                ),
                "cpu_per_frame_gateway_over_minimal": _ratio(
                    gw["gateway_cpu_us_per_frame"], mini["server_cpu_us_per_frame"]
                ),
                "cpu_per_frame_asr_worker_over_gateway": _ratio(
                    gw["asr_worker_cpu_us_per_frame"], gw["gateway_cpu_us_per_frame"]
                ),
            }
            if "relay" in pair:
                relay = pair["relay"]
                relay_cpu = relay["front_cpu_us_per_frame"]
                pair["ratios"] |= {
                    "relay_p99_floor_over_minimal": _ratio(
                        relay["relay_ms_p99"], mini["relay_ms_p99"]
                    ),
                    "relay_p99_gateway_over_floor": _ratio(
                        gw["relay_ms_p99"], relay["relay_ms_p99"]
                    ),
                    "relay_p99_after_first_gateway_over_floor": _ratio(
                        gw["relay_ms_p99_after_first"], relay["relay_ms_p99_after_first"]
                    ),
                    "cpu_per_frame_floor_front_over_minimal": _ratio(
                        relay_cpu, mini["server_cpu_us_per_frame"]
                    ),
                    "cpu_per_frame_gateway_over_floor_front": _ratio(
                        gw["gateway_cpu_us_per_frame"], relay_cpu
                    ),
                }
            if args.variant:
                pair["variants"] = {name: _over(pair[name], gw) for name in args.variant}
            pairs.append(pair)
        report["levels"].append({"sessions": sessions, "pairs": pairs})
    return report, problems


def find_capacity(
    redis_url: str, place: Placement, args: argparse.Namespace, extra: dict[str, str]
) -> tuple[dict, list[str]]:
    """Per gateway process count: the most sessions held at p99 <= --p99-ms, none lost."""
    r = redis.Redis.from_url(redis_url)
    report: dict[str, list] = {"capacity": []}
    problems: list[str] = []
    for processes in [int(n) for n in args.processes_list.split(",")]:
        held, steps = 0, []
        sessions = args.step
        while sessions <= args.max_sessions:
            r.flushall()
            with gateway_stack(redis_url, place, processes, sessions, extra) as running:
                time.sleep(1.0)
                level = run_level(running, sessions, args.seconds, place, r)
            print(json.dumps({"processes": processes, **level}), file=sys.stderr)
            steps.append({k: level[k] for k in ("sessions", "relay_ms_p50", "relay_ms_p99")})
            steps[-1]["lost_percent"] = round(100 * lost_share(level), 2)
            steps[-1]["load_average_1m"] = level["load_average_1m"]
            for role in ("gateway", "asr_worker"):
                steps[-1][f"{role}_cpu_percent"] = level[f"{role}_cpu_percent"]
            if place.alone and level[f"{place.alone}_cpu_percent"]:
                # the same CPU per session, until the core is full: what it carries when
                # other work does not take the core away first
                steps[-1]["sessions_per_core_at_full_cpu"] = round(
                    100 * sessions / level[f"{place.alone}_cpu_percent"]
                )
            if level["partials_received"] == 0:
                problems.append(f"{processes} gateway process(es) relayed nothing at {sessions}")
                break
            p99 = level["relay_ms_p99"]
            if lost_share(level) > args.max_lost or p99 is None or p99 > args.p99_ms:
                break
            held = sessions
            sessions += args.step
        entry = {"gateway_processes": processes, "held": held, "steps": steps}
        if place.alone:  # one process alone on one core: what that core holds
            at_held = [s for s in steps if s["sessions"] == held]
            entry[f"sessions_per_{place.alone}_core"] = held
            entry[f"{place.alone}_cpu_percent_at_held"] = (
                at_held[0][f"{place.alone}_cpu_percent"] if at_held else None
            )
        report["capacity"].append(entry)
    return report, problems


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", default="10,100", help="levels to compare")
    parser.add_argument("--rounds", type=int, default=2, help="minimal/gateway pairs per level")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio streamed per session")
    parser.add_argument("--processes", type=int, default=1, help="GATEWAY_PROCESSES to compare")
    parser.add_argument("--max-lost", type=float, default=0.01, help="share of lost partials")
    parser.add_argument("--find-capacity", action="store_true")
    parser.add_argument("--processes-list", default="1,2,4", help="with --find-capacity")
    parser.add_argument("--p99-ms", type=float, default=50.0, help="with --find-capacity")
    parser.add_argument("--step", type=int, default=50, help="with --find-capacity")
    parser.add_argument("--max-sessions", type=int, default=1000, help="with --find-capacity")
    parser.add_argument(
        "--relay",
        action="store_true",
        help="also run bench/minimal_relay.py (the shape's floor) in every round",
    )
    parser.add_argument("--no-pin", action="store_true", help="never pin with taskset")
    parser.add_argument(
        "--pin",
        nargs="?",
        const="gateway",
        choices=("gateway", "asr_worker"),
        help="with --find-capacity: one process of this role alone on core 0, everything"
        " else on core 1; reports the sessions held per core of it",
    )
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the services")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=VALUE[,NAME=VALUE]: also run the gateway and worker with these settings",
    )
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    place = Placement.for_machine(pin=not args.no_pin, alone=args.pin)
    if args.pin:
        if len(os.sched_getaffinity(0)) < 2 or not args.find_capacity:
            raise SystemExit("bench.capacity: --pin needs --find-capacity and 2 cores or more")
        args.processes_list = "1"
    load_at_start = os.getloadavg()
    with start_embedded_redis() as server:
        with contextlib.suppress(OSError):
            redis_pid = int(redis.Redis.from_url(server.url).info("server")["process_id"])
            if place.servers:
                os.sched_setaffinity(redis_pid, _cpus(place.servers))
            place.pin("redis", redis_pid)
        run = find_capacity if args.find_capacity else compare
        report, problems = run(server.url, place, args, extra)
    machine = {
        "cores": place.cores,
        "placement": place.note,
        "load_average_at_start": [round(x, 2) for x in load_at_start],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps({"machine": machine, "services_env": extra, **report}, indent=2))
    if problems:
        print(f"bench.capacity: FAILED: {'; '.join(problems)}", file=sys.stderr)
        raise SystemExit(1)


def _cpus(spec: str) -> set[int]:
    first, last = (int(x) for x in spec.split("-"))
    return set(range(first, last + 1))


if __name__ == "__main__":
    main()
