"""How far a reply's speech got, so a worker that takes over a reply goes on from there.

Speech is not byte-identical from run to run, so a rerun cannot just skip the bytes
already sent. Progress is kept per sentence instead (``shared.checkpoint``): every
``tts_chunk`` is written together with the next ``chunk_index``, and each sentence whose
audio was all sent records its input entry id. A worker that reclaims the reply follows
the sentence stream from after the last finished sentence and numbers its chunks from
the next ``chunk_index``, so the client sees one contiguous, duplicate-free sequence.

A sentence cut off by the crash is spoken again whole (its first words are heard twice;
chunks are whole MP3 frames, so decoders cope with the seam). The few milliseconds of
audio still inside the dead worker's encoder at a sentence end are lost.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.checkpoint import Append, StageProgress
from shared.messages import ReplyEvent, TtsJob
from shared.settings import Settings
from shared.streams import now_ms


class ReplyProgress(StageProgress):
    """The checkpointed writer of one reply's ``tts_chunk`` and ``streaming_complete``."""

    stage = "tts"

    def __init__(self, redis: aioredis.Redis, settings: Settings, job: TtsJob) -> None:
        super().__init__(redis, settings, job)
        self.input_key = settings.keys.tts_input(job.session_id, job.turn_id)

    @property
    def next_chunk(self) -> int:
        return self.checkpoint.number("chunks")

    @property
    def resume_after(self) -> str:
        """Input entry id after which the sentences still to speak start."""
        return self.checkpoint.text("after", "0-0")

    @property
    def audio_ms_before(self) -> float:
        return float(self.checkpoint.text("audio_ms", "0"))

    @property
    def first_chunk_ms(self) -> int | None:
        value = self.checkpoint.number("first_chunk_ms")
        return value or None

    def _append(self, event: ReplyEvent) -> Append:
        return Append(
            self._reply_key, event, self._settings.session_ttl_seconds, self._settings.reply_maxlen
        )

    async def chunk(self, event: ReplyEvent) -> None:
        """Send one ``tts_chunk`` (its ``chunk_index`` must be ``next_chunk``)."""
        fields: dict[str, object] = {"chunks": self.next_chunk + 1}
        if self.first_chunk_ms is None:
            fields["first_chunk_ms"] = now_ms()
        await self.checkpoint.commit([self._append(event)], **fields)

    async def sentence_done(self, entry_id: str, audio_ms: float) -> None:
        """All audio of the sentence ``entry_id`` was sent."""
        await self.checkpoint.commit(after=entry_id, audio_ms=round(audio_ms, 1))

    async def complete(self, event: ReplyEvent) -> None:
        await self.checkpoint.commit([self._append(event)], done=1)
