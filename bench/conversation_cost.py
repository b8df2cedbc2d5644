"""What a conversation costs: CPU per turn and memory of each service, and from these the
conversations an instance holds, printed as JSON.

Each configuration starts the services as separate processes (``python -m gateway``,
``asr_worker``, ``llm_worker``, ``tts_worker``) on an embedded valkey and local fixture
feeds, warms them up (one typed and one spoken turn per session, so every recogniser is
loaded), then with ``--sessions`` WebSocket sessions open:

1. idle: the sessions stay connected and silent for ``--idle-seconds``; the CPU each
   process uses meanwhile (``/proc/PID/stat`` utime + stime) is its idle rate;
2. typed turns (``voice_command``, speech recognised on the phone), then spoken turns
   (16 kHz speech streamed at real-time pace as binary frames), ``--typed-rounds`` and
   ``--rounds`` of three per session, all sessions at once (each spoken turn starts while
   the reply before it still plays, as when someone talks over it; ``--listen`` waits
   until it has played); CPU-milliseconds per turn = (CPU used - idle rate x time) /
   turns, per process; peak RSS from ``VmHWM`` (reset through ``/proc/PID/clear_refs``
   before the turns);
3. Redis memory (``INFO memory`` used_memory) with the sessions open before any turn,
   its peak during the turns and after them, minus the level before the sessions opened,
   per session; and ``MEMORY USAGE`` of every key that names a session, by kind.

Configurations: ``offline`` (pocketsphinx, the built-in news agent, espeak-ng), ``cloud``
(an OpenAI-compatible stand-in on loopback as the agent, ``TTS_FALLBACK=edge,espeak``
with a stand-in of Microsoft's read-aloud service; recognition stays local) and
``all-in-one`` (``voice-agent up``: the whole system in one process, what a free Render
instance runs). Stand-ins run in this process, so their CPU is not counted, as a cloud
service's would not be.

Derived, at one turn per ``--turn-every`` seconds per conversation: conversations per
Render free instance (0.1 CPU, 512 MB, the all-in-one process), per Starter instance
(0.5 CPU, 512 MB) running one service, and per core for each service and for the whole
stack. The CPU budget of an instance is its share minus the services' idle use.

    python -m bench.conversation_cost [--sessions 4] [--rounds 1] [--typed-rounds 4]
        [--turn-every 20] [--configs offline,cloud,all-in-one] [--idle-seconds 5] [--listen]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.asyncio import Redis

from shared.embedded_redis import start_embedded_redis
from tests.audio_checks import speech_16k
from tests.support import E2E_FEEDS, free_port, serve_fixtures, wait_for_http
from voice_agent.client import Turn, VoiceClient

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
MB = 2**20

SPOKEN = ["read me the sports headlines", "any business news today", "next story"]
TYPED = ["business news", "tell me more about the first story", "world headlines"]
TURN_LIMIT_S = 60
SERVICES = ("gateway", "asr_worker", "llm_worker", "tts_worker")
# the stand-in model's reply: about as long as the news agent's spoken headlines
CLOUD_REPLY = (
    "Here are the top stories. Markets were calm today as central banks held rates. "
    "A new bridge opened in the city after three years of work. "
    "The national team won its match in extra time. Want to hear more about any of them?"
)
# edge-tts reads its module-level WSS_URL on every connection: point it at the stand-in
EDGE_TTS_WORKER = (
    "import runpy, sys, edge_tts.communicate as c; c.WSS_URL = sys.argv.pop(1); "
    "runpy.run_module('tts_worker', run_name='__main__', alter_sys=True)"
)

# Render instance types: (CPU share, memory MB)
RENDER_FREE = (0.1, 512)
RENDER_STARTER = (0.5, 512)
KEY_VALUE_MB = (25, 256)  # Render Key Value free and Starter
REPLY_MAXLENS = (2000, 300)  # entries a reply stream keeps: the default, render.free.yaml


# --- pure computation (tests/test_bench_cost.py) ------------------------------------------


def stat_cpu_ms(stat: str) -> float:
    """utime + stime of a ``/proc/PID/stat`` line, in milliseconds (the command name in
    parentheses may hold spaces, so fields are counted from its closing parenthesis)."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / TICKS


def status_kb(status: str, name: str) -> int:
    """A ``kB`` field (``VmHWM``, ``VmRSS``) of ``/proc/PID/status``; 0 when absent."""
    for line in status.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def cpu_ms_per_turn(used_ms: float, idle_ms_per_s: float, seconds: float, turns: int) -> float:
    """CPU a turn costs: what the process used over the turns minus its idle rate over the
    same time, shared out; never below zero (an idle rate measured a little high)."""
    return max(0.0, used_ms - idle_ms_per_s * seconds) / turns if turns else 0.0


def conversations(
    cores: float,
    memory_mb: float,
    ms_per_turn: float,
    turn_every_s: float,
    idle_ms_per_s: float = 0.0,
    base_mb: float = 0.0,
    mb_per_conversation: float = 0.0,
) -> dict[str, Any]:
    """Concurrent conversations that fit: CPU (``cores`` x 1000 ms/s, less the idle use,
    over ``ms_per_turn / turn_every_s`` per conversation) and memory (``memory_mb`` less
    ``base_mb``, over ``mb_per_conversation``); the smaller one holds."""
    budget = cores * 1000 - idle_ms_per_s
    per_conversation = ms_per_turn / turn_every_s
    by_cpu = math.floor(budget / per_conversation) if per_conversation > 0 else None
    by_cpu = max(0, by_cpu) if by_cpu is not None else None
    by_memory = None
    if mb_per_conversation > 0:
        by_memory = max(0, math.floor((memory_mb - base_mb) / mb_per_conversation))
    bounds = {"cpu": by_cpu, "memory": by_memory}
    known = {k: v for k, v in bounds.items() if v is not None}
    limit = min(known, key=lambda k: known[k]) if known else None
    return {
        "conversations": known[limit] if limit else None,
        "limited_by": limit,
        "by_cpu": by_cpu,
        "by_memory": by_memory,
    }


def key_kind(key: str, session_id: str) -> str:
    """``vna:asr:in:SID:t3`` -> ``asr:in``: a session key's kind, prefix and ids dropped."""
    parts = [p for p in key.split(":")[1:] if p != session_id and not _turn_id(p)]
    return ":".join(parts)


def _turn_id(part: str) -> bool:
    return part[:1] == "t" and part[1:].split(".")[0].isdigit()


def redis_sizing(res: dict[str, Any]) -> dict[str, Any]:
    """A session's Redis memory grows with its turns (the reply stream keeps the audio it
    sent, for resuming) until the stream reaches ``REPLY_MAXLEN`` entries; sessions per
    Render Key Value size, after the measured turns and at that cap (the default, and
    the free blueprint's)."""
    keys = res["redis_bytes_per_session"]["session_keys_after_turns"]
    turns = (res["typed"]["turns"] + res["spoken"]["turns"]) / res["sessions"]
    per_entry = keys.get("reply", 0) / max(keys.get("reply_stream_entries", 0), 1)
    now = max(res["redis_bytes_per_session"]["idle_after_turns"], keys["total"], 1)
    at_cap = {n: keys["total"] - keys.get("reply", 0) + n * per_entry for n in REPLY_MAXLENS}
    return {
        "turns_per_session": round(turns, 1),
        "kb_per_session_after_turns": round(now / 1024),
        "kb_per_turn": round(now / 1024 / turns, 1) if turns else None,
        "kb_per_session_at_reply_maxlen": {n: round(b / 1024) for n, b in at_cap.items()},
        "sessions_per_key_value": {
            f"{mb}_mb": {
                "after_turns": math.floor(mb * MB / now),
                **{f"at_reply_maxlen_{n}": math.floor(mb * MB / b) for n, b in at_cap.items()},
            }
            for mb in KEY_VALUE_MB
        },
    }


# --- /proc -----------------------------------------------------------------------------


def cpu_ms(pid: int) -> float:
    try:
        return stat_cpu_ms(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return 0.0


def peak_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        return round(status_kb(Path(f"/proc/{pid}/status").read_text(), "VmHWM") / 1024, 1)
    return 0.0


def reset_peak(pid: int) -> None:
    """Set ``VmHWM`` back to the current RSS (Linux ``clear_refs`` 5), so the peak read
    after the turns is theirs, not the start-up's."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


# --- the system under test -------------------------------------------------------------


@dataclass
class Running:
    ws_url: str
    pids: dict[str, int]  # service -> pid (redis included)
    redis_url: str


def _env(redis_url: str, port: int, sessions: int, extra: dict[str, str]) -> dict[str, str]:
    base = serve_fixtures()
    feeds = ",".join(f"{s.split('=')[0]}={base}{s.split('=')[1]}" for s in E2E_FEEDS)
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "NEWS_FEEDS": feeds,
        "LOG_LEVEL": "WARNING",
        "MAX_WEBSOCKET_CONNECTIONS": str(sessions + 20),
        **extra,
    }


def _stop_with_bench() -> None:
    """In the child: SIGTERM when the bench dies, even killed (Linux parent-death signal),
    so no service outlives a run and joins the next run's consumer groups."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def system(config: str, sessions: int, extra: dict[str, str], edge_url: str) -> Iterator[Running]:
    """The services of ``config`` as processes on a fresh embedded valkey, once ready."""
    port = free_port()
    with start_embedded_redis() as server:
        env = _env(server.url, port, sessions, extra)
        if config == "all-in-one":
            argvs = {"all_in_one": [sys.executable, "-m", "voice_agent.cli", "up"]}
        else:
            argvs = {name: [sys.executable, "-m", name] for name in SERVICES}
            if edge_url:
                argvs["tts_worker"] = [sys.executable, "-c", EDGE_TTS_WORKER, edge_url]
        logs = Path(os.environ.get("BENCH_LOG_DIR", "/tmp"))
        procs = {}
        for name, argv in argvs.items():
            with open(logs / f"conversation_cost-{config}-{name}.log", "wb") as log:
                procs[name] = subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_stop_with_bench,
                )
        try:
            first = next(iter(procs.values()))
            wait_for_http(f"http://127.0.0.1:{port}/ready", first, limit_s=120)
            pids = {name: proc.pid for name, proc in procs.items()}
            pids["redis"] = int(redis.Redis.from_url(server.url).info("server")["process_id"])
            yield Running(f"ws://127.0.0.1:{port}/ws/voice", pids, server.url)
        finally:
            for proc in procs.values():
                proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


# --- the turns -------------------------------------------------------------------------


@dataclass
class Tally:
    turns: int = 0
    reply_chars: int = 0
    errors: list[str] | None = None

    async def take(self, turn: Awaitable[Turn]) -> Turn | None:
        """Count a finished turn; one without an end within the limit is an error
        (``no_end``), counted too (its CPU was spent), and the run goes on."""
        try:
            async with asyncio.timeout(TURN_LIMIT_S + 10):  # the sending too, not only replies
                done = await turn
        except TimeoutError:
            self.turns += 1
            self.errors = [*(self.errors or []), "no_end"]
            return None
        self.add(done)
        return done

    def add(self, turn: Turn) -> None:
        self.turns += 1
        self.reply_chars += len(turn.reply_text)
        codes = [e["code"] for e in turn.errors] + ["no_audio"] * (not turn.chunks)
        self.errors = (self.errors or []) + codes


async def _typed(client: VoiceClient, rounds: int, tally: Tally) -> None:
    for _ in range(rounds):
        for text in TYPED:
            await tally.take(client.ask(text, limit_s=TURN_LIMIT_S))


async def _spoken(
    client: VoiceClient, rounds: int, audio: dict[str, bytes], tally: Tally, listen: bool = False
) -> None:
    """Spoken turns back to back: each starts while the reply before it still plays at the
    client (the gateway checks it for barge-in and echo); ``listen``: after the reply has
    played (its ``audio_ms`` from its first chunk, plus 300 ms)."""
    for _ in range(rounds):
        for text in SPOKEN:
            pcm = audio[text]
            turn = client.say(pcm, limit_s=TURN_LIMIT_S, realtime=True, binary=True)
            done = await tally.take(turn)
            if listen and done is not None and done.complete and done.first_ms("tts_chunk"):
                played_at = done.started_at + done.first_ms("tts_chunk") / 1000  # type: ignore[operator]
                ends = played_at + done.complete.get("audio_ms", 0) / 1000 + 0.3
                await asyncio.sleep(max(0.0, ends - time.perf_counter()))


class Probe:
    """CPU, peak memory and Redis memory of the running services."""

    def __init__(self, running: Running, r: Redis) -> None:
        self.running, self.r = running, r
        self.prefix = os.environ.get("STREAM_PREFIX", "vna")

    def cpu(self) -> dict[str, float]:
        return {name: cpu_ms(pid) for name, pid in self.running.pids.items()}

    async def used_memory(self) -> int:
        return int((await self.r.info("memory"))["used_memory"])

    @contextlib.asynccontextmanager
    async def redis_peak(self) -> AsyncIterator[list[int]]:
        """Samples used_memory every 100 ms while the block runs; yields [peak]."""
        peak = [await self.used_memory()]

        async def sample() -> None:
            while True:
                peak[0] = max(peak[0], await self.used_memory())
                await asyncio.sleep(0.1)

        task = asyncio.create_task(sample(), name="redis-memory-sampler")
        try:
            yield peak
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            peak[0] = max(peak[0], await self.used_memory())

    async def session_keys(self, session_ids: list[str]) -> dict[str, float]:
        """``MEMORY USAGE`` of every key naming a session, by kind, per session (bytes)."""
        kinds: dict[str, int] = {}
        for sid in session_ids:
            async for key in self.r.scan_iter(match=f"*{sid}*", count=1000):
                name = key.decode()
                size = await self.r.memory_usage(name) or 0
                kinds[key_kind(name, sid)] = kinds.get(key_kind(name, sid), 0) + size
        per = {kind: round(size / len(session_ids)) for kind, size in sorted(kinds.items())}
        entries = sum([await self.r.xlen(f"{self.prefix}:reply:{sid}") for sid in session_ids])
        return {
            "total": sum(per.values()),
            "reply_stream_entries": round(entries / len(session_ids)),
            **per,
        }


async def _phase(
    probe: Probe, idle: dict[str, float], clients: list[VoiceClient], work: Any
) -> dict[str, Any]:
    tally = Tally()
    for pid in probe.running.pids.values():
        reset_peak(pid)
    before, started = probe.cpu(), time.monotonic()
    async with probe.redis_peak() as peak:
        await asyncio.gather(*(work(client, tally) for client in clients))
    seconds = time.monotonic() - started
    used = {name: ms - before[name] for name, ms in probe.cpu().items()}
    per_turn = {
        name: round(cpu_ms_per_turn(ms, idle[name], seconds, tally.turns), 1)
        for name, ms in used.items()
    }
    return {
        "turns": tally.turns,
        "seconds": round(seconds, 1),
        "cpu_ms_per_turn": {**per_turn, "total": round(sum(per_turn.values()), 1)},
        "peak_rss_mb": {name: peak_rss_mb(pid) for name, pid in probe.running.pids.items()},
        "redis_used_memory_peak": peak[0],
        "reply_chars_mean": round(tally.reply_chars / tally.turns) if tally.turns else 0,
        "errors": sorted(set(tally.errors or [])),
    }


async def measure(running: Running, args: argparse.Namespace) -> dict[str, Any]:
    sessions, idle_s = args.sessions, args.idle_seconds
    _dump_tasks_on_sigusr2()
    audio = {text: speech_16k(text) for text in SPOKEN}
    speech_s = sum(len(pcm) for pcm in audio.values()) / 32000 / len(audio)
    r = Redis.from_url(running.redis_url, socket_timeout=10)
    probe = Probe(running, r)
    async with contextlib.AsyncExitStack() as warm:  # feeds fetched, every recogniser loaded
        clients = [await warm.enter_async_context(VoiceClient.connect(running.ws_url))]
        clients += [
            await warm.enter_async_context(VoiceClient.connect(running.ws_url))
            for _ in range(sessions - 1)
        ]
        await asyncio.gather(*(_typed(c, 1, Tally()) for c in clients[:1]))
        await asyncio.gather(*(_spoken(c, 1, audio, Tally()) for c in clients))
    await asyncio.sleep(1.0)
    base_memory = await probe.used_memory()
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(VoiceClient.connect(running.ws_url))
            for _ in range(sessions)
        ]
        open_memory = await probe.used_memory()
        before, started = probe.cpu(), time.monotonic()
        await asyncio.sleep(idle_s)
        seconds = time.monotonic() - started
        idle = {name: (ms - before[name]) / seconds for name, ms in probe.cpu().items()}
        typed = await _phase(probe, idle, clients, lambda c, t: _typed(c, args.typed_rounds, t))
        spoken = await _phase(
            probe, idle, clients, lambda c, t: _spoken(c, args.rounds, audio, t, args.listen)
        )
        await asyncio.sleep(1.0)
        after_memory = await probe.used_memory()
        keys = await probe.session_keys([c.session_id for c in clients])
    await r.aclose()
    peak = max(typed.pop("redis_used_memory_peak"), spoken.pop("redis_used_memory_peak"))
    return {
        "sessions": sessions,
        "speech_seconds_per_spoken_turn": round(speech_s, 2),
        "spoken_turns": "after the reply played" if args.listen else "over the playing reply",
        "idle_cpu_ms_per_s": {name: round(v, 2) for name, v in idle.items()},
        "typed": typed,
        "spoken": spoken,
        "redis_bytes_per_session": {
            "open_before_any_turn": round((open_memory - base_memory) / sessions),
            "active_peak_during_turns": round((peak - base_memory) / sessions),
            "idle_after_turns": round((after_memory - base_memory) / sessions),
            "session_keys_after_turns": keys,
        },
    }


def _dump_tasks_on_sigusr2() -> None:
    """``kill -USR2 PID``: every asyncio task's stack on stderr, to see what a run waits for."""

    def dump() -> None:
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, dump)


# --- what it means ---------------------------------------------------------------------


def derive(results: dict[str, Any], every_s: float) -> dict[str, Any]:
    """Conversations per Render instance and per core from the measured configurations."""
    derived: dict[str, Any] = {"turn_every_s": every_s}
    for config, res in results.items():
        idle = res["idle_cpu_ms_per_s"]
        per_kind: dict[str, Any] = {}
        for kind in ("typed", "spoken"):
            phase = res[kind]
            ms, rss = phase["cpu_ms_per_turn"], phase["peak_rss_mb"]
            stack = conversations(1.0, math.inf, ms["total"], every_s, sum(idle.values()))
            entry: dict[str, Any] = {"per_core_whole_stack": stack["by_cpu"]}
            if config == "all-in-one":
                redis_mb = res["redis_bytes_per_session"]["active_peak_during_turns"] / MB
                entry["render_free"] = conversations(
                    *RENDER_FREE,
                    ms["total"],
                    every_s,
                    sum(idle.values()),
                    base_mb=sum(rss.values()),
                    mb_per_conversation=max(redis_mb, 1e-6),
                )
            else:
                entry["per_core"] = {
                    name: conversations(1.0, math.inf, ms[name], every_s, idle[name])["by_cpu"]
                    for name in idle
                }
                entry["per_starter_instance"] = {
                    name: conversations(
                        *RENDER_STARTER, ms[name], every_s, idle[name], base_mb=rss[name]
                    )["conversations"]
                    for name in SERVICES
                    if name in ms
                }
            per_kind[kind] = entry
        if "asr_worker" in res["spoken"]["cpu_ms_per_turn"]:
            speech_ms = 1000 * res["speech_seconds_per_spoken_turn"]
            asr = res["spoken"]["cpu_ms_per_turn"]["asr_worker"]
            per_kind["asr_cores_while_speaking"] = round(asr / speech_ms, 3)
        per_kind["redis"] = redis_sizing(res)
        derived[config] = per_kind
    return derived


async def _run(config: str, args: argparse.Namespace) -> dict[str, Any]:
    extra: dict[str, str] = {}
    if config != "cloud":
        with system(config, args.sessions, extra, "") as running:
            return await measure(running, args)
    from tests.edge_standin import EdgeStandIn, running_edge_standin
    from tests.openai_standin import ChatScript, StandIn, running_standin

    with running_standin(StandIn(), free_port()) as model:
        model.chat = ChatScript(reply=CLOUD_REPLY)
        extra = {
            "LLM_PROVIDER": "openai",
            "LLM_BASE_URL": model.base_url,
            "LLM_API_KEY": model.api_key,
            "TTS_FALLBACK": "edge,espeak",
        }
        async with running_edge_standin(EdgeStandIn()) as edge:
            with system(config, args.sessions, extra, edge.url) as running:
                result = await measure(running, args)
            result["edge_requests"] = len(edge.requests)
    result["model_requests"] = len(model.chat.requests)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=4, help="sessions talking at once")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of 3 spoken turns")
    parser.add_argument("--typed-rounds", type=int, default=4, help="rounds of 3 typed turns")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument(
        "--turn-every", type=float, default=20.0, help="seconds between a conversation's turns"
    )
    parser.add_argument("--configs", default="offline,cloud,all-in-one")
    parser.add_argument(
        "--listen",
        action="store_true",
        help="speak each turn after the previous reply has played, not over it (slower)",
    )
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    started = time.monotonic()
    results = {}
    for config in args.configs.split(","):
        results[config] = asyncio.run(_run(config, args))
        print(json.dumps({config: results[config]}), file=sys.stderr)
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": {
            "cores": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in load_at_start],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "seconds": round(time.monotonic() - started),
        },
        "turns": {"typed": TYPED, "spoken": SPOKEN},
        "configurations": results,
        "derived": derive(results, args.turn_every),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
