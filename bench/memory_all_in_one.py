"""Memory of the all-in-one process (``voice-agent up``), printed as JSON.

The free Render plan gives one web instance 512 MB, so this measures what the single
process needs: it starts ``voice-agent up`` with its embedded valkey (no ``REDIS_URL``)
and local fixture feeds, samples the resident memory of the agent process and of its
valkey child separately (every 50 ms), idle and while running spoken and typed turns, and
reports the peaks (sampled, and the kernel's high-water mark ``VmHWM``).

    python -m bench.memory_all_in_one [--rounds 2] [--sessions 1]

Uses psutil for the samples when it is installed, else ``/proc/PID/status`` (Linux).
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
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.audio_checks import speech_16k
from tests.support import E2E_FEEDS, free_port, serve_fixtures
from voice_agent.client import VoiceClient

try:
    import psutil
except ImportError:  # optional: /proc works on Linux
    psutil = None

ROOT = Path(__file__).resolve().parent.parent

SPOKEN = ["read me the sports headlines", "any business news today", "next story"]
TYPED = ["business news", "tell me more about the first story", "world headlines"]
MB = 1024 * 1024


def proc_status(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/PID/status`` in bytes (0 once the process is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def rss(pid: int) -> int:
    if psutil is not None:
        with contextlib.suppress(psutil.Error):
            return int(psutil.Process(pid).memory_info().rss)
        return 0
    return proc_status(pid, "VmRSS")


def child_pids(pid: int) -> list[int]:
    if psutil is not None:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


class Sampler:
    """Peak RSS of a set of processes, sampled in a thread; ``mark()`` starts a new phase."""

    def __init__(self, pids: dict[str, int], every_s: float = 0.05) -> None:
        self.pids = pids
        self.every_s = every_s
        self.peaks = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            for name, pid in self.pids.items():
                self.peaks[name] = max(self.peaks[name], rss(pid))

    def mark(self) -> dict[str, float]:
        """Peaks (MB) since the previous mark, then reset."""
        time.sleep(2 * self.every_s)
        peaks, self.peaks = self.peaks, dict.fromkeys(self.pids, 0)
        return {name: round(value / MB, 1) for name, value in peaks.items()}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def all_in_one() -> Iterator[tuple[str, int]]:
    """``voice-agent up`` with the embedded valkey; yields (ws url, pid) once healthy."""
    base = serve_fixtures()
    port = free_port()
    feeds = ",".join(f"{s.split('=')[0]}={base}{s.split('=')[1]}" for s in E2E_FEEDS)
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "NEWS_FEEDS": feeds}
    env.pop("REDIS_URL", None)
    script = Path(sys.executable).with_name("voice-agent")
    argv = (
        [str(script), "up"] if script.exists() else [sys.executable, "-m", "voice_agent.cli", "up"]
    )
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("voice-agent up did not become healthy")
        children = child_pids(proc.pid)
        yield f"ws://127.0.0.1:{port}/ws/voice", proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        for pid in children:  # the embedded valkey, should the agent not have stopped it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


async def session(ws_url: str, rounds: int, audio: dict[str, bytes]) -> dict[str, Any]:
    counts: dict[str, Any] = {"spoken": 0, "typed": 0, "errors": []}
    async with VoiceClient.connect(ws_url) as client:
        for _ in range(rounds):
            for text in SPOKEN:
                turn = await client.say(audio[text], realtime=True)
                counts["spoken"] += 1
                counts["errors"] += [e["code"] for e in turn.errors]
            for text in TYPED:
                turn = await client.ask(text)
                counts["typed"] += 1
                counts["errors"] += [e["code"] for e in turn.errors] + ["no_audio"] * (
                    not turn.chunks
                )
    return counts


async def run_turns(ws_url: str, rounds: int, sessions: int) -> dict[str, Any]:
    audio = {text: speech_16k(text) for text in SPOKEN}
    results = await asyncio.gather(*(session(ws_url, rounds, audio) for _ in range(sessions)))
    return {
        "spoken": sum(r["spoken"] for r in results),
        "typed": sum(r["typed"] for r in results),
        "errors": [code for r in results for code in r["errors"]],
    }


def measure_all_in_one(rounds: int, sessions: int) -> dict[str, Any]:
    """Peak RSS of ``voice-agent up`` and its valkey, idle and while running turns."""
    with all_in_one() as (ws_url, pid):
        time.sleep(3)  # let the workers load their engines
        valkey = next(
            p for p in child_pids(pid) if "valkey" in Path(f"/proc/{p}/cmdline").read_text()
        )
        sampler = Sampler({"agent": pid, "valkey": valkey})
        time.sleep(2)
        idle = sampler.mark()
        started = time.perf_counter()
        turns = asyncio.run(run_turns(ws_url, rounds, sessions))
        seconds = time.perf_counter() - started
        busy = sampler.mark()
        sampler.stop()
        hwm = {name: round(proc_status(p, "VmHWM") / MB, 1) for name, p in sampler.pids.items()}
    return {
        "sampler": "psutil" if psutil is not None else "/proc",
        "idle_rss_mb": idle,
        "busy_peak_rss_mb": busy,
        "vmhwm_mb": hwm,
        "total_peak_mb": round(sum(hwm.values()), 1),
        "turns": turns,
        "sessions": sessions,
        "busy_seconds": round(seconds, 1),
        "render_free_limit_mb": 512,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=1, help="concurrent WebSocket sessions")
    args = parser.parse_args()
    print(json.dumps(measure_all_in_one(args.rounds, args.sessions), indent=2))


if __name__ == "__main__":
    main()
