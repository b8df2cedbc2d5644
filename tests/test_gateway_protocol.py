"""Bad input gets a clear ``error`` event; the connection and other sessions keep working."""

from __future__ import annotations

import base64
import json

import pytest

from tests.audio_checks import speech_16k
from voice_agent.client import VoiceClient

SESSION = "{session}"


def _frame(event: str, data: object) -> str:
    return json.dumps({"event": event, "data": data})


BAD_TEXT_FRAMES = [
    ("not json at all", "bad_json"),
    ("[1, 2, 3]", "bad_json"),
    ('{"data": {}}', "bad_json"),
    (_frame("launch_rockets", {}), "unknown_event"),
    (_frame("voice_command", {}), "invalid_field"),
    (_frame("voice_command", {"command": 42}), "invalid_field"),
    (_frame("voice_command", {"command": "   "}), "invalid_field"),
    (_frame("voice_command", "not an object"), "invalid_field"),
    (_frame("voice_data", {"audio_chunk": "!!!not base64!!!"}), "bad_audio"),
    (_frame("voice_data", {"audio_chunk": base64.b64encode(b"abc").decode()}), "bad_audio"),
    (_frame("voice_data", {"audio_chunk": "", "is_final": "yes"}), "invalid_field"),
    (_frame("voice_data", {"audio_chunk": "", "is_final": True}), "no_speech"),
    (_frame("voice_command", {"session_id": "someone-else", "command": "hi"}), "session_mismatch"),
    (_frame("voice_command", {"command": "x" * 1001}), "invalid_field"),
]


@pytest.mark.parametrize(("frame", "code"), BAD_TEXT_FRAMES)
async def test_bad_text_frame_gets_error_and_connection_survives(system, frame, code) -> None:
    async with VoiceClient.connect(system.ws_url) as client:
        await client.ws.send(frame)
        event = await client.next_event(10)
        assert event["event"] == "error"
        assert event["data"]["code"] == code
        assert len(event["data"]["message"]) > 10
        turn = await client.ask("top headlines")
        assert turn.complete and turn.chunks


async def test_odd_length_binary_frame_is_refused(system) -> None:
    async with VoiceClient.connect(system.ws_url) as client:
        await client.ws.send(b"\x01\x02\x03")
        event = await client.next_event(10)
        assert (event["event"], event["data"]["code"]) == ("error", "bad_audio")


async def test_oversized_frame_is_refused_without_closing(system) -> None:
    async with VoiceClient.connect(system.ws_url) as client:
        await client.ws.send(b"\x00" * (300 * 1024))
        event = await client.next_event(10)
        assert (event["event"], event["data"]["code"]) == ("error", "frame_too_large")
        turn = await client.ask("science news")
        assert "telescope" in turn.reply_text.lower()


async def test_overlong_utterance_is_cut_with_an_error(system) -> None:
    # no pause in it: a pause after a whole request would end the utterance sooner
    speech = speech_16k("read me the latest headlines about the economy", 0, 0)
    talk = (speech * (32 * 32000 // len(speech) + 1))[: 31 * 32000]  # 31 s of talking
    async with VoiceClient.connect(system.ws_url) as client:
        for offset in range(0, len(talk), 32000):
            await client.ws.send(talk[offset : offset + 32000])
        event = await client.next_event(10)
        while event["event"] == "partial_transcription":
            event = await client.next_event(10)
        assert (event["event"], event["data"]["code"]) == ("error", "utterance_too_long")


async def test_errors_do_not_leak_into_other_sessions(system) -> None:
    async with (
        VoiceClient.connect(system.ws_url) as good,
        VoiceClient.connect(system.ws_url) as bad,
    ):
        for _ in range(20):
            await bad.ws.send("{broken")
        turn = await good.ask("world news")
        assert not turn.errors
        assert "summit" in turn.reply_text.lower()
