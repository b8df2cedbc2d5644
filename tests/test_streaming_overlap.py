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
    """Two sentences; the second only once the test lets it go, like a model that is slow
    exactly as long as it takes the first sentence's speech to reach the client."""

    name = "slow"

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def reply(self, request: AgentRequest) -> AsyncIterator[str]:
        yield "Here is the first sentence of the reply. "
        await self.release.wait()
        yield "And here is the second one."


async def _reply_events(redis: Redis, key: str, until: str) -> list[ReplyEvent]:
    """The reply stream's events, once one named ``until`` is among them (polling Redis)."""
    while True:
        events = [decode(f) for _, f in await redis.xrange(key)]
        if any(e.event == until for e in events):  # type: ignore[union-attr]
            return events  # type: ignore[return-value]
        await asyncio.sleep(0.02)


async def test_first_audio_leaves_before_the_reply_text_is_complete(redis: Redis) -> None:
    settings = load_settings(stream_prefix="overlap")
    stop = asyncio.Event()
    agent = SlowAgent()
    workers = [
        build_llm_worker(redis, settings, agent),
        build_tts_worker(redis, settings, create_tts_engine(settings)),
    ]
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    await publish_job(
        redis, settings.keys.jobs("llm"), LlmJob("s", "t1", "hi", created_ms=now_ms()), 100
    )
    # the first sentence is spoken while the model still holds the second: were speech
    # to wait for the whole reply, no chunk would come and this would end in pytest's timeout
    await _reply_events(redis, settings.keys.reply("s"), until="tts_chunk")
    agent.release.set()
    events = await _reply_events(redis, settings.keys.reply("s"), until="streaming_complete")
    stop.set()
    await asyncio.gather(*tasks)
    names = [(e.event, e.data.get("is_final")) for e in events]
    first_audio = names.index(("tts_chunk", None))
    final_text = names.index(("agent_response", True))
    assert first_audio < final_text
    assert "first_chunk_ms" in events[-1].data["timings"]
