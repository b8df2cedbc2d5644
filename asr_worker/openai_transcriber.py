"""Final transcripts from OpenAI's transcription API (``USE_EXTERNAL_ASR=true``).

Interim partials still come from the local streaming engine, so the screen never goes
quiet; only the final text of each utterance is asked of the cloud. Any
OpenAI-compatible server works through ``OPENAI_BASE_URL``. A failure never loses the
turn: the caller falls back to the local final transcript.
"""

from __future__ import annotations

import logging

from shared.audio import pcm16_to_wav

log = logging.getLogger(__name__)


class TranscriptionFailed(RuntimeError):
    """The external service did not give a transcript (reason in the message, no secrets)."""


class OpenAITranscriber:
    def __init__(
        self, api_key: str, model: str, base_url: str | None = None, timeout_s: float = 10.0
    ) -> None:
        try:
            from openai import AsyncOpenAI
        except ImportError as exc:  # pragma: no cover - openai is a core dependency
            raise RuntimeError("external ASR needs the openai package: pip install openai") from exc
        self.model = model
        self._client = AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=1
        )

    async def transcribe(self, pcm: bytes, sample_rate: int, language: str | None = None) -> str:
        """The utterance's text; ``language`` (ISO-639-1, e.g. "zh") is the session's
        language as a hint, which makes short utterances far more reliable."""
        import openai

        wav = pcm16_to_wav(pcm, sample_rate)
        hint = {"language": language} if language else {}
        try:
            result = await self._client.audio.transcriptions.create(
                model=self.model,
                file=("utterance.wav", wav, "audio/wav"),
                response_format="json",
                **hint,
            )
        except openai.AuthenticationError as exc:
            raise TranscriptionFailed("external ASR refused the API key") from exc
        except openai.RateLimitError as exc:
            raise TranscriptionFailed("external ASR is rate limiting") from exc
        except openai.APITimeoutError as exc:
            raise TranscriptionFailed("external ASR timed out") from exc
        except openai.APIConnectionError as exc:
            raise TranscriptionFailed("external ASR is unreachable") from exc
        except openai.APIError as exc:
            raise TranscriptionFailed(f"external ASR failed: {type(exc).__name__}") from exc
        text = result if isinstance(result, str) else getattr(result, "text", "")
        return " ".join(str(text).split())

    async def aclose(self) -> None:
        await self._client.close()
