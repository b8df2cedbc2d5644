"""The fixture feeds (``tests/fixtures``) over real HTTP on loopback: RSS and Atom files
stand in for the news sites in tests and benchmarks."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from tests.support.processes import FIXTURES


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _start() -> ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(FIXTURES))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@contextlib.contextmanager
def fixture_server() -> Iterator[str]:
    """Serve ``tests/fixtures`` on a free loopback port; yields its base URL."""
    server = _start()
    try:
        yield _url(server)
    finally:
        server.shutdown()
        server.server_close()


def serve_fixtures() -> str:
    """For benchmarks: serve the fixtures until the process ends; returns the base URL."""
    return _url(_start())
