"""Hostile clients, shared by ``tests/test_abuse.py`` and ``bench/abuse.py``.

* ``cancel_flood``: cancels of turns that never existed and of malformed turn ids;
* ``unread_flood``: malformed frames from a client that never reads its answers;
* ``dropped_connections``: sockets that connect and vanish without a close.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import Awaitable, Callable

import websockets
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from voice_agent.client import VoiceClient

MALFORMED_TURN_IDS: list[object] = [
    "x1",
    "../t1",
    "",
    "t0",
    "t01",
    "T1",
    " t1",
    "t1\n",
    "t99999999999",
    "t" + "9" * 40,
    "t-1",
    "t1.5",
    12,
    12345678901234567890,
    ["t1"],
    {"t": 1},
    True,
]


def made_up_cancels(count: int = 300) -> list[object]:
    """``t100``..``t249``, then malformed ids, ``count`` in all."""
    valid_looking: list[object] = [f"t{n}" for n in range(100, 250)]
    malformed = [MALFORMED_TURN_IDS[i % len(MALFORMED_TURN_IDS)] for i in range(count)]
    return (valid_looking + malformed)[:count]


async def cancel_flood(url: str, turn_ids: list[object]) -> tuple[str, Counter[str], int]:
    """Cancel each of ``turn_ids`` on one real session; returns (session id, error codes
    received, other events received) once a ``ping`` sent last has been answered (the
    control lane is in order, so every answer to a cancel came before the ``pong``)."""
    async with VoiceClient.connect(url) as client:
        await client.send_event("cancel", {})  # nothing playing: no answer at all
        for turn_id in turn_ids:
            await client.send_event("cancel", {"turn_id": turn_id})
        await client.send_event("ping", {})
        codes: Counter[str] = Counter()
        others = 0
        while True:
            event = await client.next_event(60)
            if event["event"] == "pong":
                return client.session_id, codes, others
            if event["event"] == "error":
                codes[event["data"]["code"]] += 1
            else:
                others += 1


async def unread_flood(
    url: str, given_up: Callable[[], Awaitable[None]], limit: int = 400_000
) -> tuple[int, int, int | None]:
    """Send malformed frames and read nothing (not even at the TCP level: a small
    receive buffer that nobody empties) until ``given_up()`` returns (the server has
    stopped answering), then read what is left; returns (frames sent, errors received,
    close code). The WebSocket framing is websockets' own sans-I/O protocol, so that
    this client, unlike a library connection, really stops reading."""
    protocol = ClientProtocol(parse_uri(url), max_size=None)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (protocol.uri.host, protocol.uri.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    protocol.send_request(protocol.connect())
    writer.write(b"".join(protocol.data_to_send()))
    while not any(isinstance(e, Frame) for e in protocol.events_received()):  # connected
        protocol.receive_data(await reader.read(4096))
    sent = 0

    async def flood() -> None:
        nonlocal sent
        while sent < limit:
            protocol.send_text(b"x")  # not JSON: each one is answered with an error
            writer.write(b"".join(protocol.data_to_send()))
            sent += 1
            if sent % 64 == 0:
                await writer.drain()  # blocks once the server stops reading

    flooding = asyncio.create_task(flood())
    stop = asyncio.create_task(given_up())
    await asyncio.wait([flooding, stop], return_when=asyncio.FIRST_COMPLETED)
    await stop
    flooding.cancel()  # whole frames only: a write is never cut in half
    await asyncio.gather(flooding, return_exceptions=True)
    errors = 0
    while data := await reader.read(65536):
        protocol.receive_data(data)
        for event in protocol.events_received():
            errors += isinstance(event, Frame) and event.opcode == Opcode.TEXT
        writer.write(b"".join(protocol.data_to_send()))  # the close reply, once it came
    writer.close()
    close = protocol.close_rcvd
    return sent, errors, close.code if close else None


async def dropped_connections(url: str, count: int) -> int:
    """Open ``count`` sessions one after another and drop each without a close frame
    (half right after ``connected``, half with a ``ping`` in flight)."""
    for n in range(count):
        ws = await websockets.connect(url)
        await ws.recv()
        if n % 2:
            await ws.send(json.dumps({"event": "ping", "data": {}}))
        ws.transport.abort()
        await ws.wait_closed()
    return count
