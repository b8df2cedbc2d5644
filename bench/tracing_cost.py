"""What tracing costs: per relayed frame and per encoded audio frame with tracing off (the
default) and on, and per turn and per job with it on. Prints JSON.

Off, the hooks are an ``is None`` test each; this measures the gateway's per-frame relay
work (``ReplyDelivery.deliver`` and the send loop's bookkeeping, without the socket) and
the message codec, against the same work without the hooks (the codec as it was before
tracing, and the hook test timed alone). On, spans go to a local OTLP/HTTP receiver.

    python -m bench.tracing_cost
"""

from __future__ import annotations

import json
import os
import time
import timeit
from typing import Any

import msgpack

from gateway.delivery import ReplyDelivery
from shared import messages
from shared.messages import InputChunk, ReplyEvent, decode, encode
from shared.settings import load_settings
from shared.tracing import TurnSpans, flush, tracer_for

FRAMES = 5_000
ROUNDS = 25


def _encode_before(message: Any) -> dict[bytes, bytes]:
    """``shared.messages.encode`` as it was before jobs carried a trace."""
    body = {name: getattr(message, name) for name in messages._FIELD_NAMES[type(message)]}
    body["type"] = message.TYPE
    body["v"] = messages.SCHEMA_VERSION
    return {messages.FIELD: msgpack.packb(body, use_bin_type=True)}


def _decode_before(fields: dict[bytes, bytes]) -> Any:
    """``shared.messages.decode`` as it was before jobs carried a trace."""
    raw = fields.get(messages.FIELD)
    if raw is None:
        raise messages.MessageError("entry has no 'm' field")
    try:
        body = msgpack.unpackb(raw, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise messages.MessageError(f"not msgpack: {exc}") from exc
    if not isinstance(body, dict):
        raise messages.MessageError("message is not a map")
    if body.pop("v", None) != messages.SCHEMA_VERSION:
        raise messages.MessageError("unsupported schema version")
    cls = messages._BY_TYPE.get(body.pop("type", None))
    if cls is None:
        raise messages.MessageError("unknown message type")
    try:
        return cls(**body)
    except TypeError as exc:
        raise messages.MessageError(f"bad fields for {cls.TYPE}: {exc}") from exc


def _us(run: Any, count: int) -> float:
    """One run of ``run``, in microseconds per item."""
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) / count * 1e6


def _compare(count: int, **variants: Any) -> dict[str, float]:
    """Each variant's fastest of ``ROUNDS`` runs (µs per item), the variants interleaved
    round by round in alternating order, so a busy moment of a shared machine hits them alike."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants.items())
    for _ in range(ROUNDS):
        for name, run in order:
            samples[name].append(_us(run, count))
        order.reverse()  # neither variant always runs first
    return {name: round(min(values), 3) for name, values in samples.items()}


def _relay(delivery: ReplyDelivery, turns: int, frames_per_turn: int) -> None:
    """The per-frame relay work of ``turns`` spoken replies: deliver, then what the send
    loop does with each frame (the socket write itself left out)."""
    replies = delivery.outbox._replies
    for t in range(turns):
        turn_id = f"t{t}"
        if delivery.spans is not None:
            delivery.spans.begin(turn_id, "speech")
            delivery.spans.received(turn_id)
            delivery.spans.end_of_speech(turn_id, {"end_of_speech_silence_ms": 150})
        delivery.expect(turn_id, "speech")
        for i in range(frames_per_turn):
            data = {"chunk_index": i, "format": "mp3", "sample_rate": 24000, "sentence": 1}
            delivery.deliver(ReplyEvent("tts_chunk", "s", turn_id, data, b"\xff" * 64), f"1-{i}")
            delivery._sent(replies.popleft())
        done = ReplyEvent("streaming_complete", "s", turn_id, {"audio_ms": 1000.0})
        delivery.deliver(done, "2-0")
        delivery._sent(replies.popleft())


def main() -> None:
    chunk = InputChunk(seq=7, audio=b"\x01\x00" * 1600)  # 100 ms of audio
    encoded = encode(chunk)
    codec = {
        "encode_audio_frame_us": _compare(
            FRAMES,
            now=lambda: [encode(chunk) for _ in range(FRAMES)],
            before_tracing=lambda: [_encode_before(chunk) for _ in range(FRAMES)],
        ),
        "decode_audio_frame_us": _compare(
            FRAMES,
            now=lambda: [decode(encoded) for _ in range(FRAMES)],
            before_tracing=lambda: [_decode_before(encoded) for _ in range(FRAMES)],
        ),
    }
    holder = type("Holder", (), {"spans": None})()
    hook_ns = {
        "hook_off_ns": round(
            min(timeit.repeat("if h.spans is not None: pass", globals={"h": holder}, number=10**6))
            * 1000,
            1,
        ),
        "no_hook_ns": round(min(timeit.repeat("pass", number=10**6)) * 1000, 1),
    }
    turns, per_turn = 200, 50
    off = ReplyDelivery(None, "s", 10**6, 10**6)  # type: ignore[arg-type]
    frames = turns * (per_turn + 1)
    relay_off = _compare(frames, off=lambda: _relay(off, turns, per_turn))["off"]
    result: dict[str, Any] = {
        "codec": codec,
        "hook": hook_ns,
        "relay_frame_us": {"tracing_off": relay_off},
    }
    from tests.otlp_receiver import otlp_receiver

    with otlp_receiver() as receiver:
        settings = load_settings(otel_exporter_otlp_endpoint=receiver.url)
        os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", "100000")
        tracer = tracer_for(settings, "gateway")
        assert tracer is not None
        on = ReplyDelivery(None, "s", 10**6, 10**6)  # type: ignore[arg-type]
        on.spans = TurnSpans(tracer, "s")
        relay_on = _compare(frames, on=lambda: _relay(on, turns, per_turn))["on"]
        result["relay_frame_us"]["tracing_on"] = relay_on  # incl. its share of turn spans
        job = messages.LlmJob("s", "t1", "news", trace=on.spans.begin("tx", "command"))
        jobs = 2000
        result["job_span_us"] = _compare(
            jobs, on=lambda: [tracer.job(job, 1).end("ok") for _ in range(jobs)]
        )["on"]
        flush()
        result["spans_exported"] = len(receiver.spans)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
