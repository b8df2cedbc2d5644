"""The gateway's WebSocket protocol reads on while the app keeps up: a message waiting
for the app does not pause the socket, a second one does, and taking them resumes it."""

from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.server import ServerState

from gateway.ws_protocol import PAUSE_AT, GatewayWebSocketProtocol


async def _app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("no request reaches the app here")


async def test_reading_pauses_only_when_messages_wait() -> None:
    loop = asyncio.get_running_loop()
    config = uvicorn.Config(_app, ws=GatewayWebSocketProtocol, log_config=None)
    config.load()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, protocol = await loop.create_connection(
        lambda: GatewayWebSocketProtocol(config, ServerState(), {}, loop), "127.0.0.1", port
    )
    try:
        for waiting in range(1, PAUSE_AT + 1):
            protocol.frames, protocol.curr_msg_data_type = [b"\x00\x00"], "bytes"
            protocol.send_receive_event_to_app()  # what a binary frame from the client does
            assert protocol.read_paused == (waiting >= PAUSE_AT)
            assert transport.is_reading() == (waiting < PAUSE_AT)
        for _ in range(PAUSE_AT):
            assert (await protocol.receive())["bytes"] == b"\x00\x00"
        assert not protocol.read_paused and transport.is_reading()
    finally:
        transport.close()
        server.close()
        await server.wait_closed()
