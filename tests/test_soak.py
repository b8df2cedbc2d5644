"""A bounded soak: 200 short sessions (typed turns) against separate gateway and worker
processes on a fresh server. Once the sessions' keys have expired, Redis holds as many
keys and about as much memory as after the warm-up, and the gateway's RSS has not grown
with the number of finished sessions. Longer runs: ``python -m bench.soak``."""

from __future__ import annotations

import json
from pathlib import Path

from shared.embedded_redis import start_embedded_redis
from tests.cluster import running_cluster
from tests.soak_driver import rss_bytes, settle, soak

TTL = 10  # seconds: the shortest per-session/per-turn TTL the settings allow


async def test_memory_returns_flat_after_200_sessions(fixture_http: str, tmp_path: Path) -> None:
    store = start_embedded_redis()
    env = {
        "ASR_PROVIDER": "none",
        "LLM_PROVIDER": "echo",
        "SESSION_TTL_SECONDS": str(TTL),
        "TURN_TTL_SECONDS": str(TTL),
        "RESUME_WINDOW_SECONDS": "5",  # a closed session's keys stay this long for a resume
        "LOG_LEVEL": "WARNING",
    }
    try:
        with running_cluster(store.url, fixture_http, tmp_path, ["llm1", "tts1"], **env) as up:
            gateway = up.procs["gateway"].pid
            warm = await soak(up.ws_url, store.url, sessions=20, concurrency=10)
            assert not warm.failures, warm.failures[:3]
            baseline = await settle(store.url, 0, TTL + 5)
            rss_before = rss_bytes(gateway)

            run = await soak(up.ws_url, store.url, sessions=200, concurrency=10)
            assert not run.failures, run.failures[:3]
            assert run.sessions == 200
            after = await settle(store.url, baseline["keys"], TTL + 10)
            rss_after = rss_bytes(gateway)
    finally:
        store.stop()
    figures = {
        "sessions": run.sessions,
        "seconds": round(run.seconds, 1),
        "keys_baseline": baseline["keys"],
        "keys_peak": run.peak_keys,
        "keys_after": after["keys"],
        "used_memory_baseline_kb": baseline["used_memory"] // 1024,
        "used_memory_peak_kb": run.peak_used_memory // 1024,
        "used_memory_after_kb": after["used_memory"] // 1024,
        "gateway_rss_before_mb": round(rss_before / 2**20, 1),
        "gateway_rss_after_mb": round(rss_after / 2**20, 1),
    }
    print(json.dumps(figures))
    assert after["keys"] <= baseline["keys"]
    assert run.peak_keys > baseline["keys"] + 10  # the sessions did leave keys, for a while
    assert after["used_memory"] < baseline["used_memory"] + 512 * 1024
    assert rss_after < rss_before + 20 * 2**20  # < 100 KB per finished session
