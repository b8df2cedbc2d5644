"""End to end over a real socket: a typed command gets text, audio and a completion."""

from __future__ import annotations

import asyncio
import base64

from tests.audio_checks import decode_mp3, voiced_fraction
from tests.test_mp3 import whole_frames
from voice_agent.client import VoiceClient


async def test_command_gets_streamed_text_audio_and_completion(system) -> None:
    async with VoiceClient.connect(system.ws_url + "?user_id=alice") as client:
        turn = await client.ask("what's new in technology")
    assert "battery" in turn.reply_text.lower()
    deltas = [d for d in turn.of("agent_response") if not d["is_final"]]
    assert len(deltas) >= 2, "reply text should stream in several deltas"
    indexes = [c["chunk_index"] for c in turn.chunks]
    assert indexes == list(range(len(indexes))) and len(indexes) >= 2
    assert all(c["format"] == "mp3" and c["turn_id"] == turn.turn_id for c in turn.chunks)
    assert turn.complete["total_chunks_sent"] == len(indexes)
    names = [(e["event"], e["data"].get("is_final")) for e in turn.events]
    assert names[-1][0] == "streaming_complete"
    assert ("agent_response", True) in names[:-1], "the final text precedes the completion"
    timings = turn.complete["timings"]
    assert {"first_token_ms", "first_sentence_ms", "first_chunk_ms", "complete_ms"} <= set(timings)
    assert 0 <= timings["first_token_ms"] <= timings["first_chunk_ms"] <= timings["complete_ms"]
    pcm, seconds = decode_mp3(turn.audio)
    words = len(turn.reply_text.split())
    assert words / 4.5 < seconds < words / 1.0, (words, seconds)  # 1-4.5 spoken words/s
    assert voiced_fraction(pcm) > 0.5


async def test_every_chunk_holds_whole_mp3_frames(system) -> None:
    async with VoiceClient.connect(system.ws_url) as client:
        turn = await client.ask("business news please")
    assert all(whole_frames(base64.b64decode(c["audio_chunk"])) for c in turn.chunks)
    assert all(len(base64.b64decode(c["audio_chunk"])) <= 4096 for c in turn.chunks)


async def test_follow_up_uses_the_sessions_previous_stories(system) -> None:
    async with VoiceClient.connect(system.ws_url) as client:
        first = await client.ask("sports headlines")
        second = await client.ask("tell me more about the second story")
    assert "striker" in first.reply_text.lower()
    assert "striker" in second.reply_text.lower()
    assert first.turn_id != second.turn_id
    assert second.chunks[0]["chunk_index"] == 0


async def test_two_sessions_never_see_each_others_events(system) -> None:
    async with (
        VoiceClient.connect(system.ws_url) as alice,
        VoiceClient.connect(system.ws_url) as bob,
    ):
        turns = await asyncio.gather(alice.ask("technology news"), bob.ask("sports news"))
        assert alice.session_id != bob.session_id
        for client, turn in zip((alice, bob), turns, strict=True):
            assert {e["data"]["session_id"] for e in turn.events} == {client.session_id}
            assert client.inbox.empty()
    assert "battery" in turns[0].reply_text.lower() and "battery" not in turns[1].reply_text.lower()


async def test_logs_never_contain_what_the_user_said(system) -> None:
    secret_phrase = "zebra crossing quarterly"
    async with VoiceClient.connect(system.ws_url) as client:
        turn = await client.ask(f"search for news about {secret_phrase}")
    assert turn.complete
    log = system.log_path.read_text()
    assert '"session_id"' in log  # the log is JSON lines tagged with ids
    assert secret_phrase not in log and "zebra" not in log
