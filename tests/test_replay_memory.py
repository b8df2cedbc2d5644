"""A resume holds about the replay's bound of audio, not the whole reply stream's.

The reply stream keeps ``REPLY_MAXLEN`` events, megabytes of audio when they are chunks,
and after a gateway restart every client resumes at once. ``SessionStore.replay`` reads
the stream a page at a time without the audio, then reads back the audio of the events
it replays only. Measured with tracemalloc around a real replay from a real Redis.
"""

from __future__ import annotations

import tracemalloc
import uuid

from redis.asyncio import Redis

from gateway.session_store import SessionStore
from shared.keys import Keys
from shared.messages import ReplyEvent
from shared.streams import ReplyWriter

CHUNKS = 2000  # 8 MB of audio in the stream
BOUND = 256 * 1024


async def test_a_replay_reads_the_audio_of_the_events_it_sends_only(redis: Redis) -> None:
    keys, session_id = Keys(f"mem{uuid.uuid4().hex[:6]}"), "s1"
    writer = ReplyWriter(redis, keys, 60, 5000)
    for index in range(CHUNKS):
        data = {"chunk_index": index}
        await writer.emit(ReplyEvent("tts_chunk", session_id, "t1", data, bytes(4096)))
    store = SessionStore(redis, keys, 900, 120)

    tracemalloc.start()
    try:
        replay = await store.replay(session_id, None, None, None, {}, BOUND)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    chunks = [event.data["chunk_index"] for _id, event in replay.missed]
    assert chunks == list(range(CHUNKS - len(chunks), CHUNKS)) and len(chunks) > 30
    assert all(len(event.audio) == 4096 for _id, event in replay.missed)
    assert replay.skipped == CHUNKS - len(chunks) and len(replay.seen) == replay.skipped
    # a page of entries (0.5 MB), the events without audio and the replay's audio (the
    # whole stream read at once would peak at 18 MB)
    assert peak < 4 * 1024 * 1024, f"a replay of {BOUND} bytes peaked at {peak} bytes"
