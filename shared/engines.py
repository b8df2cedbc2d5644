"""One small interface per pipeline stage.

Workers own the Redis I/O, retries and metrics; engines only turn audio into text,
text into a reply, and a reply into audio. Engines are chosen by name from a
registry (see ``shared.registry``) so a new provider is one module and one line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

# --- ASR -------------------------------------------------------------------------


class AsrStream(Protocol):
    """State of one utterance inside a recogniser. Not shared between utterances."""

    def feed(self, pcm: bytes) -> str | None:
        """Add 16-bit mono PCM; return the new partial hypothesis if it changed, else None."""

    def finish(self) -> str:
        """End the utterance and return the final transcript ("" when nothing was heard)."""

    def close(self) -> None:
        """Release the stream's resources (decoder back to its pool) without a result."""


class AsrEngine(Protocol):
    """A recogniser that can run several utterances at once, each in its own stream.

    Calls are blocking (CPU-bound); the worker runs them in a thread (a stream whose
    ``feed`` is trivial may say ``blocking = False`` to be called on the event loop).
    """

    name: str
    sample_rate: int

    def open_stream(self) -> AsrStream: ...


# --- LLM / agent -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryTurn:
    """One exchange kept in a session's conversation memory."""

    user: str
    assistant: str


@dataclass(frozen=True, slots=True)
class AgentRequest:
    session_id: str
    turn_id: str
    text: str
    history: Sequence[HistoryTurn] = ()
    language: str = "en"  # the session's language (``shared.languages``): reply in it


class ReplyAgent(Protocol):
    """Produces a spoken-style reply as a stream of text deltas."""

    name: str

    def reply(self, request: AgentRequest) -> AsyncIterator[str]: ...


# --- TTS ---------------------------------------------------------------------------

AudioEncoding = Literal["pcm16", "mp3"]


@dataclass(frozen=True, slots=True)
class AudioSegment:
    """A piece of synthesised audio as the engine produced it."""

    data: bytes
    encoding: AudioEncoding
    sample_rate: int
    voice: str = ""  # "engine:voice" that spoke it, reported in streaming_complete


@dataclass(frozen=True, slots=True)
class Voice:
    """Per-session voice settings; engines ignore what they cannot honour."""

    name: str | None = None
    rate: int = 0  # percent, -50..+100
    pitch: int = 0  # percent or Hz-ish offset depending on engine
    extra: dict[str, str] = field(default_factory=dict)
    language: str = "en"  # with no ``name``, each engine speaks with its voice for this


class TtsEngine(Protocol):
    """Speaks one sentence at a time, yielding audio as soon as it exists."""

    name: str

    def synthesize(self, text: str, voice: Voice) -> AsyncIterator[AudioSegment]: ...
