"""SIGTERM to a worker mid-reply, with a second worker of its kind running: it stops
reading, hands back the turn it could not finish within its grace period, exits cleanly,
and the other worker finishes the reply without a gap or a repeat."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import redis

from tests.cluster import Cluster, running_cluster
from tests.openai_standin import StandIn
from tests.test_crash_recovery import RECOVERY, REPLY, assert_complete_reply, model_env, slow_model
from voice_agent.client import Turn, VoiceClient

__all__ = ["slow_model"]  # the fixture, shared with the crash tests


async def test_sigterm_hands_back_an_unfinished_reply(
    redis_url: str, fixture_http: str, tmp_path: Path, slow_model: StandIn
) -> None:
    # the model stops after the first sentences until released: when SIGTERM lands the
    # reply is certainly unfinished, whatever the machine's load
    slow_model.chat.hold_after_words = 10
    env = {
        **RECOVERY,
        **model_env(slow_model),
        "STREAM_PREFIX": "sigterm-tts",
        "RECLAIM_IDLE_MS": "3000",  # the hand-back, not the idle timeout, must be what helps
        "SHUTDOWN_GRACE_SECONDS": "0.5",  # the reply cannot finish within it: held model
    }
    workers = ["llm1", "tts1", "tts2"]
    try:
        with running_cluster(f"{redis_url}/2", fixture_http, tmp_path, workers, **env) as cluster:
            async with VoiceClient.connect(cluster.ws_url) as client:
                turn = Turn()
                await client.send_command("what's the news")
                while not turn.chunks:
                    turn.events.append(await client.next_event(20))
                victim = cluster.owner("tts")
                stopping = time.perf_counter()
                exit_code = cluster.signal(victim, signal.SIGTERM).wait(30)
                handed_back = _pending_job(cluster)  # before the model is released
                slow_model.chat.release.set()  # the victim is gone: let the reply go on
                turn = await client.collect_turn(60, turn)
                finished = time.perf_counter() - stopping
            survivor = "tts2" if victim == "tts1" else "tts1"
            victim_log, survivor_log = cluster.log(victim), cluster.log(survivor)
    finally:
        slow_model.chat.release.set()
    assert exit_code == 0
    assert "hands back 1 job" in victim_log
    # handed back = made to look idle past RECLAIM_IDLE_MS at once (or already taken over);
    # without it the job would sit for 3 s, as the victim kept it fresh until it exited
    owner, idle_ms = handed_back
    assert owner.startswith(survivor) or idle_ms >= 3000, handed_back
    assert "reclaimed job" in survivor_log
    resumed_at = re.search(r"resuming speech at chunk (\d+)", survivor_log)
    assert resumed_at, "the survivor resumed the handed-back turn"
    assert int(resumed_at.group(1)) >= 1, "after the chunks the victim had sent"
    assert_complete_reply(turn)
    assert turn.reply_text == REPLY
    print(json.dumps({"sigterm_to_reply_complete_s": round(finished, 2)}))


def _pending_job(cluster: Cluster) -> tuple[str, int]:
    """The consumer holding the reply's TTS job and how long it has been idle (ms)."""
    client = redis.Redis.from_url(cluster.redis_url)
    try:
        (row,) = client.xpending_range(f"{cluster.prefix}:tts:jobs", "tts", "-", "+", 10)
    finally:
        client.close()
    return row["consumer"].decode(), int(row["time_since_delivered"])
