"""Which session languages this worker's recogniser understands, and what it says when not.

pocketsphinx ships an English model only (``languages = ("en",)`` on the engine); an
external transcriber (``USE_EXTERNAL_ASR``, OpenAI's transcription with a language hint)
understands them all. A session in another language gets, per utterance, one ``error``
event with the stable code ``asr_language_unsupported`` and a message in its own
language, instead of an English misreading of its speech: the client should recognise
on the device and send ``voice_command`` (the voice page switches to the browser's
recogniser on this code).
"""

from __future__ import annotations

from typing import Any

from shared import protocol
from shared.engines import AsrEngine
from shared.languages import language
from shared.settings import Settings

NOTICES = {
    "en": "This server's speech recognition does not understand this language. Recognise "
    "speech on your device and send the text, or ask for USE_EXTERNAL_ASR to be enabled.",
    "zh-CN": "这台服务器的语音识别只支持英语。请使用设备上的语音识别并发送文字，"
    "或请管理员开启外部识别（USE_EXTERNAL_ASR）。",
    "es": "El reconocimiento de voz de este servidor solo entiende inglés. Usa el "
    "reconocimiento de tu dispositivo y envía el texto, o pide que activen USE_EXTERNAL_ASR.",
    "fr": "La reconnaissance vocale de ce serveur ne comprend que l'anglais. Utilisez la "
    "reconnaissance de votre appareil et envoyez le texte, ou demandez d'activer "
    "USE_EXTERNAL_ASR.",
    "de": "Die Spracherkennung dieses Servers versteht nur Englisch. Nutze die "
    "Spracherkennung deines Geräts und sende den Text, oder lass USE_EXTERNAL_ASR "
    "einschalten.",
}


def unsupported_language(
    engine: AsrEngine, options: dict[str, Any], settings: Settings
) -> str | None:
    """The session's language code if the local recogniser cannot hear it, else None."""
    spoken = getattr(engine, "languages", None)  # None: any language (echo)
    lang = language(options.get("lang"), settings.default_language)
    if spoken is None or lang.base in spoken:
        return None
    return lang.code


def notice(code: str) -> dict[str, str]:
    """The ``error`` event's data for a session in ``code`` that this server cannot hear."""
    return {
        "code": protocol.ASR_LANGUAGE_UNSUPPORTED,
        "message": NOTICES.get(code, NOTICES["en"]),
        "lang": code,
    }


class IgnoredSpeech:
    """A stream that hears nothing: the utterance is drained, not misrecognised."""

    blocking = False

    def feed(self, pcm: bytes) -> str | None:
        return None

    def finish(self) -> str:
        return ""

    def close(self) -> None:
        pass
