"""How long stopping takes, printed as JSON: Ctrl-C of ``voice-agent up`` (SIGINT to its
process group, as a terminal sends it) until the process has exited, and SIGTERM to each
service alone while its Redis stops at the same moment (``compose down``). Also counts
the warning lines printed while stopping (the goal: none) and how long a bad setting
takes to be reported.

    python -m bench.stop_time [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

from shared.embedded_redis import start_embedded_redis
from tests.support import ROOT, free_port

ENV = {"LOG_FORMAT": "text", "LOG_LEVEL": "INFO", "LLM_PROVIDER": "echo"}


def _start(argv: list[str], **env: str) -> subprocess.Popen[str]:
    full = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | ENV | env
    return subprocess.Popen(
        argv, cwd=ROOT, env=full, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _read_until(proc: subprocess.Popen[str], needle: str, count: int = 1) -> None:
    seen = 0
    for line in proc.stderr:  # type: ignore[union-attr]
        seen += needle in line
        if seen >= count:
            return
    raise RuntimeError(f"exited before logging {needle!r}")


def _stop(proc: subprocess.Popen[str], send: callable) -> tuple[float, int]:
    started = time.perf_counter()
    send()
    rest = proc.stderr.read()  # type: ignore[union-attr]
    proc.wait()
    return time.perf_counter() - started, rest.count("WARNING")


def up_ctrl_c() -> tuple[float, int]:
    proc = _start([sys.executable, "-m", "voice_agent.cli", "up"], PORT=str(free_port()))
    _read_until(proc, " consuming ", 3)
    return _stop(proc, lambda: os.killpg(proc.pid, signal.SIGINT))


def service_compose_down(module: str) -> tuple[float, int]:
    store = start_embedded_redis()
    proc = _start([sys.executable, "-m", module], REDIS_URL=store.url, PORT=str(free_port()))
    _read_until(proc, "startup complete" if module == "gateway" else " consuming ")
    time.sleep(0.5)  # past its first reads

    def both() -> None:
        proc.send_signal(signal.SIGTERM)
        store.kill()

    try:
        return _stop(proc, both)
    finally:
        store.stop()


def bad_setting() -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "voice_agent.cli", "up"],
        cwd=ROOT,
        env=os.environ | {"LLM_PROVIDER": "gpt"},
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cases = {"voice-agent up, Ctrl-C": up_ctrl_c}
    for module in ("gateway", "asr_worker", "llm_worker", "tts_worker"):
        cases[f"{module}, SIGTERM + Redis gone"] = lambda m=module: service_compose_down(m)
    report: dict[str, object] = {}
    for name, case in cases.items():
        runs = [case() for _ in range(args.rounds)]
        report[name] = {
            "stop_s_median": round(statistics.median(r[0] for r in runs), 2),
            "stop_s_max": round(max(r[0] for r in runs), 2),
            "warning_lines": sum(r[1] for r in runs),
        }
    report["bad setting reported in s (median)"] = round(
        statistics.median(bad_setting() for _ in range(args.rounds)), 2
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
