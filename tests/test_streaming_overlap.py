"""Speech starts while the reply is still being written: real LLM and TTS workers, real
Redis, and an agent with scripted timing (a slow model) behind the real interface."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from llm_worker.worker import build_llm_worker
from shared.engines import AgentRequest
from shared.messages import LlmJob, ReplyEvent, decode
from shared.settings import load_settings
from shared.streams import now_ms, publish_job
from tts_worker.providers import create_tts_engine
from tts_worker.worker import build_tts_worker


class SlowAgent:
    """Two sentences, the second one a second after the first, like a slow model."""

    name = "slow"

    async def reply(self, request: AgentRequest) -> AsyncIterator[str]:
        yield "Here is the first sentence of the reply. "
        await asyncio.sleep(1.0)
        yield "And here is the second one."


async def test_first_audio_leaves_before_the_reply_text_is_complete(redis: Redis) -> None:
    settings = load_settings(stream_prefix="overlap")
    stop = asyncio.Event()
    workers = [
        build_llm_worker(redis, settings, SlowAgent()),
        build_tts_worker(redis, settings, create_tts_engine(settings)),
    ]
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    await publish_job(
        redis, settings.keys.llm_jobs, LlmJob("s", "t1", "hi", created_ms=now_ms()), 100
    )
    events: list[ReplyEvent] = []
    async with asyncio.timeout(20):
        while not any(e.event == "streaming_complete" for e in events):
            await asyncio.sleep(0.05)
            events = [decode(f) for _, f in await redis.xrange(settings.keys.reply("s"))]  # type: ignore[misc]
    stop.set()
    await asyncio.gather(*tasks)
    names = [(e.event, e.data.get("is_final")) for e in events]
    first_audio = names.index(("tts_chunk", None))
    final_text = names.index(("agent_response", True))
    assert first_audio < final_text
    assert events[-1].data["timings"]["first_chunk_ms"] < 1000
