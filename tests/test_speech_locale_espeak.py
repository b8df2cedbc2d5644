"""Spoken sentences as espeak-ng gets them: a German reply through the real gateway, LLM
and TTS workers reaches the voice whole, its ordinal date and abbreviations in words (the
model stand-in writes the reply; the text shown to the client keeps the digits); and
espeak-ng reads each news sentence of every language without a break inside."""

from __future__ import annotations

import ctypes
import re

import pytest

from llm_worker.speech_text import speech_text
from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import free_port
from tests.test_language_pipeline import gateway_and_workers, settings_for
from tests.test_sentences_languages import TABLE
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


def espeak_clauses(text: str, voice: str) -> int:
    """How many clauses espeak-ng reads ``text`` as: it pauses and drops its pitch after
    each one (run on the engine's own thread; the library is not thread-safe)."""

    def count() -> int:
        espeak = espeak_engine._Espeak.get()
        espeak.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        espeak.lib.espeak_SetVoiceByName(voice.encode())
        espeak._voice = None  # the next synthesis sets its own voice again
        buffer = ctypes.c_char_p(text.encode())
        pointer, clauses = ctypes.pointer(buffer), 0
        while buffer.value:
            espeak.lib.espeak_TextToPhonemes(pointer, _CHARS_UTF8, _PHONEMES_IPA)
            clauses += 1
        return clauses

    return espeak_engine._ESPEAK_THREAD.submit(count).result()


_CHARS_UTF8, _PHONEMES_IPA = 1, 2
VOICES = {"de": "de", "es": "es", "fr": "fr", "en": "en-us"}
SENTENCES = [(lang, s) for lang, rows in TABLE.items() for row in rows for s in row]


@pytest.mark.parametrize(("lang", "sentence"), SENTENCES, ids=[s[:40] for _, s in SENTENCES])
def test_espeak_reads_each_spoken_sentence_without_a_break_inside(lang: str, sentence: str) -> None:
    """Only a comma, semicolon or colon may break a sentence as espeak-ng reads it."""
    spoken = speech_text(sentence, lang)
    marks = len(re.findall(r"[,;:][\"”»]?\s", spoken))
    assert espeak_clauses(spoken, VOICES[lang]) == marks + 1, spoken
