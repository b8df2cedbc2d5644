"""Recovery time after ``kill -9`` of a worker mid-reply, as JSON.

Runs a gateway and two workers of the killed kind as separate processes (the LLM is the
local OpenAI stand-in streaming a long reply slowly), kills the worker holding the turn
right after the first audio chunk, and measures kill -> next event from the survivor and
kill -> next audio chunk, with the reply checked complete and contiguous.

    python -m bench.recovery [--kinds tts,llm] [--rounds 3] [--reclaim-ms 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path

from shared.embedded_redis import start_embedded_redis
from tests.cluster import running_cluster
from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import free_port
from tests.test_crash_recovery import REPLY, assert_complete_reply, kill_mid_turn
from voice_agent.client import Turn, VoiceClient

ROOT = Path(__file__).resolve().parent.parent


async def one_kill(kind: str, reclaim_ms: int, standin: StandIn, redis_url: str) -> list[float]:
    env = {
        "RECLAIM_IDLE_MS": str(reclaim_ms),
        "ASR_PROVIDER": "none",
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": standin.base_url,
        "LLM_API_KEY": standin.api_key,
        "LLM_MAX_TOOL_ROUNDS": "0",
    }
    workers = ["llm1", "tts1", "tts2"] if kind == "tts" else ["llm1", "llm2", "tts1"]
    with tempfile.TemporaryDirectory() as logs:
        with running_cluster(redis_url, "http://127.0.0.1:9", Path(logs), workers, **env) as up:
            async with VoiceClient.connect(up.ws_url) as client:
                await client.send_command("what's the news")
                _victim, (next_event, next_chunk), turn = await kill_mid_turn(
                    up, client, Turn(), kind, "tts_chunk"
                )
    assert_complete_reply(turn)
    return [next_event, next_chunk]


async def main(args: argparse.Namespace) -> None:
    # a reply long enough to outlast the default recovery delay
    reply = " ".join([REPLY] * max(1, args.reclaim_ms // 2500))
    results = {}
    with running_standin(
        StandIn(chat=ChatScript(reply=reply, chunk_delay=0.12)), free_port()
    ) as si:
        for kind in args.kinds.split(","):
            samples = []
            for _ in range(args.rounds):
                store = start_embedded_redis()
                try:
                    samples.append(await one_kill(kind, args.reclaim_ms, si, store.url))
                finally:
                    store.stop()
            results[kind] = {
                "kill_to_next_event_s": [s[0] for s in samples],
                "kill_to_next_chunk_s": [s[1] for s in samples],
                "median_kill_to_next_chunk_s": statistics.median(s[1] for s in samples),
            }
    print(json.dumps({"reclaim_idle_ms": args.reclaim_ms, "results": results}, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kinds", default="tts,llm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reclaim-ms", type=int, default=5000)
    asyncio.run(main(parser.parse_args()))
