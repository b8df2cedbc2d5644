"""Many short sessions one after another (typed turns), and the memory figures to compare.

Shared by ``tests/test_soak.py`` (a bounded run in CI) and ``bench/soak.py`` (longer runs).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from voice_agent.client import VoiceClient

COMMANDS = ("technology news", "sports headlines", "what's new in business", "tell me more")


@dataclass
class SoakResult:
    sessions: int = 0
    turns: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    peak_used_memory: int = 0
    peak_keys: int = 0


async def _one_session(url: str, number: int, turns: int, result: SoakResult) -> None:
    try:
        async with VoiceClient.connect(url) as client:
            for turn in range(turns):
                reply = await client.ask(COMMANDS[(number + turn) % len(COMMANDS)], limit_s=60)
                if reply.errors or not reply.complete:
                    result.failures.append(f"session {number}: {reply.errors or 'incomplete'}")
                result.turns += 1
        result.sessions += 1
    except Exception as exc:  # counted, not raised: the soak reports every kind of failure
        result.failures.append(f"session {number}: {exc!r}")


async def soak(
    url: str, redis_url: str, sessions: int, concurrency: int, turns: int = 1
) -> SoakResult:
    """Run ``sessions`` sessions, ``concurrency`` at a time, sampling Redis memory."""
    result = SoakResult()
    started = time.perf_counter()
    slots = asyncio.Semaphore(concurrency)

    async def guarded(number: int) -> None:
        async with slots:
            await _one_session(url, number, turns, result)

    async def sample() -> None:
        while True:
            figures = redis_figures(redis_url)
            result.peak_used_memory = max(result.peak_used_memory, figures["used_memory"])
            result.peak_keys = max(result.peak_keys, figures["keys"])
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    try:
        await asyncio.gather(*(guarded(n) for n in range(sessions)))
    finally:
        sampler.cancel()
    result.seconds = time.perf_counter() - started
    return result


def redis_figures(redis_url: str) -> dict[str, int]:
    client = redis.Redis.from_url(redis_url)
    try:
        info = client.info("memory")
        return {"used_memory": int(info["used_memory"]), "keys": int(client.dbsize())}
    finally:
        client.close()


def rss_bytes(pid: int) -> int:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


async def settle(redis_url: str, baseline_keys: int, limit_s: float) -> dict[str, int]:
    """Wait (up to ``limit_s``) for per-session keys to expire back to ``baseline_keys``."""
    deadline = time.monotonic() + limit_s
    figures = redis_figures(redis_url)
    while figures["keys"] > baseline_keys and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        figures = redis_figures(redis_url)
    return figures
