"""How fast a conversation reacts: pause -> final transcript, cancel -> silence, barge-in.

Starts ``voice-agent up`` (embedded valkey) with an OpenAI-compatible stand-in on
loopback as the agent, streaming a long reply slowly so there is always something to
interrupt. Prints JSON:

* ``pause_to_final_ms``: hands-free utterance (no ``is_final``), from the end of the
  speech (audio sent at real-time pace) to the final transcript; includes the
  ``END_OF_SPEECH_MS`` pause the gateway waits for.
* ``end_of_input_to_final_ms``: of that, the recogniser's share (the gateway ended the
  utterance -> final transcript, from the event's ``timings``).
* ``cancel_to_complete_ms``: ``cancel`` sent -> ``streaming_complete`` received.
* ``cancel_to_last_chunk_ms``: ``cancel`` sent -> the last ``tts_chunk`` of that reply
  received (0 when none arrived after the cancel).
* ``cancel_to_workers_stop_ms``: ``cancel`` sent -> the last entry the workers wrote for
  that reply (from the reply stream's entry ids, which are Redis-clock milliseconds).
* ``speech_to_interrupted_ms``: talking over a reply, from the first audio sent to the
  ``interrupted`` event (the audio starts with the voice).

    python -m bench.conversation [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from pathlib import Path

from redis.asyncio import Redis

from bench.pipeline_latency import _summary, running_system
from shared.embedded_redis import start_embedded_redis
from shared.keys import Keys
from shared.messages import ReplyEvent, decode
from tests.audio_checks import speech_16k
from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import free_port
from voice_agent.client import VoiceClient

ROOT = Path(__file__).resolve().parent.parent

REPLY = " ".join(f"Story {n} is about a town that built a new bridge." for n in range(1, 30))


@contextlib.contextmanager
def conversation_system(standin: StandIn):
    """``voice-agent up`` with the stand-in as its agent, on a Redis this bench can read."""
    store = start_embedded_redis()
    settings = {
        "REDIS_URL": store.url,
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": standin.base_url,
        "LLM_API_KEY": standin.api_key,
        "LOG_LEVEL": "WARNING",
    }
    try:
        with running_system(**settings) as (ws_url, _pid):
            yield ws_url, store.url
    finally:
        store.stop()


async def _until(client: VoiceClient, name: str) -> tuple[dict, float]:
    while True:
        event = await client.next_event(30)
        if event["event"] == name:
            return event, time.perf_counter()


async def pause_to_final(ws_url: str) -> tuple[float, float]:
    speech = speech_16k("read me the sports headlines", tail_silence_ms=0)
    pcm = speech + b"\x00\x00" * 16000  # the voice stops; a second of silence, no is_final
    last_speech_chunk = (len(speech) - 1) // 3200
    speech_end = 0.0
    async with VoiceClient.connect(ws_url) as client:

        async def final_transcript() -> tuple[dict, float]:
            while True:  # read while the audio is still being sent: arrival time is real
                event, at = await _until(client, "partial_transcription")
                if event["data"]["is_final"]:
                    return event, at

        waiting = asyncio.create_task(final_transcript())
        start = time.perf_counter()
        for n, offset in enumerate(range(0, len(pcm), 3200)):
            await client.ws.send(pcm[offset : offset + 3200])
            if n == last_speech_chunk:
                speech_end = time.perf_counter()
            await asyncio.sleep(max(0.0, start + (n + 1) * 0.1 - time.perf_counter()))
        event, at = await waiting
        recognised = event["data"].get("timings", {}).get("transcript_final_ms", 0)
        return (at - speech_end) * 1000, float(recognised)


async def cancel_round(ws_url: str, redis: Redis) -> tuple[float, float, float]:
    async with VoiceClient.connect(ws_url) as client:
        await client.send_command("tell me everything")
        first, _ = await _until(client, "tts_chunk")
        turn_id = first["data"]["turn_id"]
        await asyncio.sleep(0.3)
        cancelled_wall_ms = time.time() * 1000
        cancelled = time.perf_counter()
        await client.cancel()
        last_chunk = cancelled
        while True:
            event = await client.next_event(30)
            if event["event"] == "tts_chunk":
                last_chunk = time.perf_counter()
            if event["event"] == "streaming_complete":
                complete = time.perf_counter()
                break
        await asyncio.sleep(1.0)  # let any straggler land before reading the stream
        entries = await redis.xrange(Keys().reply(client.session_id))
        worker_ms = [
            int(raw_id.decode().split("-")[0])
            for raw_id, fields in entries
            if isinstance(event := decode(fields), ReplyEvent)
            and event.turn_id == turn_id
            and event.event in ("tts_chunk", "agent_response")
        ]
        stop = max(0.0, max(worker_ms) - cancelled_wall_ms)
        return (complete - cancelled) * 1000, (last_chunk - cancelled) * 1000, stop


async def barge_in_round(ws_url: str) -> float:
    speech = speech_16k("stop and give me the sports news", lead_silence_ms=0)
    async with VoiceClient.connect(ws_url) as client:
        await client.send_command("tell me everything")
        await _until(client, "tts_chunk")
        start = time.perf_counter()
        sender = asyncio.create_task(client.send_audio(speech, realtime=True, binary=True))
        _, at = await _until(client, "interrupted")
        await sender
        return (at - start) * 1000


async def measure(rounds: int) -> dict[str, object]:
    with running_standin(StandIn(), free_port()) as standin:
        standin.chat = ChatScript(reply=REPLY, chunk_delay=0.1)
        with conversation_system(standin) as (ws_url, redis_url):
            redis = Redis.from_url(redis_url)
            pauses, finals, completes, last_chunks, stops, barges = [], [], [], [], [], []
            for _ in range(rounds):  # each phase is bounded: a lost event fails, never hangs
                pause, final = await asyncio.wait_for(pause_to_final(ws_url), 60)
                pauses.append(pause)
                finals.append(final)
                complete, last_chunk, stop = await asyncio.wait_for(cancel_round(ws_url, redis), 60)
                completes.append(complete)
                last_chunks.append(last_chunk)
                stops.append(stop)
                barges.append(await asyncio.wait_for(barge_in_round(ws_url), 60))
            await redis.aclose()
    return {
        "rounds": rounds,
        "end_of_speech_ms_setting": 600,
        "pause_to_final_ms": _summary(pauses),
        "end_of_input_to_final_ms": _summary(finals),
        "cancel_to_complete_ms": _summary(completes),
        "cancel_to_last_chunk_ms": _summary(last_chunks),
        "cancel_to_workers_stop_ms": _summary(stops),
        "speech_to_interrupted_ms": _summary(barges),
        "machine": {"cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.rounds)), indent=2))


if __name__ == "__main__":
    main()
