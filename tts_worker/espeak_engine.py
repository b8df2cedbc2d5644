"""Offline speech synthesis with libespeak-ng from the ``espeakng-loader`` wheel.

No system packages needed: the wheel carries ``libespeak-ng.so`` and its data. The
library keeps global state and is not thread-safe, so every call goes through one
dedicated thread (``_ESPEAK_THREAD``) shared by all engines in the process.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from shared import languages
from shared.engines import AudioSegment, Voice

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_DEFAULT_WPM = 175
_DEFAULT_PITCH = 50
DEFAULT_VOICE = "en-us"

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

_ESPEAK_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")


class _Espeak:
    """The process-wide library handle; only ever touched from ``_ESPEAK_THREAD``."""

    _instance: _Espeak | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(str(espeakng_loader.get_library_path()))
        data_path = str(espeakng_loader.get_data_path()).encode()
        espeakng_loader.make_library_available()
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
        if self.sample_rate <= 0:
            raise RuntimeError("libespeak-ng failed to initialise")
        self._pcm = bytearray()
        self._callback = _SYNTH_CALLBACK(self._collect)  # keep a reference: C holds it
        self.lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    @classmethod
    def get(cls) -> _Espeak:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _collect(self, wav: ctypes._Pointer, num_samples: int, _events: int) -> int:
        if num_samples > 0 and wav:
            self._pcm += ctypes.string_at(wav, num_samples * 2)
        return 0

    def synthesize(
        self, text: str, voice_name: str, rate: int, pitch: int, fallback: str = DEFAULT_VOICE
    ) -> tuple[bytes, str]:
        """PCM for ``text`` and the voice that spoke it."""
        if voice_name != self._voice:
            if self.lib.espeak_SetVoiceByName(voice_name.encode()) != 0:
                # a cloud voice name ("alloy", "en-US-AriaNeural") reached the offline
                # fallback: speak with the language's voice rather than lose the sentence
                voice_name = fallback
                if self.lib.espeak_SetVoiceByName(voice_name.encode()) != 0:
                    voice_name = DEFAULT_VOICE
                    self.lib.espeak_SetVoiceByName(voice_name.encode())
            self._voice = voice_name
        wpm = max(80, min(450, round(_DEFAULT_WPM * (100 + rate) / 100)))
        self.lib.espeak_SetParameter(_ESPEAK_RATE, wpm, 0)
        self.lib.espeak_SetParameter(_ESPEAK_PITCH, max(0, min(100, _DEFAULT_PITCH + pitch)), 0)
        encoded = text.encode()
        self._pcm = bytearray()
        self.lib.espeak_Synth(
            encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
        )
        self.lib.espeak_Synchronize()
        pcm, self._pcm = bytes(self._pcm), bytearray()
        return pcm, voice_name


def synthesize_pcm(text: str, voice_name: str = "en-us", rate: int = 0, pitch: int = 0) -> bytes:
    """Blocking: 16-bit mono PCM at ``espeak_sample_rate()`` for ``text``.

    Safe to call from any thread: the work runs on the espeak thread.
    """
    work = _ESPEAK_THREAD.submit(_speak_on_thread, text, voice_name, rate, pitch, DEFAULT_VOICE)
    return work.result()[0]


def _speak_on_thread(
    text: str, voice_name: str, rate: int, pitch: int, fallback: str
) -> tuple[bytes, str]:
    """On the espeak thread: (PCM, the voice that spoke it)."""
    return _Espeak.get().synthesize(text, voice_name, rate, pitch, fallback)


def espeak_sample_rate() -> int:
    return _ESPEAK_THREAD.submit(lambda: _Espeak.get().sample_rate).result()


class EspeakEngine:
    """``TtsEngine`` over libespeak-ng: one PCM segment per sentence, in milliseconds.

    Voice: the session's ``?voice=`` if espeak-ng has it; else ``TTS_VOICE`` when it speaks
    the session's language; else the wheel's voice for the language (``cmn`` for
    Chinese, ``es``, ``fr``, ``de``).
    """

    name = "espeak"

    def __init__(self, default_voice: str = "en-us") -> None:
        self.default_voice = default_voice
        self.sample_rate = espeak_sample_rate()

    def language_voice(self, code: str) -> str:
        lang = languages.language(code)
        if languages.voice_language(self.default_voice) == lang.base:
            return self.default_voice
        return lang.espeak_voice

    async def synthesize(self, text: str, voice: Voice) -> AsyncIterator[AudioSegment]:
        own = self.language_voice(voice.language)
        loop = asyncio.get_running_loop()
        pcm, used = await loop.run_in_executor(
            _ESPEAK_THREAD, _speak_on_thread, text, voice.name or own, voice.rate, voice.pitch, own
        )
        if pcm:
            yield AudioSegment(pcm, "pcm16", self.sample_rate, voice=f"espeak:{used}")
