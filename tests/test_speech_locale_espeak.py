"""A German reply through the real gateway, LLM and TTS workers to espeak-ng: the voice is
given each sentence whole, its ordinal date and abbreviations in words (the model
stand-in writes the reply; the text shown to the client keeps the digits)."""

from __future__ import annotations

import pytest

from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import free_port
from tests.test_language_pipeline import gateway_and_workers, settings_for
from tts_worker import espeak_engine
from voice_agent.client import VoiceClient

REPLY = "Am 3. Oktober sprach Nr. 5 mit z. B. Vertretern der Länder. Das kostet ca. 1 Mio. Euro."


async def test_espeak_speaks_the_german_sentences_in_words(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    given: list[tuple[str, str]] = []
    speak = espeak_engine._speak_on_thread

    def recording(text: str, voice: str, *rest: object) -> tuple[bytes, str]:
        given.append((text, voice))
        return speak(text, voice, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(espeak_engine, "_speak_on_thread", recording)
    with running_standin(StandIn(), free_port()) as model:
        model.chat = ChatScript(reply=REPLY)
        async with gateway_and_workers(settings_for(redis_url, model, "espeak")) as ws_url:
            async with VoiceClient.connect(f"{ws_url}?lang=de") as client:
                turn = await client.ask("Was gibt es Neues?")
    assert not turn.errors, turn.errors
    assert given == [
        ("Am dritten Oktober sprach Nummer fünf mit zum Beispiel Vertretern der Länder.", "de"),
        ("Das kostet circa eine Million Euro.", "de"),
    ]
    assert turn.complete is not None and turn.complete["voices"] == ["espeak:de"]
    assert {c["sentence"] for c in turn.chunks} == {1, 2}  # audio for both sentences
    assert turn.reply_text == REPLY
