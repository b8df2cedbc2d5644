"""A local stand-in for OpenAI's HTTP API, spoken over a real socket to the real SDK.

Only what the project calls: ``POST /v1/audio/transcriptions``. It checks the bearer
key, reads the multipart upload like the real service, records what it received, and
answers in OpenAI's JSON shapes (including its error envelope).

``POST /v1/audio/speech`` streams genuine speech (espeak-ng, 24 kHz s16le for ``pcm``,
MP3 for ``mp3``) in several chunks with small pauses; ``StandIn.speech`` makes it answer
an error status, cut the connection or stall after some chunks.

``POST /v1/chat/completions`` streams ``chat.completion.chunk`` events and ``[DONE]``;
``StandIn.chat`` (a ``ChatScript``) scripts text, streamed tool calls and failures.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import wave
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from shared.audio import resample_pcm16
from tts_worker.espeak_engine import espeak_sample_rate, synthesize_pcm
from tts_worker.mp3 import Mp3Encoder


@dataclass
class SpeechPlan:
    """How ``/v1/audio/speech`` behaves; ``requests`` records what it was asked."""

    status: int = 200
    cut_after: int | None = None  # drop the connection after this many chunks
    stall_after: int | None = None  # go silent after this many chunks
    chunk_bytes: int = 9600  # 200 ms of 24 kHz PCM
    delay: float = 0.01
    requests: list[dict[str, object]] = field(default_factory=list)


@dataclass
class StandIn:
    api_key: str = "sk-test-standin"
    transcript: str = "read me the business headlines"
    status: int = 200
    uploads: list[dict[str, object]] = field(default_factory=list)
    base_url: str = ""
    speech: SpeechPlan = field(default_factory=SpeechPlan)
    chat: ChatScript = field(default_factory=lambda: ChatScript())

    def llm_env(self) -> dict[str, str]:
        """The settings that point a system's LLM worker at this stand-in."""
        return {
            "LLM_PROVIDER": "openai",
            "LLM_BASE_URL": self.base_url,
            "LLM_API_KEY": self.api_key,
        }


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
                    "language": form.get("language"),
                    "rate": wav.getframerate(),
                    "seconds": wav.getnframes() / wav.getframerate(),
                }
            )
        return JSONResponse({"text": state.transcript})

    return Starlette(
        routes=[
            Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
            _speech_route(state),
            *_chat_routes(state),
        ]
    )


def _speech_route(state: StandIn) -> Route:
    plan = state.speech

    async def speech(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {state.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error")
        if plan.status != 200:
            return _error(plan.status, "Rate limit reached.", "rate_limit_error")
        body = await request.json()
        plan.requests.append(body)
        pcm = await asyncio.to_thread(synthesize_pcm, str(body["input"]))
        audio = resample_pcm16(pcm, espeak_sample_rate(), 24000)
        media = "audio/pcm"
        if body.get("response_format") == "mp3":
            encoder = Mp3Encoder(24000, 48)
            audio, media = encoder.encode(audio) + encoder.flush(), "audio/mpeg"
        return StreamingResponse(_chunks(plan, audio), media_type=media)

    return Route("/v1/audio/speech", speech, methods=["POST"])


async def _chunks(plan: SpeechPlan, audio: bytes) -> AsyncIterator[bytes]:
    step = plan.chunk_bytes + 1  # odd on purpose: clients must not assume whole samples
    for number, start in enumerate(range(0, len(audio), step)):
        if number == plan.cut_after:
            raise ConnectionAbortedError("stand-in cuts the stream")
        if number == plan.stall_after:
            await asyncio.sleep(3600)
        yield audio[start : start + step]
        await asyncio.sleep(plan.delay)


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


# --- /v1/chat/completions --------------------------------------------------------------


@dataclass
class ChatScript:
    """What ``/v1/chat/completions`` does: stream ``reply``, or call tools, or fail.

    With ``tool_calls`` set and tools offered, the first round streams those calls in
    pieces (name first, then the arguments split across chunks); once the request ends
    with tool results, the reply names the first title found in each result, so a test
    sees the tool output reach the model. ``fault``: "rate_limit" (429), "server_error"
    (500), "stall" (headers, then nothing), "malformed" (one good chunk, then broken JSON).
    With ``hold_after_words`` set, the reply stops there until ``release`` is set, so a
    test can act while a reply is certainly unfinished.
    """

    reply: str = "Here is the news. Markets were calm today. Want to hear more?"
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fault: str | None = None
    chunk_delay: float = 0.0
    first_token_delay: float = 0.0  # seconds before the first content (a model's think time)
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # the URL path of each request
    # ``pieces``: stream exactly these deltas (text without spaces, e.g. Chinese, cannot
    # be cut at words); ``hold_last``: send the last piece only once this event is set,
    # and ``last_sent`` says whether it went out (ordering without wall-clock)
    pieces: list[str] | None = None
    hold_last: threading.Event | None = None
    last_sent: threading.Event = field(default_factory=threading.Event)
    hold_after_words: int | None = None
    chunks_sent: int = 0  # text chunks of the reply streamed so far
    completed: int = 0  # replies streamed to their end (a call cut off never gets there)
    release: threading.Event = field(default_factory=threading.Event)


def _chat_routes(state: StandIn) -> list[Route]:
    async def chat_completions(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {state.api_key}":  # like the real service, echo the key it got
            return _error(401, f"Incorrect API key provided: {auth[7:]}.", "invalid_request_error")
        body = await request.json()
        script = state.chat
        script.requests.append(body)
        script.paths.append(request.url.path)
        if script.fault in ("rate_limit", "server_error"):
            status = 429 if script.fault == "rate_limit" else 500
            return _error(status, "Rate limit reached for requests.", "requests")
        return StreamingResponse(_chat_events(script, body), media_type="text/event-stream")

    # providers put the API under different paths (/v1, /api/paas/v4, none at all)
    return [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/{prefix:path}/chat/completions", chat_completions, methods=["POST"]),
    ]


def _sse(body: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    chunk = {
        "id": "chatcmpl-standin",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [choice],
    }
    return f"data: {json.dumps(chunk)}\n\n"


async def _chat_events(script: ChatScript, body: dict[str, Any]) -> AsyncIterator[str]:
    messages = body["messages"]
    yield _sse(body, {"role": "assistant", "content": ""})
    if script.fault == "stall":
        await asyncio.sleep(3600)
    if script.fault == "malformed":
        yield _sse(body, {"content": "Here is"})
        yield 'data: {"id": "chatcmpl-standin", "choices": [{"delta": {"content": "the\n\n'
        return
    if messages[-1]["role"] != "tool" and body.get("tools") and script.tool_calls:
        for index, (name, arguments) in enumerate(script.tool_calls):
            head = {"index": index, "id": f"call_{index}", "type": "function"}
            yield _sse(
                body, {"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]}
            )
            text = json.dumps(arguments)
            for piece in (text[:3], text[3:9], text[9:]):
                yield _sse(
                    body, {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                )
        yield _sse(body, {}, "tool_calls")
    else:
        await asyncio.sleep(script.first_token_delay)
        # as a real server: a response streams as it started, whatever the script says
        # for later requests meanwhile (a test making the next reply quick)
        reply, chunk_delay = script.reply, script.chunk_delay
        if messages[-1]["role"] == "tool":
            results = []
            for message in reversed(messages):
                if message["role"] != "tool":
                    break
                results.insert(0, _first_title(json.loads(message["content"])))
            reply = f"Here is what I found: {'; '.join(results)}. Want to hear more?"
        words = reply.split(" ")
        pieces = script.pieces or [
            " ".join(words[start : start + 2]) + " " for start in range(0, len(words), 2)
        ]
        for number, piece in enumerate(pieces, start=1):
            if number == len(pieces) and script.hold_last is not None:
                await asyncio.to_thread(script.hold_last.wait, 60)
            if script.hold_after_words is not None and (number - 1) * 2 >= script.hold_after_words:
                await asyncio.to_thread(script.release.wait)
            yield _sse(body, {"content": piece})
            script.chunks_sent += 1
            await asyncio.sleep(chunk_delay)
        script.last_sent.set()
        yield _sse(body, {}, "stop")
        script.completed += 1
    yield "data: [DONE]\n\n"


def _first_title(value: Any) -> str:
    """The first "title" in a tool result (or its "error"), depth first."""
    if isinstance(value, dict):
        if isinstance(value.get("title"), str):
            return value["title"]
        if isinstance(value.get("error"), str):
            return f"error: {value['error']}"
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            if title := _first_title(item):
                return title
    return ""
