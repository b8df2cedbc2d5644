"""Frames waiting for one client's socket.

Two lanes: control frames (errors, pongs) go out before any queued reply event, so an
answer is never stuck behind seconds of audio; reply events keep their order (the order
of the session's reply stream, which their ``event_id`` follows). A cancelled turn's
queued events are dropped in one go. Both lanes are bounded: the reply lane in bytes
(``OUTBOX_MAX_BYTES``: an audio chunk weighs a thousand partial transcripts, so a count
of events bounds nothing), the control lane in frames; a client that does not read gets
closed, it never makes the gateway hold more.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class OutFrame:
    text: str
    turn_id: str | None = None
    event: str = ""
    chunk_index: int = -1
    sentence: int = 0  # which sentence of the reply a tts_chunk belongs to (1-based)
    audio_ms: float = 0.0  # for streaming_complete: length of the reply's audio
    ends_turn: bool = False  # the turn's last event (``ReplyEvent.ends_turn``)
    event_id: str = ""  # reply-stream entry id ("" for control frames: not replayable)


# what a queued frame costs besides its text: the frame object and its deque slot
_FRAME_OVERHEAD = sys.getsizeof(OutFrame("")) + 8


def frame_cost(text: str) -> int:
    """Bytes a queued frame of ``text`` holds in memory (a non-ASCII text takes 2 or 4
    bytes a character, which ``sys.getsizeof`` counts)."""
    return sys.getsizeof(text) + _FRAME_OVERHEAD


class OutboxOverflow(Exception):
    """The client reads too slowly: a lane is full."""


class Outbox:
    def __init__(self, max_bytes: int, control_limit: int) -> None:
        self.max_bytes = max_bytes
        self._control_limit = control_limit
        self._control: deque[OutFrame] = deque()
        self._replies: deque[OutFrame] = deque()
        # the sender waiting in ``get``: a future of its loop, not an ``asyncio.Event``,
        # whose every wait looks the running loop up again (a getpid() each on 3.11)
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._held: str | None = None  # a paused reply: its events wait, and all after them
        self.queued_bytes = 0  # both lanes
        self.peak_bytes = 0  # the most ever queued at once

    def __len__(self) -> int:
        return len(self._control) + len(self._replies)

    @property
    def control_backlog(self) -> int:
        return len(self._control)

    def put(self, frame: OutFrame) -> None:
        """Queue a reply event; ``OutboxOverflow`` past ``max_bytes`` (one event always
        fits in an empty lane, so a reply sent as a single large chunk still goes out)."""
        cost = frame_cost(frame.text)
        if self._replies and self.queued_bytes + cost > self.max_bytes:
            raise OutboxOverflow
        self._replies.append(frame)
        self._add(cost)

    def put_control(self, frame: OutFrame) -> None:
        if len(self._control) >= self._control_limit:
            raise OutboxOverflow
        self._control.append(frame)
        self._add(frame_cost(frame.text))

    def _add(self, cost: int) -> None:
        self.queued_bytes += cost
        self.peak_bytes = max(self.peak_bytes, self.queued_bytes)
        self._wake()

    def put_close(self, drop_control: bool = False) -> None:
        """The close marker goes last on the control lane, whatever its limit; queued
        reply events are dropped (the client resumes from the reply stream), and with
        ``drop_control`` the queued control frames too. Once only."""
        if self._closing:
            return
        self._closing = True
        self._replies.clear()
        if drop_control:
            self._control.clear()
        self.queued_bytes = sum(frame_cost(frame.text) for frame in self._control)
        self._control.append(OutFrame("", event="close"))
        self._wake()

    def drop_turn(self, turn_id: str) -> int:
        """Forget the queued reply events of ``turn_id``; returns how many were dropped."""
        kept: deque[OutFrame] = deque()
        for frame in self._replies:
            if frame.turn_id != turn_id:
                kept.append(frame)
            else:
                self.queued_bytes -= frame_cost(frame.text)
        dropped = len(self._replies) - len(kept)
        self._replies = kept
        return dropped

    def hold(self, turn_id: str) -> None:
        """Stop the reply lane at the first queued event of ``turn_id`` (a paused reply):
        events before it still go, none after it (they keep the reply stream's order)."""
        self._held = turn_id

    def release(self) -> None:
        self._held = None
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._control.clear()
        self._replies.clear()
        self.queued_bytes = 0

    async def get(self) -> OutFrame:
        while True:
            if self._control:
                frame = self._control.popleft()
            elif self._replies and (self._held is None or self._replies[0].turn_id != self._held):
                frame = self._replies.popleft()
            else:
                if self._loop is None:
                    self._loop = asyncio.get_running_loop()
                self._waiter = self._loop.create_future()
                await self._waiter
                continue
            if frame.event != "close":  # the close marker was never counted
                self.queued_bytes -= frame_cost(frame.text)
            return frame
