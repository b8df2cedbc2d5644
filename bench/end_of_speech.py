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
``timings``), per agent and per kind of request, and the replies started early (during a
pause, ``PREEMPTIVE_REPLY``): started, used, discarded (from the gateway's metrics).

First, ``decision``: the gateway's own share, free of machine load. The same requests go
through the real utterance state machine (``gateway.utterance``) and the real recogniser
in-process, in audio time, with each partial heard before the next piece (as when the
recogniser keeps up), once with a fixed ``END_OF_SPEECH_MS`` (``fixed_600``, the rule
before adaptive end of speech) and once with the adaptive settings: the audio time from
the last voiced sample to the end of the turn, and the share cut off, over more pauses.

    python -m bench.end_of_speech [--rounds 3] [--agents decision,offline,model_400ms]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from collections import Counter

import httpx

from bench.pipeline_latency import _summary, running_system
from shared.audio import rms_dbfs
from shared.protocol import AudioInput
from tests.audio_checks import speech_16k
from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import free_port
from voice_agent.client import VoiceClient

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
    before = _early_replies(ws_url)
    for _ in range(rounds):
        for kind, pcm in requests:
            results[kind].append(await one_request(ws_url, pcm))
    after = _early_replies(ws_url)
    early = {outcome: after[outcome] - before[outcome] for outcome in after}
    if early["started"]:
        early["discarded_share"] = round(early["discarded"] / early["started"], 3)
    return {kind: _report(items) for kind, items in results.items()} | {
        "all": _report(results["fluent"] + results["hesitant"]),
        "preemptive_replies": early,
    }


def _early_replies(ws_url: str) -> dict[str, float]:
    """The gateway's counts of replies started early, used and discarded (0 before them)."""
    url = ws_url.replace("ws://", "http://").replace("/ws/voice", "/metrics")
    counts = {"started": 0.0, "used": 0.0, "discarded": 0.0}
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line.startswith("vna_preemptive_replies_total{"):
            outcome = line.split('outcome="')[1].split('"')[0]
            counts[outcome] = float(line.rsplit(" ", 1)[1])
    return counts


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


class _Decisions:
    """``UtteranceIO`` for the in-process run: notes when and how the turn ended."""

    def __init__(self) -> None:
        self.turns = 0
        self.ended_at: list[tuple[int, str]] = []  # (bytes pushed, rule)
        self.pushed = 0
        self.early: list[int] = []  # bytes pushed when an early reply started
        self.dropped = 0

    async def open_utterance(self, first: object) -> tuple[str, str]:
        self.turns += 1
        return f"t{self.turns}", "in"

    async def send_input(self, input_key: str, chunk: object) -> None:
        pass

    def input_complete(self, turn_id: str, timings: dict[str, object]) -> None:
        self.ended_at.append((self.pushed, str(timings.get("end_of_speech_rule"))))

    def start_early_reply(self, turn_id: str, attempt_id: str, text: str) -> None:
        self.early.append(self.pushed)

    def settle_early_reply(self, attempt_id: str) -> None:
        pass

    def drop_early_reply(self, attempt_id: str) -> None:
        self.dropped += 1


async def decide(pcm: bytes, policy: object, engine: object) -> tuple[float | None, bool, str]:
    """(ms from the last voiced sample to the end of the turn, cut off?, rule), in audio time."""
    return (await _decide(pcm, policy, engine))[:3]  # type: ignore[return-value]


async def _decide(pcm: bytes, policy: object, engine: object) -> tuple[object, ...]:
    """``decide``, plus when the last early reply started (ms after the true end, None if
    none) and how many were dropped."""
    from gateway.utterance import UtteranceTracker

    io = _Decisions()
    tracker = UtteranceTracker(io, policy, 10**8, early_replies=True)  # type: ignore[arg-type]
    stream = engine.open_stream()  # type: ignore[attr-defined]
    step = CHUNK_MS * BYTES_PER_MS
    try:
        for offset in range(0, len(pcm), step):
            piece = pcm[offset : offset + step]
            io.pushed = offset + len(piece)
            await tracker.push(AudioInput(piece, False))
            if tracker.current is None:
                if io.ended_at and io.turns > 1:
                    break
                continue
            if hypothesis := stream.feed(piece):
                tracker.hear(tracker.current.turn_id, stream.complete, hypothesis)
    finally:
        stream.close()
    end = voiced_end_ms(pcm) * BYTES_PER_MS
    cut = io.turns != 1 or not io.ended_at or io.ended_at[0][0] < end
    early = (io.early[-1] - end) / BYTES_PER_MS if io.early else None
    if not io.ended_at:
        return None, True, "none", early, io.dropped
    return (io.ended_at[-1][0] - end) / BYTES_PER_MS, cut, io.ended_at[-1][1], early, io.dropped


async def measure_decisions() -> dict[str, object]:
    from asr_worker.pocketsphinx_engine import PocketsphinxEngine
    from gateway.utterance import EndOfSpeechPolicy
    from shared.settings import load_settings

    settings = load_settings()
    engine = PocketsphinxEngine(decoder_pool_size=1)
    policies = {
        "fixed_600": EndOfSpeechPolicy(600, 600, 600),
        "adaptive": EndOfSpeechPolicy(
            settings.end_of_speech_ms,
            settings.end_of_speech_complete_ms,
            settings.end_of_speech_unfinished_ms,
        ),
    }
    requests = [("fluent", request_audio((text,))) for text in FLUENT]
    requests += [
        ("hesitant", request_audio((a, b), (pause,)))
        for a, _, b in HESITANT
        for pause in (300, 400, 450, 500)
    ]
    out: dict[str, object] = {}
    for name, policy in policies.items():
        items: dict[str, list[tuple[object, ...]]] = {"fluent": [], "hesitant": []}
        for kind, pcm in requests:
            items[kind].append(await _decide(pcm, policy, engine))
        out[name] = {kind: _decisions(rows, name != "fixed_600") for kind, rows in items.items()}
    return out


def _decisions(rows: list[tuple[object, ...]], adaptive: bool) -> dict[str, object]:
    whole = [row for row in rows if row[0] is not None and not row[1]]
    report: dict[str, object] = {
        "requests": len(rows),
        "end_of_speech_to_end_of_turn_ms": _summary([float(row[0]) for row in whole]),  # type: ignore[arg-type]
        "cut_off_share": round(sum(bool(row[1]) for row in rows) / len(rows), 3),
    }
    if adaptive:
        early = [float(row[3]) for row in whole if row[3] is not None]  # type: ignore[arg-type]
        report["rules"] = dict(Counter(str(row[2]) for row in rows))
        report["early_reply_started_ms"] = _summary(early) if early else None
        report["early_replies_dropped"] = sum(int(row[4]) for row in rows)  # type: ignore[call-overload]
    return report


async def run(agents: list[str], rounds: int) -> dict[str, object]:
    out: dict[str, object] = {"rounds": rounds, "chunk_ms": CHUNK_MS}
    if "decision" in agents:
        out["decision"] = await measure_decisions()
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
    parser.add_argument("--agents", default="decision,offline,model_400ms")
    args = parser.parse_args()
    result = asyncio.run(run(args.agents.split(","), args.rounds))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
