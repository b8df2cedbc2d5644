"""``GATEWAY_PROCESSES=N``: N gateway processes on one port, started and watched by one.

Each process binds ``PORT`` with ``SO_REUSEPORT`` (``gateway.server.reuse_port_socket``),
so the kernel gives every process its own accept queue and spreads new connections over
them. Sessions and resume work across processes because a session's state is in Redis.

The supervisor forwards SIGTERM / SIGINT (each process drains as a single gateway does)
and, when one process dies, stops the others and exits non-zero, so the orchestrator
restarts the whole set rather than running short of a process unnoticed. The processes
die with their supervisor: on Linux the kernel sends each a SIGTERM when it goes, even by
SIGKILL (``PR_SET_PDEATHSIG``), elsewhere a thread notices the new parent; either way the
process drains and frees the port. ``/metrics`` and ``/health`` describe all processes:
each writes its metrics to files in a directory the supervisor makes
(``PROMETHEUS_MULTIPROC_DIR``, prometheus-client's multiprocess mode), and any process
answers with the sum.

Why not uvicorn's ``workers=`` or gunicorn: uvicorn's process manager (0.55) hands one
shared listening socket to every worker, so whichever process wakes first accepts
(uneven load, which ``SO_REUSEPORT`` avoids); it runs uvicorn's own ``Server``, not the
gateway's draining one; and its workers outlive a killed manager as well (their health
pipe's end only stops a thread). gunicorn with uvicorn workers would bring a second
configuration and signal scheme, replace dead workers one by one (a set short of a
process for a while, or one crash-looping unseen), and still need the multiprocess
metrics. What is left here is about a hundred lines.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from types import FrameType

from shared.settings import Settings

log = logging.getLogger(__name__)

# set by the supervisor for the processes it starts
CHILD_ENV = "GATEWAY_PROCESS_INDEX"  # which one this is (0-based)
PARENT_ENV = "GATEWAY_SUPERVISOR_PID"  # the supervisor's pid: gone = stop
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client reads it at import
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def supervise(settings: Settings, program: str) -> int:
    """Run ``GATEWAY_PROCESSES`` gateways on one port until they stop; their exit code."""
    own_dir = not os.environ.get(METRICS_DIR_ENV)
    metrics_dir = (
        tempfile.mkdtemp(prefix="vna-metrics-") if own_dir else os.environ[METRICS_DIR_ENV]
    )
    env = {**os.environ, PARENT_ENV: str(os.getpid()), METRICS_DIR_ENV: metrics_dir}
    try:
        return _run(settings.gateway_processes, env, metrics_dir, program)
    finally:
        if own_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run(count: int, env: dict[str, str], metrics_dir: str, program: str) -> int:
    from prometheus_client import multiprocess

    children = [
        # each in its own process group: a Ctrl-C reaches them once, forwarded from here
        subprocess.Popen(
            [sys.executable, "-m", "gateway"], env={**env, CHILD_ENV: str(i)}, process_group=0
        )
        for i in range(count)
    ]
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in children:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    remaining = {proc.pid: proc for proc in children}
    while remaining:
        pid, status = os.wait()
        proc = remaining.pop(pid, None)
        if proc is None:
            continue
        multiprocess.mark_process_dead(pid, metrics_dir)  # its open-session gauge goes
        proc.returncode = os.waitstatus_to_exitcode(status)
        if not stopping:
            stopping = True
            code = 1
            print(
                f"{program}: gateway process {proc.pid} exited with code {proc.returncode}; "
                "stopping the others so the set restarts whole",
                file=sys.stderr,
            )
            for other in remaining.values():
                other.send_signal(signal.SIGTERM)
        elif proc.returncode not in (0, -signal.SIGTERM, -signal.SIGINT):
            code = code or 1
    return code


def die_with_supervisor() -> None:
    """In a supervised process: stop (SIGTERM, so it drains) when the supervisor goes."""
    parent = int(os.environ.get(PARENT_ENV, "0"))
    if not parent:
        return
    if not _parent_death_signal(signal.SIGTERM):
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # it went before the signal was armed
        raise SystemExit(f"gateway process {os.getpid()}: the supervisor is gone; not starting")


def _parent_death_signal(signum: int) -> bool:
    """Linux: the kernel sends ``signum`` when the parent dies, however it dies."""
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    return False


def _watch_parent(parent: int) -> None:
    """Elsewhere: an orphan is adopted by another process, so its parent's pid changes."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
