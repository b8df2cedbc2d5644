"""Hands-free turn taking end to end: the pause that ends a request depends on what was said."""

from __future__ import annotations

import asyncio

from shared.settings import load_settings
from tests.audio_checks import speech_16k
from voice_agent.client import Turn, VoiceClient

SILENCE_MS = b"\x00\x00" * 16


async def _talk(client: VoiceClient, pcm: bytes) -> None:
    """Binary frames of 100 ms at real-time pace, no ``is_final``: a live microphone."""
    for offset in range(0, len(pcm), 3200):
        await client.ws.send(pcm[offset : offset + 3200])
        await asyncio.sleep(0.1)


async def test_a_hesitation_in_the_middle_of_a_request_does_not_end_it(system) -> None:
    pcm = (
        speech_16k("read me the latest", 300, 0)
        + SILENCE_MS * 450  # "read me the latest … sports headlines"
        + speech_16k("sports headlines", 0, 1500)
    )
    async with VoiceClient.connect(system.ws_url) as client:
        talking = asyncio.create_task(_talk(client, pcm))
        turn = await client.collect_turn(60, Turn())
        await talking
        finals = [p for p in turn.of("partial_transcription") if p["is_final"]]
        assert [f["text"] for f in finals] == ["read me the latest sports headlines"]
        assert "striker" in turn.reply_text.lower()
        assert turn.complete["timings"]["end_of_speech_rule"] == "complete"
        silence = load_settings().end_of_speech_complete_ms
        assert turn.complete["timings"]["end_of_speech_silence_ms"] == silence
        partials = [p for p in turn.of("partial_transcription") if not p["is_final"]]
        assert partials[-1]["complete"] is True


async def test_an_unfinished_request_waits_longer(system) -> None:
    pcm = speech_16k("tell me more about", 300, 1500)
    async with VoiceClient.connect(system.ws_url) as client:
        talking = asyncio.create_task(_talk(client, pcm))
        turn = await client.collect_turn(60, Turn())
        await talking
    partials = [p for p in turn.of("partial_transcription") if not p["is_final"]]
    assert partials[-1]["complete"] is False
    assert turn.complete["timings"]["end_of_speech_rule"] == "unfinished", turn.events
    assert turn.complete["timings"]["end_of_speech_silence_ms"] == 900
