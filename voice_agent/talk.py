"""``voice-agent talk``: one turn against a local or remote server, from the terminal.

Sends typed text (``--text``) or an audio file (any format miniaudio reads: WAV, MP3,
FLAC, Ogg Vorbis; resampled to 16 kHz mono) streamed at real-time pace, prints partial
transcripts live and the agent's text, saves the reply audio and prints a timing table.

The file is read before connecting. Every ordinary failure ends with one line on stderr
saying what to do and its own exit code (``EXIT_CODES``, listed in README.md); a server
that restarts mid-reply (close 1012) is reconnected to and the reply resumes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from voice_agent.talk_errors import (
    CLOSE_RESTART,
    EXIT_AUDIO_FILE,
    EXIT_BUSY,
    EXIT_CODES,
    EXIT_NO_REPLY,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_TURN_FAILED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    VOICE_PATH,
    TalkError,
    close_error,
    connect_error,
)

RESUME_ATTEMPTS = 8  # reconnects after a 1012, waiting 0.25 s doubling to 4 s between them


def load_audio_16k(path: Path) -> bytes:
    """Any common audio file as 16 kHz mono s16le PCM; a ``TalkError`` when it is none."""
    import miniaudio

    if path.is_dir():
        raise TalkError(f"{path} is a folder; give an audio file", EXIT_AUDIO_FILE)
    try:
        decoded = miniaudio.decode_file(
            str(path),
            output_format=miniaudio.SampleFormat.SIGNED16,
            nchannels=1,
            sample_rate=16000,
        )
    except FileNotFoundError:
        raise TalkError(f"no such audio file: {path}", EXIT_AUDIO_FILE) from None
    except OSError as exc:
        raise TalkError(f"cannot read {path}: {exc.strerror}", EXIT_AUDIO_FILE) from None
    except miniaudio.DecodeError:
        raise TalkError(
            f"{path} is not audio this can read; give a WAV, MP3, FLAC or Ogg Vorbis file",
            EXIT_AUDIO_FILE,
        ) from None
    pcm = decoded.samples.tobytes()
    if not pcm:
        raise TalkError(f"{path} holds no sound", EXIT_AUDIO_FILE)
    return pcm


def _printer(out: IO[str], live: bool | None = None):
    """Prints partials on one updating line on a terminal (plain lines otherwise), then
    the final transcript and reply text."""
    if live is None:
        live = bool(getattr(out, "isatty", lambda: False)())
    state = {"width": 0, "last": ""}

    def clear() -> str:
        return "\r" + " " * state["width"] + "\r" if state["width"] else ""

    def show(event: dict) -> None:
        name, data = event["event"], event.get("data", {})
        if name == "partial_transcription" and not data.get("is_final"):
            text = str(data["text"])
            if live:
                out.write(f"{clear()}… {text}")
                state["width"] = len(text) + 2
            elif text != state["last"]:
                out.write(f"… {text}\n")
            state["last"] = text
        elif name == "partial_transcription":
            out.write(f"{clear()}you: {data['text']}\n")
            state["width"] = 0
        elif name == "agent_response" and data.get("is_final"):
            out.write(f"agent: {data['text']}\n")
        elif name == "reply_paused":  # someone seemed to talk over the reply
            out.write(f"{clear()}(reply paused: listening)\n")
            state["width"] = 0
        elif name == "reply_resumed":
            out.write("(reply resumed)\n")
        elif name == "error":
            out.write(f"{clear()}error [{data.get('code')}]: {data.get('message')}\n")
            state["width"] = 0
        out.flush()

    return show


def timing_table(turn: Any) -> str:
    """Client-side arrival of each stage, from the start of the request and from its end
    (the last audio frame or the command sent); stages that arrived while the request was
    still being sent (a spoken turn's partials) have no "after" time. Then the server's own
    ``timings``, which count from the end of the request."""
    partial = next(
        (
            at
            for e, at in zip(turn.events, turn.arrival_ms, strict=True)
            if e["event"] == "partial_transcription" and not e["data"].get("is_final")
        ),
        None,
    )
    final = next(
        (
            at
            for e, at in zip(turn.events, turn.arrival_ms, strict=True)
            if e["event"] == "partial_transcription" and e["data"].get("is_final")
        ),
        None,
    )
    stages = [
        ("first partial transcript", partial),
        ("final transcript", final),
        ("first agent_response", turn.first_ms("agent_response")),
        ("first tts_chunk", turn.first_ms("tts_chunk")),
        ("streaming_complete", turn.first_ms("streaming_complete")),
    ]
    done = turn.input_done_ms
    title = "timing (ms)"
    rows: list[tuple[str, str, str]] = [(title, "from start", "after request")]
    for label, at in stages:
        if at is None:
            continue
        after = f"{at - done:.0f}" if done is not None and at >= done else "-"
        rows.append((label, f"{at:.0f}", after))
    server = (turn.complete or {}).get("timings", {})
    for key, value in sorted(server.items()):
        shown = f"{value:.0f}" if isinstance(value, int | float) else str(value)
        rows.append((f"server {key}", "", shown))
    width = max(len(label) for label, *_ in rows) + 2
    lines = [f"{title:<{width}}{rows[0][1]:>12}{rows[0][2]:>15}"]
    lines.append("-" * (width + 27))
    lines += [f"{label:<{width}}{start:>12}{after:>15}" for label, start, after in rows[1:]]
    return "\n".join(lines)


def voice_url(raw: str) -> str:
    """``--url`` as the voice endpoint's WebSocket address: ``http(s)://host`` and a bare
    ``host:port`` are bases (``ws(s)://host/ws/voice``); a path other than ``/ws/voice``
    (behind a proxy: ending in it) is refused before connecting, with the right path."""
    text = raw.strip()
    if "://" not in text:
        text = f"ws://{text}"
    parts = urlsplit(text)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise TalkError(
            f"--url {raw!r} is no server address; give ws://host:8000/ws/voice, "
            "wss://host/ws/voice or http(s)://host",
            EXIT_USAGE,
        )
    path = parts.path.rstrip("/") or VOICE_PATH
    url = urlunsplit((scheme, parts.netloc, path, parts.query, ""))
    if not path.endswith(VOICE_PATH):
        raise TalkError(f"no voice endpoint at {url}; the path is {VOICE_PATH}", EXIT_UNREACHABLE)
    return url


def _session_url(args: argparse.Namespace) -> str:
    """``args.url`` (already a ``voice_url``) with the session's query; parameters given in
    ``--url`` itself (``?lang=de``) are kept and win."""
    query = {"user_id": args.user, "format": args.format}
    if args.voice:
        query["voice"] = args.voice
    if args.lang:  # in the URL, so a resumed session keeps it
        query["lang"] = args.lang
    token = args.token or os.environ.get("VOICE_AGENT_TOKEN")
    if token:
        query["token"] = token
    base, _, own = args.url.partition("?")
    query.update(parse_qsl(own))
    return f"{base}?{urlencode(query)}"


class _Session:
    """One connection at a time to the server, reopened with the resume token after 1012."""

    def __init__(self, args: argparse.Namespace, url: str, show: Any) -> None:
        self.args, self.url, self.show = args, url, show
        self.client: Any = None
        self._context: Any = None

    async def open(self, url: str) -> None:
        from voice_agent.client import ServerRefused, VoiceClient

        self._context = VoiceClient.connect(url, open_timeout=self.args.connect_timeout)
        try:
            self.client = await self._context.__aenter__()
        except ServerRefused as exc:
            code = EXIT_REFUSED if exc.code == "unauthorized" else EXIT_TURN_FAILED
            raise TalkError(f"the server refused the session: {exc.message}", code) from None
        except Exception as exc:
            raise connect_error(exc, self.url, self.args) from None
        self.client.on_event = self.show

    async def close(self) -> None:
        if self._context is not None:
            context, self._context = self._context, None
            with contextlib.suppress(Exception):  # already closed by the server: nothing lost
                await context.__aexit__(None, None, None)

    def close_code(self) -> tuple[int | None, str]:
        ws = self.client.ws
        return ws.close_code, ws.close_reason or ""

    async def resume(self) -> None:
        """The server is restarting: reconnect (same address, another instance behind a
        load balancer, or the same one back) with the resume token; the reply goes on."""
        query = self.client.resume_query()
        await self.close()
        wait = 0.25
        for attempt in range(1, RESUME_ATTEMPTS + 1):
            sys.stderr.write(f"server restarting; resuming the reply (attempt {attempt})\n")
            try:
                await self.open(f"{self.url}&{query}")  # same user, token and format
                return
            except TalkError as exc:
                if exc.code not in (EXIT_UNREACHABLE, EXIT_BUSY) or attempt == RESUME_ATTEMPTS:
                    raise
            await asyncio.sleep(wait)
            wait = min(wait * 2, 4.0)


async def talk(args: argparse.Namespace, out: IO[str] = sys.stdout) -> Any:
    """One turn; returns the ``Turn``. Raises ``TalkError`` for every ordinary failure."""
    import websockets

    from voice_agent.client import Turn

    pcm = None if args.text else load_audio_16k(Path(args.audio))  # before connecting
    args.url = voice_url(args.url)
    url = _session_url(args)
    session = _Session(args, url, _printer(out))
    await session.open(url)
    turn = Turn()
    try:
        try:
            async with asyncio.timeout(args.timeout):
                if args.text:
                    turn = await session.client.ask(args.text, limit_s=args.timeout, turn=turn)
                else:
                    turn = await session.client.say(
                        pcm, limit_s=args.timeout, realtime=not args.fast, turn=turn
                    )
        except (ConnectionError, websockets.ConnectionClosed):  # the latter: while sending
            turn = await _after_close(session, turn, args)
    except TimeoutError:
        raise TalkError(
            f"no reply within {args.timeout:g} s (--timeout); is every worker running? "
            f"see {args.url.replace('ws', 'http', 1).rsplit('/ws/', 1)[0]}/ready",
            EXIT_NO_REPLY,
        ) from None
    finally:
        await session.close()
    if turn.errors and not turn.complete:
        error = turn.errors[-1]
        raise TalkError(f"the server could not answer: {error.get('message')}", EXIT_TURN_FAILED)
    return turn


async def _after_close(session: _Session, turn: Any, args: argparse.Namespace) -> Any:
    """The connection closed mid-turn: resume after a restart (1012), else explain."""
    for _ in range(RESUME_ATTEMPTS):
        code, reason = session.close_code()
        if code != CLOSE_RESTART or turn.input_done_ms is None or turn.turn_id is None:
            raise close_error(code, reason, args.url)
        await session.resume()
        try:
            async with asyncio.timeout(args.timeout):
                return await session.client.collect_turn(args.timeout, turn)
        except ConnectionError:
            continue
    raise close_error(CLOSE_RESTART, "", args.url)


def add_talk_command(commands: argparse._SubParsersAction) -> None:
    codes = "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())
    talk_parser = commands.add_parser(
        "talk",
        help="one spoken or typed turn against a server",
        description=f"One turn against a server. Exit codes: {codes}.",
    )
    talk_parser.add_argument("audio", nargs="?", help="audio file to speak (wav, mp3, flac, ogg)")
    talk_parser.add_argument("--text", help="send this text instead of audio")
    talk_parser.add_argument(
        "--url",
        default="ws://localhost:8000/ws/voice",
        help="the server: ws(s)://host/ws/voice, or http(s)://host or host:port as a base",
    )
    talk_parser.add_argument(
        "--out",
        default="reply.mp3",
        help="where to save the reply audio (an existing file is replaced)",
    )
    talk_parser.add_argument("--format", default="mp3", choices=["mp3", "pcm16", "wav"])
    talk_parser.add_argument("--voice", default=None)
    talk_parser.add_argument(
        "--lang", default=None, help="the session's language: en, zh-CN, es, fr or de"
    )
    talk_parser.add_argument("--user", default="cli")
    talk_parser.add_argument(
        "--token", default=None, help="API key or signed token (default: $VOICE_AGENT_TOKEN)"
    )
    talk_parser.add_argument("--fast", action="store_true", help="send audio faster than real time")
    talk_parser.add_argument("--timeout", type=float, default=60.0, help="seconds for the reply")
    talk_parser.add_argument(
        "--connect-timeout", type=float, default=60.0, help="seconds (a sleeping server wakes)"
    )
    talk_parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if bool(args.text) == bool(args.audio):
        print("voice-agent talk: give either an audio file or --text", file=sys.stderr)
        return EXIT_USAGE
    started = time.perf_counter()
    try:
        turn = asyncio.run(talk(args))
    except TalkError as exc:
        if os.environ.get("LOG_LEVEL", "").strip().upper() == "DEBUG":
            import traceback

            traceback.print_exception(exc)
        print(f"voice-agent talk: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    audio = turn.audio
    if audio and args.out:
        out = Path(args.out)
        replaced = out.exists()
        out.write_bytes(audio)
        note = f", replacing the {out} that was there" if replaced else ""
        print(f"saved {len(turn.chunks)} chunks ({len(audio)} bytes) to {out}{note}")
    print(timing_table(turn))
    print(f"({time.perf_counter() - started:.1f} s)")
    return EXIT_OK
