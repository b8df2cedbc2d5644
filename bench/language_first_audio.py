"""First audio of a reply per language, printed as JSON.

The gateway, LLM and TTS workers (espeak-ng) run in this process against an embedded
valkey; the OpenAI-compatible model stand-in streams a four-sentence reply piece by piece
with a delay (a model writing at about 20 characters a second). Measured at the client:
command -> first ``tts_chunk`` and command -> the model's complete text (final
``agent_response``), per language. ``--english-splitter`` splits every language with the
rule the code had before sentences were split per language (``.!?…`` + space, 240
characters), for comparison.

    python -m bench.language_first_audio [--rounds 3] [--delay 0.15] [--english-splitter]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
from pathlib import Path

import llm_worker.sentences as sentences_module
from shared.embedded_redis import start_embedded_redis
from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import free_port
from tests.test_language_pipeline import (
    ES_PIECES,
    ZH_PIECES,
    gateway_and_workers,
    settings_for,
)
from voice_agent.client import VoiceClient

ROOT = Path(__file__).resolve().parent.parent

EN_PIECES = [
    "There are three ",
    "stories today. First, ",
    "a chip maker unveiled a faster processor. ",
    "Second, a new rail line opened. ",
    "Which one would you like to ",
    "hear more about?",
]
DE_PIECES = [  # the first sentence has an ordinal date: its full stop does not end it
    "Am 3. ",
    "Oktober sprach ",
    "der Kanzler in Berlin. ",
    "Die Aktie stieg ",
    "um 2,5 Prozent. ",
    "Willst du mehr ",
    "hören?",
]
REPLIES = {"zh-CN": ZH_PIECES, "es": ES_PIECES, "en": EN_PIECES, "de": DE_PIECES}


async def one_turn(ws_url: str, lang: str) -> tuple[float, float]:
    async with VoiceClient.connect(f"{ws_url}?lang={lang}") as client:
        turn = await client.ask("news")  # arrival times count from the command
    first = turn.first_ms("tts_chunk")
    final = next(
        ms
        for ms, e in zip(turn.arrival_ms, turn.events, strict=True)
        if e["event"] == "agent_response" and e["data"]["is_final"]
    )
    return float(first or 0.0), float(final)


async def main(rounds: int, delay: float, english_splitter: bool) -> dict[str, object]:
    if english_splitter:  # the splitter as it was: one rule for every language
        old_rule = re.compile(r"[.!?…]+[\"')\]]*\s+")
        sentences_module._BOUNDARY = sentences_module._CJK_BOUNDARY = old_rule
        sentences_module.CJK_MAX_CHARS = 240
    redis = start_embedded_redis()
    results: dict[str, object] = {"rounds": rounds, "piece_delay_s": delay}
    try:
        with running_standin(StandIn(), free_port()) as model:
            settings = settings_for(redis.url, model, "espeak")
            async with gateway_and_workers(settings) as ws_url:
                for lang, pieces in REPLIES.items():
                    firsts, finals = [], []
                    for _ in range(rounds):
                        model.chat = ChatScript(pieces=pieces, chunk_delay=delay)
                        first, final = await one_turn(ws_url, lang)
                        firsts.append(first)
                        finals.append(final)
                    results[lang] = {
                        "first_audio_ms": round(statistics.median(firsts)),
                        "model_done_ms": round(statistics.median(finals)),
                    }
    finally:
        redis.stop()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.15)
    parser.add_argument("--english-splitter", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(main(args.rounds, args.delay, args.english_splitter))
    report["splitter"] = "english" if args.english_splitter else "per-language"
    print(json.dumps(report, indent=2))
