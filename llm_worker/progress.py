"""What an LLM turn already published, so a worker that takes the turn over adds nothing twice.

Everything the LLM stage writes for a turn goes through ``shared.checkpoint``: the TTS
job (once), each text delta together with the sentences it completed, the final text
with the TTS end marker, then the conversation memory. A worker that reclaims the turn
asks the agent again and, while the new reply streams in, skips what was already sent:

* text deltas by character count: the client's text goes on where it stopped;
* sentences for TTS by count: no sentence is spoken twice, none is left out.

For the built-in agents (news, echo) the regenerated reply is the same text, so the
client sees exactly what an uninterrupted turn would have shown. A sampling model
(``LLM_PROVIDER=openai``) may word its second answer differently: the text after the
crash point then comes from the second answer (the streamed deltas may not join up
seamlessly), speech switches to the second answer at the next sentence, and the final
``agent_response`` carries the second answer in full.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.checkpoint import Append, StageProgress
from shared.messages import InputChunk, LlmJob, ReplyEvent, TtsJob
from shared.settings import Settings


class TurnProgress(StageProgress):
    """The checkpointed writer of one LLM turn."""

    stage = "llm"

    def __init__(self, redis: aioredis.Redis, settings: Settings, job: LlmJob) -> None:
        super().__init__(redis, settings, job)
        self._job = job
        self._tts_jobs = settings.keys.jobs_for("tts", job.session_id)
        self._tts_input = settings.keys.tts_input(job.session_id, job.turn_id)
        self._chars = 0  # characters of the (re)generated reply seen so far
        self.sentences = 0  # sentences of the (re)generated reply seen so far

    @property
    def remembered(self) -> bool:
        return bool(self.checkpoint.number("remembered"))

    @property
    def final_reply(self) -> str:
        return self.checkpoint.text("reply")

    def _reply(self, event: str, data: dict[str, object]) -> Append:
        message = ReplyEvent(event, self._job.session_id, self._job.turn_id, data)
        settings = self._settings
        return Append(self._reply_key, message, settings.session_ttl_seconds, settings.reply_maxlen)

    def _sentence(self, chunk: InputChunk) -> Append:
        return Append(self._tts_input, chunk, self._settings.turn_ttl_seconds)

    async def start_speech(self, tts_job: TtsJob) -> None:
        """Publish the reply's TTS job, once per turn."""
        if not self.checkpoint.number("tts_job"):
            job_stream = Append(self._tts_jobs, tts_job, maxlen=self._settings.jobs_maxlen)
            await self.checkpoint.commit([job_stream], tts_job=1)

    async def publish(self, delta: str, sentences: list[str]) -> None:
        """Send a text delta and the sentences it completed, minus what was sent before."""
        start, self._chars = self._chars, self._chars + len(delta)
        sent_chars = self.checkpoint.number("chars")
        sent_sentences = self.checkpoint.number("sentences")
        appends: list[Append] = []
        if self._chars > sent_chars:
            visible = delta[max(0, sent_chars - start) :]
            appends.append(self._reply("agent_response", {"text": visible, "is_final": False}))
        for sentence in sentences:
            self.sentences += 1
            if self.sentences > sent_sentences:
                appends.append(self._sentence(InputChunk(self.sentences, text=sentence)))
        if appends:
            await self.checkpoint.commit(
                appends,
                chars=max(sent_chars, self._chars),
                sentences=max(sent_sentences, self.sentences),
            )

    async def error(self, data: dict[str, object]) -> None:
        """Tell the client the agent failed, once per turn."""
        if not self.checkpoint.number("error"):
            await self.checkpoint.commit([self._reply("error", data)], error=1)

    async def finish(
        self, reply_text: str, timings: dict[str, int], lang: str = "en", cancelled: bool = False
    ) -> None:
        """The final text (with the language it is in), then the end of the sentence
        stream, in one step. ``cancelled``: the client cut the reply; the end marker says
        so, and the TTS stage ends the turn without a ``streaming_complete`` of its own
        even if its copy of the cancel has not reached it yet."""
        data: dict[str, object] = {
            "text": reply_text,
            "is_final": True,
            "lang": lang,
            "timings": timings,
        }
        last = max(self.sentences, self.checkpoint.number("sentences"))
        end = InputChunk(last + 1, end=True, cancelled=cancelled)
        await self.checkpoint.commit(
            [self._reply("agent_response", data), self._sentence(end)], done=1, reply=reply_text
        )

    async def remembered_now(self) -> None:
        await self.checkpoint.commit(remembered=1)
