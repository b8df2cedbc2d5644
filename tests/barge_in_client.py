"""A client that plays replies on a virtual loudspeaker and hears them back in its
microphone, for the barge-in tests and benchmark.

Time is virtual: every 100 ms frame of microphone audio sent is 100 ms of playback. After
each frame the client sends ``ping`` and waits for ``pong``: the gateway handles a
client's frames in order, so anything that frame made it say (``reply_paused``, ahead of
queued audio) has arrived by then. So audio goes as fast as the server takes it, and the
player pauses, resumes and stops exactly where the events say, without sleeping.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.audio_checks import decode_mp3
from voice_agent.client import VoiceClient

FRAME = 1600  # samples of 16 kHz audio in 100 ms


def mix(*parts: np.ndarray) -> bytes:
    length = max(len(p) for p in parts)
    total = np.zeros(length, dtype=np.float64)
    for part in parts:
        total[: len(part)] += part
    return np.clip(total, -32768, 32767).astype(np.int16).tobytes()


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float64)


@dataclass
class Player:
    """The reply as a loudspeaker plays it: paused, resumed and stopped by events."""

    turn_id: str | None = None
    mp3: bytearray = field(default_factory=bytearray)
    chunk_indexes: list[int] = field(default_factory=list)
    position: int = 0  # samples played
    paused: bool = False
    stopped: bool = False
    complete: dict[str, Any] | None = None
    played: list[np.ndarray] = field(default_factory=list)  # loudspeaker output per frame
    events: list[dict[str, Any]] = field(default_factory=list)
    _pcm: np.ndarray | None = None

    def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        name, data = event["event"], event.get("data", {})
        if data.get("turn_id") != self.turn_id:
            return
        if name == "tts_chunk":
            self.chunk_indexes.append(data["chunk_index"])
            self.mp3 += base64.b64decode(data["audio_chunk"])
            self._pcm = None
        elif name == "reply_paused":
            self.paused = True
        elif name == "reply_resumed":
            self.paused = False
        elif name == "interrupted":
            self.stopped = True
        elif name == "streaming_complete":
            self.complete = data

    @property
    def pcm(self) -> np.ndarray:
        if self._pcm is None:
            self._pcm = samples(decode_mp3(bytes(self.mp3))[0]) if self.mp3 else np.zeros(0)
        return self._pcm

    @property
    def finished(self) -> bool:
        """Stopped, or played to the end of a reply that is complete."""
        return self.stopped or (self.complete is not None and self.position >= len(self.pcm))

    def play_frame(self) -> np.ndarray:
        """The next 100 ms out of the loudspeaker."""
        out = np.zeros(FRAME)
        if not (self.paused or self.stopped):
            piece = self.pcm[self.position : self.position + FRAME]
            out[: len(piece)] = piece
            self.position += len(piece)
        self.played.append(out)
        return out

    def echo(self, gain_db: float, delay_ms: int) -> np.ndarray:
        """What the microphone hears of the loudspeaker: ``delay_ms`` late, quieter."""
        timeline = np.concatenate(self.played) if self.played else np.zeros(0)
        end = len(timeline) - delay_ms * 16
        start = end - FRAME
        out = np.zeros(FRAME)
        if end > 0:
            piece = timeline[max(0, start) : end]
            out[FRAME - len(piece) :] = piece
        return out * 10 ** (gain_db / 20)


async def drain(client: VoiceClient, player: Player, until: str) -> None:
    """Hand events to ``player`` until one named ``until`` arrives."""
    while True:
        event = await client.next_event(60)
        if event["event"] == "_closed":
            raise ConnectionError("the server closed the connection")
        player.on_event(event)
        if event["event"] == until:
            return


async def send_frame(client: VoiceClient, player: Player, pcm: bytes) -> None:
    """One microphone frame, then wait until the gateway has handled it."""
    await client.ws.send(pcm)
    await client.send_event("ping", {})
    await drain(client, player, "pong")


async def start_reply(client: VoiceClient, player: Player, question: str) -> None:
    """Ask by text and wait for the reply's first audio (the loudspeaker starts)."""
    await client.send_command(question)
    while not player.chunk_indexes:
        await drain(client, player, "tts_chunk")
        if player.turn_id is None:
            player.turn_id = player.events[-1]["data"]["turn_id"]
            player.on_event(player.events.pop())
