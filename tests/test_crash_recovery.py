"""``kill -9`` of a worker in the middle of a turn, with a second worker of its kind running:
the survivor takes the turn over and the client still gets the whole reply, its chunks
numbered without a gap or a repeat. Real processes, real engines, on one Redis and on a
local 3-master Redis Cluster; the LLM is the local OpenAI stand-in, slowed down so that the
turn is still going when we kill."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_worker.sentences import SentenceSplitter
from llm_worker.speech_text import speech_text
from shared.messages import InputChunk, decode
from tests.audio_checks import decode_mp3, speech_16k
from tests.cluster import Cluster, running_cluster
from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import free_port
from voice_agent.client import Turn, VoiceClient

REPLY = (
    "Here is the news for today. Markets were calm this morning. "
    "A new battery factory opened in the north. Rain is expected over the weekend. "
    "The local team won its match on Sunday. Scientists found a new kind of frog. "
    "Train fares will rise next year. That is all for now, want to hear more?"
)
RECOVERY = {"RECLAIM_IDLE_MS": "1000", "ASR_PROVIDER": "none"}
BACKENDS = ["redis", "redis-cluster"]


def backend_url(request: pytest.FixtureRequest, backend: str) -> str:
    """Database 2 of the session's single Redis, or the local 3-master Redis Cluster
    (hash-tagged keys, partitioned work streams)."""
    if backend == "redis":
        return f"{request.getfixturevalue('redis_url')}/2"
    return str(request.getfixturevalue("redis_cluster_url"))


@pytest.fixture
def slow_model() -> Iterator[StandIn]:
    """An OpenAI-compatible model that takes about 4 s to stream ``REPLY``."""
    state = StandIn(chat=ChatScript(reply=REPLY, chunk_delay=0.12))
    with running_standin(state, free_port()) as standin:
        yield standin


def model_env(standin: StandIn) -> dict[str, str]:
    return {
        **standin.llm_env(),
        "LLM_MAX_TOOL_ROUNDS": "0",
    }


async def kill_mid_turn(cluster: Cluster, client: VoiceClient, turn: Turn, kind: str, first: str):
    """Collect events until the first ``first`` event, then kill -9 the ``kind`` owner.

    Returns (victim, seconds from the kill to the next event and to the next ``tts_chunk``,
    turn).
    """
    while not turn.of(first):
        event = await client.next_event(20)
        turn.events.append(event)
        turn.turn_id = turn.turn_id or event["data"].get("turn_id")
    victim = cluster.owner(kind)
    cluster.signal(victim, signal.SIGKILL).wait(5)
    killed = time.perf_counter()
    sent = cluster.reply_events(client.session_id)  # all the victim got out, maybe unread yet
    chunks_sent, events_sent = sent.count("tts_chunk"), len(sent)
    resumed = next_event = None
    async with asyncio.timeout(60):
        while True:
            event = await client.next_event(30)
            turn.events.append(event)
            if next_event is None and len(turn.events) > events_sent:
                next_event = time.perf_counter() - killed
            if resumed is None and len(turn.chunks) > chunks_sent:
                resumed = time.perf_counter() - killed
            if event["event"] in ("streaming_complete", "error"):
                break
    survivors = [name for name in cluster.procs if name.startswith(kind) and name != victim]
    assert any("reclaimed job" in cluster.log(name) for name in survivors)
    return victim, (round(next_event or -1, 2), round(resumed or -1, 2)), turn


def assert_complete_reply(turn: Turn) -> None:
    assert not turn.errors, turn.errors
    indexes = [c["chunk_index"] for c in turn.chunks]
    assert indexes == list(range(len(indexes))), indexes
    assert turn.complete is not None
    assert turn.complete["total_chunks_sent"] == len(indexes)
    _pcm, seconds = decode_mp3(turn.audio)
    words = len(turn.reply_text.split())
    assert seconds > words / 4.5, (words, seconds)  # every sentence was spoken


def report_recovery(kill: str, backend: str, resumed: tuple[float, float]) -> None:
    """One JSON line (shown with ``-s``): how long the client waited after the kill."""
    print(json.dumps({"kill": kill, "backend": backend, "kill_to_next_event_and_chunk_s": resumed}))


def expected_sentences(text: str) -> list[str]:
    splitter = SentenceSplitter()
    return [s for s in map(speech_text, splitter.push(text) + splitter.flush()) if s]


async def follow_sentences(cluster: Cluster, key: str) -> list[str]:
    """Every sentence appended to a reply's TTS input stream, until its end marker."""
    client = cluster.async_client()
    last, sentences = "0-0", []
    try:
        while True:
            for _key, entries in await client.xread({key: last}, block=1000) or ():
                for raw_id, fields in entries:
                    last = raw_id.decode()
                    chunk = decode(fields)
                    assert isinstance(chunk, InputChunk)
                    if chunk.end:
                        return sentences
                    sentences.append(chunk.text)
    finally:
        await client.aclose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_kill_tts_worker_mid_reply(
    request: pytest.FixtureRequest,
    backend: str,
    fixture_http: str,
    tmp_path: Path,
    slow_model: StandIn,
) -> None:
    env = {**RECOVERY, **model_env(slow_model), "STREAM_PREFIX": "crash-tts"}
    url = backend_url(request, backend)
    with running_cluster(url, fixture_http, tmp_path, ["llm1", "tts1", "tts2"], **env) as cluster:
        async with VoiceClient.connect(cluster.ws_url) as client:
            await client.send_command("what's the news")
            victim, resumed, turn = await kill_mid_turn(cluster, client, Turn(), "tts", "tts_chunk")
        survivor = "tts2" if victim == "tts1" else "tts1"
        assert "resuming speech at chunk" in cluster.log(survivor)
    assert_complete_reply(turn)
    assert turn.reply_text == REPLY
    report_recovery("tts", backend, resumed)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_kill_llm_worker_mid_reply(
    request: pytest.FixtureRequest,
    backend: str,
    fixture_http: str,
    tmp_path: Path,
    slow_model: StandIn,
) -> None:
    env = {**RECOVERY, **model_env(slow_model), "STREAM_PREFIX": "crash-llm"}
    url = backend_url(request, backend)
    with running_cluster(url, fixture_http, tmp_path, ["llm1", "llm2", "tts1"], **env) as cluster:
        async with VoiceClient.connect(cluster.ws_url) as client:
            await client.send_command("what's the news")
            first = await client.next_event(20)
            key = cluster.keys.tts_input(client.session_id, first["data"]["turn_id"])
            sentences = asyncio.create_task(follow_sentences(cluster, key))
            turn = Turn(turn_id=first["data"]["turn_id"], events=[first])
            _victim, resumed, turn = await kill_mid_turn(cluster, client, turn, "llm", "tts_chunk")
            spoken = await asyncio.wait_for(sentences, 10)
    assert len(slow_model.chat.requests) == 2, "the survivor asked the model again"
    assert_complete_reply(turn)
    deltas = "".join(d["text"] for d in turn.of("agent_response") if not d["is_final"])
    assert deltas.strip() == REPLY and turn.reply_text == REPLY  # no delta repeated or lost
    assert spoken == expected_sentences(REPLY)  # each sentence spoken once, in order
    report_recovery("llm", backend, resumed)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("engine", ["pocketsphinx", "echo"])
async def test_kill_asr_worker_mid_utterance(
    request: pytest.FixtureRequest, backend: str, fixture_http: str, tmp_path: Path, engine: str
) -> None:
    """pocketsphinx: the real recogniser; echo: partials count the audio chunks heard, so
    the partials and the final transcript show exactly which audio was heard how often."""
    pcm = speech_16k("what is happening in business today")
    env = {"RECLAIM_IDLE_MS": "1000", "STREAM_PREFIX": f"crash-asr-{engine}"}
    env |= {"ASR_PROVIDER": engine, "LLM_PROVIDER": "echo", "END_OF_SPEECH_MS": "0"}
    workers = ["asr1", "asr2", "llm1", "tts1"]
    url = backend_url(request, backend)
    with running_cluster(url, fixture_http, tmp_path, workers, **env) as cluster:
        async with VoiceClient.connect(cluster.ws_url) as client:
            sending = asyncio.create_task(client.send_audio(pcm, realtime=True))
            _victim, resumed, turn = await kill_mid_turn(
                cluster, client, Turn(), "asr", "partial_transcription"
            )
            await sending
    assert_complete_reply(turn)
    partials = turn.partials
    assert all(a != b for a, b in itertools.pairwise(partials)), partials
    assert turn.transcript and turn.reply_text == f"You said: {turn.transcript}."
    if engine == "echo":  # every 100 ms chunk heard once, in order, none left out
        chunks = -(-len(pcm) // 3200)
        assert partials == [str(n) for n in range(1, chunks + 1)], partials
        assert turn.transcript == f"echo {chunks} chunks"
    report_recovery(f"asr-{engine}", backend, resumed)
