"""Soak: rounds of short typed sessions against separate gateway and worker processes,
as JSON. After each round it waits for the sessions' keys to expire and reports Redis
keys and used memory and the gateway's RSS: flat figures round after round mean nothing
grows per finished session.

    python -m bench.soak [--rounds 5] [--sessions 500] [--concurrency 20] [--turns 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from shared.embedded_redis import start_embedded_redis
from tests.cluster import running_cluster
from tests.soak_driver import redis_figures, rss_bytes, settle, soak

ROOT = Path(__file__).resolve().parent.parent

TTL = 10


async def main(args: argparse.Namespace) -> None:
    store = start_embedded_redis()
    env = {
        "ASR_PROVIDER": "none",
        "LLM_PROVIDER": args.agent,
        "SESSION_TTL_SECONDS": str(TTL),
        "TURN_TTL_SECONDS": str(TTL),
        "LOG_LEVEL": "WARNING",
        "MAX_WEBSOCKET_CONNECTIONS": str(args.concurrency + 10),
    }
    with tempfile.TemporaryDirectory() as logs:
        # the news agent reads no feeds here (unreachable URL): it says so, quickly
        cluster = running_cluster(
            store.url, "http://127.0.0.1:9", Path(logs), ["llm1", "tts1"], **env
        )
        with cluster as up:
            gateway = up.procs["gateway"].pid
            base = redis_figures(store.url)
            rounds = []
            for number in range(args.rounds):
                run = await soak(up.ws_url, store.url, args.sessions, args.concurrency, args.turns)
                after = await settle(store.url, base["keys"], TTL + 20)
                rounds.append(
                    {
                        "round": number + 1,
                        "sessions_ok": run.sessions,
                        "failures": len(run.failures),
                        "turns_per_s": round(run.turns / run.seconds, 1),
                        "redis_keys_peak": run.peak_keys,
                        "redis_used_memory_peak_kb": run.peak_used_memory // 1024,
                        "redis_keys_after": after["keys"],
                        "redis_used_memory_after_kb": after["used_memory"] // 1024,
                        "gateway_rss_after_mb": round(rss_bytes(gateway) / 2**20, 1),
                    }
                )
                print(json.dumps(rounds[-1]), file=sys.stderr)
    store.stop()
    print(json.dumps({"ttl_s": TTL, "agent": args.agent, "rounds": rounds}, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--agent", default="echo", choices=["echo", "news"])
    asyncio.run(main(parser.parse_args()))
