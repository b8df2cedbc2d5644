"""Barge-in against the whole system, with real audio: what cuts a reply and what does not.

A client plays the reply on a virtual loudspeaker (``tests/barge_in_client.py``): its
microphone hears the reply's own MP3, decoded, quieter and later (no echo cancellation),
plus whatever the test says into it. Audio goes as fast as the gateway takes it; the
player pauses, resumes and stops where the events say.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.audio_checks import speech_16k
from tests.barge_in_client import FRAME, Player, mix, samples, send_frame, start_reply
from tests.support import System, running_system
from voice_agent.client import VoiceClient

QUESTION = "what's the latest in technology"
SAID_AT = 20  # frames (2 s) into the reply


@pytest.fixture(scope="module")
def barge_system(
    redis_url: str, fixture_http: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    log_dir = Path(tmp_path_factory.mktemp("barge"))
    # decisions by events only (words, the end of the speech): the audio here goes faster
    # than real time, so a wall-clock limit would race it; tests/test_barge_in checks it
    env = {"STREAM_PREFIX": "barge", "FALSE_INTERRUPTION_MS": "30000"}
    with running_system(f"{redis_url}/8", fixture_http, log_dir, **env) as up:
        yield up


@pytest.fixture(scope="module")
def reference_seconds(barge_system: System) -> float:
    """The reply's length when nothing barges in."""
    import asyncio

    async def ask() -> float:
        async with VoiceClient.connect(barge_system.ws_url) as client:
            turn = await client.ask(QUESTION)
            return float(turn.complete["audio_ms"]) / 1000

    return asyncio.run(ask())


def noise_burst(ms: int, seed: int = 5) -> bytes:
    """Brown noise (a rumble, a door, a cough's spectrum), loud."""
    rng = np.random.default_rng(seed)
    burst = np.cumsum(rng.standard_normal(ms * 16))
    burst -= np.linspace(burst[0], burst[-1], len(burst))
    return mix(burst / np.abs(burst).max() * 12000)


async def converse(
    url: str, said: bytes = b"", echo_db: float | None = None, delay_ms: int = 120
) -> Player:
    """Ask, then listen to the reply with ``said`` spoken into the microphone at
    ``SAID_AT``; go on until the reply is over and every turn the speech started ended."""
    said_frames = [samples(said[i : i + FRAME * 2]) for i in range(0, len(said), FRAME * 2)]
    async with VoiceClient.connect(url) as client:
        player = Player()
        await start_reply(client, player, QUESTION)
        frame = 0
        while not player.finished or _open_turns(player):
            mic = [player.echo(echo_db, delay_ms)] if echo_db is not None else [np.zeros(FRAME)]
            player.play_frame()
            if SAID_AT <= frame < SAID_AT + len(said_frames):
                mic.append(said_frames[frame - SAID_AT])
            await send_frame(client, player, mix(*mic))
            frame += 1
            assert frame < 1200, "the reply never ended"
        assert not client.paused  # voice_agent.client: every pause was resumed or cut
        return player


def _open_turns(player: Player) -> set[str]:
    """Turns other than the reply's that began and have not ended (no terminal event)."""
    begun, ended = set(), set()
    for event in player.events:
        turn_id = event["data"].get("turn_id")
        if not turn_id or turn_id == player.turn_id:
            continue
        begun.add(turn_id)
        if event["event"] in ("streaming_complete", "error"):
            ended.add(turn_id)
    return begun - ended


def barge_ins(system: System) -> dict[str, float]:
    """``vna_barge_ins_total`` by outcome, from the gateway's /metrics."""
    counts = {}
    for line in httpx.get(f"{system.http_url}/metrics", timeout=10).text.splitlines():
        if line.startswith("vna_barge_ins_total{"):
            outcome = line.split('outcome="')[1].split('"')[0]
            counts[outcome] = float(line.rsplit(" ", 1)[1])
    return counts


def _names(player: Player, turn_id: str | None = None) -> list[str]:
    turn_id = turn_id or player.turn_id
    return [e["event"] for e in player.events if e["data"].get("turn_id") == turn_id]


def _story(player: Player) -> list[tuple[str, str, str]]:
    """What happened, briefly (for failure messages)."""
    shown = ("reply_paused", "reply_resumed", "interrupted", "error", "partial_transcription")
    return [
        (e["event"], e["data"].get("turn_id", ""), e["data"].get("text", ""))
        for e in player.events
        if e["event"] in shown
    ]


def assert_played_whole(player: Player, reference_seconds: float) -> None:
    names = _names(player)
    assert "interrupted" not in names, _story(player)
    assert names.count("reply_paused") == names.count("reply_resumed"), names
    assert player.chunk_indexes == list(range(len(player.chunk_indexes)))
    assert len(player.chunk_indexes) == player.complete["total_chunks_sent"]
    assert not player.complete.get("interrupted")
    assert player.position == len(player.pcm)  # played to its end, all of it
    assert abs(len(player.pcm) / 16000 - reference_seconds) < 0.1
    others = {e["data"]["turn_id"] for e in player.events if e["event"] == "agent_response"}
    assert others == {player.turn_id}, "something that was not a request got a reply"


@pytest.mark.parametrize(("echo_db", "delay_ms"), [(-6, 100), (-12, 150), (-20, 200)])
async def test_the_reply_s_own_echo_does_not_cut_it(
    barge_system: System, reference_seconds: float, echo_db: float, delay_ms: int
) -> None:
    before = barge_ins(barge_system).get("echo_rejected", 0)
    player = await converse(barge_system.ws_url, echo_db=echo_db, delay_ms=delay_ms)
    assert_played_whole(player, reference_seconds)
    assert "reply_paused" not in _names(player)  # told from a person at once
    assert barge_ins(barge_system)["echo_rejected"] > before


@pytest.mark.parametrize("burst_ms", [200, 350, 500])
async def test_a_noise_burst_does_not_cut_the_reply(
    barge_system: System, reference_seconds: float, burst_ms: int
) -> None:
    player = await converse(barge_system.ws_url, noise_burst(burst_ms))
    assert_played_whole(player, reference_seconds)


async def test_a_short_uh_huh_does_not_cut_the_reply(
    barge_system: System, reference_seconds: float
) -> None:
    before = barge_ins(barge_system)
    player = await converse(barge_system.ws_url, speech_16k("uh-huh", 0, 0))
    assert_played_whole(player, reference_seconds)
    assert "reply_paused" in _names(player)  # it did sound like a person at first
    after = barge_ins(barge_system)
    for outcome in ("paused", "resumed"):
        assert after[outcome] == before.get(outcome, 0) + 1, (before, after)


async def test_stop_cuts_the_reply(barge_system: System) -> None:
    before = barge_ins(barge_system).get("cut", 0)
    player = await converse(barge_system.ws_url, speech_16k("stop", 0, 0))
    assert barge_ins(barge_system)["cut"] == before + 1
    interrupted = [e["data"] for e in player.events if e["event"] == "interrupted"]
    assert interrupted and interrupted[0]["reason"] == "barge_in"
    assert _names(player).index("reply_paused") < _names(player).index("interrupted")
    assert player.position < len(player.pcm)
    assert "streaming_complete" in _names(player, "t2")  # the request was answered


async def test_a_new_question_cuts_the_reply_and_is_answered(barge_system: System) -> None:
    said = speech_16k("tell me the sports news", 0, 0)
    player = await converse(barge_system.ws_url, said)
    assert "interrupted" in _names(player)
    answer = [
        e["data"]["text"]
        for e in player.events
        if e["event"] == "agent_response" and e["data"]["turn_id"] == "t2" and e["data"]["is_final"]
    ]
    assert answer and "sports" in answer[0].lower(), answer


@pytest.fixture(scope="module")
def immediate_system(
    redis_url: str, fixture_http: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    log_dir = Path(tmp_path_factory.mktemp("barge-immediate"))
    env = {"STREAM_PREFIX": "bargeimm", "BARGE_IN_MODE": "immediate"}
    with running_system(f"{redis_url}/8", fixture_http, log_dir, **env) as up:
        yield up


async def test_in_immediate_mode_speech_cuts_at_once_without_a_pause(
    immediate_system: System,
) -> None:
    async with VoiceClient.connect(immediate_system.ws_url) as client:
        assert client.connected["barge_in_mode"] == "immediate"
    player = await converse(immediate_system.ws_url, speech_16k("tell me the sports news", 0, 0))
    names = _names(player)
    assert "interrupted" in names and "reply_paused" not in names, _story(player)
