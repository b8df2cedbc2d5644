"""The utterance state machine, fed frames and hypotheses, without Redis or a server."""

from __future__ import annotations

import pytest

from gateway.utterance import EndOfSpeechPolicy, UtteranceTracker
from shared import protocol
from shared.messages import InputChunk
from shared.protocol import AudioInput, ProtocolError
from tests.audio_checks import speech_16k

PIECE = 3200  # 100 ms
SILENCE = b"\x00\x00" * 1600
POLICY = EndOfSpeechPolicy(default_ms=600, complete_ms=200, unfinished_ms=900)


class Recorder:
    """The session's side of ``UtteranceIO``: remembers what it was asked to do."""

    def __init__(self) -> None:
        self.turns: list[str] = []
        self.inputs: list[tuple[str, InputChunk]] = []
        self.completed: list[tuple[str, dict[str, object]]] = []
        self.early: list[tuple[str, str, str]] = []
        self.opened_with: list[InputChunk | None] = []  # each turn's first chunk, sent with it

    async def open_utterance(self, first: InputChunk | None) -> tuple[str, str]:
        self.turns.append(f"t{len(self.turns) + 1}")
        self.opened_with.append(first)
        if first is not None:
            self.inputs.append((f"in:{self.turns[-1]}", first))
        return self.turns[-1], f"in:{self.turns[-1]}"

    async def send_input(self, input_key: str, chunk: InputChunk) -> None:
        self.inputs.append((input_key, chunk))

    def input_complete(self, turn_id: str, timings: dict[str, object]) -> None:
        self.completed.append((turn_id, timings))

    def start_early_reply(self, turn_id: str, attempt_id: str, text: str) -> None:
        self.early.append(("start", attempt_id, text))

    def settle_early_reply(self, attempt_id: str) -> None:
        self.early.append(("settle", attempt_id, ""))

    def drop_early_reply(self, attempt_id: str) -> None:
        self.early.append(("drop", attempt_id, ""))

    def ends(self, turn_id: str) -> list[InputChunk]:
        return [c for key, c in self.inputs if key == f"in:{turn_id}" and c.end]


def _pieces(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + PIECE] for i in range(0, len(pcm), PIECE)]


async def _speak(
    tracker: UtteranceTracker, text: str, complete: bool | None, heard: str = ""
) -> None:
    for piece in _pieces(speech_16k(text, lead_silence_ms=0, tail_silence_ms=0)):
        await tracker.push(AudioInput(piece, False))
    if tracker.current is not None:
        tracker.hear(tracker.current.turn_id, complete, heard or text)


async def _silence_until_end(tracker: UtteranceTracker, io: Recorder, limit: int = 15) -> int:
    """Send 100 ms of silence at a time; returns how many pieces it took to end the turn."""
    for n in range(1, limit + 1):
        await tracker.push(AudioInput(SILENCE, False))
        if io.completed:
            return n
    return 0


@pytest.mark.parametrize(
    ("complete", "rule", "silence_ms"),
    [(True, "complete", 200), (None, "default", 600), (False, "unfinished", 900)],
)
async def test_the_pause_that_ends_a_turn_depends_on_the_hypothesis(
    complete, rule, silence_ms
) -> None:
    io = Recorder()
    tracker = UtteranceTracker(io, POLICY, max_bytes=10**7)
    await _speak(tracker, "read me the sports headlines", complete)
    pieces = await _silence_until_end(tracker, io)
    # the detector's own hangover (about 90 ms) and the 100 ms pieces add at most 200 ms
    assert silence_ms <= pieces * 100 <= silence_ms + 200
    assert io.completed[0][1] == {
        "end_of_speech_rule": rule,
        "end_of_speech_silence_ms": silence_ms,
    }
    assert len(io.ends("t1")) == 1 and not io.ends("t1")[0].cancelled


async def test_an_utterance_opens_with_its_first_audio() -> None:
    """The first speech (with the pre-roll before it) goes with the turn's job, as chunk 1,
    so the job and that chunk share one round trip; the next frame is chunk 2."""
    io = Recorder()
    tracker = UtteranceTracker(io, POLICY, max_bytes=10**7)
    pieces = _pieces(speech_16k("read me the sports headlines", 0, 0))
    await tracker.push(AudioInput(pieces[0], False))
    assert io.opened_with == [InputChunk(seq=1, audio=pieces[0])]
    assert io.inputs == [("in:t1", InputChunk(seq=1, audio=pieces[0]))]
    await tracker.push(AudioInput(pieces[1], False))
    assert io.inputs[1:] == [("in:t1", InputChunk(seq=2, audio=pieces[1]))]
    assert tracker.current is not None and tracker.current.audio_bytes == 2 * PIECE


async def test_a_hesitation_after_read_me_the_latest_keeps_one_request() -> None:
    from asr_worker.completeness import is_complete

    io = Recorder()
    tracker = UtteranceTracker(io, POLICY, max_bytes=10**7)
    await _speak(tracker, "read me the latest", is_complete("read me the latest", True))
    for _ in range(4):  # 450 ms without a voice (4.5 pieces)
        await tracker.push(AudioInput(SILENCE, False))
    await tracker.push(AudioInput(SILENCE[: PIECE // 2], False))
    await _speak(tracker, "sports headlines", True)
    assert not io.completed and io.turns == ["t1"]
    assert await _silence_until_end(tracker, io) <= 4


async def test_a_hypothesis_of_another_turn_is_ignored() -> None:
    io = Recorder()
    tracker = UtteranceTracker(io, POLICY, max_bytes=10**7)
    await _speak(tracker, "read me the sports headlines", None)
    tracker.hear("t0", True)  # a late partial of an earlier turn
    assert await _silence_until_end(tracker, io) >= 5


async def test_silence_starts_no_turn_and_is_final_hands_it_to_the_recogniser() -> None:
    io = Recorder()
    tracker = UtteranceTracker(io, POLICY, max_bytes=10**7)
    for _ in range(20):
        await tracker.push(AudioInput(SILENCE, False))
    assert io.turns == []
    await tracker.push(AudioInput(b"", is_final=True))  # the recogniser says no_speech
    assert io.turns == ["t1"] and len(io.ends("t1")) == 1
    assert io.completed == [("t1", {"end_of_speech_rule": "is_final"})]
    with pytest.raises(ProtocolError) as refused:  # nothing at all: refused
        await tracker.push(AudioInput(b"", is_final=True))
    assert refused.value.code == protocol.NO_SPEECH


async def test_is_final_after_a_pause_ended_the_turn_does_nothing() -> None:
    io = Recorder()
    tracker = UtteranceTracker(io, POLICY, max_bytes=10**7)
    await _speak(tracker, "next story", True)
    await _silence_until_end(tracker, io)
    await tracker.push(AudioInput(b"", is_final=True))
    assert io.turns == ["t1"] and len(io.completed) == 1 and len(io.ends("t1")) == 1


async def test_without_end_of_speech_detection_only_is_final_ends() -> None:
    io = Recorder()
    tracker = UtteranceTracker(io, None, max_bytes=10**7)
    await _speak(tracker, "next story", True)
    assert await _silence_until_end(tracker, io) == 0
    await tracker.push(AudioInput(b"", is_final=True))
    assert io.completed == [("t1", {"end_of_speech_rule": "is_final"})]


async def test_an_overlong_utterance_is_cut_once_and_never_completes() -> None:
    io = Recorder()
    tracker = UtteranceTracker(io, POLICY, max_bytes=PIECE * 5)
    speech = _pieces(speech_16k("read me the sports headlines and then the business news"))
    with pytest.raises(ProtocolError) as refused:
        for piece in speech:
            await tracker.push(AudioInput(piece, False))
    assert refused.value.code == protocol.UTTERANCE_TOO_LONG
    await tracker.push(AudioInput(SILENCE, is_final=True))
    assert len(io.ends("t1")) == 1 and io.completed == []


async def test_cancel_ends_the_utterance_in_progress_as_cancelled() -> None:
    io = Recorder()
    tracker = UtteranceTracker(io, POLICY, max_bytes=10**7)
    await _speak(tracker, "read me the", False)
    await tracker.cancel("t1")
    assert tracker.current is None and io.ends("t1")[0].cancelled and io.completed == []


async def test_a_pause_after_a_complete_request_starts_its_reply_before_the_end() -> None:
    io = Recorder()
    tracker = UtteranceTracker(io, POLICY, max_bytes=10**7, early_replies=True)
    await _speak(tracker, "read me the sports headlines", True)
    await tracker.push(AudioInput(SILENCE, False))
    await tracker.push(AudioInput(SILENCE, False))
    assert io.early == [("start", "t1.p1", "read me the sports headlines")] and not io.completed
    await _silence_until_end(tracker, io)
    assert io.ends("t1")[0].preempted == "t1.p1"  # the end marker names the attempt
    tracker.hear_final("t1")
    assert io.early[-1] == ("settle", "t1.p1", "")


async def test_speaking_on_drops_the_early_reply() -> None:
    io = Recorder()
    tracker = UtteranceTracker(io, POLICY, max_bytes=10**7, early_replies=True)
    await _speak(tracker, "read me the sports headlines", True)
    await tracker.push(AudioInput(SILENCE, False))
    await tracker.push(AudioInput(SILENCE, False))
    await _speak(tracker, "today", True, heard="read me the sports headlines today")
    assert [kind for kind, *_ in io.early] == ["start", "drop"] and not io.completed
    await _silence_until_end(tracker, io)
    assert io.early[-1] == ("start", "t1.p2", "read me the sports headlines today")
    assert io.ends("t1")[0].preempted == "t1.p2"
    tracker.hear_final("t1")
    assert io.early[-1] == ("settle", "t1.p2", "")


async def test_no_early_reply_for_an_unknown_hypothesis_or_when_off() -> None:
    for complete, on in ((None, True), (True, False)):
        io = Recorder()
        tracker = UtteranceTracker(io, POLICY, max_bytes=10**7, early_replies=on)
        await _speak(tracker, "read me the sports headlines", complete)
        await _silence_until_end(tracker, io)
        assert io.early == [] and io.ends("t1")[0].preempted == ""


async def test_cancel_drops_an_early_reply_waiting_for_the_final() -> None:
    io = Recorder()
    tracker = UtteranceTracker(io, POLICY, max_bytes=10**7, early_replies=True)
    await _speak(tracker, "next story", True)
    await _silence_until_end(tracker, io)
    await tracker.cancel("t1")
    tracker.hear_final("t1")
    assert [kind for kind, *_ in io.early] == ["start", "drop"]


async def test_a_client_gone_before_the_final_withdraws_the_early_reply() -> None:
    io = Recorder()
    tracker = UtteranceTracker(io, POLICY, max_bytes=10**7, early_replies=True)
    await _speak(tracker, "next story", True)
    await _silence_until_end(tracker, io)
    await tracker.abandon()
    tracker.hear_final("t1")
    assert [kind for kind, *_ in io.early] == ["start", "drop"]
