"""Speech from Microsoft Edge's online read-aloud service through ``edge-tts``.

No key and good neural voices, but it is an unofficial endpoint: it can refuse, stall or
drop a connection, so every failure becomes one ``TtsProviderError`` for the fallback
chain to act on. Two edge-tts behaviours are handled here rather than trusted:

* its ``receive_timeout`` does not bound the wait for WebSocket messages, so every
  receive runs under our own ``timeout``;
* a connection dropped mid-sentence ends ``stream()`` quietly with the audio cut short;
  it is detected because edge-tts only books received audio when ``turn.end`` arrives.

The service sends 24 kHz 48 kbit/s mono MP3 cut at arbitrary byte offsets; segments
yielded here hold whole frames.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

from shared import languages
from shared.engines import AudioSegment, Voice
from tts_worker.errors import TtsProviderError
from tts_worker.mp3 import FrameCutter

EDGE_SAMPLE_RATE = 24000
DEFAULT_EDGE_VOICE = "en-US-AriaNeural"
_EDGE_VOICE = re.compile(r"^[a-z]{2,}-[A-Z]{2,}-\S+Neural$")


def _import_edge_tts() -> ModuleType:
    try:
        import edge_tts
    except ImportError as exc:  # pragma: no cover - edge-tts is a core dependency
        raise RuntimeError("TTS provider 'edge' needs edge-tts: pip install edge-tts") from exc
    return edge_tts


def edge_voice(voice: Voice, default: str) -> str:
    """The session's voice if it is an Edge voice name (not "en-us"); else ``default``
    (``EDGE_TTS_VOICE``) when it speaks the session's language; else the neural voice
    for the language (``zh-CN-XiaoxiaoNeural``, ``es-ES-ElviraNeural``...)."""
    if voice.name and _EDGE_VOICE.match(voice.name):
        return voice.name
    lang = languages.language(voice.language)
    return default if languages.voice_language(default) == lang.base else lang.edge_voice


class EdgeTtsEngine:
    """``TtsEngine`` over edge-tts: one service connection per sentence, MP3 out."""

    name = "edge"
    sample_rate = EDGE_SAMPLE_RATE

    def __init__(self, default_voice: str = DEFAULT_EDGE_VOICE, timeout: float = 5.0) -> None:
        self._edge = _import_edge_tts()
        self.default_voice = default_voice
        self.timeout = timeout

    async def synthesize(self, text: str, voice: Voice) -> AsyncIterator[AudioSegment]:
        chosen = edge_voice(voice, self.default_voice)
        communicate = self._communicate(text, voice, chosen)
        stream = communicate.stream()
        cutter = FrameCutter()
        received = 0
        try:
            while (message := await self._next(stream)) is not None:
                if message["type"] != "audio":
                    continue  # sentence boundaries: not needed, the text is ours
                received += len(message["data"])
                if frames := cutter.push(message["data"]):
                    yield AudioSegment(frames, "mp3", EDGE_SAMPLE_RATE, f"edge:{chosen}")
        finally:
            await stream.aclose()
        booked = communicate.state.get("cumulative_audio_bytes", received)
        if booked != received:
            raise TtsProviderError(self.name, "the connection dropped mid-sentence")

    def _communicate(self, text: str, voice: Voice, chosen: str) -> Any:
        seconds = max(1, math.ceil(self.timeout))
        try:
            return self._edge.Communicate(
                text,
                chosen,
                rate=f"{voice.rate:+d}%",
                pitch=f"{voice.pitch:+d}Hz",
                connect_timeout=seconds,
                receive_timeout=seconds,
            )
        except (TypeError, ValueError) as exc:
            raise TtsProviderError(self.name, f"invalid voice settings: {exc}") from exc

    async def _next(self, stream: AsyncIterator[dict[str, Any]]) -> dict[str, Any] | None:
        """The next service message, None at the end; every failure as ``TtsProviderError``."""
        import aiohttp

        errors = self._edge.exceptions
        try:
            async with asyncio.timeout(self.timeout):
                return await anext(stream)
        except StopAsyncIteration:
            return None
        except TimeoutError as exc:
            raise TtsProviderError(self.name, f"no audio for {self.timeout:g} s") from exc
        except errors.NoAudioReceived as exc:
            raise TtsProviderError(self.name, "the service returned no audio") from exc
        except errors.WebSocketError as exc:
            raise TtsProviderError(self.name, "the WebSocket failed mid-sentence") from exc
        except errors.EdgeTTSException as exc:
            raise TtsProviderError(self.name, f"protocol error ({type(exc).__name__})") from exc
        except aiohttp.WSServerHandshakeError as exc:
            raise TtsProviderError(self.name, f"the service refused (HTTP {exc.status})") from exc
        except aiohttp.ClientConnectionError as exc:
            raise TtsProviderError(self.name, f"unreachable ({type(exc).__name__})") from exc
        except aiohttp.ClientError as exc:
            raise TtsProviderError(self.name, f"request failed ({type(exc).__name__})") from exc
