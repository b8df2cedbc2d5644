"""An async Python client for the ``/ws/voice`` protocol (used by tests, benchmarks, CLI).

async with VoiceClient.connect("ws://localhost:8000/ws/voice", lang="es") as client:
    turn = await client.ask("¿qué hay de nuevo en tecnología?")
    print(turn.reply_text, len(turn.audio))
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import websockets

TERMINAL_EVENTS = frozenset({"streaming_complete", "error"})
# a request refused before it became a turn: its ``error`` names no turn, and no turn follows
REFUSALS = frozenset({"rate_limited", "busy"})


class ServerRefused(ConnectionError):
    """The server answered the connection with an ``error`` event instead of ``connected``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@dataclass
class Turn:
    """Everything the server sent about one turn, with client-side arrival times."""

    turn_id: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    arrival_ms: list[float] = field(default_factory=list)
    started_at: float = field(default_factory=time.perf_counter)
    input_done_ms: float | None = None  # when the last audio/command frame was sent

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events if e["event"] == name]

    @property
    def partials(self) -> list[str]:
        return [d["text"] for d in self.of("partial_transcription") if not d["is_final"]]

    @property
    def transcript(self) -> str | None:
        finals = [d["text"] for d in self.of("partial_transcription") if d["is_final"]]
        return finals[-1] if finals else None

    @property
    def reply_text(self) -> str:
        finals = [d["text"] for d in self.of("agent_response") if d["is_final"]]
        if finals:
            return str(finals[-1])
        return "".join(d["text"] for d in self.of("agent_response"))

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return self.of("tts_chunk")

    @property
    def audio(self) -> bytes:
        return b"".join(base64.b64decode(c["audio_chunk"]) for c in self.chunks)

    @property
    def complete(self) -> dict[str, Any] | None:
        done = self.of("streaming_complete")
        return done[0] if done else None

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.of("error")

    @property
    def pauses(self) -> int:
        """How often the reply was paused while someone seemed to talk over it."""
        return len(self.of("reply_paused"))

    def first_ms(self, name: str) -> float | None:
        for event, at in zip(self.events, self.arrival_ms, strict=True):
            if event["event"] == name:
                return at
        return None


def _refused(event: dict[str, Any]) -> bool:
    data = event.get("data", {})
    return event["event"] == "error" and not data.get("turn_id") and data.get("code") in REFUSALS


class VoiceClient:
    def __init__(self, ws: Any, connected: dict[str, Any]) -> None:
        self.ws = ws
        self.connected = connected
        self.session_id: str = connected["session_id"]
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.on_event: Callable[[dict[str, Any]], None] | None = None  # e.g. live printing
        self.finished_turns: set[str] = set()
        self.resume_token: str | None = connected.get("resume_token")
        # the last replayable event received, for resuming after a dropped connection
        # (protocol 3); a server of protocol 2 is resumed from the last audio received
        self.last_event_id: str | None = None
        self.last_turn_id: str | None = None
        self.last_chunk_index: int | None = None
        self.paused: set[str] = set()  # replies the server asked to pause (reply_paused)
        self._reader = asyncio.create_task(self._read(), name="voice-client-read")

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, url: str, *, lang: str | None = None, **kwargs: Any
    ) -> AsyncIterator[VoiceClient]:
        """Open a session; ``lang`` ("zh-CN", "es", "fr", "de", "en") sets its language
        (else the server's default, or the language of the first request that tells)."""
        if lang:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode({'lang': lang})}"
        async with websockets.connect(url, max_size=None, **kwargs) as ws:
            first = json.loads(await ws.recv())
            if first.get("event") == "error":
                data = first.get("data", {})
                raise ServerRefused(str(data.get("code")), str(data.get("message")))
            if first.get("event") != "connected":
                raise ConnectionError(f"expected 'connected', got {first.get('event')!r}")
            client = cls(ws, first["data"])
            try:
                yield client
            finally:
                client._reader.cancel()

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                event = json.loads(frame)
                self._note_position(event)
                await self.inbox.put(event)
        except websockets.ConnectionClosed:
            pass
        await self.inbox.put({"event": "_closed", "data": {}})

    # --- sending -------------------------------------------------------------------

    async def send_event(self, event: str, data: dict[str, Any]) -> None:
        await self.ws.send(json.dumps({"event": event, "data": data}))

    async def send_command(
        self, text: str, confidence: float = 1.0, *, is_final: bool | None = True
    ) -> None:
        """A request recognised on the device. A recogniser's partial results go out as
        ``is_final=False`` (each replaces the one before, no reply yet), its last result
        as ``is_final=True`` (the reply starts at once); ``None`` leaves the field out,
        as older clients do."""
        data: dict[str, Any] = {"session_id": self.session_id, "command": text}
        data["confidence"] = confidence
        if is_final is not None:
            data["is_final"] = is_final
        await self.send_event("voice_command", data)

    async def send_audio(
        self, pcm: bytes, *, chunk_ms: int = 100, realtime: bool = True, binary: bool = False
    ) -> None:
        """Stream 16 kHz s16le PCM in ``chunk_ms`` pieces, then ``is_final``."""
        step = 16000 * 2 * chunk_ms // 1000
        start = time.perf_counter()
        for n, offset in enumerate(range(0, len(pcm), step)):
            chunk = pcm[offset : offset + step]
            if binary:
                await self.ws.send(chunk)
            else:
                data = {"session_id": self.session_id, "is_final": False}
                data["audio_chunk"] = base64.b64encode(chunk).decode()
                await self.send_event("voice_data", data)
            if realtime:
                delay = start + (n + 1) * chunk_ms / 1000 - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
        final = {"session_id": self.session_id, "audio_chunk": "", "is_final": True}
        await self.send_event("voice_data", final)

    def resume_query(self) -> str:
        """Query parameters that resume this session from the last event received."""
        params = {"session_id": self.session_id, "resume_token": self.resume_token or ""}
        if self.last_event_id:
            params["last_event_id"] = self.last_event_id
        elif self.last_turn_id:
            params["last_turn_id"] = self.last_turn_id
            if self.last_chunk_index is not None:
                params["last_chunk_index"] = str(self.last_chunk_index)
        return urlencode(params)

    def resume_query_v2(self) -> str:
        """The protocol-2 position (last audio chunk or whole turn received)."""
        params = {"session_id": self.session_id, "resume_token": self.resume_token or ""}
        if self.last_turn_id:
            params["last_turn_id"] = self.last_turn_id
        if self.last_chunk_index is not None:
            params["last_chunk_index"] = str(self.last_chunk_index)
        return urlencode(params)

    async def cancel(self, turn_id: str | None = None) -> None:
        """Stop the reply in progress (or ``turn_id``'s)."""
        await self.send_event("cancel", {"turn_id": turn_id} if turn_id else {})

    def _note_position(self, event: dict[str, Any]) -> None:
        data = event.get("data", {})
        if data.get("event_id"):
            self.last_event_id = data["event_id"]
        turn_id = data.get("turn_id")
        if not turn_id:
            return
        name = event.get("event")
        if name == "reply_paused":
            self.paused.add(turn_id)
        elif name in ("reply_resumed", "interrupted", "streaming_complete"):
            self.paused.discard(turn_id)
        if event.get("event") == "tts_chunk":
            self.last_turn_id, self.last_chunk_index = turn_id, data.get("chunk_index")
        elif event.get("event") == "streaming_complete":  # the whole turn is here
            self.last_turn_id, self.last_chunk_index = turn_id, None

    # --- receiving -----------------------------------------------------------------

    async def next_event(self, limit_s: float = 30.0) -> dict[str, Any]:
        async with asyncio.timeout(limit_s):
            return await self.inbox.get()

    async def collect_turn(self, limit_s: float = 60.0, turn: Turn | None = None) -> Turn:
        """Gather events until the turn's ``streaming_complete`` (or an error ends it); a
        request the server refused (``rate_limited``, ``busy``) ends at its refusal."""
        turn = turn or Turn()
        async with asyncio.timeout(limit_s):
            while True:
                event = await self.inbox.get()
                if event["event"] == "_closed":
                    raise ConnectionError("server closed the connection mid-turn")
                data = event.get("data", {})
                if data.get("turn_id") in self.finished_turns:
                    if self.on_event is not None:  # late news of an earlier turn
                        self.on_event(event)
                    continue
                if turn.turn_id is None and data.get("turn_id"):
                    turn.turn_id = data["turn_id"]
                turn.events.append(event)
                if self.on_event is not None:
                    self.on_event(event)
                turn.arrival_ms.append((time.perf_counter() - turn.started_at) * 1000)
                if turn.turn_id is None and _refused(event):
                    return turn  # nothing of it will come: it is not a turn
                ends_turn = event["event"] in TERMINAL_EVENTS and data.get("turn_id")
                if ends_turn and data["turn_id"] == turn.turn_id:
                    self.finished_turns.add(turn.turn_id)
                    return turn

    async def ask(self, text: str, limit_s: float = 60.0, turn: Turn | None = None) -> Turn:
        turn = turn or Turn()
        await self.send_command(text)
        turn.input_done_ms = (time.perf_counter() - turn.started_at) * 1000
        return await self.collect_turn(limit_s, turn)

    async def say(
        self, pcm: bytes, limit_s: float = 60.0, turn: Turn | None = None, **kwargs: Any
    ) -> Turn:
        turn = turn or Turn()
        sending = asyncio.create_task(self.send_audio(pcm, **kwargs))
        sending.add_done_callback(
            lambda _t: setattr(
                turn, "input_done_ms", (time.perf_counter() - turn.started_at) * 1000
            )
        )
        try:
            return await self.collect_turn(limit_s, turn)
        finally:
            await sending
