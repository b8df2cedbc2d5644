"""TTS providers by name (setting ``TTS_PROVIDER``); engines are imported only when chosen."""

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


PROVIDERS: dict[str, Callable[[Settings], TtsEngine]] = {"espeak": _espeak}


def create_tts_engine(settings: Settings) -> TtsEngine:
    try:
        factory = PROVIDERS[settings.tts_provider]
    except KeyError:
        raise ValueError(
            f"TTS_PROVIDER={settings.tts_provider!r} is unknown; choose one of {sorted(PROVIDERS)}"
        ) from None
    return factory(settings)


async def build(redis: aioredis.Redis, settings: Settings) -> StageWorker:  # type: ignore[type-arg]
    engine = await asyncio.to_thread(create_tts_engine, settings)
    return build_tts_worker(redis, settings, engine)
