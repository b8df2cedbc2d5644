"""The gateway's uvicorn server, shared by ``python -m gateway`` and ``voice-agent up``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from types import FrameType

import uvicorn

from gateway.app import create_app
from shared.lifecycle import begin_shutdown
from shared.redis_wait import retry_less
from shared.service import freeze_long_lived
from shared.settings import Settings

log = logging.getLogger(__name__)


class _GracefulServer(uvicorn.Server):
    """uvicorn re-raises a captured SIGTERM after its graceful shutdown, killing the process
    before anything after ``serve()`` runs (``voice-agent up`` must still drain its workers
    and stop the embedded Redis). The shutdown already happened: exit normally instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self._own_signals:  # the embedding program handles them (voice-agent up)
            yield
            return
        with super().capture_signals():
            yield
            self._captured_signals.clear()

    def __init__(
        self, config: uvicorn.Config, drain_seconds: float, own_signals: bool = True
    ) -> None:
        super().__init__(config)
        self._drain_seconds = drain_seconds
        self._own_signals = own_signals

    # uvicorn looks at ``should_exit`` ten times a second, a wake-up of the event loop
    # each even with nothing to do (most of an idle gateway's CPU); here once a second
    # (its Date header has that resolution) and at once when ``should_exit`` is set
    _TICK_S = 1.0
    _exit_wake: asyncio.Event | None = None
    _exit_loop: asyncio.AbstractEventLoop | None = None

    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return bool(self.__dict__.get("_should_exit", False))

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        """Set by a signal, by ``voice-agent up`` or by tests: the main loop wakes."""
        self.__dict__["_should_exit"] = value
        if value and self._exit_wake is not None and self._exit_loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed already
                self._exit_loop.call_soon_threadsafe(self._exit_wake.set)

    async def main_loop(self) -> None:
        self._exit_loop, self._exit_wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # on_tick's "once a second" is every 10th
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._TICK_S):
                    await self._exit_wake.wait()
            should_exit = await self.on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        begin_shutdown()  # losing Redis from now on is expected (compose down)
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[override]
        """After start, the app's long-lived objects leave the collector's sight."""
        await super().startup(sockets)
        freeze_long_lived()
        if sockets is not None and self.started:  # one of GATEWAY_PROCESSES
            log.info("gateway process %d listening", os.getpid())

    async def shutdown(self, sockets: list | None = None) -> None:  # type: ignore[override]
        """Stop listening, drain the app's sessions (1012 + resume), then shut down."""
        begin_shutdown()
        for server in self.servers:
            server.close()
        drain = getattr(getattr(self.config.app, "state", None), "drain", None)
        if drain is not None:
            await drain(self._drain_seconds)
        redis = getattr(getattr(self.config.app, "state", None), "redis", None)
        if redis is not None:
            retry_less(redis)
        await super().shutdown(sockets)


def gateway_server(settings: Settings, own_signals: bool = True) -> uvicorn.Server:
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
    return _GracefulServer(config, settings.gateway_drain_seconds, own_signals)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening address several gateway processes bind at once (``GATEWAY_PROCESSES``).

    With ``SO_REUSEPORT`` each process has its own accept queue and the kernel spreads new
    connections over them by a hash of the addresses, so no process takes more than its
    share while the others sleep (as with one shared socket, where whichever process
    wakes first accepts). uvicorn listens on it (``Server.run(sockets=[...])``).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def page_url(host: str, port: int) -> str:
    """An address a person can open: ``0.0.0.0`` / ``::`` (all interfaces) -> localhost."""
    shown = "localhost" if host in {"0.0.0.0", "::", ""} else host
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"
