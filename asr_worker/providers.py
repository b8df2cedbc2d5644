"""ASR providers by name (setting ``ASR_PROVIDER``); engines are imported only when chosen."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis

from asr_worker.openai_transcriber import OpenAITranscriber
from asr_worker.worker import build_asr_worker
from shared.engines import AsrEngine
from shared.settings import Settings
from shared.worker import StageWorker


def _pocketsphinx(settings: Settings) -> AsrEngine:
    from asr_worker.pocketsphinx_engine import PocketsphinxEngine

    return PocketsphinxEngine(mode=settings.asr_mode, fallback=settings.asr_fallback)


def _echo(settings: Settings) -> AsrEngine:
    from asr_worker.echo_engine import EchoAsrEngine

    return EchoAsrEngine()


PROVIDERS: dict[str, Callable[[Settings], AsrEngine]] = {
    "pocketsphinx": _pocketsphinx,
    "echo": _echo,
}


def create_asr_engine(settings: Settings) -> AsrEngine:
    if not settings.speech_input_enabled:
        raise ValueError("ASR_PROVIDER=none: run no ASR worker (clients send voice_command)")
    try:
        factory = PROVIDERS[settings.asr_provider]
    except KeyError:
        raise ValueError(
            f"ASR_PROVIDER={settings.asr_provider!r} is unknown; choose one of {sorted(PROVIDERS)}"
        ) from None
    return factory(settings)


async def build(redis: aioredis.Redis, settings: Settings) -> StageWorker:  # type: ignore[type-arg]
    engine = await asyncio.to_thread(create_asr_engine, settings)  # loading takes a moment
    return build_asr_worker(redis, settings, engine, create_external_transcriber(settings))


def create_external_transcriber(settings: Settings) -> OpenAITranscriber | None:
    if not settings.use_external_asr or settings.openai_api_key is None:
        return None
    return OpenAITranscriber(
        api_key=settings.openai_api_key.get_secret_value(),
        model=settings.external_asr_model,
        base_url=settings.openai_base_url,
        timeout_s=settings.external_asr_timeout,
    )
