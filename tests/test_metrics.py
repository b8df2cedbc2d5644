"""Prometheus metrics: a worker on its own serves them on METRICS_PORT, and the
all-in-one process exposes every stage's through the gateway's ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import httpx

from shared.messages import LlmJob
from shared.streams import connect, publish_job
from tests.audio_checks import speech_16k
from tests.support import ROOT, free_port, wait_for_http
from voice_agent.client import VoiceClient


def _value(text: str, name: str, **labels: str) -> float | None:
    """A sample's value from Prometheus text (labels in any order), None if absent."""
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample.split("{")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', sample))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


async def _scrape_until(url: str, ready: Callable[[str], object]) -> str:
    """Scrape until ``ready(text)`` (no wall-clock limit: pytest's timeout is the bound)."""
    async with httpx.AsyncClient() as http:
        while True:
            text = (await http.get(url, timeout=30)).text
            if ready(text):
                return text
            await asyncio.sleep(0.1)


@contextlib.contextmanager
def _worker_alone(redis_url: str, port: int) -> Iterator[None]:
    """``python -m llm_worker`` as its own process, serving metrics on ``port``."""
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "METRICS_PORT": str(port),
        "LLM_PROVIDER": "echo",
        "RECLAIM_IDLE_MS": "600",  # queue gauges are refreshed every 200 ms
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen([sys.executable, "-m", "llm_worker"], cwd=ROOT, env=env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/metrics", proc)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


async def test_a_worker_alone_serves_its_metrics_on_metrics_port(redis_url: str) -> None:
    port = free_port()
    redis = connect(f"{redis_url}/3")
    try:
        with _worker_alone(f"{redis_url}/3", port):
            job = LlmJob("s-metrics", "t1", "hello there")
            await publish_job(redis, "vna:llm:jobs", job, 100)
            text = await _scrape_until(
                f"http://127.0.0.1:{port}/metrics",
                # the queue gauges are sampled on their own beat: a sample taken while the
                # job was still pending may be the latest for a moment; wait for the next
                lambda t: (
                    _value(t, "vna_jobs_total", stage="llm", outcome="ok")
                    and _value(t, "vna_queue_pending", stage="llm") == 0
                    and _value(t, "vna_queue_lag", stage="llm") == 0
                ),
            )
    finally:
        await redis.flushdb()
        await redis.aclose()
    assert _value(text, "vna_jobs_total", stage="llm", outcome="ok") == 1
    assert _value(text, "vna_queue_pending", stage="llm") == 0
    assert _value(text, "vna_queue_lag", stage="llm") == 0
    count = "vna_stage_latency_seconds_count"
    assert _value(text, count, stage="llm", provider="echo", measure="first_token") == 1


async def test_all_in_one_exposes_every_stage_and_error_codes(system) -> None:
    async with VoiceClient.connect(system.ws_url) as client:
        turn = await client.say(speech_16k("read me the sports headlines"), binary=True)
        await client.ws.send("not json")
        await client.next_event(10)
    assert turn.complete and not turn.errors

    def complete(text: str) -> bool:
        return all(_value(text, "vna_queue_pending", stage=s) is not None for s in STAGES)

    text = await _scrape_until(f"{system.http_url}/metrics", complete)
    count = "vna_stage_latency_seconds_count"
    assert _value(text, count, stage="asr", provider="pocketsphinx", measure="transcript_final")
    assert _value(text, count, stage="llm", provider="news", measure="first_token")
    assert _value(text, count, stage="llm", provider="news", measure="first_sentence")
    assert _value(text, count, stage="tts", provider="espeak", measure="first_chunk")
    assert _value(text, "vna_turn_latency_seconds_count", source="speech")
    assert _value(text, "vna_ws_events_total", direction="in", event="binary_audio")
    assert _value(text, "vna_ws_events_total", direction="out", event="tts_chunk")
    assert _value(text, "vna_errors_total", code="bad_json")
    for stage in STAGES:
        assert _value(text, "vna_queue_lag", stage=stage) is not None
        assert _value(text, "vna_jobs_total", stage=stage, outcome="ok")
    for counter in ("vna_reclaims_total", "vna_dead_letters_total"):
        assert f"# TYPE {counter} counter" in text


STAGES = ("asr", "llm", "tts")
