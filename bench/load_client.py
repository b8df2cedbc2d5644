"""One load-generator process for ``bench/capacity.py``: many real-time audio sessions.

Run as a separate process (several of them), so the load generator does not share an
event loop, or a core's worth of Python, with what it measures. Each session opens a
WebSocket, then sends one 100 ms binary PCM frame every 100 ms; sessions start at random
phases within the 100 ms period, like independent users. One scheduler sends every due
frame (no timer per session) and one reader per session matches each partial ``"<n>"``
to frame ``n`` (the echo ASR engine and the minimal server both name the frame).

The frames are speech to WebRTC's VAD (a 150 Hz voice with its harmonics, see
``speech_frame``): the gateway starts an utterance only on speech, so silence or a
constant signal would be relayed nowhere and every frame "lost".

A handshake with the driver keeps the servers' CPU reading to the streaming window: after
connecting every session it prints ``READY`` and waits for ``GO <t0>`` on stdin (``t0`` on
the shared monotonic clock); after its last frame + 1 s it prints ``DONE`` and waits for a
line; then it closes its sockets and writes one JSON object to OUT.

    python -m bench.load_client URL SESSIONS SECONDS OUT
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import random
import sys
import time

import numpy as np
import websockets

PERIOD = 0.1
SAMPLE_RATE = 16000


def speech_frame() -> bytes:
    """100 ms of 16 kHz s16le that WebRTC's VAD calls speech in every 30 ms frame.

    A 150 Hz fundamental with 19 harmonics falling off as 1/k, like a voiced vowel;
    15 whole periods, so frames join without a click.
    """
    t = np.arange(int(SAMPLE_RATE * PERIOD)) / SAMPLE_RATE
    voice = sum(np.sin(2 * np.pi * 150 * k * t + k) / k for k in range(1, 20))
    return (voice / np.abs(voice).max() * 8000).astype("<i2").tobytes()


FRAME = speech_frame()


class _Session:
    def __init__(self) -> None:
        self.sent_at: dict[str, float] = {}
        self.ws: websockets.ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None


async def _read(session: _Session, latencies: list[list[float]], errors: list[str]) -> None:
    assert session.ws is not None
    with contextlib.suppress(websockets.ConnectionClosed):
        async for frame in session.ws:
            event = json.loads(frame)
            name = event["event"]
            if name == "partial_transcription" and not event["data"]["is_final"]:
                started = session.sent_at.pop(event["data"]["text"], None)
                if started is not None:
                    now = time.monotonic()
                    frame = int(event["data"]["text"])
                    latencies.append([round(started, 4), round((now - started) * 1000, 2), frame])
            elif name == "error":
                errors.append(event["data"]["code"])


async def _open(url: str, session: _Session, latencies: list[float], errors: list[str]) -> None:
    session.ws = await websockets.connect(
        url, max_size=None, open_timeout=120, close_timeout=2, compression=None
    )
    await session.ws.recv()  # connected
    session.reader = asyncio.create_task(_read(session, latencies, errors))


async def _stdin_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


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
    print("READY", flush=True)
    begin = float((await _stdin_line()).split()[1])
    frames = round(seconds / PERIOD)
    # (due time, session index, frame number) in a heap: one scheduler for all sessions
    due = [(begin + random.random() * PERIOD, i, 1) for i, s in enumerate(live) if s.reader]
    heapq.heapify(due)
    sent = late_sends = 0
    while due:
        at, index, n = due[0]
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
            continue
        heapq.heappop(due)
        if delay < -0.02:
            late_sends += 1  # the generator itself was > 20 ms behind: it is overloaded
        session = live[index]
        assert session.ws is not None
        session.sent_at[str(n)] = time.monotonic()
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
    print("DONE", flush=True)
    await _stdin_line()
    await asyncio.gather(*(s.ws.close() for s in live if s.ws), return_exceptions=True)
    for session in live:
        if session.reader:
            session.reader.cancel()
    return {
        "latencies": latencies,
        "sent": sent,
        "lost": lost,
        "late_sends": late_sends,
        "errors": errors,
        "failures": failures,
    }


def main() -> None:
    url, sessions, seconds, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    from uvloop import run as run_loop  # the loop uvicorn uses too: less client overhead

    result = run_loop(run(url, sessions, seconds))
    with open(out, "w") as f:  # a file, not the pipe the handshake uses
        json.dump(result, f)


if __name__ == "__main__":
    main()
