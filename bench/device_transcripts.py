"""How a phone that recognises speech itself is answered: once per question, how soon.

The iOS client of the design document sends every partial result of its recogniser as a
plain ``voice_command`` (a growing text every ~250 ms), then the final text once more.
Here that pattern runs against ``voice-agent up`` with an OpenAI-compatible stand-in on
loopback whose first token comes 400 ms after the request (``model_400ms``, a typical
cloud model; ``--agents offline`` adds the built-in news agent), one question per
connection, in three ways:

* ``plain``: the client as it is (no ``is_final``; the gateway's revision detection);
* ``interim``: the same partials with ``is_final: false``, the final with ``is_final: true``;
* ``revisions_off``: the client as it is with ``?command_revisions=false``, every command a
  new turn (what the client got before).

Prints JSON per way: first audio after the last transcript sent (the final text) and after
the last change of words (p50/p95), replies per question (turns with audio), turns cut,
audio chunks of turns that were not the answer, errors, model calls started and streamed
to their end per question, and the replies started early (started/used/discarded, from
the gateway's metrics).

    python -m bench.device_transcripts [--rounds 1] [--ways plain,interim,revisions_off]
        [--agents model_400ms,offline]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time

from bench.end_of_speech import _early_replies
from bench.pipeline_latency import _summary, running_system
from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import free_port
from voice_agent.client import VoiceClient

PARTIAL_EVERY_S = 0.25
REPLY = "Here is the news. Markets were calm today. Want to hear more?"
SETTLE_S = 0.8  # after the answer: anything still arriving belongs to an abandoned reply
QUESTIONS = [
    "what is the latest news about the football match in london this weekend",
    "read me the sports headlines",
    "what's new in technology today",
    "give me the top business stories",
    "tell me more about the second story",
    "any science news this week",
]


async def one_question(ws_url: str, text: str, way: str) -> dict[str, object]:
    """Speak ``text`` as the recogniser reports it; times are ms after the last send."""
    url = f"{ws_url}?command_revisions=false" if way == "revisions_off" else ws_url
    words = text.split()
    interim = way == "interim"
    async with VoiceClient.connect(url) as client:
        events: list[tuple[float, dict]] = []
        changed_at = 0.0

        async def read() -> None:
            while True:
                event = await client.next_event(60)
                events.append((time.perf_counter(), event))

        reader = asyncio.create_task(read())
        for n in range(1, len(words) + 1):
            flag = False if interim else None
            await client.send_command(" ".join(words[:n]), 0.95, is_final=flag)
            changed_at = time.perf_counter()
            await asyncio.sleep(PARTIAL_EVERY_S)
        await client.send_command(text, 0.95, is_final=True if interim else None)
        sent_at = time.perf_counter()
        await _until_answered(events)
        await asyncio.sleep(SETTLE_S)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return _outcome(events, sent_at, changed_at)


async def _until_answered(events: list[tuple[float, dict]], limit_s: float = 30.0) -> None:
    """Until a turn completed without being cut (or the limit)."""
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        for _at, event in events:
            data = event["data"]
            if event["event"] == "streaming_complete" and not data.get("interrupted"):
                return
        await asyncio.sleep(0.02)


def _outcome(events: list[tuple[float, dict]], sent_at: float, changed_at: float) -> dict:
    chunks: dict[str, int] = {}
    first_chunk: dict[str, float] = {}
    answered, cut, errors = [], [], []
    for at, event in events:
        name, data = event["event"], event["data"]
        turn = data.get("turn_id")
        if name == "tts_chunk":
            chunks[turn] = chunks.get(turn, 0) + 1
            first_chunk.setdefault(turn, at)
        elif name == "streaming_complete":
            (cut if data.get("interrupted") else answered).append(turn)
        elif name == "interrupted":
            cut.append(turn)
        elif name == "error":
            errors.append(data.get("code"))
    answer = answered[-1] if answered else None
    first = first_chunk.get(answer) if answer else None
    return {
        "after_last_transcript_ms": None if first is None else (first - sent_at) * 1000,
        "after_last_change_ms": None if first is None else (first - changed_at) * 1000,
        "replies": len([t for t in chunks if t not in cut]),
        "cut": len(set(cut)),
        "abandoned_chunks": sum(n for t, n in chunks.items() if t != answer),
        "errors": errors,
        "rule": next(
            (
                e["data"].get("timings", {}).get("end_of_speech_rule")
                for _, e in events
                if e["event"] == "streaming_complete" and e["data"].get("turn_id") == answer
            ),
            None,
        ),
    }


async def measure(ws_url: str, standin: StandIn | None, way: str, rounds: int) -> dict[str, object]:
    before = _early_replies(ws_url)
    calls, completed = (len(standin.chat.requests), standin.chat.completed) if standin else (0, 0)
    items = []
    for _ in range(rounds):
        for text in QUESTIONS:
            items.append(await one_question(ws_url, text, way))
    after = _early_replies(ws_url)
    questions = len(items)
    last = [float(i["after_last_transcript_ms"]) for i in items if i["after_last_transcript_ms"]]
    change = [float(i["after_last_change_ms"]) for i in items if i["after_last_change_ms"]]
    rules: dict[str, int] = {}
    for item in items:
        rules[str(item["rule"])] = rules.get(str(item["rule"]), 0) + 1
    report: dict[str, object] = {
        "questions": questions,
        "first_audio_after_last_transcript_ms": _summary(last) if last else None,
        "first_audio_after_last_change_ms": _summary(change) if change else None,
        "replies_per_question": round(sum(int(i["replies"]) for i in items) / questions, 2),
        "turns_cut": sum(int(i["cut"]) for i in items),
        "abandoned_audio_chunks": sum(int(i["abandoned_chunks"]) for i in items),
        "errors": [code for i in items for code in i["errors"]],  # type: ignore[attr-defined]
        "preemptive_replies": {k: after[k] - before[k] for k in after},
        "end_of_speech_rules": rules,
    }
    if standin is not None:  # the model's calls: started, and streamed to their end
        report["model_calls_per_question"] = round(
            (len(standin.chat.requests) - calls) / questions, 2
        )
        report["model_calls_completed_per_question"] = round(
            (standin.chat.completed - completed) / questions, 2
        )
    return report


async def run(ways: list[str], rounds: int, agents: list[str]) -> dict[str, object]:
    out: dict[str, object] = {"rounds": rounds, "partial_every_ms": int(PARTIAL_EVERY_S * 1000)}
    with running_standin(StandIn(), free_port()) as standin:
        standin.chat = ChatScript(reply=REPLY, first_token_delay=0.4, chunk_delay=0.02)
        for agent in agents:
            settings = {"LOG_LEVEL": "WARNING"}
            if agent == "model_400ms":
                settings |= {
                    "LLM_PROVIDER": "openai",
                    "LLM_BASE_URL": standin.base_url,
                    "LLM_API_KEY": standin.api_key,
                }
            with running_system(**settings) as (ws_url, _pid):
                async with VoiceClient.connect(ws_url) as client:
                    await client.ask("top headlines")  # warm the engines and the feeds
                model = standin if agent == "model_400ms" else None
                out[agent] = {way: await measure(ws_url, model, way, rounds) for way in ways}
    out["machine"] = {"cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--ways", default="plain,interim,revisions_off")
    parser.add_argument("--agents", default="model_400ms", help="model_400ms,offline")
    args = parser.parse_args()
    result = asyncio.run(run(args.ways.split(","), args.rounds, args.agents.split(",")))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
