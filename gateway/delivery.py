"""The outbound half of a session: reply events to the socket, and what got delivered.

It knows, per turn, how many audio chunks actually went out, which sentence they
belonged to and the id of the last event sent; that is what a cancel records (the
history keeps only what was heard, a replay shows only what was shown) and what barge-in
needs (is a reply still being produced or played?). Everything it keeps is bounded:
the turns it remembers, the cancelled turns, the timings of unfinished turns, and both
lanes of the outbox (see docs/protocol.md, Limits).
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
from gateway.session_store import Replay, is_interruption, turn_number
from shared import metrics, protocol
from shared.control import CancelRecord
from shared.messages import ReplyEvent
from shared.streams import now_ms
from shared.tracing import TurnSpans

log = logging.getLogger(__name__)

TURNS_REMEMBERED = 64  # per connection; beyond it the oldest are forgotten (down to half)
CANCELLED_REMEMBERED = 256  # cancelled turns whose late events are still dropped
TIMINGS_REMEMBERED = 64  # unfinished turns whose stage timings wait for their completion
# a slow reader may resume (its events wait in the reply stream): "try again later"
CLOSE_SLOW_READER = (1013, "client too slow to receive")
CLOSE_NOT_READING = (1008, "client does not read its events")


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
    last_sent_id: str = ""  # reply-stream id of the last event of the turn sent
    paused_at: float | None = None  # perf_counter when the client was told to pause
    paused_s: float = 0.0  # time spent paused before (the client did not play then)


class ReplyDelivery:
    def __init__(
        self, websocket: WebSocket, session_id: str, outbox_max_bytes: int, control_limit: int
    ) -> None:
        self.ws = websocket
        self.session_id = session_id
        self.outbox = Outbox(outbox_max_bytes, control_limit)
        self.idle = asyncio.Event()  # no reply in progress
        self.idle.set()
        self.closed_reason: tuple[int, str] | None = None
        self._replies: dict[str, _Reply] = {}
        self._in_progress: dict[str, None] = {}  # turns not fully sent, oldest first
        self._cancelled: dict[str, None] = {}  # oldest first
        # turns with events sent but no reply expected here (an utterance's partials, a
        # turn replayed after a resume) -> id of the last one sent; oldest first
        self._shown: dict[str, str] = {}
        self._timings: dict[str, dict[str, object]] = {}
        self._observers: list[Callable[[ReplyEvent], None]] = []
        self.spans: TurnSpans | None = None  # the turns' trace spans (tracing on)

    @property
    def closing(self) -> bool:
        return self.closed_reason is not None

    # --- turns -----------------------------------------------------------------------

    def expect(self, turn_id: str, source: str) -> None:
        """A request is complete: its reply is now in progress."""
        reply = _Reply(time.perf_counter(), source)
        reply.last_sent_id = self._shown.pop(turn_id, "")  # its partials went out already
        self._remember(turn_id, reply)
        self._in_progress[turn_id] = None
        self.idle.clear()

    def _remember(self, turn_id: str, reply: _Reply) -> _Reply:
        self._replies[turn_id] = reply
        if len(self._replies) > TURNS_REMEMBERED:  # long sessions: forget old turns
            for old in list(self._replies)[: -TURNS_REMEMBERED // 2]:
                del self._replies[old]
                self._in_progress.pop(old, None)
            if not self._in_progress:
                self.idle.set()
        return reply

    def knows(self, turn_id: str) -> bool:
        """A turn this connection expects or has sent events of (and not yet forgotten)."""
        return turn_id in self._replies or turn_id in self._shown

    def was_cancelled(self, turn_id: str) -> bool:
        return turn_id in self._cancelled

    def busy_turn(self) -> str | None:
        """The newest turn whose reply has not been fully sent (asked per audio frame:
        a lookup, not a scan)."""
        return next(reversed(self._in_progress), None)

    def _finish(self, turn_id: str, reply: _Reply, outcome: str = "complete") -> None:
        reply.complete = True
        self._in_progress.pop(turn_id, None)
        if not self._in_progress:
            self.idle.set()
        if self.spans is not None:
            self.spans.finish(turn_id, outcome, reply.chunks_sent)

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
        return turn_id if self.played_ms(turn_id) < reply.audio_ms else None

    def played_ms(self, turn_id: str) -> float:
        """How much of the reply the client has played, judged by the clock (0: none)."""
        reply = self._replies.get(turn_id)
        if reply is None or reply.first_chunk_at is None:
            return 0.0
        until = reply.paused_at or time.perf_counter()
        return (until - reply.first_chunk_at - reply.paused_s) * 1000

    def pause(self, turn_id: str) -> bool:
        """Tell the client to pause ``turn_id``'s playback (``reply_paused``, ahead of
        queued events) and hold its further events here. False: nothing to pause."""
        reply = self._replies.get(turn_id)
        if reply is None or turn_id in self._cancelled or reply.paused_at is not None:
            return False
        reply.paused_at = time.perf_counter()
        self.outbox.hold(turn_id)
        data = {"session_id": self.session_id, "turn_id": turn_id}
        self.control(protocol.server_frame("reply_paused", {**data, **self._position(reply)}))
        return True

    def resume(self, turn_id: str) -> bool:
        """``reply_resumed``, then the held events follow in order. False: not paused."""
        reply = self._replies.get(turn_id)
        if reply is None or reply.paused_at is None:
            return False
        reply.paused_s += time.perf_counter() - reply.paused_at
        reply.paused_at = None
        data = {"session_id": self.session_id, "turn_id": turn_id}
        self.control(protocol.server_frame("reply_resumed", {**data, **self._position(reply)}))
        self.outbox.release()
        return True

    @staticmethod
    def _position(reply: _Reply) -> dict[str, object]:
        """Where the reply stands: chunks sent so far, the last event of it sent."""
        position: dict[str, object] = {"chunks_sent": reply.chunks_sent}
        if reply.last_sent_id:
            position["last_event_id"] = reply.last_sent_id
        return position

    def interrupt(self, turn_id: str, reason: str) -> tuple[CancelRecord, list[ReplyEvent]]:
        """Stop relaying ``turn_id`` now; returns what was delivered and the events that
        tell the client (the caller writes them to the reply stream, whence they are
        relayed like any other event, so a replay shows them identically)."""
        reply = self._replies.get(turn_id) or _Reply(
            time.perf_counter(), "speech", last_sent_id=self._shown.pop(turn_id, "")
        )
        self.outbox.drop_turn(turn_id)
        if reply.paused_at is not None:  # cut while paused: the lane goes on without it
            reply.paused_s += time.perf_counter() - reply.paused_at
            reply.paused_at = None
            self.outbox.release()
        self._cancelled[turn_id] = None
        if len(self._cancelled) > CANCELLED_REMEMBERED:
            del self._cancelled[next(iter(self._cancelled))]
        heard = reply.sentence
        if reply.complete and reply.first_chunk_at is not None and reply.audio_ms > 0:
            played = self.played_ms(turn_id) / reply.audio_ms
            heard = min(reply.sentence, math.ceil(reply.sentence * played))
        # "0-0": nothing of the turn was shown (an empty id means a pre-v3 record)
        record = CancelRecord(reply.chunks_sent, heard, now_ms(), reply.last_sent_id or "0-0")
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
        self._finish(turn_id, reply, "interrupted")
        return record, events

    # --- events ----------------------------------------------------------------------

    def observe(self, observer: Callable[[ReplyEvent], None]) -> None:
        """Also show every relayed event to ``observer`` (the utterance reads partials)."""
        self._observers.append(observer)

    def add_timings(self, turn_id: str, timings: dict[str, object]) -> None:
        """Gateway-side timings of a turn, sent with its ``streaming_complete``."""
        self._timings.setdefault(turn_id, {}).update(timings)

    def deliver(self, event: ReplyEvent, entry_id: str = "") -> None:
        """Relay callback: queue one reply event (reply-stream id ``entry_id``)."""
        for observer in self._observers:
            observer(event)
        if event.turn_id in self._cancelled and not is_interruption(event):
            return  # cut by the client: nothing more of this turn goes out
        if self.closing:
            return
        try:
            self.outbox.put(self._frame(event, entry_id))
        except OutboxOverflow:
            log.warning("session %s outbox full; closing slow client", self.session_id)
            self.close(*CLOSE_SLOW_READER)
            return
        metrics.count_event("out", event.event)
        if event.event == "error":
            metrics.ERRORS.labels(event.data.get("code", "unknown")).inc()

    def prime(self, event: ReplyEvent) -> None:
        """An event the client already had (before its resume position): keep the turn
        timings it carried, so a replayed ``streaming_complete`` is as first sent."""
        self._with_turn_timings(event)

    def replay(self, replay: Replay, max_bytes: int) -> None:
        """A resume: queue the events the client missed (``SessionStore.replay`` kept the
        newest ``max_bytes`` of them: the replay must leave room in the outbox for live
        events). If older ones were skipped, the client is told first, on the control
        lane, by an ``error`` ``replay_truncated`` naming how many and where it starts."""
        for event in replay.seen:
            self.prime(event)  # their turn timings, as if they had been sent
        if replay.skipped and replay.missed:
            self._replay_truncated(replay.skipped, replay.missed[0][0], max_bytes)
        for entry_id, event in replay.missed:
            self.deliver(event, entry_id)

    def _replay_truncated(self, count: int, first_id: str, limit: int) -> None:
        message = (
            f"{count} older events were not replayed: a replay is limited to the newest "
            f"{limit} bytes (half of OUTBOX_MAX_BYTES); it starts at event {first_id}"
        )
        data = {
            "code": protocol.REPLAY_TRUNCATED,
            "message": message,
            "session_id": self.session_id,
            "skipped_events": count,
            "replay_from": first_id,
        }
        self.control(protocol.server_frame("error", data))
        metrics.ERRORS.labels(protocol.REPLAY_TRUNCATED).inc()

    def remember_cancelled(self, turn_ids: list[str]) -> None:
        """Turns cancelled on an earlier connection of the session (a resume): their
        late events are dropped here too, and cancelling them again writes nothing."""
        for turn_id in sorted(turn_ids, key=turn_number)[-CANCELLED_REMEMBERED:]:
            self._cancelled[turn_id] = None

    def send_unrecorded(self, events: list[ReplyEvent]) -> None:
        """Events that could not be written to the reply stream (Redis down): sent on the
        control lane without ``event_id``, so the client still stops playing."""
        for event in events:
            self.control(self._frame(event, "").text)

    def send_error(self, code: str, message: str, turn_id: str | None = None) -> None:
        if self.closing:
            return
        self.control(protocol.error_frame(code, message, self.session_id, turn_id))
        metrics.ERRORS.labels(code).inc()

    def control(self, text: str) -> None:
        """A frame that is not replayable (error, pong): ahead of queued reply events."""
        if self.closing:
            return
        try:
            self.outbox.put_control(OutFrame(text))
        except OutboxOverflow:
            log.warning("session %s does not read its events; closing", self.session_id)
            self.close(*CLOSE_NOT_READING, drop_queued=True)

    def close(self, code: int, reason: str, drop_queued: bool = False) -> None:
        """Drop queued replies (and with ``drop_queued`` queued control frames), send the
        rest of the control lane, then close the socket with ``code``."""
        if self.closed_reason is None:
            self.closed_reason = (code, reason)
        self.outbox.put_close(drop_control=drop_queued)

    def _frame(self, event: ReplyEvent, event_id: str) -> OutFrame:
        data = self._with_turn_timings(event)
        text = protocol.reply_frame(
            event.event, event.session_id, event.turn_id, data, event.audio, event_id
        )
        return OutFrame(
            text,
            event.turn_id,
            event.event,
            int(event.data.get("chunk_index", -1)),
            int(event.data.get("sentence", 0)),
            float(event.data.get("audio_ms", 0.0)),
            ends_turn=event.ends_turn,
            event_id=event_id,
        )

    def _with_turn_timings(self, event: ReplyEvent) -> dict[str, object]:
        """Collect each stage's timings of a turn; ``streaming_complete`` carries them all."""
        timings = event.data.get("timings")
        if event.event == "streaming_complete":
            merged = {**self._timings.pop(event.turn_id, {}), **(timings or {})}
            return {**event.data, "timings": merged}
        if timings and event.data.get("is_final"):
            if len(self._timings) > TIMINGS_REMEMBERED:  # turns that never completed: forget
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
            self._sent(frame)  # counted once taken: a cancel during the send counts it
            await self.ws.send_text(frame.text)

    def _sent(self, frame: OutFrame) -> None:
        turn_id = frame.turn_id
        if not turn_id or turn_id in self._cancelled:
            return
        reply = self._replies.get(turn_id)
        if reply is None:  # an utterance's partials, or a turn replayed after a resume
            if frame.event_id:
                self._shown.pop(turn_id, None)
                self._shown[turn_id] = frame.event_id
                if len(self._shown) > TURNS_REMEMBERED:
                    del self._shown[next(iter(self._shown))]
            return
        if frame.event_id:
            reply.last_sent_id = frame.event_id
        if self.spans is not None:
            self.spans.relaying(turn_id)
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
            self._finish(turn_id, reply)
        elif frame.ends_turn:
            self._finish(turn_id, reply, "error")
