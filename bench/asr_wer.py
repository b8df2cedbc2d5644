"""Accuracy, speed and memory of the offline recogniser on held-out spoken requests.

Speech comes from the offline voice (espeak-ng), resampled to 16 kHz, with 300 ms of
digital silence on each side, fed in 100 ms chunks as the worker does. The utterances
(bench/asr_utterances.txt) were written before the grammar and never used to tune it.

    python -m bench.asr_wer [--mode grammar|open] [--no-fallback] [--min-score N|none]
                            [--voices en-us,en-us+f3] [--show]

Prints JSON. espeak-ng output varies slightly from run to run, so each utterance is
synthesised ``--repeat`` times. WER is word-level edit distance over reference words,
after lower-casing and expanding contractions on both sides ("what's" = "what is").
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

from asr_worker.pocketsphinx_engine import DEFAULT_MIN_SCORE, PocketsphinxEngine
from shared.audio import resample_pcm16
from tts_worker.espeak_engine import espeak_sample_rate, synthesize_pcm

UTTERANCES = Path(__file__).with_name("asr_utterances.txt")
CHUNK = 3200  # 100 ms
PAD = b"\x00\x00" * 4800  # 300 ms
CONTRACTIONS = {
    "what's": "what is",
    "how's": "how is",
    "that's": "that is",
    "it's": "it is",
    "let's": "let us",
    "i'd": "i would",
    "i'm": "i am",
    "didn't": "did not",
    "what're": "what are",
    "wanna": "want to",
}


def words(text: str) -> list[str]:
    return " ".join(CONTRACTIONS.get(w, w) for w in text.lower().split()).split()


def edits(reference: list[str], hypothesis: list[str]) -> int:
    row = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hypothesis, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[-1]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_utterances() -> list[tuple[str, str]]:
    rows = []
    for line in UTTERANCES.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            kind, text = (part.strip() for part in line.split("|", 1))
            rows.append((kind, text))
    return rows


def run_one(engine: PocketsphinxEngine, pcm: bytes) -> dict:
    stream = engine.open_stream()
    partials, first_partial_ms, busy = 0, None, 0.0
    for i in range(0, len(pcm), CHUNK):
        started = time.perf_counter()
        partial = stream.feed(pcm[i : i + CHUNK])
        busy += time.perf_counter() - started
        if partial:
            partials += 1
            if first_partial_ms is None:  # audio time from speech start, chunk granularity
                first_partial_ms = (i + CHUNK - len(PAD)) / 32
    started = time.perf_counter()
    final = stream.finish()
    finish_s = time.perf_counter() - started
    return {
        "final": final,
        "rejected": stream.rejected,
        "partials": partials,
        "first_partial_ms": first_partial_ms,
        "busy_s": busy + finish_s,
        "finish_ms": finish_s * 1000,
    }


def summarise(rows: list[dict]) -> dict:
    def wer(group: list[dict]) -> float | None:
        ref = sum(len(words(r["text"])) for r in group)
        err = sum(edits(words(r["text"]), words(r["final"])) for r in group)
        return round(err / ref, 3) if ref else None

    inside = [r for r in rows if r["kind"] == "in"]
    outside = [r for r in rows if r["kind"] == "out"]
    speech_s = sum(r["speech_s"] for r in rows)
    finish = sorted(r["finish_ms"] for r in rows)
    return {
        "utterances": len(rows),
        "wer_in_domain": wer(inside),
        "in_domain_exact": sum(words(r["text"]) == words(r["final"]) for r in inside),
        "in_domain_rejected": sum(r["rejected"] for r in inside),
        "out_of_domain": len(outside),
        "out_of_domain_rejected": sum(r["rejected"] for r in outside),
        "wer_out_of_domain": wer(outside),
        "real_time_factor": round(
            sum(r["busy_s"] for r in rows) / sum(r["audio_s"] for r in rows), 3
        ),
        "finish_ms_p50": round(statistics.median(finish), 1),
        "finish_ms_p95": round(finish[int(0.95 * (len(finish) - 1))], 1),
        "finish_ms_max": round(finish[-1], 1),
        "finish_ms_p50_when_rejected": round(
            statistics.median([r["finish_ms"] for r in rows if r["rejected"]] or [0.0]), 1
        ),
        "partials_per_speech_second": round(sum(r["partials"] for r in rows) / speech_s, 2),
        "first_partial_ms_p50": statistics.median(
            r["first_partial_ms"] for r in rows if r["first_partial_ms"] is not None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="grammar", choices=["grammar", "open"])
    parser.add_argument("--no-fallback", action="store_true")
    parser.add_argument(
        "--min-score",
        type=lambda v: None if v == "none" else float(v),
        default=DEFAULT_MIN_SCORE,
        help='"none": no phone-loop check',
    )
    parser.add_argument("--voices", default="en-us,en-us+f3")
    parser.add_argument(
        "--repeat", type=int, default=3, help="espeak-ng varies run to run: synthesise N times"
    )
    parser.add_argument("--show", action="store_true", help="print each transcript to stderr")
    args = parser.parse_args()

    utterances = load_utterances()
    voices = args.voices.split(",")
    audio = {
        (text, voice, rep): resample_pcm16(
            synthesize_pcm(text, voice_name=voice), espeak_sample_rate(), 16000
        )
        for rep in range(args.repeat)
        for _, text in utterances
        for voice in voices
    }
    rss_before = rss_mb()
    started = time.perf_counter()
    engine = PocketsphinxEngine(args.mode, fallback=not args.no_fallback, min_score=args.min_score)
    load_s = time.perf_counter() - started
    rss_loaded = rss_mb()
    fallback_load_s = None
    if engine.fallback:
        started = time.perf_counter()
        engine.fallback_pool.preload()
        fallback_load_s = round(time.perf_counter() - started, 3)

    rows = []
    for rep, voice in ((r, v) for r in range(args.repeat) for v in voices):
        for kind, text in utterances:
            speech = audio[(text, voice, rep)]
            row = run_one(engine, PAD + speech + PAD)
            row.update(kind=kind, text=text, voice=voice, rep=rep)
            row.update(speech_s=len(speech) / 32000, audio_s=(len(speech) + 2 * len(PAD)) / 32000)
            rows.append(row)
            if args.show:
                flag = "REJ" if row["rejected"] else "   "
                print(f"{kind:3} {flag} [{voice}] {text} -> {row['final']}", file=sys.stderr)

    report = {
        "engine": {
            "mode": args.mode,
            "fallback": engine.fallback,
            "min_score": args.min_score,
            "voices": voices,
            "repeat": args.repeat,
        },
        "load_s": round(load_s, 3),
        "fallback_load_s": fallback_load_s,
        "rss_mb_before_engine": round(rss_before, 1),
        "rss_mb_after_load": round(rss_loaded, 1),
        "rss_mb_after_run": round(rss_mb(), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "all": summarise(rows),
        "per_voice": {v: summarise([r for r in rows if r["voice"] == v]) for v in voices},
        "wer_in_domain_per_repeat": [
            summarise([r for r in rows if r["rep"] == rep])["wer_in_domain"]
            for rep in range(args.repeat)
        ],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
