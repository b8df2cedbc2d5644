"""One load-generator process for ``bench/capacity.py``: many real-time audio sessions.

Run as a separate process (several of them), so the load generator does not share an
event loop, or a core's worth of Python, with what it measures. Each session opens a
WebSocket, then sends one 100 ms binary PCM frame every 100 ms; sessions start at random
phases within the 100 ms period, like independent users, instead of all at once. One
scheduler task sends every due frame (no timer per session) and one reader task per
session matches each echo partial ``"<n>"`` to frame ``n``. Prints one JSON object:
relay latencies (ms) and failure counts.

    python -m bench.load_client URL SESSIONS SECONDS
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import random
import sys
import time

import websockets

FRAME = b"\x00\x01" * 1600  # 100 ms of 16 kHz s16le (not speech: no end of utterance)
PERIOD = 0.1


class _Session:
    def __init__(self) -> None:
        self.sent_at: dict[str, float] = {}
        self.ws: websockets.ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None


async def _read(session: _Session, latencies: list[float], errors: list[str]) -> None:
    assert session.ws is not None
    with contextlib.suppress(websockets.ConnectionClosed):
        async for frame in session.ws:
            event = json.loads(frame)
            name = event["event"]
            if name == "partial_transcription" and not event["data"]["is_final"]:
                started = session.sent_at.pop(event["data"]["text"], None)
                if started is not None:
                    latencies.append(round((time.perf_counter() - started) * 1000, 2))
            elif name == "error":
                errors.append(event["data"]["code"])


async def _open(url: str, session: _Session, latencies: list[float], errors: list[str]) -> None:
    session.ws = await websockets.connect(
        url, max_size=None, open_timeout=60, close_timeout=2, compression=None
    )
    await session.ws.recv()  # connected
    session.reader = asyncio.create_task(_read(session, latencies, errors))


async def run(url: str, sessions: int, seconds: float) -> dict[str, object]:
    latencies: list[float] = []
    errors: list[str] = []
    failures: list[str] = []
    live = [_Session() for _ in range(sessions)]
    for start in range(0, sessions, 50):  # connect in batches of 50
        batch = live[start : start + 50]
        results = await asyncio.gather(
            *(_open(url, s, latencies, errors) for s in batch), return_exceptions=True
        )
        failures += [f"connect: {type(r).__name__}" for r in results if isinstance(r, Exception)]
    frames = int(seconds / PERIOD)
    begin = time.perf_counter() + 0.2
    # (due time, session index, frame number) in a heap: one scheduler for all sessions
    due = [(begin + random.random() * PERIOD, i, 1) for i, s in enumerate(live) if s.reader]
    heapq.heapify(due)
    sent = 0
    while due:
        at, index, n = due[0]
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
            continue
        heapq.heappop(due)
        session = live[index]
        assert session.ws is not None
        session.sent_at[str(n)] = time.perf_counter()
        try:
            await session.ws.send(FRAME)
            sent += 1
        except websockets.ConnectionClosed as exc:
            failures.append(f"closed: {exc.rcvd.code if exc.rcvd else 'no close frame'}")
            continue
        if n < frames:
            heapq.heappush(due, (at + PERIOD, index, n + 1))
    await asyncio.sleep(1.0)  # let the last partials arrive
    lost = sum(len(session.sent_at) for session in live)
    await asyncio.gather(*(s.ws.close() for s in live if s.ws), return_exceptions=True)
    for session in live:
        if session.reader:
            session.reader.cancel()
    return {
        "latencies": latencies,
        "sent": sent,
        "lost": lost,
        "errors": errors,
        "failures": failures,
    }


def main() -> None:
    url, sessions, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    try:
        from uvloop import run as run_loop  # the loop uvicorn uses too: less client overhead
    except ImportError:
        run_loop = asyncio.run
    print(json.dumps(run_loop(run(url, sessions, seconds))))


if __name__ == "__main__":
    main()
