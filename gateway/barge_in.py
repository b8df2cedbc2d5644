"""Barge-in that tells a person from noise: pause the reply, then decide.

Voice activity alone cannot tell a person from a cough, a door or the reply's own voice
coming back into the microphone. So speech over a reply (``BARGE_IN_MODE=confirm``):

* An utterance that starts while a reply plays is a *candidate*: the recogniser hears it
  as usual, but it is not yet a request.
* ``BARGE_IN_PAUSE_MS`` of continuous speech in it *pauses* the reply (the client
  pauses playback, the gateway holds the reply's further events), unless that stretch of
  audio is the reply's own echo (``gateway.echo``): then nothing happens at all.
* Words cut the reply (``interrupted``, as an immediate barge-in would): at least
  ``BARGE_IN_MIN_WORDS`` words that are neither acknowledgements ("uh-huh", "okay") nor
  the reply's own words, or one word that asks it to stop ("stop", "wait"). A partial
  hypothesis needs one word more than the final transcript: partials of short sounds
  come and go.
* No such words within ``FALSE_INTERRUPTION_MS`` of the pause, or an utterance that ends
  without them: the reply resumes where it paused, nothing lost. A candidate that turns
  out not to be a person never becomes a request (no reply to "uh-huh" or to noise).

Echo by words: a hypothesis most of whose words (at least 60 %, two or more) are words of
the sentence being played or its neighbours is the reply heard back, whatever the
acoustic check said. Echo by sound: a candidate whose every judged stretch of audio was
echo has no words that count.

Everything here is decisions on plain values, testable without Redis or a socket; the
session (``gateway.session``) does the I/O.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.echo import EchoJudge, ReplyAudio, is_echo
from gateway.endpointing import SpeechOnset
from shared import metrics
from shared.messages import GATEWAY_DECIDES, InputChunk, ReplyEvent
from shared.streams import now_ms

log = logging.getLogger(__name__)

STOP_WORDS = frozenset(
    {"stop", "wait", "pause", "cancel", "quiet", "enough", "hold", "shut", "quit", "exit"}
)
# acknowledgements and hesitations: said while listening, they ask nothing
BACKCHANNEL = frozenset(
    {
        "uh", "huh", "uhhuh", "uh-huh", "um", "umm", "hm", "hmm", "mm", "mhm", "mmhmm",
        "mm-hmm", "ah", "aha", "oh", "ooh", "eh", "er", "erm", "okay", "ok", "yeah", "yes",
        "yep", "yup", "right", "sure", "alright", "wow", "cool", "nice", "i", "see",
        "got", "it", "the", "a",
    }
)  # fmt: skip
ECHO_OVERLAP = 0.6  # share of a hypothesis' words found in the reply: its echo
MIC_KEPT_MS = 2000  # microphone audio a candidate keeps for the echo check
ONSET_WINDOW_MS = 500  # the audio judged for echo when speech starts over a reply
_WORD = re.compile(r"[a-z0-9']+(?:-[a-z0-9']+)*")


def words_of(text: str) -> list[str]:
    """Lower-case words, punctuation dropped ("Uh-huh." -> ["uh-huh"])."""
    return _WORD.findall(text.lower())


def is_reply_echo(hypothesis: list[str], reply_words: set[str]) -> bool:
    """Most of the hypothesis' words (two or more) are the reply's own words."""
    if not hypothesis or not reply_words:
        return False
    shared = sum(word in reply_words for word in hypothesis)
    return shared >= 2 and shared >= ECHO_OVERLAP * len(hypothesis)


def person_words(text: str, reply_words: set[str]) -> list[str]:
    """The words of ``text`` that count as a person talking to the agent."""
    hypothesis = words_of(text)
    if is_reply_echo(hypothesis, reply_words):
        return []
    return [word for word in hypothesis if word not in BACKCHANNEL]


def confirms_person(text: str, reply_words: set[str], min_words: int, final: bool) -> bool:
    """Whether a hypothesis (a partial, or the ``final`` transcript) shows a person."""
    counted = person_words(text, reply_words)
    if any(word in STOP_WORDS for word in counted):
        return True
    return len(counted) >= (min_words if final else min_words + 1)


def sentences_of(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?。！？])\s+", text.strip())
    return [part for part in parts if part]


@dataclass
class Candidate:
    """An utterance that started while ``reply_turn`` was playing."""

    turn_id: str
    reply_turn: str
    input_key: str = ""
    person: bool = False  # words confirmed a person: it is a request
    rejected: bool = False  # judged not a person: it never becomes a request
    echo_checks: int = 0  # stretches of its audio judged echo ...
    voice_checks: int = 0  # ... and not echo
    end_held: bool = False  # its end went out without a reply: the final decides
    answered: bool = False  # the final came and was dealt with
    speech_end_ms: int = 0
    early_attempt: str | None = None  # an early reply it was denied (its end names it)
    hypothesis: str = ""  # the recogniser's latest words for it
    mic: deque[bytes] = field(default_factory=lambda: deque(maxlen=MIC_KEPT_MS // 100))

    @property
    def decided(self) -> bool:
        return self.person or self.rejected

    @property
    def only_echo(self) -> bool:
        """Every stretch of its audio that was judged is the reply's echo."""
        return self.echo_checks > 0 and self.voice_checks == 0


@dataclass
class ReplyText:
    """What a reply says, by sentence, to recognise its words coming back."""

    turn_id: str
    text: str = ""
    playing_sentence: int = 1  # 1-based, the sentence the client is probably playing

    def add(self, delta: str, final: bool) -> None:
        self.text = delta if final else self.text + delta

    def nearby_words(self) -> set[str]:
        """Words of the sentence being played and its neighbours."""
        sentences = sentences_of(self.text)
        if not sentences:
            return set()
        index = min(max(self.playing_sentence, 1), len(sentences)) - 1
        near = sentences[max(0, index - 1) : index + 2]
        return {word for sentence in near for word in words_of(sentence)}


class BargeInIO(Protocol):
    """What the decisions need from the session."""

    def playing_turn(self) -> str | None:
        """The reply being produced or, by its length, still played."""

    def played_ms(self, turn_id: str) -> float:
        """How much of the reply the client has played (by the clock)."""

    def pause(self, turn_id: str) -> bool:
        """``reply_paused`` to the client, the reply's further events held."""

    def resume(self, turn_id: str) -> bool:
        """``reply_resumed``, the held events released."""

    async def cut(self, turn_id: str) -> None:
        """Stop the reply as a cancel would (``interrupted``, reason ``barge_in``)."""

    async def answer(self, turn_id: str, text: str, speech_end_ms: int) -> None:
        """Start the reply to a candidate that turned out to be a request."""

    async def unanswered(self, turn_id: str) -> None:
        """End a candidate's turn that was not a request (it gets no reply)."""

    async def restart_utterance(self, turn_id: str, pcm: bytes) -> tuple[str, str] | None:
        """Drop the utterance ``turn_id`` (its recogniser stops) and start a new one with
        ``pcm``; returns its (turn id, input key)."""


class BargeIn:
    """One session's barge-in in confirm mode: what to pause, cut, resume or drop."""

    def __init__(
        self, io: BargeInIO, min_speech_ms: int, min_words: int, false_interruption_ms: int
    ) -> None:
        self._io = io
        self.min_words = min_words
        self.false_interruption_ms = false_interruption_ms
        self._onset = SpeechOnset(min_speech_ms)
        self.candidates: dict[str, Candidate] = {}
        self.paused: str | None = None  # the reply turn held for a decision
        self.reply: ReplyText | None = None
        self.sound: ReplyAudio | None = None
        self._echo = EchoJudge()
        self._recent: deque[bytes] = deque()  # the last ONSET_WINDOW_MS of microphone audio
        self._recent_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- decisions on plain values ----------------------------------------------------

    def pending(self, turn_id: str | None) -> Candidate | None:
        candidate = self.candidates.get(turn_id or "")
        return candidate if candidate is not None and not candidate.decided else None

    def _open(self, turn_id: str, input_key: str, reply_turn: str) -> Candidate:
        if len(self.candidates) > 16:  # decided long ago: forget
            for old in [t for t, c in self.candidates.items() if c.decided][:8]:
                del self.candidates[old]
        candidate = Candidate(turn_id, reply_turn, input_key)
        self.candidates[turn_id] = candidate
        return candidate

    def reply_words(self, reply_turn: str) -> set[str]:
        if self.reply is None or self.reply.turn_id != reply_turn:
            return set()
        if self.sound is not None and self.sound.turn_id == reply_turn:
            played = self._io.played_ms(reply_turn)
            self.reply.playing_sentence = self.sound.sentence_at(played)
        return self.reply.nearby_words()

    def judge(self, candidate: Candidate, text: str, final: bool) -> bool:
        """Whether this hypothesis of ``candidate`` shows a person."""
        if candidate.only_echo:
            return False
        words = self.reply_words(candidate.reply_turn)
        return confirms_person(text, words, self.min_words, final)

    def early_reply_allowed(self, turn_id: str, attempt_id: str) -> bool:
        """No reply starts early for a candidate still being judged."""
        candidate = self.pending(turn_id)
        if candidate is None:
            return True
        candidate.early_attempt = attempt_id
        return False

    # --- what the session tells it ------------------------------------------------------

    def observe(self, event: ReplyEvent) -> None:
        """Every reply event relayed to the session (before it is queued for the client)."""
        name, data = event.event, event.data
        if name == "tts_chunk":
            if self.sound is None or self.sound.turn_id != event.turn_id:
                self.sound = ReplyAudio(event.turn_id)
            self.sound.add(
                event.audio,
                str(data.get("format", "mp3")),
                int(data.get("sample_rate", 0) or 0),
                int(data.get("sentence", 0) or 0),
            )
        elif name == "agent_response":
            if self.reply is None or self.reply.turn_id != event.turn_id:
                self.reply = ReplyText(event.turn_id)
            self.reply.add(str(data.get("text", "")), bool(data.get("is_final")))
        elif name == "partial_transcription":
            self._hear(event.turn_id, str(data.get("text", "")), bool(data.get("is_final")))
        elif name == "error":
            self._not_heard(event.turn_id)

    async def audio(self, pcm: bytes, turn_id: str | None, input_key: str) -> None:
        """A frame of the microphone, after the utterance state machine had it."""
        judging = self.listen(pcm, turn_id, input_key)
        if judging is not None:
            await judging

    def listen(
        self, pcm: bytes, turn_id: str | None, input_key: str
    ) -> Coroutine[Any, Any, None] | None:
        """``audio`` without a coroutine for every frame: what needs no waiting is done
        here; returns the judgement to await when speech runs over a playing reply."""
        self._remember(pcm)
        self._echo.heard(len(pcm))
        playing = self._io.playing_turn()
        candidate = self.candidates.get(turn_id or "")
        if candidate is None and turn_id is not None and playing is not None:
            candidate = self._open(turn_id, input_key, playing)
        if candidate is not None and not candidate.decided:
            candidate.mic.append(pcm)
        if playing is None:  # no reply is playing: nothing to keep of the last one
            self.sound = self.reply = None
        if playing is None or self.paused is not None:
            self._onset.reset()
            return None
        if not self._onset.push(pcm):
            return None
        return self._judge(candidate, playing)

    async def _judge(self, candidate: Candidate | None, playing: str) -> None:
        """Continuous speech over ``playing``: its echo, or a voice that pauses it."""
        # every frame of a run of speech is judged: echo now, a voice joining it next
        window = b"".join(self._recent)
        reply = self._reply_audio(playing)
        echo = await asyncio.to_thread(self._echo.is_echo, window, reply) if reply else False
        if echo is None:
            return  # too quiet to be anyone
        if echo:
            metrics.BARGE_INS.labels("echo_rejected").inc()
            if candidate is not None:
                candidate.echo_checks += 1
            return
        if candidate is not None and candidate.only_echo:
            # a voice over an utterance of echo: the recogniser starts afresh with it
            candidate = await self._restart(candidate, window, playing)
        if candidate is not None:
            candidate.voice_checks += 1
        self._onset.reset()
        if self.paused is None and self._io.playing_turn() == playing and self._io.pause(playing):
            self.paused = playing
            metrics.BARGE_INS.labels("paused").inc()
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.false_interruption_ms / 1000, self._no_words)

    async def end_marker(self, input_key: str, chunk: InputChunk) -> InputChunk:
        """The end of an utterance on its way to the recogniser: a candidate not yet
        judged a person gets no reply from it (the final transcript decides here)."""
        candidate = next((c for c in self.candidates.values() if c.input_key == input_key), None)
        if candidate is None or chunk.cancelled:
            return chunk
        if candidate.decided:
            if candidate.early_attempt is not None and chunk.preempted == candidate.early_attempt:
                return dataclasses.replace(chunk, preempted="")  # that reply never started
            return chunk
        if not candidate.echo_checks and not candidate.voice_checks and candidate.mic:
            reply = self._reply_audio(candidate.reply_turn)
            heard = b"".join(candidate.mic)
            if reply is not None and await asyncio.to_thread(is_echo, heard, reply):
                candidate.echo_checks += 1
                metrics.BARGE_INS.labels("echo_rejected").inc()
        candidate.end_held = True
        candidate.speech_end_ms = now_ms()
        return dataclasses.replace(chunk, preempted=GATEWAY_DECIDES)

    async def _restart(self, echo: Candidate, window: bytes, playing: str) -> Candidate | None:
        """An utterance that was all echo until a voice joined it: its recognition would
        mix the two, so it ends (no request) and the voice starts a new one."""
        echo.rejected = True
        if echo.hypothesis:  # the client saw its partials: tell it the turn is over
            self._spawn(self._io.unanswered(echo.turn_id))
        started = await self._io.restart_utterance(echo.turn_id, window)
        if started is None:
            return None
        candidate = self._open(started[0], started[1], playing)
        candidate.mic.append(window)
        return candidate

    def _reply_audio(self, turn_id: str) -> ReplyAudio | None:
        sound = self.sound
        return sound if sound is not None and sound.turn_id == turn_id else None

    # --- outcomes -----------------------------------------------------------------------

    def _hear(self, turn_id: str, text: str, final: bool) -> None:
        candidate = self.candidates.get(turn_id)
        if candidate is None or candidate.answered or candidate.rejected:
            return
        candidate.hypothesis = text
        if not candidate.person and self.judge(candidate, text, final):
            candidate.person = True
            self._cut(candidate.reply_turn)
        if not final:
            return
        candidate.answered = True
        if candidate.person:
            if candidate.end_held:
                self._spawn(self._io.answer(turn_id, text, candidate.speech_end_ms))
            return
        candidate.rejected = True
        self._resume()
        if text and candidate.end_held:  # no text: the recogniser's no_speech ends the turn
            self._spawn(self._io.unanswered(turn_id))

    def _not_heard(self, turn_id: str) -> None:
        candidate = self.pending(turn_id)
        if candidate is not None:
            candidate.rejected = True
            self._resume()

    def _cut(self, reply_turn: str) -> None:
        self._cancel_timer()
        paused, self.paused = self.paused, None
        if paused == reply_turn or self._io.playing_turn() == reply_turn:
            metrics.BARGE_INS.labels("cut").inc()
            self._spawn(self._io.cut(reply_turn))

    def _no_words(self) -> None:
        """``FALSE_INTERRUPTION_MS`` after the pause and no person heard: play on. A
        person's words may still cut it later."""
        self._timer = None
        self._resume()

    def _resume(self) -> None:
        self._cancel_timer()
        paused, self.paused = self.paused, None
        if paused is not None and self._io.resume(paused):
            metrics.BARGE_INS.labels("resumed").inc()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _remember(self, pcm: bytes) -> None:
        self._recent.append(pcm)
        self._recent_bytes += len(pcm)
        limit = ONSET_WINDOW_MS * 32
        while self._recent_bytes - len(self._recent[0]) >= limit:
            self._recent_bytes -= len(self._recent.popleft())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work, name="barge-in")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("a barge-in decision could not be carried out (%s)", type(exc).__name__)

    def close(self) -> None:
        self._cancel_timer()
        for task in self._tasks:
            task.cancel()
