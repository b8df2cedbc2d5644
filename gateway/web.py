"""The browser voice page: static files served by the gateway at ``/``.

Plain HTML, CSS and JavaScript (no build step) kept in ``gateway/static`` and shipped as
package data, so ``pip install .`` then ``voice-agent up`` is all a user needs to talk to
the backend from a browser.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"

# the page is tiny and changes with the server version: let browsers revalidate every time
_NO_STALE = {"Cache-Control": "no-cache"}


def add_voice_page(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/static``."""

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def voice_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=_NO_STALE)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
