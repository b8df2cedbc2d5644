"""The WebSocket wire protocol: parsing client frames and building server frames.

Frames are JSON text ``{"event": "...", "data": {...}}``; binary frames carry raw
16 kHz mono s16le PCM. Every refusal is a ``ProtocolError`` with a stable ``code``
that the gateway turns into an ``error`` event; see docs/protocol.md.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.languages import SUPPORTED, canonical_language

INPUT_SAMPLE_RATE = 16000
PROTOCOL_VERSION = 5  # 5: voice_command is_final; 4: reply_paused/resumed; 3: event_id
TURN_ID_PATTERN = r"^t[1-9][0-9]{0,8}$"
EVENT_ID_PATTERN = r"^[0-9]{1,20}-[0-9]{1,20}$"  # a reply-stream entry id

# error codes (stable: clients may switch on them)
BAD_JSON = "bad_json"
BAD_EVENT = "unknown_event"
BAD_FIELD = "invalid_field"
BAD_AUDIO = "bad_audio"
FRAME_TOO_LARGE = "frame_too_large"
UTTERANCE_TOO_LONG = "utterance_too_long"
SESSION_MISMATCH = "session_mismatch"
NO_SPEECH = "no_speech"
STAGE_FAILED = "stage_failed"
UNAVAILABLE = "unavailable"
ASR_DISABLED = "asr_disabled"
ASR_LANGUAGE_UNSUPPORTED = "asr_language_unsupported"  # the server's recogniser: not this language
RESUME_FAILED = "resume_failed"
UNAUTHORIZED = "unauthorized"
RATE_LIMITED = "rate_limited"
BUSY = "busy"
UNKNOWN_TURN = "unknown_turn"
REPLAY_TRUNCATED = "replay_truncated"  # a resume replayed only the newest events


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _ClientData(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    session_id: str | None = Field(default=None, max_length=128)


class VoiceCommand(_ClientData):
    command: str = Field(min_length=1)
    confidence: float | int | None = None
    # False: an interim transcript of the utterance in progress; True: its final one;
    # absent: a whole request, unless it revises the previous one (gateway.command_revisions)
    is_final: bool | None = None


class VoiceData(_ClientData):
    audio_chunk: str = ""
    is_final: bool = False


class Cancel(_ClientData):
    """Stop the reply in progress (or the named turn's)."""

    turn_id: str | None = Field(default=None, pattern=TURN_ID_PATTERN)


class Ping(_ClientData):
    """Application-level keep-alive for clients that cannot send WebSocket pings."""


OutputFormat = Literal["mp3", "pcm16", "wav"]


class SessionOptions(BaseModel):
    """Per-session reply settings, from the WebSocket URL's query parameters."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    voice: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.:+-]+$")
    format: OutputFormat = "mp3"
    rate: int = Field(default=0, ge=-50, le=100, description="speaking rate change, percent")
    pitch: int = Field(default=0, ge=-50, le=50, description="pitch change, percent")
    lang: str | None = Field(default=None, max_length=35, description="session language")

    @field_validator("lang")
    @classmethod
    def _supported_language(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = canonical_language(value)
        if code is None:
            raise ValueError(f"is not a supported language; choose one of {', '.join(SUPPORTED)}")
        return code

    def as_job_options(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ConnectParams(BaseModel):
    """Connection-level query parameters: resuming, barge-in, auth token."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    user_id: str = Field(default="anonymous", min_length=1, max_length=128)
    session_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    resume_token: str | None = Field(default=None, min_length=1, max_length=128)
    last_turn_id: str | None = Field(default=None, pattern=r"^t[0-9]{1,9}$")
    last_chunk_index: int | None = Field(default=None, ge=0)
    last_event_id: str | None = Field(default=None, pattern=EVENT_ID_PATTERN)
    barge_in: bool | None = None
    command_revisions: bool | None = None  # false: every voice_command is a new turn
    token: str | None = Field(default=None, max_length=1024)

    @property
    def resuming(self) -> bool:
        return self.session_id is not None


def parse_session_options(query: dict[str, str]) -> SessionOptions:
    try:
        return SessionOptions.model_validate(query)
    except ValidationError as exc:
        raise ProtocolError(BAD_FIELD, f"query parameters: {_describe(exc)}") from exc


def parse_connect_params(query: dict[str, str]) -> ConnectParams:
    try:
        params = ConnectParams.model_validate(query)
    except ValidationError as exc:
        raise ProtocolError(BAD_FIELD, f"query parameters: {_describe(exc)}") from exc
    if (params.session_id is None) != (params.resume_token is None):
        raise ProtocolError(BAD_FIELD, "resuming needs both 'session_id' and 'resume_token'")
    return params


@dataclass(frozen=True, slots=True)
class AudioInput:
    """Decoded audio from a ``voice_data`` event or a binary frame."""

    pcm: bytes
    is_final: bool


ClientEvent = VoiceCommand | AudioInput | Cancel | Ping
_MODELS: dict[str, type[_ClientData]] = {
    "voice_command": VoiceCommand,
    "voice_data": VoiceData,
    "cancel": Cancel,
    "ping": Ping,
}


def parse_text_frame(text: str, session_id: str, max_command_chars: int) -> ClientEvent:
    """Validate one JSON frame from the client."""
    try:
        frame = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(BAD_JSON, f"frame is not valid JSON: {exc}") from exc
    if not isinstance(frame, dict) or not isinstance(frame.get("event"), str):
        raise ProtocolError(BAD_JSON, 'frame must be an object like {"event": ..., "data": {...}}')
    name = frame["event"]
    model = _MODELS.get(name)
    if model is None:
        known = ", ".join(sorted(_MODELS))
        raise ProtocolError(BAD_EVENT, f"unknown event {name[:40]!r}; expected one of: {known}")
    data = frame.get("data", {})
    if not isinstance(data, dict):
        raise ProtocolError(BAD_FIELD, f"'{name}.data' must be an object")
    try:
        event = model.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(BAD_FIELD, f"{name}: {_describe(exc)}") from exc
    if event.session_id is not None and event.session_id != session_id:
        raise ProtocolError(SESSION_MISMATCH, "session_id does not belong to this connection")
    if isinstance(event, VoiceCommand):
        command = event.command.strip()
        if not command:
            raise ProtocolError(BAD_FIELD, "voice_command: 'command' is empty")
        if len(command) > max_command_chars:
            raise ProtocolError(
                BAD_FIELD, f"voice_command: 'command' is longer than {max_command_chars} characters"
            )
        return event.model_copy(update={"command": command})
    if isinstance(event, Cancel | Ping):
        return event
    assert isinstance(event, VoiceData)
    return AudioInput(pcm=decode_audio(event.audio_chunk), is_final=event.is_final)


def decode_audio(encoded: str) -> bytes:
    try:
        pcm = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(BAD_AUDIO, "voice_data: 'audio_chunk' is not valid base64") from exc
    check_pcm(pcm)
    return pcm


def check_pcm(pcm: bytes) -> None:
    if len(pcm) % 2:
        raise ProtocolError(
            BAD_AUDIO, "audio must be 16-bit PCM: an even number of bytes (16 kHz mono s16le)"
        )


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "data"
        parts.append(f"'{where}' {err['msg'].lower()}")
    return "; ".join(parts)


# --- server -> client ------------------------------------------------------------------

ServerEventName = Literal[
    "connected",
    "partial_transcription",
    "agent_response",
    "tts_chunk",
    "streaming_complete",
    "interrupted",
    "reply_paused",
    "reply_resumed",
    "pong",
    "error",
]


# one encoder for every frame: ``json.dumps`` with ``separators`` builds a new one per call,
# which cost as much as the encoding itself (a frame per partial, per audio chunk)
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def server_frame(event: str, data: dict[str, Any]) -> str:
    return _COMPACT.encode({"event": event, "data": data})


def error_frame(code: str, message: str, session_id: str, turn_id: str | None = None) -> str:
    data: dict[str, Any] = {"code": code, "message": message, "session_id": session_id}
    if turn_id:
        data["turn_id"] = turn_id
    return server_frame("error", data)


def reply_frame(
    event: str,
    session_id: str,
    turn_id: str,
    data: dict[str, Any],
    audio: bytes,
    event_id: str | None = None,
) -> str:
    """Turn a ``ReplyEvent`` from Redis into the JSON text the client receives; its
    ``event_id`` is the reply-stream entry id (what a resume names to replay after)."""
    payload = {"session_id": session_id, "turn_id": turn_id, **data}
    if event_id:
        payload["event_id"] = event_id
    if event == "tts_chunk":
        payload["audio_chunk"] = base64.b64encode(audio).decode()
    return server_frame(event, payload)


def event_id_key(event_id: str) -> tuple[int, int]:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``: event ids compare in stream order."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)
