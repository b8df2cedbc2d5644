"""``python -m gateway``: the WebSocket gateway alone (workers run elsewhere)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn

from gateway.app import create_app
from shared.logs import setup_logging
from shared.settings import Settings, load_settings


class _GracefulServer(uvicorn.Server):
    """uvicorn re-raises a captured SIGTERM after its graceful shutdown, killing the process
    before anything after ``serve()`` runs (``voice-agent up`` must still drain its workers
    and stop the embedded Redis). The shutdown already happened: exit normally instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()

    def __init__(self, config: uvicorn.Config, drain_seconds: float) -> None:
        super().__init__(config)
        self._drain_seconds = drain_seconds

    async def shutdown(self, sockets: list | None = None) -> None:  # type: ignore[override]
        """Stop listening, drain the app's sessions (1012 + resume), then shut down."""
        for server in self.servers:
            server.close()
        drain = getattr(getattr(self.config.app, "state", None), "drain", None)
        if drain is not None:
            await drain(self._drain_seconds)
        await super().shutdown(sockets)


def gateway_server(settings: Settings) -> uvicorn.Server:
    """The gateway's uvicorn server (also used by ``voice-agent up``).

    Frames up to 4x the protocol limit reach the app, which answers oversized ones with
    an ``error`` event instead of closing the socket; WebSocket pings keep idle
    connections (and proxies) alive and detect dead peers.
    """
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep our JSON logging
        ws_max_size=max(4 * settings.max_frame_bytes, 1 << 20),
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        proxy_headers=True,
    )
    return _GracefulServer(config, settings.gateway_drain_seconds)


def main() -> None:
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    gateway_server(settings).run()


if __name__ == "__main__":
    main()
