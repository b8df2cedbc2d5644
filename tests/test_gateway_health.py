import asyncio
import os
import re
import signal
import subprocess
import sys

import httpx

from tests.support import ROOT, free_port, wait_for_http
from voice_agent.client import VoiceClient


def test_health_reports_redis_and_sessions(system) -> None:
    body = httpx.get(f"{system.http_url}/health", timeout=5).json()
    assert body["status"] == "ok"
    assert body["redis"] == "ok"
    assert isinstance(body["sessions"], int)


def test_ready_sees_a_live_worker_of_each_kind(system) -> None:
    response = httpx.get(f"{system.http_url}/ready", timeout=5)
    assert response.status_code == 200
    workers = response.json()["workers"]
    assert set(workers) == {"asr", "llm", "tts"} and all(n >= 1 for n in workers.values())


async def test_metrics_count_turns_and_latency(system) -> None:
    tts_done = 'vna_jobs_total{outcome="ok",stage="tts"}'
    async with VoiceClient.connect(system.ws_url) as client, httpx.AsyncClient() as http:
        await client.ask("top headlines")
        while True:  # the job is counted when acked, just after streaming_complete
            text = (await http.get(f"{system.http_url}/metrics", timeout=30)).text
            if tts_done in text:
                break
            await asyncio.sleep(0.05)
    open_sessions = re.search(r"^vna_sessions_open ([0-9.]+)$", text, re.M)
    assert open_sessions and float(open_sessions.group(1)) >= 1
    assert 'vna_ws_events_total{direction="in",event="voice_command"}' in text
    assert 'vna_turn_latency_seconds_count{source="command"}' in text
    assert tts_done in text


def test_gateway_without_workers_is_alive_but_not_ready(redis_url: str) -> None:
    port = free_port()
    env = {**os.environ, "REDIS_URL": f"{redis_url}/4", "PORT": str(port), "HOST": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=ROOT, env=env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", proc)
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert ready.status_code == 503
    assert ready.json() == {
        "ready": False,
        "redis": "ok",
        "workers": {"asr": 0, "llm": 0, "tts": 0},
    }
