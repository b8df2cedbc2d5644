"""The gateway's side of early replies, as a state machine without I/O: what each input
(an event kept aside, a verdict, a cancel) means for an attempt's events. The protocol
is in ``shared/early_reply/__init__.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from shared.early_reply.names import USED
from shared.messages import ReplyEvent

KEPT_EVENTS_LIMIT = 1000  # an attempt that waits with more events than this is withdrawn


class Phase(StrEnum):
    KEPT = "kept"  # started, no verdict yet: its events are kept aside
    WITHDRAWING = "withdrawing"  # broken before its verdict; still kept until it is known
    USED = "used"  # the turn's reply: its events go to the client as the turn's
    DONE = "done"  # used, and its reply ended
    DROPPED = "dropped"  # not the reply: nothing of it reaches the client


@dataclass
class Attempt:
    attempt_id: str
    turn_id: str  # the utterance's turn, as the client knows it
    words: str
    phase: Phase = Phase.KEPT
    kept: list[tuple[str, ReplyEvent]] = field(default_factory=list)  # (early id, event)
    last_id: str = "0-0"  # the last entry of the early stream that was this attempt's

    @property
    def undecided(self) -> bool:
        return self.phase in (Phase.KEPT, Phase.WITHDRAWING)


@dataclass
class Step:
    """What the gateway must do after one input to ``Attempts``."""

    # (early entry id, event renamed to the turn), in order
    forward: list[tuple[str, ReplyEvent]] = field(default_factory=list)
    withdraw: bool = False  # decide(attempt, None), then ``settled`` with the verdict
    stop: bool = False  # cancel the attempt's workers


class Attempts:
    """One connection's attempts: which events wait, go to the client, or are forgotten.

    Inputs: ``start``, ``on_event`` (its early stream), ``drop`` (the utterance state
    machine gave it up), ``settled`` (a verdict read from the record). Outputs: ``Step``.
    """

    REMEMBERED = 64  # a long session forgets attempts that are over beyond this

    def __init__(self) -> None:
        self._attempts: dict[str, Attempt] = {}

    def get(self, attempt: str) -> Attempt | None:
        return self._attempts.get(attempt)

    def all(self) -> list[Attempt]:
        return list(self._attempts.values())

    def start(self, attempt: str, turn_id: str, words: str) -> Attempt:
        if len(self._attempts) > self.REMEMBERED:
            over = [a for a, item in self._attempts.items() if item.phase == Phase.DROPPED]
            over += [a for a, item in self._attempts.items() if item.phase == Phase.DONE][:-8]
            for old in over:
                del self._attempts[old]
        self._attempts[attempt] = item = Attempt(attempt, turn_id, words)
        return item

    def on_event(self, event: ReplyEvent, entry_id: str = "") -> Step:
        item = self._attempts.get(event.turn_id)
        if item is None:
            return Step()  # an attempt of an earlier connection, or not ours
        item.last_id = entry_id or item.last_id
        if item.phase == Phase.USED:
            return Step(forward=self._as_turn(item, [(item.last_id, event)]))
        if item.undecided:
            item.kept.append((item.last_id, event))
            if len(item.kept) > KEPT_EVENTS_LIMIT and item.phase == Phase.KEPT:
                item.phase = Phase.WITHDRAWING
                return Step(withdraw=True)
        return Step()

    def drop(self, attempt: str) -> Step:
        """Given up before the end of speech (speech again, another hypothesis, a cancel,
        the client gone): withdraw it; its verdict decides what happens to its events."""
        item = self._attempts.get(attempt)
        if item is None or item.phase != Phase.KEPT:
            return Step()
        item.phase = Phase.WITHDRAWING
        return Step(withdraw=True)

    def settled(self, attempt: str, verdict: str) -> Step:
        """The record's verdict on an undecided attempt."""
        item = self._attempts.get(attempt)
        if item is None or not item.undecided:
            return Step()
        kept, item.kept = item.kept, []
        if verdict == USED:
            item.phase = Phase.USED
            return Step(forward=self._as_turn(item, kept))
        item.phase = Phase.DROPPED
        return Step(stop=True)

    def cancel_turn(self, turn_id: str) -> list[Attempt]:
        """The client cancelled ``turn_id``: its attempts still going (undecided or used)
        are dropped whatever their verdict; returns them (their workers must stop)."""
        going = [
            item
            for item in self._attempts.values()
            if item.turn_id == turn_id and item.phase not in (Phase.DONE, Phase.DROPPED)
        ]
        for item in going:
            item.phase = Phase.DROPPED
            item.kept.clear()
        return going

    def _as_turn(
        self, item: Attempt, events: list[tuple[str, ReplyEvent]]
    ) -> list[tuple[str, ReplyEvent]]:
        renamed = []
        for entry_id, event in events:
            if item.phase == Phase.DONE:
                break  # nothing of a reply follows its end
            renamed.append((entry_id, as_turn(event, item.turn_id)))
            if event.ends_turn:
                item.phase = Phase.DONE
                item.kept.clear()
        return renamed


def as_turn(event: ReplyEvent, turn_id: str) -> ReplyEvent:
    return ReplyEvent(event.event, event.session_id, turn_id, event.data, event.audio)
