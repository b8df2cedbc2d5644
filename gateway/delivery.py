"""The outbound half of a session: reply events to the socket, and what got delivered.

It knows, per turn, how many audio chunks actually went out and which sentence they
belonged to; that is what a cancel records (the history keeps only what was heard) and
what barge-in needs (is a reply still being produced or played?).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.websockets import WebSocket

from gateway.outbox import Outbox, OutboxOverflow, OutFrame
from shared import metrics, protocol
from shared.control import CancelRecord
from shared.messages import ReplyEvent
from shared.streams import now_ms

log = logging.getLogger(__name__)


@dataclass
class _Reply:
    """Progress of one turn's reply as the client receives it."""

    input_done: float  # perf_counter when the request was complete (end of speech)
    source: str  # "speech" or "command"
    chunks_sent: int = 0
    sentence: int = 0  # sentence of the last chunk sent
    first_chunk_at: float | None = None
    complete: bool = False
    audio_ms: float = 0.0


class ReplyDelivery:
    def __init__(self, websocket: WebSocket, session_id: str, outbox_limit: int) -> None:
        self.ws = websocket
        self.session_id = session_id
        self.outbox = Outbox(outbox_limit)
        self.idle = asyncio.Event()  # no reply in progress
        self.idle.set()
        self.closed_reason: tuple[int, str] | None = None
        self._replies: dict[str, _Reply] = {}
        self._in_progress: dict[str, None] = {}  # turns not fully sent, oldest first
        self._cancelled: set[str] = set()
        self._timings: dict[str, dict[str, object]] = {}
        self._observers: list[Callable[[ReplyEvent], None]] = []

    # --- turns -----------------------------------------------------------------------

    def expect(self, turn_id: str, source: str) -> None:
        """A request is complete: its reply is now in progress."""
        self._replies[turn_id] = _Reply(time.perf_counter(), source)
        self._in_progress[turn_id] = None
        if len(self._replies) > 64:  # long sessions: forget old turns
            for old in list(self._replies)[:-32]:
                del self._replies[old]
                self._in_progress.pop(old, None)
        self.idle.clear()

    def busy_turn(self) -> str | None:
        """The newest turn whose reply has not been fully sent (asked per audio frame:
        a lookup, not a scan)."""
        return next(reversed(self._in_progress), None)

    def _finish(self, turn_id: str, reply: _Reply) -> None:
        reply.complete = True
        self._in_progress.pop(turn_id, None)
        if not self._in_progress:
            self.idle.set()

    def playing_turn(self) -> str | None:
        """A reply still in progress, or sent but (by its length) still playing."""
        busy = self.busy_turn()
        if busy:
            return busy
        if not self._replies:
            return None
        turn_id = next(reversed(self._replies))
        reply = self._replies[turn_id]
        if turn_id in self._cancelled or reply.first_chunk_at is None:
            return None
        played_ms = (time.perf_counter() - reply.first_chunk_at) * 1000
        return turn_id if played_ms < reply.audio_ms else None

    def interrupt(self, turn_id: str, reason: str) -> tuple[CancelRecord, list[ReplyEvent]]:
        """Stop relaying ``turn_id`` now; returns what was delivered and the events sent."""
        reply = self._replies.get(turn_id) or _Reply(time.perf_counter(), "speech")
        self.outbox.drop_turn(turn_id)
        self._cancelled.add(turn_id)
        heard = reply.sentence
        if reply.complete and reply.first_chunk_at is not None and reply.audio_ms > 0:
            played = (time.perf_counter() - reply.first_chunk_at) * 1000 / reply.audio_ms
            heard = min(reply.sentence, math.ceil(reply.sentence * played))
        record = CancelRecord(reply.chunks_sent, heard, now_ms())
        events = [
            ReplyEvent(
                "interrupted",
                self.session_id,
                turn_id,
                {"reason": reason, "chunks_sent": reply.chunks_sent},
            )
        ]
        if not reply.complete:
            timings = self._timings.pop(turn_id, {})
            data = {
                "interrupted": True,
                "reason": reason,
                "total_chunks_sent": reply.chunks_sent,
                "duration_ms": round((time.perf_counter() - reply.input_done) * 1000),
                "timings": timings,
            }
            events.append(ReplyEvent("streaming_complete", self.session_id, turn_id, data))
        self._finish(turn_id, reply)
        for event in events:
            self.outbox.put_control(self._frame(event))
            metrics.EVENTS.labels("out", event.event).inc()
        return record, events

    # --- events ----------------------------------------------------------------------

    def observe(self, observer: Callable[[ReplyEvent], None]) -> None:
        """Also show every relayed event to ``observer`` (the utterance reads partials)."""
        self._observers.append(observer)

    def add_timings(self, turn_id: str, timings: dict[str, object]) -> None:
        """Gateway-side timings of a turn, sent with its ``streaming_complete``."""
        self._timings.setdefault(turn_id, {}).update(timings)

    def deliver(self, event: ReplyEvent, _entry_id: str = "") -> None:
        """Relay callback: queue one reply event for the socket."""
        for observer in self._observers:
            observer(event)
        if event.turn_id in self._cancelled:
            return  # cut by the client: nothing more of this turn goes out
        try:
            self.outbox.put(self._frame(event))
        except OutboxOverflow:
            log.warning("session %s outbox full; closing slow client", self.session_id)
            self.close(1008, "client too slow to receive")
            return
        metrics.EVENTS.labels("out", event.event).inc()
        if event.event == "error":
            metrics.ERRORS.labels(event.data.get("code", "unknown")).inc()

    def send_error(self, code: str, message: str, turn_id: str | None = None) -> None:
        self.control(protocol.error_frame(code, message, self.session_id, turn_id))
        metrics.ERRORS.labels(code).inc()

    def control(self, text: str) -> None:
        self.outbox.put_control(OutFrame(text))

    def close(self, code: int, reason: str) -> None:
        """Send what is queued for control, drop queued replies, then close the socket."""
        self.closed_reason = (code, reason)
        self.outbox.put_control(OutFrame("", event="close"))

    def _frame(self, event: ReplyEvent) -> OutFrame:
        data = self._with_turn_timings(event)
        text = protocol.reply_frame(event.event, event.session_id, event.turn_id, data, event.audio)
        return OutFrame(
            text,
            event.turn_id,
            event.event,
            int(event.data.get("chunk_index", -1)),
            int(event.data.get("sentence", 0)),
            float(event.data.get("audio_ms", 0.0)),
            # an error without a spoken apology ends the turn (no_speech, stage failure)
            ends_turn=event.event == "error" and "reason" not in event.data,
        )

    def _with_turn_timings(self, event: ReplyEvent) -> dict[str, object]:
        """Collect each stage's timings of a turn; ``streaming_complete`` carries them all."""
        timings = event.data.get("timings")
        if event.event == "streaming_complete":
            merged = {**self._timings.pop(event.turn_id, {}), **(timings or {})}
            return {**event.data, "timings": merged}
        if timings and event.data.get("is_final"):
            if len(self._timings) > 64:  # turns that never completed (no speech): forget
                self._timings.clear()
            self._timings.setdefault(event.turn_id, {}).update(timings)
        return event.data

    # --- the socket ------------------------------------------------------------------

    async def send_loop(self) -> None:
        while True:
            frame = await self.outbox.get()
            if frame.event == "close":
                code, reason = self.closed_reason or (1000, "")
                self.outbox.clear()
                await self.ws.close(code=code, reason=reason)
                return
            await self.ws.send_text(frame.text)
            self._sent(frame)

    def _sent(self, frame: OutFrame) -> None:
        reply = self._replies.get(frame.turn_id or "")
        if reply is None or frame.turn_id in self._cancelled:
            return
        if frame.event == "tts_chunk":
            reply.chunks_sent += 1
            reply.sentence = max(reply.sentence, frame.sentence)
            if reply.first_chunk_at is None:
                reply.first_chunk_at = time.perf_counter()
                metrics.TURN_LATENCY.labels(reply.source).observe(
                    reply.first_chunk_at - reply.input_done
                )
        elif frame.event == "streaming_complete":
            reply.audio_ms = frame.audio_ms
            self._finish(frame.turn_id or "", reply)
        elif frame.ends_turn:
            self._finish(frame.turn_id or "", reply)
