"""A local stand-in for Microsoft Edge's read-aloud TTS service, for the real edge-tts client.

It speaks the service's WebSocket protocol as edge-tts 7.3.1 uses it: the client sends a
``Path:speech.config`` text message and a ``Path:ssml`` text message; the server answers
``Path:turn.start``, binary ``Path:audio`` messages (2-byte big-endian header length,
headers, MP3 bytes, cut at arbitrary byte offsets like the real service), an
``audio.metadata`` sentence boundary, an empty audio message and ``Path:turn.end``. The
audio is genuine 24 kHz 48 kbit/s mono MP3: espeak-ng speech encoded with lameenc.

``mode`` makes it fail on demand, from request number ``fail_from`` on: ``cut`` drops the
TCP connection after ``audio_before_failure`` audio messages, ``stall`` goes silent
after them, ``no_audio`` ends the turn without audio, ``reject`` refuses the WebSocket
handshake with HTTP 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Literal

import edge_tts.communicate
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from shared.audio import resample_pcm16
from tts_worker.espeak_engine import espeak_sample_rate, synthesize_pcm
from tts_worker.mp3 import Mp3Encoder

Mode = Literal["ok", "cut", "stall", "no_audio", "reject"]
PATH = "/consumer/speech/synthesize/readaloud/edge/v1"
_SSML = re.compile(
    r"<voice name='(?P<voice>[^']*)'><prosody pitch='(?P<pitch>[^']*)' rate='(?P<rate>[^']*)'"
    r" volume='[^']*'>(?P<text>.*)</prosody></voice>",
    re.S,
)


@dataclass
class SsmlRequest:
    voice: str
    rate: str
    pitch: str
    text: str
    output_format: str


@dataclass
class EdgeStandIn:
    mode: Mode = "ok"
    fail_from: int = 0  # requests before this one are served normally
    audio_before_failure: int = 1
    message_bytes: int = 1500  # not a multiple of the frame size, like the real service
    message_delay: float = 0.005
    requests: list[SsmlRequest] = field(default_factory=list)
    connections: int = 0  # handshakes attempted, refused ones included
    url: str = ""

    def failing(self, index: int) -> bool:
        return self.mode != "ok" and index >= self.fail_from


def speech_mp3(text: str, rate_percent: int = 0) -> bytes:
    """``text`` as the service would send it: 24 kHz 48 kbit/s mono MP3."""
    pcm = resample_pcm16(synthesize_pcm(text, rate=rate_percent), espeak_sample_rate(), 24000)
    encoder = Mp3Encoder(24000, 48)
    return encoder.encode(pcm) + encoder.flush()


def _text_message(request_id: str, path: str, body: str) -> str:
    return (
        f"X-RequestId:{request_id}\r\nContent-Type:application/json; charset=utf-8\r\n"
        f"Path:{path}\r\n\r\n{body}"
    )


def _audio_message(request_id: str, data: bytes) -> bytes:
    content_type = "Content-Type:audio/mpeg\r\n" if data else ""
    headers = f"X-RequestId:{request_id}\r\n{content_type}Path:audio\r\n".encode()
    return len(headers).to_bytes(2, "big") + headers + data


async def _serve_turn(state: EdgeStandIn, ws: ServerConnection, config: str, ssml: str) -> None:
    request_id = uuid.uuid4().hex
    match = _SSML.search(ssml)
    assert match, "SSML not in edge-tts' shape"
    text = html.unescape(match["text"])
    audio_format = json.loads(config.split("\r\n\r\n", 1)[1])["context"]["synthesis"]["audio"]
    state.requests.append(
        SsmlRequest(
            match["voice"], match["rate"], match["pitch"], text, audio_format["outputFormat"]
        )
    )
    failing = state.failing(len(state.requests) - 1)
    await ws.send(_text_message(request_id, "turn.start", '{"context":{"serviceTag":"x"}}'))
    audio = (
        b"" if failing and state.mode == "no_audio" else speech_mp3(text, int(match["rate"][:-1]))
    )
    pieces = [audio[i : i + state.message_bytes] for i in range(0, len(audio), state.message_bytes)]
    for number, piece in enumerate(pieces):
        if failing and number == state.audio_before_failure:
            if state.mode == "cut":
                ws.transport.abort()
                return
            if state.mode == "stall":
                await ws.wait_closed()  # silent until the client gives up
                return
        await ws.send(_audio_message(request_id, piece))
        await asyncio.sleep(state.message_delay)
    boundary = {"Offset": 1_000_000, "Duration": 10_000_000, "text": {"Text": text}}
    metadata = {"Metadata": [{"Type": "SentenceBoundary", "Data": boundary}]}
    await ws.send(_text_message(request_id, "audio.metadata", json.dumps(metadata)))
    await ws.send(_audio_message(request_id, b""))
    await ws.send(_text_message(request_id, "turn.end", '{"context":{"serviceTag":"x"}}'))


async def _handler(state: EdgeStandIn, ws: ServerConnection) -> None:
    with contextlib.suppress(Exception):
        config = str(await ws.recv())
        assert "Path:speech.config" in config
        ssml = str(await ws.recv())
        assert "Path:ssml" in ssml
        await _serve_turn(state, ws, config, ssml)


def _check_request(state: EdgeStandIn, ws: ServerConnection, request: Request) -> Response | None:
    state.connections += 1
    if not request.path.startswith(PATH) or "Sec-MS-GEC=" not in request.path:
        return ws.respond(HTTPStatus.NOT_FOUND, "unknown path\n")
    if state.mode == "reject" and len(state.requests) >= state.fail_from:
        return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "overloaded\n")
    return None


@contextlib.asynccontextmanager
async def running_edge_standin(state: EdgeStandIn) -> AsyncIterator[EdgeStandIn]:
    async with serve(
        lambda ws: _handler(state, ws),
        "127.0.0.1",
        0,
        process_request=lambda ws, request: _check_request(state, ws, request),
    ) as server:
        port = server.sockets[0].getsockname()[1]
        state.url = f"ws://127.0.0.1:{port}{PATH}?TrustedClientToken=standin"
        yield state


def point_edge_tts_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """edge-tts reads its module-level ``WSS_URL`` on every connection."""
    monkeypatch.setattr(edge_tts.communicate, "WSS_URL", url)
