"""Spoken commands end to end: real-time audio in, partials, final transcript, spoken reply."""

from __future__ import annotations

import pytest

from tests.audio_checks import decode_mp3, speech_16k, word_error_rate
from voice_agent.client import VoiceClient


@pytest.mark.parametrize(
    ("spoken", "binary", "expect"),
    [
        ("read me the sports headlines", False, "striker"),
        ("any business news today", True, "coffee"),
    ],
)
async def test_spoken_request_gets_partials_transcript_and_spoken_reply(
    system, spoken: str, binary: bool, expect: str
) -> None:
    async with VoiceClient.connect(system.ws_url) as client:
        turn = await client.say(speech_16k(spoken), binary=binary, realtime=True)
    assert not turn.errors, turn.errors
    names = [e["event"] for e in turn.events]
    first_final = next(
        i
        for i, e in enumerate(turn.events)
        if e["event"] == "partial_transcription" and e["data"]["is_final"]
    )
    assert "partial_transcription" in names[:first_final], "an interim partial precedes the final"
    assert word_error_rate(spoken, turn.transcript or "") <= 0.25, turn.transcript
    assert expect in turn.reply_text.lower()
    assert [c["chunk_index"] for c in turn.chunks] == list(range(len(turn.chunks)))
    assert turn.complete["total_chunks_sent"] == len(turn.chunks)
    assert turn.complete["timings"]["transcript_final_ms"] >= 0
    assert decode_mp3(turn.audio)[1] > 2.0


async def test_silence_gets_a_no_speech_error(system) -> None:
    async with VoiceClient.connect(system.ws_url) as client:
        turn = await client.say(b"\x00\x00" * 16000, realtime=False)
    assert turn.transcript == ""
    assert [e["code"] for e in turn.errors] == ["no_speech"]


async def test_a_pause_ends_the_utterance_without_is_final(system) -> None:
    import asyncio

    from voice_agent.client import Turn

    pcm = speech_16k("any business news today", tail_silence_ms=1000)
    async with VoiceClient.connect(system.ws_url) as client:
        turn = Turn()
        for offset in range(0, len(pcm), 3200):  # real-time pace, binary frames, no is_final
            await client.ws.send(pcm[offset : offset + 3200])
            await asyncio.sleep(0.1)
        turn = await client.collect_turn(30, turn)
        assert word_error_rate("any business news today", turn.transcript or "") <= 0.25
        assert "coffee" in turn.reply_text.lower() and turn.complete
        await client.send_event("voice_data", {"audio_chunk": "", "is_final": True})
        follow_up = await client.ask("sports news")  # a late is_final is not an error
        assert not follow_up.errors and not turn.errors
