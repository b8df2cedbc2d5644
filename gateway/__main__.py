"""``python -m gateway``: the WebSocket gateway alone (workers run elsewhere).

Settings are checked before the server's modules load, so a bad value ends the process
at once with one line. With ``GATEWAY_PROCESSES=N`` (N > 1) this process supervises N
gateway processes that share ``PORT`` through ``SO_REUSEPORT``: one event loop per core,
each with its own relay; sessions and resume work across them because a session's state
is in Redis. It forwards SIGTERM / SIGINT to them (each drains as a single gateway does)
and, if one of them dies, stops the others and exits non-zero, so the orchestrator
restarts the whole set rather than running short of a process unnoticed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from types import FrameType

from shared.settings import Settings, port_free_or_exit, settings_or_exit

PROGRAM = "python -m gateway"
# set by the supervisor for the processes it starts: which one this is (0-based)
CHILD_ENV = "GATEWAY_PROCESS_INDEX"


def main() -> None:
    settings = settings_or_exit(PROGRAM)
    child = os.environ.get(CHILD_ENV)
    if child is None:
        port_free_or_exit(PROGRAM, settings.host, settings.port)
    from gateway.server import gateway_server, page_url, reuse_port_socket
    from shared.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    log = logging.getLogger("gateway")
    if child is None and settings.gateway_processes > 1:
        log.info(
            "gateway on %s (WebSocket /ws/voice), %d processes",
            page_url(settings.host, settings.port),
            settings.gateway_processes,
        )
        raise SystemExit(_supervise(settings))
    server = gateway_server(settings)
    if child is None:
        log.info("gateway on %s (WebSocket /ws/voice)", page_url(settings.host, settings.port))
        server.run()
    else:
        server.run(sockets=[reuse_port_socket(settings.host, settings.port)])


def _supervise(settings: Settings) -> int:
    """Run ``GATEWAY_PROCESSES`` gateways on one port until they stop; their exit code."""
    children = [
        # each in its own process group: a Ctrl-C reaches them once, forwarded from here
        subprocess.Popen(
            [sys.executable, "-m", "gateway"],
            env={**os.environ, CHILD_ENV: str(i)},
            process_group=0,
        )
        for i in range(settings.gateway_processes)
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
        proc.returncode = os.waitstatus_to_exitcode(status)
        if not stopping:
            stopping = True
            code = 1
            print(
                f"{PROGRAM}: gateway process {proc.pid} exited with code {proc.returncode}; "
                "stopping the others so the set restarts whole",
                file=sys.stderr,
            )
            for other in remaining.values():
                other.send_signal(signal.SIGTERM)
        elif proc.returncode not in (0, -signal.SIGTERM, -signal.SIGINT):
            code = code or 1
    return code


if __name__ == "__main__":
    main()
