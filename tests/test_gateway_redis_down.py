"""Redis going away mid-session: the client gets a clear error, the socket stays open."""

from __future__ import annotations

from pathlib import Path

import httpx

from shared.embedded_redis import start_embedded_redis
from tests.support import running_system
from voice_agent.client import VoiceClient


async def test_command_while_redis_is_down_gets_unavailable(fixture_http: str, tmp_path: Path):
    store = start_embedded_redis()
    try:
        with running_system(store.url, fixture_http, tmp_path) as up:
            async with VoiceClient.connect(up.ws_url) as client:
                store.stop()
                await client.send_command("technology news")
                event = await client.next_event(30)
                assert (event["event"], event["data"]["code"]) == ("error", "unavailable")
                async with httpx.AsyncClient() as http:
                    health = (await http.get(f"{up.http_url}/health", timeout=10)).json()
                assert health["status"] == "degraded"
                await client.ws.ping()  # the connection itself is still up
    finally:
        store.stop()
