"""LLM stage: turn a request into reply text, and hand each finished sentence to TTS.

The TTS job is published before the first token, so a TTS worker is already waiting on
the reply's sentence stream when the first sentence is complete; speech starts while
the rest of the reply is still being generated.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from llm_worker.errors import LlmError
from llm_worker.history import ConversationMemory
from llm_worker.sentences import SentenceSplitter
from llm_worker.speech_text import speech_text
from shared import metrics, protocol
from shared.engines import AgentRequest, ReplyAgent
from shared.messages import InputChunk, LlmJob, ReplyEvent, TtsJob
from shared.settings import Settings
from shared.streams import append_with_ttl, now_ms, publish_job
from shared.worker import JobContext, StageWorker, stage_worker

log = logging.getLogger(__name__)

FALLBACK_REPLY = "Sorry, I couldn't put an answer together just now. Please try again."


class _SentenceSink:
    """Appends sentences to the reply's TTS input stream, numbered in order.

    Each sentence is rewritten for speech first ("$5" -> "five dollars"); the text the
    client shows (``agent_response``) keeps the agent's own wording.
    """

    def __init__(self, redis: aioredis.Redis, key: str, ttl: int) -> None:
        self._redis, self._key, self._ttl = redis, key, ttl
        self.seq = 0
        self.first_sentence_ms: int | None = None

    async def send(self, sentence: str) -> None:
        sentence = speech_text(sentence)
        if not sentence:
            return
        self.seq += 1
        if self.first_sentence_ms is None:
            self.first_sentence_ms = now_ms()
        await append_with_ttl(
            self._redis, self._key, InputChunk(self.seq, text=sentence), self._ttl
        )

    async def end(self) -> None:
        self.seq += 1
        await append_with_ttl(self._redis, self._key, InputChunk(self.seq, end=True), self._ttl)


def make_llm_handler(redis: aioredis.Redis, settings: Settings, agent: ReplyAgent):
    keys = settings.keys
    memory = ConversationMemory(redis, keys, settings.history_turns, settings.session_ttl_seconds)

    async def handle(job: LlmJob, ctx: JobContext) -> None:
        tts_job = TtsJob(job.session_id, job.turn_id, job.created_ms, dict(job.options))
        await publish_job(redis, keys.tts_jobs, tts_job, settings.jobs_maxlen)
        sink = _SentenceSink(
            redis, keys.tts_input(job.session_id, job.turn_id), settings.turn_ttl_seconds
        )
        splitter = SentenceSplitter()
        request = AgentRequest(
            job.session_id, job.turn_id, job.text, await memory.load(job.session_id)
        )
        parts: list[str] = []
        first_token_ms: int | None = None
        try:
            async for delta in agent.reply(request):
                if not delta:
                    continue
                first_token_ms = first_token_ms or now_ms()
                parts.append(delta)
                await _emit_text(ctx, job, delta, is_final=False)
                for sentence in splitter.push(delta):
                    await sink.send(sentence)
        except Exception as exc:
            await ctx.replies.emit(
                ReplyEvent("error", job.session_id, job.turn_id, _failure(agent, job, exc))
            )
            splitter.flush()
            parts = [FALLBACK_REPLY]
            await sink.send(FALLBACK_REPLY)
        for sentence in splitter.flush():
            await sink.send(sentence)
        reply_text = "".join(parts).strip()
        timings = {
            "first_token_ms": (first_token_ms or now_ms()) - job.created_ms,
            "first_sentence_ms": (sink.first_sentence_ms or now_ms()) - job.created_ms,
        }
        for timing, value in timings.items():  # measure "first_token", like the other stages
            measure = timing.removesuffix("_ms")
            metrics.observe_ms(metrics.STAGE_LATENCY.labels("llm", agent.name, measure), value)
        # the final text goes out before the end marker, so it always precedes the
        # reply's streaming_complete in the session's reply stream
        await _emit_text(ctx, job, reply_text, is_final=True, timings=timings)
        await sink.end()
        await memory.append(job.session_id, job.text, reply_text)

    return handle


def _failure(agent: ReplyAgent, job: LlmJob, exc: Exception) -> dict[str, str]:
    """The ``error`` event's data: why the agent failed, in words, without any secret."""
    if isinstance(exc, LlmError):  # our own message: names the kind, never the key
        log.warning("agent %s failed on turn %s: %s", agent.name, job.turn_id, exc.kind)
        return {
            "code": protocol.STAGE_FAILED,
            "reason": exc.kind,
            "message": f"{exc.message}; a short apology is spoken instead",
        }
    log.exception("agent %s failed on turn %s", agent.name, job.turn_id)
    return {
        "code": protocol.STAGE_FAILED,
        "reason": "agent_failed",
        "message": f"the {agent.name} agent failed; a short apology is spoken instead",
    }


async def _emit_text(
    ctx: JobContext, job: LlmJob, text: str, is_final: bool, timings: dict[str, int] | None = None
) -> None:
    data: dict[str, object] = {"text": text, "is_final": is_final}
    if timings:
        data["timings"] = timings
    await ctx.replies.emit(ReplyEvent("agent_response", job.session_id, job.turn_id, data))


def build_llm_worker(
    redis: aioredis.Redis, settings: Settings, agent: ReplyAgent
) -> StageWorker[LlmJob]:
    return stage_worker(redis, settings, "llm", LlmJob, make_llm_handler(redis, settings, agent))
