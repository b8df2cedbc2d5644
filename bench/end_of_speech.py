"""How soon the agent answers once people stop speaking, and whether it cuts them off.

Hands-free requests (no ``is_final``: the gateway's end-of-speech detection ends them)
streamed at real-time pace in 100 ms pieces, as the browser page sends them, through
``voice-agent up``. Every time is measured from the **true end of speech**: the moment a
live microphone captured the last voiced 10 ms of the request (not the end of the audio
sent, which goes on with silence). Two agents:

* ``offline``: the built-in news agent (first token in a few ms);
* ``model_400ms``: an OpenAI-compatible stand-in on loopback whose first token comes
  400 ms after the request, like a typical cloud model.

Requests are spoken fluently, or with a 300-500 ms hesitation in the middle ("read me the
latest … sports headlines"). A request is **cut off** when the gateway ended it before its
last word (more than one final transcript, or a final transcript before the true end).

Prints JSON: p50/p95 of end of speech → final transcript and → first audio, the share of
requests cut off, the end-of-speech rules the gateway applied (from the turn's
``timings``), per agent and per kind of request.

    python bench/end_of_speech.py [--rounds 3] [--agents offline,model_400ms]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pipeline_latency import _summary, running_system  # noqa: E402
from shared.audio import rms_dbfs  # noqa: E402
from shared.client import VoiceClient  # noqa: E402
from tests.audio_checks import speech_16k  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.openai_standin import ChatScript, StandIn, running_standin  # noqa: E402

CHUNK_MS = 100
BYTES_PER_MS = 32
VOICED_DBFS = -45.0
TAIL_MS = 1500  # silence sent after the request: the microphone stays open

FLUENT = [
    "read me the sports headlines",
    "what's new in technology",
    "any business news today",
    "give me the top headlines",
    "tell me more about the second story",
    "next story",
]
# (first part, hesitation ms, rest)
HESITANT = [
    ("read me the latest", 450, "sports headlines"),
    ("tell me more about", 400, "the second story"),
    ("what's new in", 300, "technology"),
    ("give me the top", 500, "business headlines"),
]


def request_audio(parts: tuple[str, ...], pauses: tuple[int, ...] = ()) -> bytes:
    """The spoken request: 300 ms lead-in, its parts with the pauses between, then silence."""
    pcm = b"\x00\x00" * 16 * 300
    for n, part in enumerate(parts):
        pcm += speech_16k(part, lead_silence_ms=0, tail_silence_ms=0)
        if n < len(pauses):
            pcm += b"\x00\x00" * 16 * pauses[n]
    return pcm + b"\x00\x00" * 16 * TAIL_MS


def voiced_end_ms(pcm: bytes) -> float:
    """Audio time (ms) at the end of the last 10 ms loud enough to be voice."""
    step = 10 * BYTES_PER_MS
    last = 0
    for offset in range(0, len(pcm) - step + 1, step):
        if rms_dbfs(pcm[offset : offset + step]) > VOICED_DBFS:
            last = offset + step
    return last / BYTES_PER_MS


async def one_request(ws_url: str, pcm: bytes) -> dict[str, object]:
    """Stream one request like a live microphone; times are ms after the true end of speech."""
    end_ms = voiced_end_ms(pcm)
    step = CHUNK_MS * BYTES_PER_MS
    async with VoiceClient.connect(ws_url) as client:
        finals: list[tuple[float, str]] = []
        first_audio: float | None = None
        rules: list[str] = []
        open_turns: set[str] = set()
        done = asyncio.Event()

        async def read() -> None:
            nonlocal first_audio
            while True:
                event = await client.next_event(30)
                name, data = event["event"], event["data"]
                at = time.perf_counter()
                if name == "partial_transcription" and data.get("is_final"):
                    finals.append((at, data["text"]))
                    open_turns.add(data["turn_id"])
                elif name == "tts_chunk" and first_audio is None:
                    first_audio = at
                elif name in ("streaming_complete", "error") and data.get("turn_id"):
                    open_turns.discard(data["turn_id"])
                    if rule := data.get("timings", {}).get("end_of_speech_rule"):
                        rules.append(rule)
                    if sent_all and not open_turns:
                        done.set()

        sent_all = False
        reader = asyncio.create_task(read())
        start = time.perf_counter()  # audio time 0 is captured now; piece n leaves at its end
        for n, offset in enumerate(range(0, len(pcm), step)):
            await asyncio.sleep(max(0.0, start + (n + 1) * CHUNK_MS / 1000 - time.perf_counter()))
            await client.ws.send(pcm[offset : offset + step])
        sent_all = True
        if not open_turns and finals:
            done.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 30)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
    speech_end = start + end_ms / 1000
    cut = len(finals) != 1 or finals[0][0] < speech_end
    last_final = finals[-1][0] if finals else None
    return {
        "cut": cut,
        "to_final": None if last_final is None else (last_final - speech_end) * 1000,
        "to_audio": None if first_audio is None else (first_audio - speech_end) * 1000,
        "rules": rules,
        "transcripts": [text for _, text in finals],
    }


async def measure_agent(ws_url: str, rounds: int) -> dict[str, object]:
    requests = [("fluent", request_audio((text,))) for text in FLUENT]
    requests += [("hesitant", request_audio((a, b), (pause,))) for a, pause, b in HESITANT]
    async with VoiceClient.connect(ws_url) as client:
        await client.ask("top headlines")  # warm the feed cache and the engines
    results: dict[str, list[dict[str, object]]] = {"fluent": [], "hesitant": []}
    for _ in range(rounds):
        for kind, pcm in requests:
            results[kind].append(await one_request(ws_url, pcm))
    return {kind: _report(items) for kind, items in results.items()} | {
        "all": _report(results["fluent"] + results["hesitant"])
    }


def _report(items: list[dict[str, object]]) -> dict[str, object]:
    whole = [i for i in items if not i["cut"]]
    finals = [float(i["to_final"]) for i in whole if i["to_final"] is not None]
    audio = [float(i["to_audio"]) for i in whole if i["to_audio"] is not None]
    cut = [i["transcripts"] for i in items if i["cut"]]
    rules = Counter(rule for i in items for rule in i["rules"])  # type: ignore[attr-defined]
    return {
        "requests": len(items),
        "end_of_speech_to_final_transcript_ms": _summary(finals) if finals else None,
        "end_of_speech_to_first_audio_ms": _summary(audio) if audio else None,
        "cut_off_share": round(len(cut) / len(items), 3) if items else 0.0,
        "cut_off_transcripts": cut[:5],
        "end_of_speech_rules": dict(rules),
    }


async def run(agents: list[str], rounds: int) -> dict[str, object]:
    out: dict[str, object] = {"rounds": rounds, "chunk_ms": CHUNK_MS}
    if "offline" in agents:
        with running_system(LOG_LEVEL="WARNING") as (ws_url, _pid):
            out["offline"] = await measure_agent(ws_url, rounds)
    if "model_400ms" in agents:
        with running_standin(StandIn(), free_port()) as standin:
            standin.chat = ChatScript(
                reply="Here is the news. Markets were calm today. Want to hear more?",
                first_token_delay=0.4,
                chunk_delay=0.02,
            )
            settings = {
                "LLM_PROVIDER": "openai",
                "LLM_BASE_URL": standin.base_url,
                "LLM_API_KEY": standin.api_key,
                "LOG_LEVEL": "WARNING",
            }
            with running_system(**settings) as (ws_url, _pid):
                out["model_400ms"] = await measure_agent(ws_url, rounds)
    out["machine"] = {"cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--agents", default="offline,model_400ms")
    args = parser.parse_args()
    result = asyncio.run(run(args.agents.split(","), args.rounds))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
