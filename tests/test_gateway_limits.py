"""The gateway's per-socket limits answer with their documented close codes and errors.

A real gateway (uvicorn, the app of ``gateway.app``, its relay and Redis) runs in this
test's event loop on a free port, so the limits can be set low and the gateway's state
(draining) driven directly; real WebSocket clients talk to it. Where a reply is needed
the test writes the reply events to the session's reply stream itself, as a worker does.
No workers run: a command's turn stays "in progress" for as long as a test needs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import websockets
from redis.asyncio import Redis

from gateway import session as gateway_session
from gateway.server import gateway_server
from shared.messages import ReplyEvent
from shared.settings import Settings, load_settings
from shared.streams import ReplyWriter
from tests.support import free_port
from voice_agent.client import VoiceClient


@dataclass
class Gateway:
    settings: Settings
    url: str
    app: object


@contextlib.asynccontextmanager
async def running_gateway(redis_url: str, **overrides: object) -> AsyncIterator[Gateway]:
    settings = load_settings(
        redis_url=f"{redis_url}/5",
        stream_prefix=f"lim{uuid.uuid4().hex[:6]}",
        host="127.0.0.1",
        port=free_port(),
        asr_provider="none",
        **overrides,
    )
    server = gateway_server(settings)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # it failed to start: say why
        await asyncio.sleep(0.01)
    try:
        yield Gateway(settings, f"ws://127.0.0.1:{settings.port}/ws/voice", server.config.app)
    finally:
        server.should_exit = True
        await serving


async def closed_before_any_event(ws: websockets.ClientConnection) -> tuple[int | None, str]:
    """The server closes the socket before sending anything more: its code and reason."""
    with pytest.raises(websockets.ConnectionClosed):
        unexpected = await ws.recv()
        pytest.fail(f"expected a close, got {unexpected!r:.200}")
    return ws.close_code, ws.close_reason or ""


async def test_a_socket_over_the_limit_is_closed_with_1013(redis_url: str) -> None:
    async with (
        running_gateway(redis_url, max_websocket_connections=2) as gateway,
        VoiceClient.connect(gateway.url),
        VoiceClient.connect(gateway.url),
        websockets.connect(gateway.url) as third,
    ):
        assert await closed_before_any_event(third) == (1013, "server full, retry later")


async def test_a_frame_far_over_the_limit_is_closed_with_1009(redis_url: str) -> None:
    async with (
        running_gateway(redis_url, max_frame_bytes=256 * 1024) as gateway,
        websockets.connect(gateway.url, max_size=None) as ws,
    ):
        await ws.recv()  # connected
        await ws.send(b"\x00" * (4 * 256 * 1024 + 2))  # past uvicorn's ws_max_size
        code, _reason = await closed_before_any_event(ws)
        assert code == 1009


async def test_input_waiting_past_the_limit_without_barge_in_is_refused_busy(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_session, "WAITING_INPUT_LIMIT", 2)
    async with (
        running_gateway(redis_url, barge_in=False) as gateway,
        VoiceClient.connect(gateway.url) as client,
    ):
        await client.send_command("top headlines")  # turn t1: no worker, so it stays busy
        for _ in range(2):  # waiting until t1's reply has been sent
            await client.send_command("and sports")
        await client.send_command("and science")  # one more than the limit
        await client.ws.send("not json")  # its error comes right after any earlier one
        event = await client.next_event(30)
        assert (event["event"], event["data"]["code"]) == ("error", "busy")
        assert "too much input" in event["data"]["message"]


class _Seen(logging.Handler):
    """Sets an event when a log record containing ``text`` is emitted."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


async def _raw_websocket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket handshake on a socket with a small receive window, read by hand: unlike
    a client library, nothing reads it in the background."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 22)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws/voice HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
    return reader, writer


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame: its opcode and payload."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(length)


async def test_a_client_that_stops_reading_is_closed_with_1008(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reply events pile up for a socket that is not read: past the outbox limit, 1008."""
    monkeypatch.setattr(gateway_session, "OUTBOX_LIMIT", 8)
    overflow = _Seen("outbox full")
    logging.getLogger("gateway.delivery").addHandler(overflow)
    try:
        async with running_gateway(redis_url) as gateway:
            settings = gateway.settings
            reader, writer = await _raw_websocket(settings.port)
            _opcode, connected = await _read_frame(reader)
            session_id = json.loads(connected)["data"]["session_id"]
            redis = Redis.from_url(settings.redis_url)
            replies = ReplyWriter(redis, settings.keys, 60, settings.reply_maxlen)
            audio = b"\xff" * 60_000
            for index in range(2000):  # until the socket's buffers and then the outbox fill
                if overflow.event.is_set():
                    break
                chunk = ReplyEvent("tts_chunk", session_id, "t1", {"chunk_index": index}, audio)
                await replies.emit(chunk)
            await overflow.event.wait()
            opcode, payload = await _read_frame(reader)
            while opcode != 8:  # what was already on its way, then the close frame
                opcode, payload = await _read_frame(reader)
            writer.close()
            await redis.delete(settings.keys.reply(session_id))
            await redis.aclose()
        code = int.from_bytes(payload[:2], "big")
        assert (code, payload[2:].decode()) == (1008, "client too slow to receive")
    finally:
        logging.getLogger("gateway.delivery").removeHandler(overflow)
