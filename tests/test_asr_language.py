"""Recognition in the session's language: a hint to the external service, and a clear
notice in that language where the local recogniser (English only) cannot follow."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from asr_worker.language_support import NOTICES
from shared.messages import AsrJob, InputChunk, LlmJob, ReplyEvent, decode
from shared.settings import Settings, load_settings
from shared.streams import append_with_ttl, publish_job
from tests.audio_checks import speech_16k
from tests.openai_standin import StandIn, running_standin
from tests.support import free_port
from tests.test_asr_external import asr_worker, engine  # noqa: F401 - the module fixture


async def speak(redis: Redis, settings: Settings, lang: str) -> list[ReplyEvent]:
    """One utterance in a ``lang`` session; the session's events once the turn is decided."""
    keys = settings.keys
    await publish_job(redis, keys.jobs("asr"), AsrJob("s1", "t1", options={"lang": lang}), 100)
    pcm = speech_16k("hola, dame las noticias")
    for seq, offset in enumerate(range(0, len(pcm), 3200), start=1):
        chunk = InputChunk(seq, audio=pcm[offset : offset + 3200])
        await append_with_ttl(redis, keys.asr_input("s1", "t1"), chunk, 60)
    await append_with_ttl(redis, keys.asr_input("s1", "t1"), InputChunk(10_000, end=True), 60)
    async with asyncio.timeout(20):
        while True:
            events = [decode(f) for _, f in await redis.xrange(keys.reply("s1"))]
            finals = [
                e for e in events if e.event == "partial_transcription" and e.data["is_final"]
            ]  # type: ignore[union-attr]
            if finals:
                return events  # type: ignore[return-value]
            await asyncio.sleep(0.05)


async def test_external_transcription_gets_the_sessions_language(redis: Redis, engine) -> None:  # noqa: F811
    with running_standin(StandIn(transcript="dame las noticias"), free_port()) as standin:
        settings = load_settings(
            use_external_asr=True, openai_api_key=standin.api_key, openai_base_url=standin.base_url
        )
        async with asr_worker(redis, settings, engine):
            events = await speak(redis, settings, "es")
            job = decode((await redis.xrange(settings.keys.jobs("llm")))[0][1])
    assert standin.uploads[0]["language"] == "es"
    assert (
        isinstance(job, LlmJob) and job.text == "dame las noticias" and job.options["lang"] == "es"
    )
    interim = [e for e in events if e.event == "partial_transcription" and not e.data["is_final"]]
    assert not interim  # no English guesses at Spanish speech on screen


async def test_offline_recogniser_says_it_cannot_hear_chinese(redis: Redis, engine) -> None:  # noqa: F811
    settings = load_settings()
    async with asr_worker(redis, settings, engine):
        events = await speak(redis, settings, "zh-CN")
    errors = [e.data for e in events if e.event == "error"]
    assert errors == [
        {"code": "asr_language_unsupported", "message": NOTICES["zh-CN"], "lang": "zh-CN"}
    ]
    assert "英语" in NOTICES["zh-CN"] and not await redis.xlen(settings.keys.jobs("llm"))
