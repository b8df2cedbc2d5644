"""Barge-in decisions (``gateway.barge_in``) on real audio, without Redis or a server.

The session's side is a recorder of what it was asked to do; the reply is spoken by the
project's espeak engine and encoded by its MP3 encoder, the person by espeak too.
"""

from __future__ import annotations

import asyncio
import functools

import numpy as np
import pytest

from gateway.barge_in import BargeIn, confirms_person, is_reply_echo, words_of
from shared.messages import GATEWAY_DECIDES, InputChunk, ReplyEvent
from tests.audio_checks import decode_mp3, speech_16k
from tests.barge_in_client import FRAME, mix, samples
from tts_worker.espeak_engine import espeak_sample_rate, synthesize_pcm
from tts_worker.mp3 import Mp3Encoder, split_frames

REPLY = (
    "Here are the latest technology headlines. First, New battery doubles phone life. "
    "Second, Chip maker unveils faster processor. Third, Robots help sort recycling."
)
REPLY_WORDS = set(words_of(REPLY))


class Session:
    """The session's side of ``BargeInIO``: a reply that plays, and what was asked."""

    def __init__(self) -> None:
        self.playing: str | None = "t1"
        self.calls: list[tuple[str, ...]] = []
        self.changed = asyncio.Event()

    def playing_turn(self) -> str | None:
        return self.playing

    def played_ms(self, turn_id: str) -> float:
        return 0.0

    def _note(self, *call: str) -> bool:
        self.calls.append(call)
        self.changed.set()
        return True

    def pause(self, turn_id: str) -> bool:
        return self._note("pause", turn_id)

    def resume(self, turn_id: str) -> bool:
        return self._note("resume", turn_id)

    async def cut(self, turn_id: str) -> None:
        self._note("cut", turn_id)
        self.playing = None

    async def answer(self, turn_id: str, text: str, speech_end_ms: int) -> None:
        self._note("answer", turn_id, text)

    async def unanswered(self, turn_id: str) -> None:
        self._note("unanswered", turn_id)

    async def restart_utterance(self, turn_id: str, pcm: bytes) -> tuple[str, str]:
        self._note("restart", turn_id)
        return "t3", "in:t3"

    async def until(self, name: str) -> None:
        while name not in [c[0] for c in self.calls]:
            self.changed.clear()
            await self.changed.wait()


@functools.cache
def reply_chunks() -> list[bytes]:
    encoder = Mp3Encoder(espeak_sample_rate())
    mp3 = encoder.encode(synthesize_pcm(REPLY)) + encoder.flush()
    return split_frames(mp3, 3000)


def fed_reply(session: Session, barge: BargeIn) -> None:
    barge.observe(ReplyEvent("agent_response", "s", "t1", {"text": REPLY, "is_final": True}))
    for index, chunk in enumerate(reply_chunks()):
        data = {"chunk_index": index, "format": "mp3", "sample_rate": 24000, "sentence": 1}
        barge.observe(ReplyEvent("tts_chunk", "s", "t1", data, chunk))


async def feed(barge: BargeIn, pcm: bytes, turn_id: str = "t2") -> None:
    for offset in range(0, len(pcm), FRAME * 2):
        await barge.audio(pcm[offset : offset + FRAME * 2], turn_id, f"in:{turn_id}")


def hear(barge: BargeIn, text: str, final: bool, turn_id: str = "t2") -> None:
    data = {"text": text, "is_final": final}
    barge.observe(ReplyEvent("partial_transcription", "s", turn_id, data))


@pytest.fixture
def session() -> Session:
    return Session()


@pytest.fixture
def barge(session: Session) -> BargeIn:
    barge = BargeIn(session, 240, 2, 60_000)
    fed_reply(session, barge)
    return barge


@pytest.mark.parametrize(
    ("text", "final", "person"),
    [
        ("stop it", False, True),  # a word that asks the reply to stop: alone enough
        ("aha", True, False),  # an acknowledgement
        ("uh-huh okay yeah", True, False),
        ("up", True, False),  # what noise is heard as
        ("on top", False, False),  # a partial needs one word more than a final
        ("on top", True, True),
        ("what about the weather", True, True),
        ("chip maker unveils faster processor", True, False),  # the reply's own words
        ("tell me more about the second story", True, True),  # one word of the reply's
    ],
)
def test_which_words_confirm_a_person(text: str, final: bool, person: bool) -> None:
    assert confirms_person(text, REPLY_WORDS, 2, final) is person


def test_the_reply_heard_back_is_told_by_its_share_of_the_reply_s_words() -> None:
    assert is_reply_echo(words_of("here are the latest technology to ah"), REPLY_WORDS)
    assert not is_reply_echo(words_of("the sports news"), REPLY_WORDS)


async def test_speech_pauses_the_reply_and_a_request_cuts_it_and_is_answered(
    session: Session, barge: BargeIn
) -> None:
    await feed(barge, speech_16k("tell me the sports news instead", 0, 0))
    assert session.calls == [("pause", "t1")]
    chunk = await barge.end_marker("in:t2", InputChunk(9, end=True))
    assert chunk.preempted == GATEWAY_DECIDES  # not yet known to be a request
    hear(barge, "tell me the sports news instead", True)
    await session.until("answer")
    assert session.calls[1:] == [
        ("cut", "t1"),
        ("answer", "t2", "tell me the sports news instead"),
    ]


async def test_a_request_heard_before_its_end_is_an_ordinary_one(
    session: Session, barge: BargeIn
) -> None:
    await feed(barge, speech_16k("tell me the sports news", 0, 0))
    hear(barge, "tell me the sports", False)
    await session.until("cut")
    chunk = await barge.end_marker("in:t2", InputChunk(9, end=True))
    assert chunk.preempted == ""  # the recogniser starts its reply as usual
    hear(barge, "tell me the sports news", True)
    assert [c[0] for c in session.calls] == ["pause", "cut"]


async def test_an_acknowledgement_resumes_the_reply_and_gets_no_answer(
    session: Session, barge: BargeIn
) -> None:
    await feed(barge, speech_16k("uh-huh", 0, 600))
    await barge.end_marker("in:t2", InputChunk(9, end=True))
    hear(barge, "aha", True)
    await session.until("unanswered")
    assert session.calls == [("pause", "t1"), ("resume", "t1"), ("unanswered", "t2")]


async def test_no_words_within_the_limit_resumes_and_late_words_still_cut(
    session: Session,
) -> None:
    barge = BargeIn(session, 240, 2, 100)
    fed_reply(session, barge)
    await feed(barge, speech_16k("tell me the sports news", 0, 0))
    await session.until("resume")  # the recogniser said nothing within 100 ms
    hear(barge, "tell me the sports news", False)
    await session.until("cut")
    assert [c[0] for c in session.calls] == ["pause", "resume", "cut"]


async def test_a_noise_the_recogniser_finds_no_speech_in_resumes(
    session: Session, barge: BargeIn
) -> None:
    rng = np.random.default_rng(7)
    burst = np.cumsum(rng.standard_normal(350 * 16))
    burst = burst / np.abs(burst).max() * 12000
    await feed(barge, mix(np.zeros(1600), burst, np.zeros(8000)))
    barge.observe(ReplyEvent("error", "s", "t2", {"code": "no_speech", "message": "-"}))
    paused = ("pause", "t1") in session.calls
    assert session.calls == ([("pause", "t1"), ("resume", "t1")] if paused else [])


@pytest.mark.parametrize(("gain_db", "delay_ms"), [(-6, 100), (-12, 150), (-20, 200)])
async def test_the_reply_s_own_echo_pauses_nothing_and_its_words_do_not_count(
    session: Session, barge: BargeIn, gain_db: float, delay_ms: int
) -> None:
    reply = samples(decode_mp3(b"".join(reply_chunks()))[0])  # what the client played
    start = 16000 - delay_ms * 16
    echo = reply[start : start + 3 * 16000] * 10 ** (gain_db / 20)
    await feed(barge, mix(echo))
    assert session.calls == []
    hear(barge, "the new coverage of golf tonight", False)  # the recogniser's guess at it
    chunk = await barge.end_marker("in:t2", InputChunk(40, end=True))
    assert chunk.preempted == GATEWAY_DECIDES
    hear(barge, "the new coverage of golf tonight", True)
    await session.until("unanswered")
    assert session.calls == [("unanswered", "t2")]


async def test_a_person_over_the_echo_pauses_the_reply(session: Session, barge: BargeIn) -> None:
    reply = samples(decode_mp3(b"".join(reply_chunks()))[0])
    person = samples(speech_16k("stop, tell me the sports news instead", 0, 0))
    echo = reply[16000 : 16000 + len(person)] * 10 ** (-12 / 20)
    await feed(barge, mix(person, echo))
    assert session.calls == [("pause", "t1")]


async def test_a_voice_joining_an_utterance_of_echo_starts_a_new_one(
    session: Session, barge: BargeIn
) -> None:
    reply = samples(decode_mp3(b"".join(reply_chunks()))[0])
    person = samples(speech_16k("tell me the sports news", 0, 0))
    echo = reply[8000 : 8000 + 32000 + len(person)] * 10 ** (-12 / 20)
    await feed(barge, mix(echo[:32000]))
    hear(barge, "your latest technology", False)
    await feed(barge, mix(echo[32000:], person))
    # the recogniser hears the voice from its start, without the echo's words before it
    await session.until("unanswered")  # the echo's turn ends: its partials were shown
    assert session.calls == [("restart", "t2"), ("pause", "t1"), ("unanswered", "t2")]
    hear(barge, "tell me the sports news", True, turn_id="t3")
    await session.until("cut")


async def test_no_reply_starts_early_for_speech_not_yet_known_to_be_a_request(
    session: Session, barge: BargeIn
) -> None:
    await feed(barge, speech_16k("uh-huh", 0, 0))
    assert not barge.early_reply_allowed("t2", "aha")
    hear(barge, "stop it", False)
    await session.until("cut")
    # the end names the early reply that never started: the recogniser must answer
    chunk = await barge.end_marker("in:t2", InputChunk(9, end=True, preempted="aha"))
    assert chunk.preempted == ""


async def test_a_paused_reply_s_events_wait_and_keep_their_order() -> None:
    from gateway.outbox import Outbox, OutFrame

    outbox = Outbox(1_000_000, 10)
    for text, turn in (("a1", "t1"), ("p2", "t2"), ("a2", "t1"), ("p3", "t2")):
        outbox.put(OutFrame(text, turn))
    assert (await outbox.get()).text == "a1"
    outbox.hold("t1")
    outbox.put_control(OutFrame("reply_paused"))
    assert (await outbox.get()).text == "reply_paused"
    assert (await outbox.get()).text == "p2"  # before the held event: it goes
    waiting = asyncio.ensure_future(outbox.get())
    await asyncio.sleep(0)  # let the reader reach the held event
    assert not waiting.done()
    outbox.release()
    assert [(await waiting).text, (await outbox.get()).text] == ["a2", "p3"]


def test_voice_agent_talk_shows_the_pause_and_the_resume() -> None:
    import io

    from voice_agent.talk import _printer

    out = io.StringIO()
    show = _printer(out, live=False)
    show({"event": "reply_paused", "data": {"turn_id": "t1", "chunks_sent": 3}})
    show({"event": "reply_resumed", "data": {"turn_id": "t1", "chunks_sent": 3}})
    assert out.getvalue() == "(reply paused: listening)\n(reply resumed)\n"
