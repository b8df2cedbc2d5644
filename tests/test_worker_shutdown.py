"""SIGTERM to a worker mid-reply, with a second worker of its kind running: it stops
reading, hands back the turn it could not finish within its grace period, exits cleanly,
and the other worker finishes the reply without a gap or a repeat."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.cluster import running_cluster
from tests.openai_standin import StandIn
from tests.test_crash_recovery import RECOVERY, REPLY, assert_complete_reply, model_env, slow_model
from voice_agent.client import Turn, VoiceClient

__all__ = ["slow_model"]  # the fixture, shared with the crash tests


async def test_sigterm_hands_back_an_unfinished_reply(
    redis_url: str, fixture_http: str, tmp_path: Path, slow_model: StandIn
) -> None:
    env = {
        **RECOVERY,
        **model_env(slow_model),
        "STREAM_PREFIX": "sigterm-tts",
        "RECLAIM_IDLE_MS": "3000",  # the hand-back, not the idle timeout, must be what helps
        "SHUTDOWN_GRACE_SECONDS": "0.5",  # much shorter than the reply
    }
    workers = ["llm1", "tts1", "tts2"]
    with running_cluster(f"{redis_url}/2", fixture_http, tmp_path, workers, **env) as cluster:
        async with VoiceClient.connect(cluster.ws_url) as client:
            turn = Turn()
            await client.send_command("what's the news")
            while not turn.chunks:
                turn.events.append(await client.next_event(20))
            victim = cluster.owner("tts")
            stopping = time.perf_counter()
            exit_code = cluster.signal(victim, signal.SIGTERM).wait(10)
            turn = await client.collect_turn(30, turn)
            finished = time.perf_counter() - stopping
        survivor = "tts2" if victim == "tts1" else "tts1"
        assert "hands back 1 job" in cluster.log(victim)
        # the survivor resumes the speech, unless the victim had written the reply's end
        # in the instant before its grace ran out (then there is nothing left to resume)
        resumed = "resuming speech at chunk" in cluster.log(survivor)
    assert exit_code == 0
    assert_complete_reply(turn)
    assert turn.reply_text == REPLY
    print(json.dumps({"sigterm_to_reply_complete_s": round(finished, 2), "resumed": resumed}))
