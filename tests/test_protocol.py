import base64
import json

import pytest

from shared.protocol import (
    AudioInput,
    Cancel,
    ProtocolError,
    VoiceCommand,
    event_id_key,
    parse_connect_params,
    parse_text_frame,
    reply_frame,
)


def _parse(event: str, data: object) -> object:
    return parse_text_frame(json.dumps({"event": event, "data": data}), "sess", 100)


def test_voice_command_is_trimmed_and_session_checked() -> None:
    event = _parse(
        "voice_command", {"session_id": "sess", "command": "  news  ", "confidence": 0.9}
    )
    assert isinstance(event, VoiceCommand) and event.command == "news"
    with pytest.raises(ProtocolError) as err:
        _parse("voice_command", {"session_id": "other", "command": "news"})
    assert err.value.code == "session_mismatch"


def test_voice_data_decodes_base64_pcm() -> None:
    pcm = b"\x01\x00" * 160
    event = _parse("voice_data", {"audio_chunk": base64.b64encode(pcm).decode(), "is_final": True})
    assert event == AudioInput(pcm=pcm, is_final=True)


def test_tts_chunk_frame_base64_encodes_audio_and_keeps_ids() -> None:
    frame = json.loads(reply_frame("tts_chunk", "s", "t1", {"chunk_index": 2}, b"\xff\xf3"))
    assert frame["event"] == "tts_chunk"
    assert frame["data"] == {
        "session_id": "s",
        "turn_id": "t1",
        "chunk_index": 2,
        "audio_chunk": base64.b64encode(b"\xff\xf3").decode(),
    }


@pytest.mark.parametrize("turn_id", ["t1", "t9", "t123456789"])
def test_cancel_accepts_turn_ids_of_the_protocol(turn_id: str) -> None:
    event = _parse("cancel", {"turn_id": turn_id})
    assert isinstance(event, Cancel) and event.turn_id == turn_id


@pytest.mark.parametrize(
    "turn_id", ["", "x1", "../t1", "t0", "t01", "T1", "t1\n", "t1234567890", 5, ["t1"]]
)
def test_cancel_refuses_other_turn_ids(turn_id: object) -> None:
    with pytest.raises(ProtocolError) as err:
        _parse("cancel", {"turn_id": turn_id})
    assert err.value.code == "invalid_field"


def test_resume_position_last_event_id_is_validated() -> None:
    ok = parse_connect_params(
        {"session_id": "a" * 32, "resume_token": "tok", "last_event_id": "1764500000000-3"}
    )
    assert ok.last_event_id == "1764500000000-3"
    for bad in ("", "1-", "-1", "1-2-3", "abc", "1" * 21 + "-0", "$", "+"):
        query = {"session_id": "a" * 32, "resume_token": "t", "last_event_id": bad}
        with pytest.raises(ProtocolError) as err:
            parse_connect_params(query)
        assert err.value.code == "invalid_field", bad


def test_event_ids_order_like_the_stream() -> None:
    ids = ["1764500000000-10", "1764500000000-2", "1764499999999-99", "1764500000001-0"]
    assert sorted(ids, key=event_id_key) == [ids[2], ids[1], ids[0], ids[3]]
    frame = json.loads(reply_frame("interrupted", "s", "t1", {}, b"", "1-0"))
    assert frame["data"]["event_id"] == "1-0"
