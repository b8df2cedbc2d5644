"""End-to-end latency and accuracy of the whole offline pipeline, printed as JSON.

Starts ``voice-agent up`` (embedded valkey, local fixture feeds), then for each utterance
streams synthesised speech at real-time pace in 100 ms chunks and measures, at the
client: end of speech -> final transcript, end of speech -> first audio chunk, and the
word error rate of the final transcripts; plus typed command -> first audio chunk.

    python -m bench.pipeline_latency [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path

from tests.audio_checks import speech_16k, word_error_rate
from tests.support import E2E_FEEDS, free_port, serve_fixtures, wait_for_http
from voice_agent.client import VoiceClient

ROOT = Path(__file__).resolve().parent.parent

UTTERANCES = [
    "read me the sports headlines",
    "what's new in technology",
    "any business news today",
    "tell me more about the second story",
    "what is happening in the world",
    "give me the top headlines",
    "next story",
    "search for news about elections",
]
COMMANDS = ["technology news", "sports headlines", "tell me more about the first story"]


@contextlib.contextmanager
def running_system(**settings: str):
    """``voice-agent up`` on the fixture feeds (and ``settings``); embedded Redis unless
    ``REDIS_URL`` is among them. Yields (WebSocket URL, pid)."""
    base = serve_fixtures()
    port = free_port()
    feeds = ",".join(f"{s.split('=')[0]}={base}{s.split('=')[1]}" for s in E2E_FEEDS)
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "NEWS_FEEDS": feeds}
    env.pop("REDIS_URL", None)
    env.update(settings)
    proc = subprocess.Popen(
        [sys.executable, "-m", "voice_agent.cli", "up"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ready", proc)
        yield f"ws://127.0.0.1:{port}/ws/voice", proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 1), "p95": round(p95, 1), "n": len(ordered)}


async def measure(ws_url: str, rounds: int) -> dict[str, object]:
    to_final, to_audio, cmd_to_audio, errors = [], [], [], []
    transcripts = []
    audio = {text: speech_16k(text) for text in UTTERANCES}
    async with VoiceClient.connect(ws_url) as client:
        await client.ask("top headlines")  # warm the feed cache and the engines
        for _ in range(rounds):
            for text in UTTERANCES:
                turn = await client.say(audio[text], realtime=True)
                end = turn.input_done_ms or 0.0
                final_at = next(
                    at
                    for e, at in zip(turn.events, turn.arrival_ms, strict=True)
                    if e["event"] == "partial_transcription" and e["data"]["is_final"]
                )
                to_final.append(final_at - end)
                first_audio = turn.first_ms("tts_chunk")
                if first_audio is not None:
                    to_audio.append(first_audio - end)
                transcripts.append((text, turn.transcript or ""))
                errors += [e["code"] for e in turn.errors]
            for text in COMMANDS:
                turn = await client.ask(text)
                cmd_to_audio.append((turn.first_ms("tts_chunk") or 0.0) - (turn.input_done_ms or 0))
    wers = [word_error_rate(ref, hyp) for ref, hyp in transcripts]
    ref_words = sum(len(ref.split()) for ref, _ in transcripts)
    total_errors = sum(w * len(ref.split()) for w, (ref, _) in zip(wers, transcripts, strict=True))
    return {
        "end_of_speech_to_final_transcript_ms": _summary(to_final),
        "end_of_speech_to_first_audio_ms": _summary(to_audio),
        "command_to_first_audio_ms": _summary(cmd_to_audio),
        "word_error_rate": round(total_errors / ref_words, 3),
        "misrecognised": [(r, h) for (r, h), w in zip(transcripts, wers, strict=True) if w > 0],
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with running_system() as (ws_url, _pid):
        result = asyncio.run(measure(ws_url, args.rounds))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
