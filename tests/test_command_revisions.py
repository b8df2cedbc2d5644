"""Device transcripts of one utterance, decided without Redis or a server."""

from __future__ import annotations

import asyncio

import pytest

from gateway import command_revisions
from gateway.command_revisions import FREE_REVISIONS, CommandRevisions, _similar, _words
from gateway.utterance import EndOfSpeechPolicy

POLICY = EndOfSpeechPolicy(default_ms=60, complete_ms=30, unfinished_ms=90)


class Recorder:
    """The session's side of ``CommandIO``: remembers what it was asked to do."""

    def __init__(self) -> None:
        self.turns = 0
        self.log: list[tuple[str, ...]] = []
        self.published = asyncio.Event()

    def new_turn(self) -> tuple[str, int]:
        self.turns += 1
        return f"t{self.turns}", self.turns

    async def replace_reply(self) -> None:
        self.log.append(("replace",))

    async def revise_reply(self, turn_id: str) -> None:
        self.log.append(("revised", turn_id))

    async def publish_command(
        self, turn_id: str, number: int, text: str, timings: dict[str, object]
    ) -> None:
        self.log.append(("publish", turn_id, text, str(timings.get("end_of_speech_rule"))))
        self.published.set()

    async def use_command_attempt(
        self,
        turn_id: str,
        number: int,
        attempt: tuple[str, str],
        text: str,
        timings: dict[str, object],
    ) -> None:
        self.log.append(("use", attempt[0], str(timings.get("end_of_speech_rule"))))
        self.published.set()

    def start_early_reply(self, turn_id: str, attempt_id: str, text: str) -> None:
        self.log.append(("start", attempt_id, text))

    def drop_early_reply(self, attempt_id: str) -> None:
        self.log.append(("drop", attempt_id))

    def send_error(self, code: str, message: str, turn_id: str | None = None) -> None:
        self.log.append(("error", code))


def _revisions(window_ms: int = 1500) -> tuple[CommandRevisions, Recorder]:
    io = Recorder()
    return CommandRevisions(io, POLICY, window_ms, early_replies=True), io


@pytest.mark.parametrize(
    ("before", "after", "same"),
    [
        ("what", "what is", True),
        ("what is the latest in tech", "What is the latest in sports?", True),
        ("read me the sports headlines today", "read me the sports headlines", True),
        ("top headlines", "top stories", False),
        ("top headlines", "any science stories", False),
        ("今天的", "今天的新闻", True),
    ],
)
def test_which_texts_revise_which(before: str, after: str, same: bool) -> None:
    assert _similar(_words(before), _words(after)) is same


async def test_interims_replace_each_other_and_the_final_uses_the_attempt_for_its_words() -> None:
    revisions, io = _revisions()
    await revisions.command("read me the sports headlines", False)
    await revisions.command("read me the sports headlines from", False)
    await revisions.command("read me the sports headlines from today", False)
    await revisions.command("Read me the sports headlines from today.", True)
    assert io.log == [
        ("replace",),
        ("start", "t1.p1", "read me the sports headlines"),
        ("drop", "t1.p1"),
        ("start", "t1.p2", "read me the sports headlines from today"),
        ("use", "t1.p2", "is_final"),
    ]


async def test_a_final_with_other_words_drops_the_attempt_and_asks_anew() -> None:
    revisions, io = _revisions()
    await revisions.command("read me the sports headlines", False)
    await revisions.command("read me the tech headlines", True)
    assert io.log[-2:] == [
        ("drop", "t1.p1"),
        ("publish", "t1", "read me the tech headlines", "is_final"),
    ]


async def test_plain_partials_end_by_the_pause_after_their_last_change() -> None:
    revisions, io = _revisions()
    for text in (
        "what",
        "what is the",
        "what is the latest in tech",
        "what is the latest in sports",
    ):
        await revisions.command(text, None)
    await io.published.wait()  # the timer of the default pause ("sports": not known complete)
    await revisions.command("what is the latest in sports", None)  # the final result, again
    assert io.log == [("replace",), ("publish", "t1", "what is the latest in sports", "default")]
    assert revisions.counts_as_request("what is the latest in sports", None) is False


async def test_another_question_while_one_is_pending_answers_both() -> None:
    revisions, io = _revisions()
    await revisions.command("top headlines", None)
    await revisions.command("any science stories", None)
    assert io.log[:3] == [
        ("replace",),
        ("start", "t1.p1", "top headlines"),
        ("use", "t1.p1", "complete"),
    ]
    assert io.log[3:5] == [("replace",), ("start", "t2.p1", "any science stories")]


async def test_revisions_count_once_for_the_rate_limit() -> None:
    revisions, _io = _revisions()
    assert revisions.counts_as_request("what", None)
    await revisions.command("what", None)
    words = ["what"]
    for n in range(FREE_REVISIONS - 1):
        words.append(f"w{n}")
        assert not revisions.counts_as_request(" ".join(words), None)
        await revisions.command(" ".join(words), None)
    assert revisions.counts_as_request(" ".join([*words, "more"]), None)


async def test_with_revisions_off_every_plain_command_is_a_request() -> None:
    revisions, io = _revisions(window_ms=0)
    await revisions.command("what", None)
    await revisions.command("what is", None)
    assert [e[0] for e in io.log] == ["replace", "publish", "replace", "publish"]


async def test_a_cancelled_or_abandoned_interim_is_never_answered() -> None:
    revisions, io = _revisions()
    await revisions.command("read me the sports headlines", False)
    assert revisions.cancel("t1")
    await revisions.command("read me the tech headlines", False)
    await revisions.close()
    assert [e[0] for e in io.log] == ["replace", "start", "drop", "replace", "start", "drop"]


async def test_a_plain_command_pending_at_close_is_answered() -> None:
    revisions, io = _revisions()
    await revisions.command("what is the latest in sports", None)
    await revisions.close()
    assert io.log[-1] == ("publish", "t1", "what is the latest in sports", "default")


async def test_words_revised_after_the_end_replace_the_reply_that_began() -> None:
    revisions, io = _revisions()
    await revisions.command("read me the sports headlines", None)
    await io.published.wait()  # the short pause after a complete request
    await revisions.command("read me the sports headlines today", None)
    assert io.log[-3:] == [
        ("revised", "t1"),
        ("replace",),
        ("start", "t2.p1", "read me the sports headlines today"),
    ]


async def test_interims_without_a_final_are_answered_once(monkeypatch) -> None:
    monkeypatch.setattr(command_revisions, "INTERIM_TIMEOUT_MS", 30)
    revisions, io = _revisions()
    await revisions.command("what is the latest in sports", False)
    await io.published.wait()
    await revisions.command("what is the latest in sports", True)  # late: already answered
    assert io.log == [("replace",), ("publish", "t1", "what is the latest in sports", "no_final")]
