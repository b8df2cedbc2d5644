"""A WebSocket client that can stop reading: a raw socket with small buffers, read by
hand, so nothing takes the server's frames off the wire in the background (as a client
library does). The gateway's bounds for clients that do not read are tested with it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket


async def raw_websocket(
    port: int, query: str = ""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket handshake on a socket with a small receive window, read by hand: unlike
    a client library, nothing reads it in the background."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    # a small limit: the stream stops taking bytes from the socket at twice this
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 14)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws/voice{'?' + query if query else ''} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame: its opcode and payload."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(length)


async def close_frame(reader: asyncio.StreamReader) -> tuple[int, str]:
    """Read past what was already on its way to the close frame: its code and reason."""
    opcode, payload = await read_frame(reader)
    while opcode != 8:
        opcode, payload = await read_frame(reader)
    return int.from_bytes(payload[:2], "big"), payload[2:].decode()


async def open_sessions(
    port: int, count: int
) -> tuple[list[tuple[asyncio.StreamReader, asyncio.StreamWriter]], list[str]]:
    """``count`` sessions that read nothing after ``connected``: their sockets and ids."""
    sockets, sessions = [], []
    for _ in range(count):
        reader, writer = await raw_websocket(port)
        _opcode, connected = await read_frame(reader)
        sockets.append((reader, writer))
        sessions.append(json.loads(connected)["data"]["session_id"])
    return sockets, sessions
