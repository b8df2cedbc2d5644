"""A local stand-in for OpenAI's HTTP API, spoken over a real socket to the real SDK.

Only what the project calls: ``POST /v1/audio/transcriptions``. It checks the bearer
key, reads the multipart upload like the real service, records what it received, and
answers in OpenAI's JSON shapes (including its error envelope).
"""

from __future__ import annotations

import io
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class StandIn:
    api_key: str = "sk-test-standin"
    transcript: str = "read me the business headlines"
    status: int = 200
    uploads: list[dict[str, object]] = field(default_factory=list)
    base_url: str = ""


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": None}}, status)


def _app(state: StandIn) -> Starlette:
    async def transcriptions(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {state.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error")
        if state.status != 200:
            return _error(state.status, "Rate limit reached.", "rate_limit_error")
        form = await request.form()
        upload = form["file"]
        data = await upload.read()  # type: ignore[union-attr]
        with wave.open(io.BytesIO(data)) as wav:
            state.uploads.append(
                {
                    "model": form["model"],
                    "rate": wav.getframerate(),
                    "seconds": wav.getnframes() / wav.getframerate(),
                }
            )
        return JSONResponse({"text": state.transcript})

    return Starlette(routes=[Route("/v1/audio/transcriptions", transcriptions, methods=["POST"])])


@contextmanager
def running_standin(state: StandIn, port: int) -> Iterator[StandIn]:
    server = uvicorn.Server(
        uvicorn.Config(_app(state), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    state.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield state
    finally:
        server.should_exit = True
        thread.join(5)
