import json
import logging

from shared.logs import JsonFormatter, log_context


def test_json_lines_carry_session_and_turn_ids() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "job %s failed", ("42",), None)
    with log_context("sess-1", "t3"):
        line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "job 42 failed" and line["level"] == "WARNING"
    assert (line["session_id"], line["turn_id"]) == ("sess-1", "t3")
    assert "session_id" not in json.loads(JsonFormatter().format(record))
