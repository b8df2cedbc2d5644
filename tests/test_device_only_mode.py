"""ASR_PROVIDER=none (Render's free tier): no recognition on the server, commands work."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx

from tests.support import running_system
from voice_agent.client import VoiceClient


async def test_audio_is_refused_clearly_and_commands_still_work(
    redis_url: str, fixture_http: str, tmp_path: Path
) -> None:
    with running_system(f"{redis_url}/2", fixture_http, tmp_path, ASR_PROVIDER="none") as up:
        async with httpx.AsyncClient() as http:
            ready = (await http.get(f"{up.http_url}/ready", timeout=5)).json()
        assert ready["ready"] and set(ready["workers"]) == {"llm", "tts"}
        async with VoiceClient.connect(up.ws_url) as client:
            chunk = base64.b64encode(b"\x00\x00" * 1600).decode()
            await client.send_event("voice_data", {"audio_chunk": chunk, "is_final": True})
            event = await client.next_event(10)
            assert (event["event"], event["data"]["code"]) == ("error", "asr_disabled")
            assert "voice_command" in event["data"]["message"]
            turn = await client.ask("technology news")
    assert turn.complete and "battery" in turn.reply_text.lower()
