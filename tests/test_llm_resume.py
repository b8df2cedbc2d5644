"""An LLM turn taken over mid-reply: the TTS job is published once, and the regenerated
reply adds only what was not sent yet: text by characters, sentences by count. The
"crash" is the first handler's task being cancelled mid-stream (what kill -9 leaves)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from llm_worker.worker import make_llm_handler
from shared.engines import AgentRequest
from shared.messages import InputChunk, LlmJob, ReplyEvent, decode
from shared.settings import load_settings
from shared.worker import JobContext


class ScriptedAgent:
    """Streams ``text`` in words; stalls forever after ``stall_after`` words if set."""

    name = "scripted"

    def __init__(self, text: str, stall_after: int | None = None) -> None:
        self.text, self.stall_after = text, stall_after
        self.stalled = asyncio.Event()

    async def reply(self, request: AgentRequest) -> AsyncIterator[str]:
        for number, word in enumerate(self.text.split(" ")):
            if number == self.stall_after:
                self.stalled.set()
                await asyncio.sleep(3600)
            yield word + " "


async def run_twice(redis: Redis, first: ScriptedAgent, second: ScriptedAgent):
    settings = load_settings(stream_prefix="llmresume", history_turns=0)
    job = LlmJob("s", "t1", "news please")
    ctx = JobContext("1-0", 1, None, None)  # type: ignore[arg-type]
    crashed = asyncio.create_task(make_llm_handler(redis, settings, first)(job, ctx))
    await first.stalled.wait()
    crashed.cancel()
    await make_llm_handler(redis, settings, second)(job, ctx)
    replies = [decode(f) for _, f in await redis.xrange(settings.keys.reply("s"))]
    spoken = [decode(f) for _, f in await redis.xrange(settings.keys.tts_input("s", "t1"))]
    assert await redis.xlen(settings.keys.jobs("tts")) == 1  # one voice for the reply
    assert all(isinstance(r, ReplyEvent) for r in replies)
    assert all(isinstance(c, InputChunk) for c in spoken) and spoken[-1].end  # type: ignore[union-attr]
    deltas = "".join(r.data["text"] for r in replies if not r.data["is_final"])  # type: ignore[union-attr]
    final = [r.data["text"] for r in replies if r.data["is_final"]]  # type: ignore[union-attr]
    return deltas, final, [c.text for c in spoken[:-1]]  # type: ignore[union-attr]


async def test_same_reply_again_continues_seamlessly(redis: Redis) -> None:
    text = "First one here. Second one there. Third one last."
    deltas, final, spoken = await run_twice(
        redis, ScriptedAgent(text, stall_after=5), ScriptedAgent(text)
    )
    assert deltas.strip() == text and final == [text]
    assert spoken == ["First one here.", "Second one there.", "Third one last."]


async def test_a_different_second_answer_goes_on_by_count(redis: Redis) -> None:
    """A sampling model: the rest of the text and of the speech come from its second answer."""
    deltas, final, spoken = await run_twice(
        redis,
        ScriptedAgent("Alpha is first. Beta is second. Gamma is third.", stall_after=4),
        ScriptedAgent("One is first. Two is second. Three is third."),
    )
    assert spoken == ["Alpha is first.", "Two is second.", "Three is third."]
    assert final == ["One is first. Two is second. Three is third."]
    # the text joins where the first answer stopped (character 21), not seamlessly
    assert deltas == "Alpha is first. Beta " + "One is first. Two is second. Three is third. "[21:]
