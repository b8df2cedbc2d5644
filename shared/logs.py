"""Process-wide logging: one JSON object per line (or plain text on a terminal), tagged
with session and turn ids.

Ids come from context variables set where a session or a job is handled, so every log
line inside that work carries them without passing them around. Log messages never
contain transcripts, reply text or secrets; only ids, kinds and numbers.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# credentials that may ride in a URL (uvicorn logs the WebSocket request line)
_SECRET_PARAMS = re.compile(r"((?:^|[?&\s])(?:token|resume_token|api_key)=)[^&\s\"']+")
# ``user:password@`` of any URL (REDIS_URL, a proxy or feed URL inside an error message)
_URL_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s\"'@]*(?:@[^/\s\"'@]*)*@")
# values of secret settings (API keys, AUTH_SECRET, a Redis password), wherever they appear
_hidden: set[str] = set()
_SHORTEST_HIDDEN = 4  # masking shorter values would garble every line that contains them


def hide_values(*values: str | None) -> None:
    """Mask these exact strings in every log line and error this process reports."""
    _hidden.update(v for v in values if v and len(v) >= _SHORTEST_HIDDEN)


def redact_url(url: str) -> str:
    """``redis://user:pw@host:6379/0`` -> ``redis://***@host:6379/0``."""
    return _URL_CREDENTIALS.sub(r"\1***@", url)


def redact(text: str) -> str:
    """Hide credentials: ``?token=abc`` -> ``?token=***``, ``//user:pw@`` -> ``//***@``, and
    every value given to ``hide_values``."""
    text = redact_url(_SECRET_PARAMS.sub(r"\1***", text))
    for value in _hidden:
        text = text.replace(value, "***")
    return text


class RedactingFilter(logging.Filter):
    """Scrubs credentials from every record (its message and any traceback) before a
    handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


session_id_var: ContextVar[str | None] = ContextVar("session_id", default=None)
turn_id_var: ContextVar[str | None] = ContextVar("turn_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if (session := session_id_var.get()) is not None:
            entry["session_id"] = session
        if (turn := turn_id_var.get()) is not None:
            entry["turn_id"] = turn
        if record.exc_text or record.exc_info:  # the filter has redacted exc_text
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``13:09:07 INFO gateway.app: message`` for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [
            f"{k}={v}"
            for k, v in (("session", session_id_var.get()), ("turn", turn_id_var.get()))
            if v
        ]
        return f"{line} [{' '.join(ids)}]" if ids else line


def resolve_log_format(log_format: str, stream: object = None) -> str:
    """``auto``: text when a person watches (stderr is a terminal), JSON for collectors."""
    if log_format != "auto":
        return log_format
    isatty = getattr(stream if stream is not None else sys.stderr, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def setup_logging(level: str, log_format: str = "auto") -> None:
    handler = logging.StreamHandler()
    if resolve_log_format(log_format, handler.stream) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


@contextmanager
def log_context(session_id: str | None, turn_id: str | None = None) -> Iterator[None]:
    """Tag every log line inside the block with these ids."""
    session_token = session_id_var.set(session_id)
    turn_token = turn_id_var.set(turn_id)
    try:
        yield
    finally:
        turn_id_var.reset(turn_token)
        session_id_var.reset(session_token)
