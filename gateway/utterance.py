"""Where one session's spoken requests begin and end: the utterance state machine.

It decides; the session does the I/O. Frames of audio come in (``push``), the
recogniser's current hypothesis comes in from the partials flowing back to the client
(``hear``), and out go calls on a small ``UtteranceIO``: open a turn (publish its ASR
job), append audio or the end marker to its input stream, say the request is complete.
So every rule about starting and ending an utterance is read, changed and tested here,
without Redis.

The rules:

* With end-of-speech detection on, an utterance starts with speech (plus up to 300 ms of
  audio before it, the pre-roll): a microphone streaming silence starts no turn.
* It ends on ``is_final``, or on a pause whose length depends on what was said so far
  (``EndOfSpeechPolicy``): short after a complete request, long after a clearly
  unfinished one ("read me the"), ``END_OF_SPEECH_MS`` otherwise.
* ``is_final`` after a pause already ended the utterance does nothing; ``is_final`` with
  only non-speech audio hands that audio to the recogniser, so the turn ends with its
  ``no_speech`` like any other; ``is_final`` with nothing at all is refused.
* An utterance longer than ``MAX_UTTERANCE_SECONDS`` is cut there and refused.
* With preemptive replies on, a pause of ``EARLY_REPLY_AFTER_MS`` after a complete
  hypothesis starts the reply to it (an attempt) before the end of speech is confirmed.
  Speech again, or another hypothesis, drops it. At the end of speech the recogniser is
  told which attempt is waiting; once its final transcript is out, the attempt's verdict
  is settled (``shared.early_reply`` owns that protocol; here is only when to start,
  drop or settle an attempt).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from gateway.endpointing import Endpointer
from shared import early_reply, protocol
from shared.messages import InputChunk
from shared.protocol import AudioInput, ProtocolError

PRE_ROLL_FRAMES = 3  # pieces of audio kept from before speech (300 ms at 100 ms pieces)
EARLY_REPLY_AFTER_MS = 30  # of silence after a complete hypothesis (after the VAD's hangover)


@dataclass
class Utterance:
    """One spoken request on its way to the recogniser."""

    turn_id: str
    input_key: str
    seq: int = 0
    audio_bytes: int = 0
    refused: bool = False
    complete: bool | None = None  # the recogniser's latest hypothesis: whole request?
    text: str = ""  # ... and its words
    early_reply: str | None = None  # the attempt started for ``early_text``, if any
    early_text: str = ""
    early_replies: int = 0


class UtteranceIO(Protocol):
    """What the state machine asks the session to do."""

    async def open_utterance(self, first: InputChunk | None) -> tuple[str, str]:
        """Start a turn: publish its ASR job and append ``first`` (its first audio, seq 1)
        to its input stream, both in one round trip; returns (turn id, input stream key)."""

    def send_input(self, input_key: str, chunk: InputChunk) -> Awaitable[object]:
        """Append audio or the end marker to the utterance's input stream (awaited)."""

    def input_complete(self, turn_id: str, timings: dict[str, object]) -> None:
        """The request is complete (end of speech); ``timings`` say how it was decided."""

    def start_early_reply(self, turn_id: str, attempt_id: str, text: str) -> None:
        """Start a reply to ``text`` now, its events kept aside (``gateway.early_reply``)."""

    def settle_early_reply(self, attempt_id: str) -> None:
        """The turn's final transcript is out: act on the attempt's verdict."""

    def drop_early_reply(self, attempt_id: str) -> None:
        """Give the attempt up; nothing of it may reach the client or the history."""


@dataclass(frozen=True, slots=True)
class EndOfSpeechPolicy:
    """How much silence ends a turn, given what the recogniser has heard so far."""

    default_ms: int
    complete_ms: int
    unfinished_ms: int

    def silence_needed(self, complete: bool | None) -> tuple[int, str]:
        """(silence in ms, rule name) for a hypothesis that is complete, unfinished or unknown."""
        if complete is True:
            return self.complete_ms, "complete"
        if complete is False:
            return self.unfinished_ms, "unfinished"
        return self.default_ms, "default"


class UtteranceTracker:
    def __init__(
        self,
        io: UtteranceIO,
        policy: EndOfSpeechPolicy | None,
        max_bytes: int,
        early_replies: bool = False,
    ) -> None:
        """``policy=None``: no end-of-speech detection, only ``is_final`` ends an utterance."""
        self._io = io
        self._policy = policy
        self._max_bytes = max_bytes
        self._early_replies = early_replies and policy is not None
        self._awaiting_final: dict[str, str] = {}  # turn -> its attempt
        self._endpointer = Endpointer(policy.default_ms) if policy else None
        self._current: Utterance | None = None
        self._pause_ended = False  # the last utterance was ended by a pause, not is_final
        self._pre_roll: deque[bytes] = deque(maxlen=PRE_ROLL_FRAMES)

    @property
    def current(self) -> Utterance | None:
        return self._current

    def hear(self, turn_id: str, complete: bool | None, text: str = "") -> None:
        """The recogniser's latest hypothesis for ``turn_id`` (from a partial transcript)."""
        if self._current is not None and self._current.turn_id == turn_id:
            self._current.complete = complete
            self._current.text = text

    def hear_final(self, turn_id: str) -> None:
        """The turn's final transcript (or its end without one) went out: the attempt
        waiting for it has its verdict."""
        attempt = self._awaiting_final.pop(turn_id, None)
        if attempt is not None:
            self._io.settle_early_reply(attempt)

    async def push(self, audio: AudioInput) -> None:
        """One frame from the client. Raises ``ProtocolError`` for what must be refused."""
        utterance = self._current
        pcm = audio.pcm
        if utterance is not None and pcm and not audio.is_final and not utterance.refused:
            # nearly every frame: more audio of the utterance in progress, in as few
            # calls as the rules allow (ten frames a second for every session)
            if utterance.audio_bytes + len(pcm) > self._max_bytes:
                await self._append(utterance, pcm)  # refuses it: longer than the limit
            utterance.audio_bytes += len(pcm)
            utterance.seq += 1
            await self._io.send_input(utterance.input_key, InputChunk(utterance.seq, pcm))
            timings = self._ended_by_pause(utterance, pcm)
            if timings is not None:
                await self._finish(utterance, timings)
                self._pause_ended = True
            return
        if pcm and utterance is None and self._endpointer is not None:
            self._pre_roll.append(audio.pcm)
            if not self._endpointer.contains_speech(audio.pcm):
                if not audio.is_final:
                    return
                audio = AudioInput(b"", True)  # the frame waits in the pre-roll
            else:
                audio = AudioInput(b"".join(self._pre_roll), audio.is_final)
                self._pre_roll.clear()
        if audio.pcm:
            if utterance is None:
                utterance = await self._start(audio.pcm)
            elif not utterance.refused:
                await self._append(utterance, audio.pcm)
            if not utterance.refused and not audio.is_final:
                timings = self._ended_by_pause(utterance, audio.pcm)
                if timings is not None:
                    await self._finish(utterance, timings)
                    self._pause_ended = True
                    return
        if audio.is_final:
            await self._on_is_final(utterance)

    def _ended_by_pause(self, utterance: Utterance, pcm: bytes) -> dict[str, object] | None:
        """Whether the pause after this frame ends the utterance: how it was decided (the
        caller finishes it), else None. No coroutine: asked of every frame."""
        if self._endpointer is None or self._policy is None:
            return None
        self._endpointer.push(pcm)
        needed, rule = self._policy.silence_needed(utterance.complete)
        if not self._endpointer.silent_for(needed):
            self._consider_early_reply(utterance)
            return None
        return {"end_of_speech_rule": rule, "end_of_speech_silence_ms": needed}

    def _consider_early_reply(self, utterance: Utterance) -> None:
        """In a pause after a complete hypothesis, start its reply; drop it on speech."""
        if not self._early_replies or self._endpointer is None:
            return
        pausing = self._endpointer.silent_for(EARLY_REPLY_AFTER_MS)
        if utterance.early_reply is not None:
            if not pausing or utterance.text != utterance.early_text:
                self._drop_early_reply(utterance)
            return
        if (
            pausing
            and utterance.complete is True
            and utterance.text
            and utterance.early_replies < early_reply.MAX_ATTEMPTS
        ):
            utterance.early_replies += 1
            utterance.early_reply = early_reply.attempt_id(
                utterance.turn_id, utterance.early_replies
            )
            utterance.early_text = utterance.text
            self._io.start_early_reply(utterance.turn_id, utterance.early_reply, utterance.text)

    def _drop_early_reply(self, utterance: Utterance) -> None:
        if utterance.early_reply is not None:
            self._io.drop_early_reply(utterance.early_reply)
            utterance.early_reply = None

    async def _on_is_final(self, utterance: Utterance | None) -> None:
        if utterance is None and self._pre_roll and not self._pause_ended:
            # only non-speech arrived: let the recogniser have it, so the turn ends
            # with its own ``no_speech`` like any utterance that held nothing
            utterance = await self._start(b"".join(self._pre_roll))
            self._pre_roll.clear()
        if utterance is None:
            if self._pause_ended:  # the pause already ended it: nothing to do
                self._pre_roll.clear()
                return
            raise ProtocolError(
                protocol.NO_SPEECH, "is_final received but this utterance held no speech"
            )
        await self._finish(utterance, {"end_of_speech_rule": "is_final"})

    async def _finish(self, utterance: Utterance, timings: dict[str, object]) -> None:
        """End of speech: the ASR worker finishes this turn."""
        self._current = None
        if utterance.early_reply is not None and utterance.text != utterance.early_text:
            self._drop_early_reply(utterance)
        if not utterance.refused:
            preempted = utterance.early_reply or ""
            if preempted:
                self._awaiting_final[utterance.turn_id] = preempted
            await self._send_end(utterance, preempted=preempted)
            self._io.input_complete(utterance.turn_id, timings)
        else:
            self._drop_early_reply(utterance)

    async def _start(self, pcm: bytes) -> Utterance:
        """A new turn with its first audio. The job and that chunk go out together: every
        utterance's first partial waits on both, and a round trip each cost its p90 ~2 ms
        with a hundred sessions."""
        fits = len(pcm) <= self._max_bytes
        turn_id, input_key = await self._io.open_utterance(
            InputChunk(seq=1, audio=pcm) if fits else None
        )
        utterance = Utterance(turn_id, input_key)
        self._current = utterance
        self._pause_ended = False
        if self._endpointer is not None:
            self._endpointer.reset()
        if fits:
            utterance.seq, utterance.audio_bytes = 1, len(pcm)
        else:
            await self._append(utterance, pcm)  # refuses it: longer than the limit
        return utterance

    async def _append(self, utterance: Utterance, pcm: bytes) -> None:
        if utterance.audio_bytes + len(pcm) > self._max_bytes:
            await self._send_end(utterance)
            utterance.refused = True
            raise ProtocolError(
                protocol.UTTERANCE_TOO_LONG,
                f"utterance longer than {self._max_bytes / protocol.INPUT_SAMPLE_RATE / 2:.0f} s; "
                "it was cut there, send is_final to start a new one",
            )
        utterance.audio_bytes += len(pcm)
        utterance.seq += 1
        await self._io.send_input(utterance.input_key, InputChunk(seq=utterance.seq, audio=pcm))

    async def _send_end(
        self, utterance: Utterance, cancelled: bool = False, preempted: str = ""
    ) -> None:
        if utterance.refused:
            return  # its end marker went out when it was refused
        utterance.seq += 1
        chunk = InputChunk(seq=utterance.seq, end=True, cancelled=cancelled, preempted=preempted)
        await self._io.send_input(utterance.input_key, chunk)

    async def cancel(self, turn_id: str) -> None:
        """The client cancelled ``turn_id``: if it is the utterance in progress, drop it."""
        if attempt := self._awaiting_final.pop(turn_id, None):
            self._io.drop_early_reply(attempt)
        utterance = self._current
        if utterance is not None and utterance.turn_id == turn_id:
            self._current = None
            self._drop_early_reply(utterance)
            await self._send_end(utterance, cancelled=True)

    async def abandon(self) -> None:
        """The client left mid-utterance: end its input so the ASR worker lets go now."""
        for attempt in self._awaiting_final.values():  # withdrawn: the normal job answers
            self._io.drop_early_reply(attempt)
        self._awaiting_final.clear()
        utterance, self._current = self._current, None
        if utterance is not None:
            self._drop_early_reply(utterance)
            await self._send_end(utterance, cancelled=True)
