"""Logs for people at a terminal, JSON for collectors; addresses a person can open."""

from __future__ import annotations

import io
import json
import logging
import os

from gateway.server import page_url
from shared.logs import JsonFormatter, TextFormatter, log_context, resolve_log_format


def test_auto_is_text_on_a_terminal_and_json_otherwise() -> None:
    leader, follower = os.openpty()
    try:
        with open(follower, "w", closefd=False) as terminal:
            assert resolve_log_format("auto", terminal) == "text"
    finally:
        os.close(leader)
        os.close(follower)
    assert resolve_log_format("auto", io.StringIO()) == "json"
    assert resolve_log_format("json", None) == "json"  # LOG_FORMAT wins
    assert resolve_log_format("text", io.StringIO()) == "text"


def test_text_lines_carry_the_ids_json_lines_parse() -> None:
    record = logging.LogRecord("gateway.app", logging.INFO, __file__, 1, "turn %s", ("done",), None)
    with log_context("s-1", "t-2"):
        text = TextFormatter().format(record)
        entry = json.loads(JsonFormatter().format(record))
    assert text.endswith("INFO gateway.app: turn done [session=s-1 turn=t-2]")
    assert entry["msg"] == "turn done" and entry["session_id"] == "s-1"


def test_page_url_is_clickable() -> None:
    assert page_url("0.0.0.0", 8000) == "http://localhost:8000/"
    assert page_url("::", 8000) == "http://localhost:8000/"
    assert page_url("127.0.0.1", 9000) == "http://127.0.0.1:9000/"
