"""TTS providers by name (``TTS_PROVIDER``, or the chain ``TTS_FALLBACK``).

Engines are imported only when chosen. With ``TTS_FALLBACK=edge,espeak`` the worker gets
a ``FallbackTts`` over those engines, in that order; unknown names and missing keys fail
at start with a message naming the setting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis

from shared.engines import TtsEngine
from shared.settings import Settings
from shared.worker import StageWorker
from tts_worker.worker import build_tts_worker


def _espeak(settings: Settings) -> TtsEngine:
    from tts_worker.espeak_engine import EspeakEngine

    return EspeakEngine(default_voice=settings.tts_voice)


def _edge(settings: Settings) -> TtsEngine:
    from tts_worker.edge_engine import EdgeTtsEngine

    return EdgeTtsEngine(default_voice=settings.edge_tts_voice, timeout=settings.tts_timeout)


def _openai(settings: Settings) -> TtsEngine:
    from tts_worker.openai_engine import OpenAITtsEngine

    if settings.openai_api_key is None:
        raise ValueError("TTS provider 'openai' needs OPENAI_API_KEY to be set")
    return OpenAITtsEngine(
        settings.openai_api_key.get_secret_value(),
        model=settings.openai_tts_model,
        default_voice=settings.openai_tts_voice,
        base_url=settings.openai_base_url,
        timeout=settings.tts_timeout,
    )


PROVIDERS: dict[str, Callable[[Settings], TtsEngine]] = {
    "espeak": _espeak,
    "edge": _edge,
    "openai": _openai,
}


def tts_chain(settings: Settings) -> list[str]:
    """Engine names in fallback order: ``TTS_FALLBACK`` if set, else ``TTS_PROVIDER``."""
    names = [name.strip() for name in settings.tts_fallback.split(",") if name.strip()]
    return list(dict.fromkeys(names)) or [settings.tts_provider]


def create_tts_engine(settings: Settings) -> TtsEngine:
    variable = "TTS_FALLBACK" if settings.tts_fallback.strip() else "TTS_PROVIDER"
    engines = []
    for name in tts_chain(settings):
        factory = PROVIDERS.get(name)
        if factory is None:
            raise ValueError(
                f"{variable} names unknown TTS provider {name!r}; choose from {sorted(PROVIDERS)}"
            )
        engines.append(factory(settings))
    if len(engines) == 1:
        return engines[0]
    from tts_worker.fallback import FallbackTts

    return FallbackTts(engines, timeout=settings.tts_timeout)


async def build(redis: aioredis.Redis, settings: Settings) -> StageWorker:  # type: ignore[type-arg]
    engine = await asyncio.to_thread(create_tts_engine, settings)
    return build_tts_worker(redis, settings, engine)
