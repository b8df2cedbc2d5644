"""Hands-free turn taking end to end: the pause that ends a request depends on what was said.

The gateway ends a request on audio time (its voice activity detector) and on the
recogniser's latest hypothesis. The client sends audio as fast as the gateway takes it
and sends each pause only once the hypothesis of the words before it has arrived, as it
would have during that pause from a live microphone: no step depends on how fast this
machine is.
"""

from __future__ import annotations

import asyncio

from shared.settings import load_settings
from tests.audio_checks import speech_16k
from voice_agent.client import Turn, VoiceClient

SILENCE_MS = b"\x00\x00" * 16
FRAME = 3200  # 100 ms of 16 kHz PCM, as a microphone sends it
SETTLE_MS = 100  # below END_OF_SPEECH_COMPLETE_MS: no pause this short ends a request


class _Microphone:
    """Binary frames without ``is_final``, events in (collected as one turn)."""

    def __init__(self, client: VoiceClient) -> None:
        self.client = client
        self.turn = Turn()
        self.hypotheses: dict[str, asyncio.Event] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            event = await self.client.next_event(60)
            self.turn.events.append(event)
            self.turn.arrival_ms.append(0.0)
            data = event["data"]
            if event["event"] == "partial_transcription" and not data["is_final"]:
                self.hypotheses.setdefault(data["text"], asyncio.Event()).set()
            if event["event"] in ("streaming_complete", "error"):
                return

    async def say(self, pcm: bytes, heard: str) -> None:
        """Send ``pcm``, then wait until the recogniser's hypothesis is ``heard``."""
        for offset in range(0, len(pcm), FRAME):
            await self.client.ws.send(pcm[offset : offset + FRAME])
        hypothesis = asyncio.create_task(self.hypotheses.setdefault(heard, asyncio.Event()).wait())
        await asyncio.wait([hypothesis, self.reader], return_when=asyncio.FIRST_COMPLETED)
        hypothesis.cancel()
        assert self.hypotheses[heard].is_set(), (heard, self.turn.partials, self.turn.errors)

    async def pause(self, milliseconds: int) -> Turn:
        """Send silence; the turn, once it has ended (the reader's own bound)."""
        pcm = SILENCE_MS * milliseconds
        for offset in range(0, len(pcm), FRAME):
            await self.client.ws.send(pcm[offset : offset + FRAME])
        await self.reader
        return self.turn


async def test_a_hesitation_in_the_middle_of_a_request_does_not_end_it(system) -> None:
    assert SETTLE_MS < load_settings().end_of_speech_complete_ms
    async with VoiceClient.connect(system.ws_url) as client:
        microphone = _Microphone(client)
        # the recogniser settles on the last word within a few frames of silence, shorter
        # than any pause that ends a request
        await microphone.say(speech_16k("read me the latest", 300, SETTLE_MS), "read me the latest")
        await microphone.say(
            SILENCE_MS * (450 - SETTLE_MS) + speech_16k("sports headlines", 0, SETTLE_MS),
            "read me the latest sports headlines",
        )
        turn = await microphone.pause(1500 - SETTLE_MS)
    finals = [p for p in turn.of("partial_transcription") if p["is_final"]]
    assert [f["text"] for f in finals] == ["read me the latest sports headlines"]
    assert "striker" in turn.reply_text.lower()
    assert turn.complete["timings"]["end_of_speech_rule"] == "complete"
    silence = load_settings().end_of_speech_complete_ms
    assert turn.complete["timings"]["end_of_speech_silence_ms"] == silence
    partials = [p for p in turn.of("partial_transcription") if not p["is_final"]]
    assert partials[-1]["complete"] is True


async def test_an_unfinished_request_waits_longer(system) -> None:
    async with VoiceClient.connect(system.ws_url) as client:
        microphone = _Microphone(client)
        await microphone.say(speech_16k("tell me more about", 300, SETTLE_MS), "tell me more about")
        turn = await microphone.pause(1500 - SETTLE_MS)
    partials = [p for p in turn.of("partial_transcription") if not p["is_final"]]
    assert partials[-1]["complete"] is False
    assert turn.complete["timings"]["end_of_speech_rule"] == "unfinished", turn.events
    assert turn.complete["timings"]["end_of_speech_silence_ms"] == 900
