"""Pipeline tax: the same engines called in-process vs through gateway, Redis and workers.

For each input, interleaved, it measures end of speech -> first audio bytes (spoken
requests, streamed at real-time pace in 100 ms chunks) and command -> first audio bytes
(typed requests), once by calling pocketsphinx, the news agent, the sentence splitter,
speech normalisation, espeak-ng and the MP3 encoder directly in this process, and once
through a running ``voice-agent up`` over a real WebSocket. Prints p50/p95 of both and
their ratio as JSON. Goal: ratio <= 1.05, or <= 15 ms added.

    python -m bench.pipeline_tax [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from asr_worker.providers import create_asr_engine
from bench.pipeline_latency import running_system
from llm_worker.news import NewsAgent, parse_feed_sources
from llm_worker.sentences import SentenceSplitter
from llm_worker.speech_text import speech_text
from shared.embedded_redis import start_embedded_redis
from shared.engines import AgentRequest, Voice
from shared.settings import load_settings
from shared.streams import connect
from tests.audio_checks import speech_16k
from tests.support import E2E_FEEDS, serve_fixtures
from tts_worker.espeak_engine import EspeakEngine
from tts_worker.mp3 import Mp3Encoder
from voice_agent.client import VoiceClient

ROOT = Path(__file__).resolve().parent.parent

SPOKEN = ["read me the sports headlines", "what's new in technology", "any business news today"]
TYPED = ["world news", "science headlines", "tell me more about the first story"]
CHUNK = 3200  # 100 ms


class InProcess:
    """The engines wired together by direct calls: no sockets, no Redis hops between them."""

    def __init__(self, redis_url: str, feeds_base: str) -> None:
        settings = load_settings()
        self.asr = create_asr_engine(settings)
        feeds = ",".join(f"{s.split('=')[0]}={feeds_base}{s.split('=')[1]}" for s in E2E_FEEDS)
        self.agent = NewsAgent(connect(redis_url), settings.keys, parse_feed_sources(feeds))
        self.tts = EspeakEngine()
        self.turns = 0

    async def _first_audio(self, text: str) -> float:
        """Seconds from now until the first MP3 bytes of the reply to ``text`` exist."""
        start = time.perf_counter()
        self.turns += 1
        splitter = SentenceSplitter()
        encoder: Mp3Encoder | None = None
        request = AgentRequest("bench-session", f"t{self.turns}", text)
        async for delta in self.agent.reply(request):
            for sentence in splitter.push(delta):
                async for segment in self.tts.synthesize(speech_text(sentence), Voice()):
                    encoder = encoder or Mp3Encoder(segment.sample_rate)
                    if encoder.encode(segment.data):
                        return time.perf_counter() - start
        return time.perf_counter() - start

    async def spoken(self, pcm: bytes) -> float:
        stream = await asyncio.to_thread(self.asr.open_stream)
        start = time.perf_counter()
        for n, offset in enumerate(range(0, len(pcm), CHUNK)):
            await asyncio.to_thread(stream.feed, pcm[offset : offset + CHUNK])
            delay = start + (n + 1) * 0.1 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        end_of_speech = time.perf_counter()
        text = await asyncio.to_thread(stream.finish)
        await asyncio.to_thread(stream.close)
        return (time.perf_counter() - end_of_speech) + await self._first_audio(text)

    async def typed(self, text: str) -> float:
        return await self._first_audio(text)


async def through_pipeline(client: VoiceClient, pcm: bytes | None, text: str) -> float:
    turn = await (client.say(pcm, realtime=True) if pcm is not None else client.ask(text))
    first = turn.first_ms("tts_chunk")
    return ((first or 0.0) - (turn.input_done_ms or 0.0)) / 1000


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "p50": round(statistics.median(ms), 1),
        "p95": round(ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))], 1),
    }


async def measure(ws_url: str, redis_url: str, feeds_base: str, rounds: int) -> dict:
    local = InProcess(redis_url, feeds_base)
    audio = {text: speech_16k(text) for text in SPOKEN}
    results: dict[str, dict[str, list[float]]] = {
        "spoken": {"in_process": [], "pipeline": []},
        "typed": {"in_process": [], "pipeline": []},
    }
    async with VoiceClient.connect(ws_url) as client:
        await client.ask("top headlines")  # warm caches on both sides
        await local.typed("top headlines")
        for _ in range(rounds):
            for text in SPOKEN:  # interleaved: one in-process run, then one through the pipeline
                results["spoken"]["in_process"].append(await local.spoken(audio[text]))
                results["spoken"]["pipeline"].append(
                    await through_pipeline(client, audio[text], text)
                )
            for text in TYPED:
                results["typed"]["in_process"].append(await local.typed(text))
                results["typed"]["pipeline"].append(await through_pipeline(client, None, text))
    report = {}
    for kind, runs in results.items():
        inproc, piped = _stats(runs["in_process"]), _stats(runs["pipeline"])
        report[kind] = {
            "in_process_ms": inproc,
            "pipeline_ms": piped,
            "ratio_p50": round(piped["p50"] / inproc["p50"], 3) if inproc["p50"] else None,
            "added_ms_p50": round(piped["p50"] - inproc["p50"], 1),
            "runs": len(runs["pipeline"]),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    feeds_base = serve_fixtures()
    with start_embedded_redis() as cache, running_system() as (ws_url, _pid):
        report = asyncio.run(measure(ws_url, cache.url, feeds_base, args.rounds))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
