"""Barge-in: how fast speech over a reply pauses and cuts it, and how often a person is
mistaken for the reply's own echo. Prints JSON.

* ``live``: ``voice-agent up`` (embedded valkey, fixture feeds, espeak, pocketsphinx); a
  client asks for the technology headlines, plays the reply on a virtual loudspeaker in
  real time and, 2 s in, says something into its microphone (frames of 100 ms sent as a
  microphone delivers them, when each is complete), with no echo or with the reply's own
  audio coming back at -12 dB, 150 ms late. From the first voiced 10 ms of the speech:
  ``onset_to_paused_ms`` (``reply_paused`` received) and ``onset_to_interrupted_ms``
  (``interrupted`` received), p50/p95, and how many rounds were cut.
* ``false_reject``: offline, the gateway's own decisions on the 38 spoken requests of
  bench/asr_utterances.txt, said after 300 ms of the reply's echo at -20, -12 and -6 dB
  (or of silence) at three places in the reply: the share whose every stretch of speech
  (each frame of a run, as the gateway judges them) was judged echo (``acoustic``), and
  the share whose words (the true text) were judged the reply's own (``words``, against
  the sentence playing and its neighbours). ``echo_detected``: runs of the echo alone
  judged echo.

    python -m bench.barge_in [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.pipeline_latency import _summary, running_system
from gateway.barge_in import ONSET_WINDOW_MS, is_reply_echo, sentences_of, words_of
from gateway.echo import EchoJudge, ReplyAudio
from gateway.endpointing import SpeechOnset
from shared.settings import Settings
from tests.audio_checks import decode_mp3, speech_16k
from tests.barge_in_client import FRAME, Player, mix, samples
from tts_worker.espeak_engine import espeak_sample_rate, synthesize_pcm
from tts_worker.mp3 import Mp3Encoder, split_frames
from voice_agent.client import VoiceClient

QUESTION = "what's the latest in technology"
SAID_AT = 20  # frames into the reply
SAID = [
    "stop",
    "stop, tell me the sports news instead",
    "tell me the sports news",
    "what about the weather",
    "wait",
    "read me the world news",
]
REPLY = (
    "Here are the latest technology headlines. First, New battery doubles phone life. "
    "Second, Chip maker unveils faster processor. Third, Robots help sort recycling. "
    "Ask for more about any of them, or say next."
)
UTTERANCES = Path(__file__).with_name("asr_utterances.txt")


def voiced_onset_ms(pcm: bytes) -> float:
    """Where speech begins in ``pcm``: the first 10 ms louder than a whisper."""
    x = samples(pcm)
    for start in range(0, len(x) - 160, 160):
        if np.sqrt(np.mean(x[start : start + 160] ** 2)) > 300:
            return start / 16
    return 0.0


async def live_round(url: str, said: str, echo_db: float | None) -> dict[str, Any]:
    speech = speech_16k(said, 0, 600)
    onset_ms = voiced_onset_ms(speech)
    frames = [samples(speech[i : i + FRAME * 2]) for i in range(0, len(speech), FRAME * 2)]
    async with VoiceClient.connect(url) as client:
        player = Player()
        arrived: dict[str, float] = {}
        playing = asyncio.Event()

        async def read() -> None:
            while True:
                event = await client.next_event(60)
                player.on_event(event)
                data = event.get("data", {})
                if player.turn_id is None and event["event"] == "tts_chunk":
                    player.turn_id = data["turn_id"]
                    player.on_event(event)
                    playing.set()
                if data.get("turn_id") == player.turn_id:
                    arrived.setdefault(event["event"], time.perf_counter())

        reader = asyncio.create_task(read())
        await client.send_command(QUESTION)
        await playing.wait()
        started = time.perf_counter()
        said_at = started + SAID_AT * 0.1 + onset_ms / 1000
        for n in range(SAID_AT + len(frames) + 15):
            mic = [player.echo(echo_db, 150)] if echo_db is not None else [np.zeros(FRAME)]
            player.play_frame()
            if SAID_AT <= n < SAID_AT + len(frames):
                mic.append(frames[n - SAID_AT])
            await asyncio.sleep(max(0.0, started + (n + 1) * 0.1 - time.perf_counter()))
            await client.ws.send(mix(*mic))  # sent when the microphone has the whole frame
            if "interrupted" in arrived:
                break
        reader.cancel()

    def since(name: str) -> float | None:
        at = arrived.get(name)
        return None if at is None else (at - said_at) * 1000

    return {"paused": since("reply_paused"), "interrupted": since("interrupted")}


async def live(rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with running_system() as (url, _pid):
        async with VoiceClient.connect(url) as client:
            await client.ask(QUESTION)  # warm the feed cache and the engines
        for label, echo_db in (("no_echo", None), ("echo_-12dB_150ms", -12.0)):
            paused, cut, rounds_cut, total = [], [], 0, 0
            for _ in range(rounds):
                for said in SAID:
                    result = await asyncio.wait_for(live_round(url, said, echo_db), 60)
                    total += 1
                    if result["paused"] is not None:
                        paused.append(result["paused"])
                    if result["interrupted"] is not None:
                        cut.append(result["interrupted"])
                        rounds_cut += 1
            results[label] = {
                "onset_to_paused_ms": _summary(paused) if paused else None,
                "onset_to_interrupted_ms": _summary(cut) if cut else None,
                "rounds_cut": f"{rounds_cut}/{total}",
            }
    return results


def _reply() -> tuple[ReplyAudio, np.ndarray]:
    encoder = Mp3Encoder(espeak_sample_rate())
    mp3 = encoder.encode(synthesize_pcm(REPLY)) + encoder.flush()
    sound = ReplyAudio("t1")
    for chunk in split_frames(mp3, 3000):
        sound.add(chunk, "mp3", 24000, 1)
    return sound, samples(decode_mp3(mp3)[0])


def _heard_as_echo(pcm: bytes, sound: ReplyAudio) -> bool | None:
    """What the gateway makes of ``pcm`` over the reply: every frame of a run of speech is
    judged (the last 500 ms) until one is not echo. True: all echo; None: no run at all."""
    onset = SpeechOnset(Settings.model_fields["barge_in_pause_ms"].default)
    judge = EchoJudge()
    step = FRAME * 2
    judged = False
    for end in range(step, len(pcm) + 1, step):
        judge.heard(step)
        if onset.push(pcm[end - step : end]):
            verdict = judge.is_echo(pcm[max(0, end - ONSET_WINDOW_MS * 32) : end], sound)
            if verdict is None:
                continue
            judged = True
            if not verdict:
                return False
    return True if judged else None


def false_rejects() -> dict[str, Any]:
    sound, reply = _reply()
    sentences = sentences_of(REPLY)
    texts = [
        line.split("|", 1)[1].strip()
        for line in UTTERANCES.read_text().splitlines()
        if "|" in line and not line.startswith("#")
    ]
    people = {text: samples(speech_16k(text, 300, 0)) for text in texts}  # after 300 ms of echo
    report: dict[str, Any] = {"utterances": len(texts)}
    seconds = len(reply) / 16000
    positions = [seconds * f for f in (0.2, 0.5, 0.8)]
    for echo_db in (None, -20.0, -12.0, -6.0):
        acoustic = words = judged = detected = echo_windows = 0
        examples: set[str] = set()
        for at in positions:
            start = int(at * 16000) - 150 * 16
            sentence = min(len(sentences), 1 + int(at / seconds * len(sentences)))
            near = {w for s in sentences[max(0, sentence - 2) : sentence + 1] for w in words_of(s)}
            for text, person in people.items():
                echo = np.zeros(len(person))
                if echo_db is not None:
                    piece = reply[start : start + len(person)]
                    echo[: len(piece)] = piece * 10 ** (echo_db / 20)
                verdict = _heard_as_echo(mix(person, echo), sound)
                if verdict is not None:
                    judged += 1
                    if verdict:
                        acoustic += 1
                        examples.add(text)
                words += is_reply_echo(words_of(text), near)
            if echo_db is not None:
                alone = reply[start : start + 3 * 16000] * 10 ** (echo_db / 20)
                verdict = _heard_as_echo(mix(alone), sound)
                if verdict is not None:
                    echo_windows += 1
                    detected += verdict
        cases = len(texts) * len(positions)
        report["no_echo" if echo_db is None else f"echo_{echo_db:g}dB"] = {
            "acoustic": round(acoustic / max(judged, 1), 3),
            "words": round(words / cases, 3),
            "cases": cases,
            "echo_detected": None if echo_db is None else f"{detected}/{echo_windows}",
            "judged_echo": sorted(examples),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="rounds of each spoken phrase")
    args = parser.parse_args()
    started = time.perf_counter()
    out = {
        "false_reject": false_rejects(),
        "live": asyncio.run(live(args.rounds)),
        "machine": {"cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)},
    }
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
