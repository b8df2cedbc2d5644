"""The Redis server restarts under a live session: gateway and workers reconnect, /health
says degraded meanwhile, and with the append-only file no accepted turn is lost, even a
turn queued while no worker was running and the server crashed (kill -9) before any
worker saw it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import redis

from shared.embedded_redis import EmbeddedRedis, start_embedded_redis
from tests.cluster import Cluster, running_cluster
from voice_agent.client import VoiceClient


def restart(store: EmbeddedRedis, data_dir: Path, crash: bool) -> EmbeddedRedis:
    port = store.port
    store.kill() if crash else store.stop()
    return start_embedded_redis(port, data_dir, appendonly=True, appendfsync="always")


def health(cluster: Cluster) -> str:
    return str(httpx.get(f"{cluster.http_url}/health", timeout=5).json()["status"])


async def test_session_survives_redis_restarts(fixture_http: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "valkey"
    store = start_embedded_redis(None, data_dir, appendonly=True, appendfsync="always")
    env = {"ASR_PROVIDER": "none", "RECLAIM_IDLE_MS": "1000", "STREAM_PREFIX": "restart"}
    try:
        with running_cluster(store.url, fixture_http, tmp_path, ["llm1", "tts1"], **env) as up:
            async with VoiceClient.connect(up.ws_url) as client:
                assert (await client.ask("technology news")).complete

                # 1. a clean restart between two turns
                port = store.port
                store.stop()
                assert health(up) == "degraded"
                store = start_embedded_redis(port, data_dir, appendonly=True, appendfsync="always")
                second = await client.ask("sports news", limit_s=60)
                assert second.complete and "striker" in second.reply_text.lower()

                # 2. a turn accepted while no worker runs, then a crash of the server
                for name in ("llm1", "tts1"):
                    assert up.signal(name, signal.SIGTERM).wait(20) == 0
                await client.send_command("business news")
                await client.send_event("ping", {})  # answered after the command was handled
                pong = await client.next_event(30)
                assert pong["event"] == "pong", "the gateway accepted the turn without complaint"
                store = restart(store, data_dir, crash=True)
                queued = redis.Redis.from_url(store.url)
                assert queued.xlen("restart:llm:jobs") == 1, "the accepted job survived the crash"
                queued.close()
                up.start("llm2")
                up.start("tts2")
                started = time.perf_counter()
                third = await client.collect_turn(60)
                assert third.complete and "coffee" in third.reply_text.lower(), third.events
                assert [c["chunk_index"] for c in third.chunks] == list(range(len(third.chunks)))
                print(f"queued turn done {time.perf_counter() - started:.1f}s after workers start")
            assert health(up) == "ok"
    finally:
        store.stop()


async def test_workers_recreate_their_groups_after_redis_comes_back_empty(
    fixture_http: str, tmp_path: Path
) -> None:
    """No persistence (Render's free Key Value): the groups are gone; new turns still work."""
    store = start_embedded_redis()
    env = {"ASR_PROVIDER": "none", "RECLAIM_IDLE_MS": "1000", "STREAM_PREFIX": "empty"}
    try:
        with running_cluster(store.url, fixture_http, tmp_path, ["llm1", "tts1"], **env) as up:
            async with VoiceClient.connect(up.ws_url) as client:
                port = store.port
                store.stop()
                store = start_embedded_redis(port)
                turn = await client.ask("technology news", limit_s=60)
                assert turn.complete and "battery" in turn.reply_text.lower()
            assert "recreating" in up.log("llm1") and "recreating" in up.log("tts1")
    finally:
        store.stop()
