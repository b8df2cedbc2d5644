"""What ``voice-agent talk`` tells the person at the terminal when a turn fails: one line
saying what to do, and an exit code of its own for each kind of failure (``EXIT_CODES``,
listed in README.md)."""

from __future__ import annotations

import argparse
import socket
import ssl
from urllib.parse import urlsplit

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_AUDIO_FILE = 3
EXIT_UNREACHABLE = 4
EXIT_REFUSED = 5
EXIT_BUSY = 6
EXIT_NO_REPLY = 7
EXIT_TURN_FAILED = 8
EXIT_CONNECTION_LOST = 9
EXIT_CODES = {
    EXIT_OK: "the reply arrived",
    EXIT_USAGE: "wrong arguments (or a bad setting)",
    EXIT_AUDIO_FILE: "the audio file is missing, unreadable or not audio",
    EXIT_UNREACHABLE: (
        "no server at --url (refused, unknown host, TLS, timeout), "
        "or no voice endpoint there (the path is /ws/voice)"
    ),
    EXIT_REFUSED: "the server refused access (HTTP 401/403 or close 1008): check --token",
    EXIT_BUSY: (
        "the server said try again later (1013: full, connection too slow to receive, or too "
        "many resumes; the message says which) or kept restarting (1012)"
    ),
    EXIT_NO_REPLY: "no reply within --timeout",
    EXIT_TURN_FAILED: "the server answered the turn with an error event",
    EXIT_CONNECTION_LOST: "the connection closed mid-turn for another reason",
}
CLOSE_POLICY, CLOSE_RESTART, CLOSE_TRY_LATER = 1008, 1012, 1013
VOICE_PATH = "/ws/voice"


class TalkError(Exception):
    """An ordinary failure: ``message`` says what to do, ``code`` is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _try_later(host: str, reason: str) -> str:
    """1013 has several causes; its close reason says which one, and so does the message."""
    said = reason.lower()
    if "slow" in said:
        return (
            f"{host} closed the session: this connection received the reply too slowly "
            f"(1013 {reason}); check the network and try again"
        )
    if "resume" in said:
        return (
            f"{host} refused to resume the session again so soon (1013 {reason}); try again shortly"
        )
    if "full" in said or not reason:
        return f"{host} is full right now (1013); try again shortly"
    return f"{host} asked to try again later (1013 {reason}); try again shortly"


def close_error(code: int | None, reason: str, url: str) -> TalkError:
    """What a close code means for the person at the terminal."""
    if code == CLOSE_POLICY:
        why = reason or "policy violation"
        return TalkError(f"the server refused the session ({why}); check --token", EXIT_REFUSED)
    if code == CLOSE_TRY_LATER:
        return TalkError(_try_later(_host(url), reason), EXIT_BUSY)
    if code == CLOSE_RESTART:
        return TalkError(f"{_host(url)} kept restarting (1012); try again shortly", EXIT_BUSY)
    return TalkError(
        f"the connection closed mid-turn (code {code}, {reason or 'no reason'}); run again",
        EXIT_CONNECTION_LOST,
    )


def connect_error(exc: BaseException, url: str, args: argparse.Namespace) -> TalkError:
    """The failures of opening a WebSocket, as what to do about them."""
    import websockets

    host = _host(url)
    if isinstance(exc, websockets.InvalidURI):
        return TalkError("--url must look like ws://host:8000/ws/voice or wss://…", EXIT_USAGE)
    if isinstance(exc, websockets.InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return TalkError(
                f"{host} refused access (HTTP {status}); pass --token or set VOICE_AGENT_TOKEN",
                EXIT_REFUSED,
            )
        if status == 404:
            return TalkError(
                f"no voice endpoint at {url.partition('?')[0]}; the path is {VOICE_PATH}",
                EXIT_UNREACHABLE,
            )
        return TalkError(
            f"{host} answered HTTP {status}, not a WebSocket; is the path {VOICE_PATH}?",
            EXIT_UNREACHABLE,
        )
    if isinstance(exc, websockets.InvalidHandshake):
        return TalkError(f"{host} does not speak WebSocket here; check --url", EXIT_UNREACHABLE)
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "verify_message", None) or exc.reason or type(exc).__name__
        return TalkError(
            f"TLS with {host} failed ({reason}); check the wss:// address or use ws://",
            EXIT_UNREACHABLE,
        )
    if isinstance(exc, socket.gaierror):
        return TalkError(
            f"cannot find host {urlsplit(url).hostname!r}; check --url", EXIT_UNREACHABLE
        )
    if isinstance(exc, ConnectionRefusedError):
        return TalkError(
            f"nothing listens at {host}; start the server (voice-agent up) or check --url",
            EXIT_UNREACHABLE,
        )
    if isinstance(exc, TimeoutError):
        return TalkError(
            f"{host} did not answer within {args.connect_timeout:g} s (--connect-timeout)",
            EXIT_UNREACHABLE,
        )
    if isinstance(exc, websockets.ConnectionClosed):
        frame = exc.rcvd
        return close_error(frame.code if frame else None, frame.reason if frame else "", url)
    if isinstance(exc, OSError):
        return TalkError(
            f"cannot reach {host} ({exc.strerror or exc}); check --url", EXIT_UNREACHABLE
        )
    raise exc
