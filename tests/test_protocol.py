import base64
import json

import pytest

from shared.protocol import AudioInput, ProtocolError, VoiceCommand, parse_text_frame, reply_frame


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
