"""Typed messages carried on Redis Streams, encoded with msgpack in one field ``m``.

Each message is a frozen dataclass with a ``type`` tag; the envelope carries a schema
version ``v`` so a worker can refuse (dead-letter) what it does not understand instead
of crashing in a loop.

A job's ``trace`` (a W3C ``traceparent``, set only with tracing on: ``shared/tracing.py``)
travels inside its ``options`` map as ``"traceparent"``: the one place where workers that
predate it already accept, and even pass on, keys they do not know. Without a trace a
job is encoded exactly as before.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack

SCHEMA_VERSION = 1
FIELD = b"m"
# Beside an ASR job's message: its first chunk of audio (also in the turn's input stream),
# so a worker taking the job up needs no read before its first partial. Workers that do
# not know it ignore it.
FIRST_AUDIO = b"a1"
# ``InputChunk.preempted`` of an ASR end marker: whatever the final transcript, start no
# reply; the gateway decides from it whether the utterance was a request (barge-in)
GATEWAY_DECIDES = "\x00gateway"
TRACE_OPTION = "traceparent"  # the key a job's ``trace`` takes in its wire ``options``


class MessageError(ValueError):
    """A stream entry that cannot be decoded into a known message."""


@dataclass(frozen=True, slots=True)
class AsrJob:
    """Recognise one utterance whose audio arrives on ``Keys.asr_input``."""

    TYPE: ClassVar[str] = "asr_job"
    session_id: str
    turn_id: str
    sample_rate: int = 16000
    created_ms: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # passed on to the LlmJob
    trace: str = ""  # W3C traceparent of the turn ("" = not traced)


@dataclass(frozen=True, slots=True)
class LlmJob:
    """Answer one request (final transcript or a client-side recognised command)."""

    TYPE: ClassVar[str] = "llm_job"
    session_id: str
    turn_id: str
    text: str
    source: str = "command"  # "command" | "speech"
    created_ms: int = 0  # when the request was complete (end of speech / command received)
    options: dict[str, Any] = field(default_factory=dict)  # voice, format
    trace: str = ""  # W3C traceparent of the turn ("" = not traced)


@dataclass(frozen=True, slots=True)
class TtsJob:
    """Speak one reply whose sentences arrive on ``Keys.tts_input``."""

    TYPE: ClassVar[str] = "tts_job"
    session_id: str
    turn_id: str
    created_ms: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    trace: str = ""  # W3C traceparent of the turn ("" = not traced)


@dataclass(frozen=True, slots=True)
class InputChunk:
    """One piece of a turn's input stream: audio bytes or a sentence, or the end marker."""

    TYPE: ClassVar[str] = "input"
    seq: int
    audio: bytes = b""
    text: str = ""
    end: bool = False
    cancelled: bool = False
    preempted: str = ""  # ASR end marker: the attempt started early (``shared.early_reply``)


@dataclass(frozen=True, slots=True)
class ReplyEvent:
    """Something the client should see, written by any stage to ``Keys.reply``.

    ``data`` is the JSON payload of the wire event minus ``session_id``/``turn_id``;
    raw ``audio`` stays binary here and is base64-encoded only at the WebSocket edge.
    """

    TYPE: ClassVar[str] = "reply"
    event: str
    session_id: str
    turn_id: str
    data: dict[str, Any] = field(default_factory=dict)
    audio: bytes = b""

    @property
    def ends_turn(self) -> bool:
        """The last event of a turn: its end, or an error after which nothing follows (one
        without ``reason``: no spoken apology comes, e.g. no speech, a stage failure)."""
        return self.event == "streaming_complete" or (
            self.event == "error" and "reason" not in self.data
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A job that could not be processed, with why and where it came from."""

    TYPE: ClassVar[str] = "dead"
    stream: str
    entry_id: str
    reason: str
    payload: bytes = b""


Message = AsrJob | LlmJob | TtsJob | InputChunk | ReplyEvent | DeadLetter
_BY_TYPE: dict[str, type[Any]] = {
    cls.TYPE: cls for cls in (AsrJob, LlmJob, TtsJob, InputChunk, ReplyEvent, DeadLetter)
}


_TRACED = frozenset((AsrJob, LlmJob, TtsJob))
_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {  # on the wire (``trace``: in ``options``)
    cls: tuple(f.name for f in dataclasses.fields(cls) if f.name != "trace")
    for cls in _BY_TYPE.values()
}


def encode(message: Message) -> dict[bytes, bytes]:
    """Stream entry fields for ``message`` (pass to XADD)."""
    cls = type(message)
    body = {name: getattr(message, name) for name in _FIELD_NAMES[cls]}
    if cls in _TRACED and message.trace:  # type: ignore[union-attr]
        body["options"] = {**body["options"], TRACE_OPTION: message.trace}  # type: ignore[union-attr]
    body["type"] = message.TYPE
    body["v"] = SCHEMA_VERSION
    return {FIELD: msgpack.packb(body, use_bin_type=True)}


class ReplyEncoder:
    """``encode(ReplyEvent(event, session_id, turn_id, data))[FIELD]`` for many ``data`` of
    one turn, byte for byte: the fixed part is packed once (an ASR worker encodes a
    partial per audio chunk of every utterance it hears)."""

    def __init__(self, event: str, session_id: str, turn_id: str) -> None:
        sample = encode(ReplyEvent(event, session_id, turn_id))[FIELD]
        empty = msgpack.packb({}, use_bin_type=True)
        # the fields in ``encode``'s order: ... turn_id, data, audio, ...
        data_key = msgpack.packb("data", use_bin_type=True)
        cut = sample.rindex(data_key + empty) + len(data_key)
        self._head, self._tail = sample[:cut], sample[cut + len(empty) :]

    def __call__(self, data: dict[str, Any]) -> bytes:
        return self._head + msgpack.packb(data, use_bin_type=True) + self._tail


def decode(fields: dict[bytes, bytes]) -> Message:
    """Inverse of ``encode``; raises ``MessageError`` for anything unexpected."""
    raw = fields.get(FIELD)
    if raw is None:
        raise MessageError("entry has no 'm' field")
    try:
        body = msgpack.unpackb(raw, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise MessageError(f"not msgpack: {exc}") from exc
    if not isinstance(body, dict):
        raise MessageError("message is not a map")
    if body.pop("v", None) != SCHEMA_VERSION:
        raise MessageError("unsupported schema version")
    cls = _BY_TYPE.get(body.pop("type", None))
    if cls is None:
        raise MessageError("unknown message type")
    if cls in _TRACED:
        options = body.get("options")
        if isinstance(options, dict) and TRACE_OPTION in options:
            body["options"] = options = dict(options)
            body["trace"] = str(options.pop(TRACE_OPTION))
    try:
        return cls(**body)  # type: ignore[no-any-return]
    except TypeError as exc:
        raise MessageError(f"bad fields for {cls.TYPE}: {exc}") from exc
