"""Early replies' names: the record's values, job options, bounds and attempt ids
(the protocol is in ``shared/early_reply/__init__.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.keys import Keys

OPEN = "open"
USED = "used"
DROPPED = "dropped"
EARLY_OPTION = "early"  # job option: this job is an attempt (its events go aside)
REPLY_TURN_OPTION = "reply_turn"  # job option: the utterance's turn, as the client knows it
MAX_ATTEMPTS = 3  # per utterance: a bound on model calls wasted
POLL_S = 0.5  # how often a waiter reads the record in case a notice was missed


def attempt_id(turn_id: str, number: int) -> str:
    return f"{turn_id}.p{number}"


def attempt_turn(attempt: str) -> str:
    """``t5.p1`` -> ``t5``: the utterance's turn, as the client knows it."""
    return attempt.rsplit(".p", 1)[0]


def open_value(words: str) -> str:
    """The record of an open attempt: its words, the only thing a final is compared to."""
    return f"{OPEN}:{words}"


def is_attempt(options: Mapping[str, Any] | None) -> bool:
    return bool((options or {}).get(EARLY_OPTION))


def reply_turn(job: Any) -> str:
    """The turn the client knows a job's reply by (an attempt's utterance, else its own)."""
    options = getattr(job, "options", None) or {}
    return str(options.get(REPLY_TURN_OPTION) or job.turn_id)


def events_key(keys: Keys, session_id: str, options: Mapping[str, Any] | None) -> str:
    """Where a job's events go: an attempt's aside, under its own id; others to the client."""
    if is_attempt(options):
        return keys.early_replies(session_id)
    return keys.reply(session_id)
