"""``voice-agent talk``: one turn against a local or remote server, from the terminal.

Sends typed text (``--text``) or an audio file (any format miniaudio reads: WAV, MP3,
FLAC, Ogg Vorbis; resampled to 16 kHz mono) streamed at real-time pace, prints partial
transcripts live and the agent's text, saves the reply audio and prints a timing table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import miniaudio

from voice_agent.client import Turn, VoiceClient


def load_audio_16k(path: Path) -> bytes:
    """Any common audio file as 16 kHz mono s16le PCM."""
    decoded = miniaudio.decode_file(
        str(path), output_format=miniaudio.SampleFormat.SIGNED16, nchannels=1, sample_rate=16000
    )
    return decoded.samples.tobytes()


def _printer(out):
    """Prints partials on one updating line, then the final transcript and reply text."""
    state = {"partial": False}

    def show(event: dict) -> None:
        name, data = event["event"], event.get("data", {})
        if name == "partial_transcription" and not data.get("is_final"):
            out.write(f"\r… {data['text'][:100]:<100}")
            state["partial"] = True
        elif name == "partial_transcription":
            out.write(("\r" if state["partial"] else "") + f"you: {data['text']:<100}\n")
        elif name == "agent_response" and data.get("is_final"):
            out.write(f"agent: {data['text']}\n")
        elif name == "error":
            out.write(f"error [{data.get('code')}]: {data.get('message')}\n")
        out.flush()

    return show


def timing_table(turn: Turn) -> str:
    rows = [("first event", turn.arrival_ms[0] if turn.arrival_ms else None)]
    rows += [(f"first {n}", turn.first_ms(n)) for n in ("agent_response", "tts_chunk")]
    rows.append(("complete", turn.first_ms("streaming_complete")))
    server = (turn.complete or {}).get("timings", {})
    lines = ["timing (ms after the request was complete)", "-" * 44]
    base = turn.input_done_ms or 0.0
    for label, at in rows:
        if at is not None:
            lines.append(f"{label:<28}{max(0.0, at - base):>10.0f}")
    for key, value in sorted(server.items()):
        lines.append(f"server {key:<21}{value:>10}")
    return "\n".join(lines)


async def talk(args: argparse.Namespace, out=sys.stdout) -> Turn:
    query = {"user_id": args.user, "format": args.format}
    if args.voice:
        query["voice"] = args.voice
    token = args.token or os.environ.get("VOICE_AGENT_TOKEN")
    if token:
        query["token"] = token
    url = f"{args.url}?{urlencode(query)}"
    show = _printer(out)
    async with VoiceClient.connect(url, open_timeout=args.connect_timeout) as client:
        client.on_event = show
        if args.text:
            turn = await client.ask(args.text, limit_s=args.timeout)
        else:
            pcm = load_audio_16k(Path(args.audio))
            turn = await client.say(pcm, limit_s=args.timeout, realtime=not args.fast)
    return turn


def add_talk_command(commands: argparse._SubParsersAction) -> None:
    talk_parser = commands.add_parser("talk", help="one spoken or typed turn against a server")
    talk_parser.add_argument("audio", nargs="?", help="audio file to speak (wav, mp3, flac, ogg)")
    talk_parser.add_argument("--text", help="send this text instead of audio")
    talk_parser.add_argument("--url", default="ws://localhost:8000/ws/voice")
    talk_parser.add_argument("--out", default="reply.mp3", help="where to save the reply audio")
    talk_parser.add_argument("--format", default="mp3", choices=["mp3", "pcm16", "wav"])
    talk_parser.add_argument("--voice", default=None)
    talk_parser.add_argument("--user", default="cli")
    talk_parser.add_argument(
        "--token", default=None, help="API key or signed token (default: $VOICE_AGENT_TOKEN)"
    )
    talk_parser.add_argument("--fast", action="store_true", help="send audio faster than real time")
    talk_parser.add_argument("--timeout", type=float, default=60.0)
    talk_parser.add_argument("--connect-timeout", type=float, default=60.0)
    talk_parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if bool(args.text) == bool(args.audio):
        print("give either an audio file or --text", file=sys.stderr)
        return 2
    started = time.perf_counter()
    turn = asyncio.run(talk(args))
    audio = turn.audio
    if audio and args.out:
        Path(args.out).write_bytes(audio)
        print(f"saved {len(turn.chunks)} chunks ({len(audio)} bytes) to {args.out}")
    print(timing_table(turn))
    print(f"({time.perf_counter() - started:.1f} s)")
    return 1 if turn.errors and not turn.complete else 0
