"""Speech from OpenAI's ``/v1/audio/speech`` (or any server that speaks that protocol).

Audio is streamed: bytes are yielded as they arrive, so the first words play long
before the sentence is done. ``pcm`` (24 kHz s16le mono, the default) needs no decoding
on our side; ``mp3`` is cut into whole frames. Retries are off: in a voice turn a retry
costs as much as switching engines, and the fallback chain (``TTS_FALLBACK``) is the
retry. Every failure is one ``TtsProviderError`` with a reason an operator can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator
from typing import Any, Literal

from shared.engines import AudioSegment, Voice
from tts_worker.errors import TtsProviderError
from tts_worker.mp3 import FrameCutter

OPENAI_SAMPLE_RATE = 24000  # every response format of the speech API
OPENAI_VOICES = frozenset(
    "alloy ash ballad coral echo fable onyx nova sage shimmer verse marin cedar".split()
)


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as exc:  # pragma: no cover - openai is a core dependency
        raise RuntimeError(
            "TTS provider 'openai' needs the openai package: pip install openai"
        ) from exc
    return openai


def _transport_errors(openai: Any) -> tuple[type[Exception], ...]:
    """Errors a broken body stream raises unwrapped: the SDK's HTTP library's base error
    (``httpx2`` for openai 3.x, ``httpx`` before), plus the SDK's own."""
    errors: list[type[Exception]] = [openai.APIError]
    for name in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            errors.append(importlib.import_module(name).HTTPError)
    return tuple(errors)


class OpenAITtsEngine:
    """``TtsEngine`` over the OpenAI speech API, streaming."""

    name = "openai"
    sample_rate = OPENAI_SAMPLE_RATE

    def __init__(
        self,
        api_key: str,
        *,
        model: str = "gpt-4o-mini-tts",
        default_voice: str = "alloy",
        base_url: str | None = None,
        timeout: float = 5.0,
        response_format: Literal["pcm", "mp3"] = "pcm",
    ) -> None:
        self._openai = _import_openai()
        self.model = model
        self.default_voice = default_voice
        self.timeout = timeout
        self.response_format = response_format
        self._stream_errors = _transport_errors(self._openai)
        self._client = self._openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0
        )

    async def synthesize(self, text: str, voice: Voice) -> AsyncIterator[AudioSegment]:
        options: dict[str, Any] = {}
        if voice.rate:  # speed is left out otherwise: not every model accepts it
            options["speed"] = min(4.0, max(0.25, 1 + voice.rate / 100))
        # OpenAI's voices speak every language: the text decides it, the voice stays
        chosen = voice.name if voice.name in OPENAI_VOICES else self.default_voice
        tag = f"openai:{chosen}"
        request = self._client.audio.speech.with_streaming_response.create(
            model=self.model,
            voice=chosen,
            input=text,
            response_format=self.response_format,
            **options,
        )
        mp3 = FrameCutter() if self.response_format == "mp3" else None
        carry = b""  # PCM chunks may split a sample
        async with contextlib.AsyncExitStack() as stack:
            response = await self._guarded(stack.enter_async_context(request))
            chunks = response.iter_bytes()
            while (chunk := await self._guarded(anext(chunks, None))) is not None:
                if mp3 is not None:
                    if frames := mp3.push(chunk):
                        yield AudioSegment(frames, "mp3", OPENAI_SAMPLE_RATE, tag)
                    continue
                data, carry = _whole_samples(carry + chunk)
                if data:
                    yield AudioSegment(data, "pcm16", OPENAI_SAMPLE_RATE, tag)

    async def _guarded(self, step: Any) -> Any:
        """Await one network step under the timeout; every failure as ``TtsProviderError``."""
        openai = self._openai
        try:
            async with asyncio.timeout(self.timeout):
                return await step
        except (TimeoutError, openai.APITimeoutError) as exc:
            raise TtsProviderError(self.name, f"no audio within {self.timeout:g} s") from exc
        except openai.AuthenticationError as exc:
            raise TtsProviderError(self.name, "the API key was refused (HTTP 401)") from exc
        except openai.PermissionDeniedError as exc:
            raise TtsProviderError(self.name, "access denied (HTTP 403)") from exc
        except openai.RateLimitError as exc:
            raise TtsProviderError(self.name, "rate limited or out of quota (HTTP 429)") from exc
        except openai.APIStatusError as exc:
            raise TtsProviderError(
                self.name, f"the service answered HTTP {exc.status_code}"
            ) from exc
        except openai.APIConnectionError as exc:
            raise TtsProviderError(self.name, "the service is unreachable") from exc
        except self._stream_errors as exc:
            raise TtsProviderError(self.name, f"the stream broke ({type(exc).__name__})") from exc

    async def aclose(self) -> None:
        await self._client.close()


def _whole_samples(data: bytes) -> tuple[bytes, bytes]:
    cut = len(data) - len(data) % 2
    return data[:cut], data[cut:]
