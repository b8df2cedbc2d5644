"""LLM stage: turn a request into reply text, and hand each finished sentence to TTS.

The TTS job is published before the first token, so a TTS worker is already waiting on
the reply's sentence stream when the first sentence is complete; speech starts while
the rest of the reply is still being generated. Every write goes through the turn's
progress (``llm_worker.progress``), so a worker that takes the turn over after a crash
sends nothing twice.
"""

from __future__ import annotations

import contextlib
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from llm_worker.errors import LlmError
from llm_worker.history import ConversationMemory
from llm_worker.language import turn_language
from llm_worker.progress import TurnProgress
from llm_worker.sentences import SentenceSplitter
from llm_worker.speech_text import speech_text
from shared import metrics, protocol
from shared.checkpoint import StaleTurn
from shared.early_reply import LlmAttempt
from shared.engines import AgentRequest, ReplyAgent
from shared.messages import LlmJob, TtsJob
from shared.settings import Settings
from shared.streams import now_ms
from shared.worker import JobContext, StageWorker, stage_worker

log = logging.getLogger(__name__)

FALLBACK_REPLY = "Sorry, I couldn't put an answer together just now. Please try again."
FALLBACK_REPLIES = {  # spoken in the session's language when the agent fails
    "en": FALLBACK_REPLY,
    "zh-CN": "抱歉，我现在没能组织好回答。请再试一次。",
    "es": "Lo siento, no he podido preparar una respuesta ahora. Inténtalo de nuevo.",
    "fr": "Désolé, je n'ai pas pu préparer de réponse pour l'instant. Réessayez.",
    "de": "Entschuldigung, ich konnte gerade keine Antwort formulieren. Versuch es noch einmal.",
}


class _SentenceSink:
    """Hands a reply's text to the client and its sentences to TTS, numbered in order.

    Each sentence is rewritten for speech first ("$5" -> "five dollars"); the text the
    client shows (``agent_response``) keeps the agent's own wording.
    """

    def __init__(self, progress: TurnProgress, language: str) -> None:
        self._progress = progress
        self._language = language
        self.first_sentence_ms: int | None = None
        self.sentences: list[str] = []  # as written, in the order they are spoken

    async def send(self, delta: str, sentences: list[str]) -> None:
        spoken = []
        for sentence in sentences:
            if text := speech_text(sentence, self._language):
                spoken.append(text)
                self.sentences.append(sentence.strip())
        if spoken and self.first_sentence_ms is None:
            self.first_sentence_ms = now_ms()
        await self._progress.publish(delta, spoken)


def make_llm_handler(redis: aioredis.Redis, settings: Settings, agent: ReplyAgent):
    keys = settings.keys
    memory = ConversationMemory(redis, keys, settings.history_turns, settings.session_ttl_seconds)

    async def handle(job: LlmJob, ctx: JobContext) -> None:
        progress = await TurnProgress(redis, settings, job).load()
        ctx.cleanup.append(progress.checkpoint.key)
        # started before the end of speech? (an attempt: ``shared.early_reply``)
        early = LlmAttempt.of(redis, keys, job, settings.session_ttl_seconds)
        wait_s = settings.input_idle_timeout
        if progress.done:  # finished before a crash, maybe not yet remembered
            if not progress.remembered:
                if early is None or await early.settle(ctx.control, wait_s):
                    turn_id = early.reply_turn if early else job.turn_id
                    await memory.append(job.session_id, job.text, progress.final_reply, turn_id)
                await progress.remembered_now()
            return
        if progress.checkpoint.resumed:
            log.info("turn %s: taking over a reply already under way", job.turn_id)
        lang = await turn_language(redis, settings, job)
        options = {**job.options, "lang": lang}  # TTS speaks with this language's voice
        tts_job = TtsJob(job.session_id, job.turn_id, job.created_ms, options, ctx.trace_for(job))
        await progress.start_speech(tts_job)
        sink = _SentenceSink(progress, lang)
        splitter = SentenceSplitter(language=lang)
        history = await memory.load(job.session_id)
        if early:
            await early.begin()
        agent_session = early.agent_session if early else job.session_id
        request = AgentRequest(agent_session, job.turn_id, job.text, history, lang)
        parts: list[str] = []
        first_token_ms: int | None = None
        try:
            async with contextlib.aclosing(agent.reply(request)) as deltas:  # type: ignore[type-var]
                async for delta in deltas:
                    if ctx.cancelled(job):
                        break  # the client cut this reply off: stop generating now
                    if not delta:
                        continue
                    if first_token_ms is None:
                        first_token_ms = now_ms()
                        if ctx.trace is not None:
                            ctx.trace.first_output("token")
                    parts.append(delta)
                    await sink.send(delta, splitter.push(delta))
        except (StaleTurn, RedisError):
            raise  # not the agent's fault: the turn is left to the worker that reclaims it
        except Exception as exc:
            await progress.error(_failure(agent, job, exc))
            splitter.flush()
            apology = FALLBACK_REPLIES.get(lang, FALLBACK_REPLY)
            parts = [apology]
            await sink.send("", [apology])
        if ctx.cancelled(job):
            metrics.CANCELLED_WORK.labels("llm").inc()  # what was said so far is kept
        else:
            await sink.send("", splitter.flush())
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
        await progress.finish(reply_text, timings, lang, cancelled=ctx.cancelled(job))
        if early is None or await early.settle(ctx.control, wait_s):
            turn_id = early.reply_turn if early else job.turn_id
            await memory.append(job.session_id, job.text, reply_text, turn_id, sink.sentences)
        await progress.remembered_now()

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


def build_llm_worker(
    redis: aioredis.Redis, settings: Settings, agent: ReplyAgent
) -> StageWorker[LlmJob]:
    return stage_worker(redis, settings, "llm", LlmJob, make_llm_handler(redis, settings, agent))
