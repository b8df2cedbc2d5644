"""Starting the system and waiting for it: shared by the test suite and the benchmarks.

Real processes on free loopback ports: ``running_system`` is ``voice-agent up`` as a
subprocess against a given Redis and feed server, ready to serve when it yields.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, proc: subprocess.Popen | None = None, limit_s: float = 60) -> None:
    """Poll ``url`` until it answers 2xx; fail early if ``proc`` exits meanwhile."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited early with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).is_success:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {limit_s:.0f} s")


@dataclass(frozen=True)
class System:
    ws_url: str
    http_url: str
    redis_url: str
    log_path: Path


E2E_FEEDS = (
    "general=/e2e/top.xml",
    "technology=/e2e/technology.xml",
    "business=/e2e/business.xml",
    "sports=/e2e/sports.xml",
    "science=/e2e/science.atom",
    "world=/e2e/world.xml",
)


@contextlib.contextmanager
def running_system(
    redis_url: str, fixture_http: str, log_dir: Path, **extra_env: str
) -> Iterator[System]:
    """``voice-agent up`` in a subprocess on a free port, ready to serve, then SIGTERM."""
    port = free_port()
    log_path = log_dir / "voice-agent.log"
    feeds = ",".join(
        f"{spec.split('=')[0]}={fixture_http}{spec.split('=')[1]}" for spec in E2E_FEEDS
    )
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "NEWS_FEEDS": feeds,
        "LOG_LEVEL": "INFO",
        **extra_env,
    }
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voice_agent.cli", "up"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    http_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{http_url}/ready", proc)
    except RuntimeError as exc:
        proc.kill()
        raise RuntimeError(f"{exc}:\n{log_path.read_text()[-3000:]}") from None
    try:
        yield System(f"ws://127.0.0.1:{port}/ws/voice", http_url, redis_url, log_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


class ServiceProcesses:
    """Services started one by one as ``python -m MODULE`` (logs in ``log_dir``); on exit,
    whatever still runs is killed and every process waited for."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self._env = env
        self._log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, module: str, **extra: str) -> subprocess.Popen[bytes]:
        with open(self._log_dir / f"{module}-{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", module],
                cwd=ROOT,
                env={**self._env, **extra},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def __enter__(self) -> ServiceProcesses:
        return self

    def __exit__(self, *_exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
