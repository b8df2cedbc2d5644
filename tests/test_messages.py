import msgpack
import pytest

from shared.messages import (
    FIELD,
    InputChunk,
    LlmJob,
    MessageError,
    ReplyEncoder,
    ReplyEvent,
    decode,
    encode,
)


def test_roundtrip_keeps_every_field() -> None:
    job = LlmJob("s1", "t1", "sports news", "speech", 123, {"voice": "en-us"})
    assert decode(encode(job)) == job
    chunk = InputChunk(3, audio=b"\x00\x01", end=True)
    assert decode(encode(chunk)) == chunk
    event = ReplyEvent("tts_chunk", "s", "t", {"chunk_index": 0}, b"mp3")
    assert decode(encode(event)) == event


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {b"m": b"\xc1"},
        {b"m": msgpack.packb([1, 2])},
        {b"m": msgpack.packb({"type": "llm_job", "v": 99})},
        {b"m": msgpack.packb({"type": "nope", "v": 1})},
        {b"m": msgpack.packb({"type": "llm_job", "v": 1, "bogus": 1})},
    ],
)
def test_garbage_raises_message_error(fields: dict[bytes, bytes]) -> None:
    with pytest.raises(MessageError):
        decode(fields)


def test_a_reply_encoder_writes_what_encode_writes() -> None:
    """The per-turn encoder of partials (fixed part packed once) writes the very bytes of
    ``encode``, so readers cannot tell them apart."""
    partial = ReplyEncoder("partial_transcription", "s-data", "t-\u00e9data")
    for data in ({"text": "12", "is_final": False, "complete": None}, {}, {"data": {}}):
        event = ReplyEvent("partial_transcription", "s-data", "t-\u00e9data", data)
        assert partial(data) == encode(event)[FIELD]
        assert decode({FIELD: partial(data)}) == event
