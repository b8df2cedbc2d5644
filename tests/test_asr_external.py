"""USE_EXTERNAL_ASR: final transcripts from an OpenAI-protocol server, partials stay local."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from asr_worker.providers import create_asr_engine, create_external_transcriber
from asr_worker.worker import build_asr_worker
from shared.messages import AsrJob, InputChunk, LlmJob, ReplyEvent, decode
from shared.settings import Settings, load_settings
from shared.streams import append_with_ttl, publish_job
from tests.audio_checks import speech_16k
from tests.openai_standin import StandIn, running_standin
from tests.support import free_port

SPOKEN = "what's the latest technology news"


@pytest.fixture(scope="module")
def engine():
    return create_asr_engine(load_settings())


@contextlib.asynccontextmanager
async def asr_worker(redis: Redis, settings: Settings, engine) -> AsyncIterator[None]:
    worker = build_asr_worker(redis, settings, engine, create_external_transcriber(settings))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    yield
    stop.set()
    await task


async def _speak_and_wait(redis: Redis, settings: Settings) -> tuple[list[ReplyEvent], str]:
    keys = settings.keys
    await publish_job(redis, keys.jobs("asr"), AsrJob("s1", "t1"), 100)
    pcm = speech_16k(SPOKEN)
    for seq, offset in enumerate(range(0, len(pcm), 3200), start=1):
        chunk = InputChunk(seq, audio=pcm[offset : offset + 3200])
        await append_with_ttl(redis, keys.asr_input("s1", "t1"), chunk, 60)
    await append_with_ttl(redis, keys.asr_input("s1", "t1"), InputChunk(10_000, end=True), 60)
    while not await redis.xlen(keys.jobs("llm")):  # noqa: ASYNC110 - waiting on Redis state
        await asyncio.sleep(0.05)
    events = [decode(f) for _, f in await redis.xrange(keys.reply("s1"))]
    job = decode((await redis.xrange(keys.jobs("llm")))[0][1])
    assert isinstance(job, LlmJob)
    return events, job.text  # type: ignore[return-value]


async def test_final_comes_from_the_external_service(redis: Redis, engine) -> None:
    with running_standin(StandIn(), free_port()) as standin:
        settings = load_settings(
            use_external_asr=True, openai_api_key=standin.api_key, openai_base_url=standin.base_url
        )
        async with asr_worker(redis, settings, engine):
            events, llm_text = await _speak_and_wait(redis, settings)
    assert llm_text == standin.transcript
    partials = [e for e in events if e.event == "partial_transcription" and not e.data["is_final"]]
    assert partials, "interim partials still come from the local engine"
    upload = standin.uploads[0]
    assert upload["model"] == "whisper-1" and upload["rate"] == 16000
    assert 1.0 < float(upload["seconds"]) < 5.0  # type: ignore[arg-type]


@pytest.mark.parametrize("problem", ["wrong_key", "unreachable"])
async def test_failure_falls_back_to_the_local_transcript(redis: Redis, engine, problem) -> None:
    port = free_port()
    with running_standin(StandIn(), port) as standin:
        key = "sk-wrong" if problem == "wrong_key" else standin.api_key
        url = standin.base_url if problem == "wrong_key" else f"http://127.0.0.1:{free_port()}/v1"
        settings = load_settings(use_external_asr=True, openai_api_key=key, openai_base_url=url)
        async with asr_worker(redis, settings, engine):
            _events, llm_text = await _speak_and_wait(redis, settings)
    assert "technology" in llm_text


def test_external_asr_without_a_key_fails_at_start() -> None:
    from shared.settings import SettingsError

    with pytest.raises(SettingsError, match="OPENAI_API_KEY"):
        load_settings(use_external_asr=True, openai_api_key=None)
