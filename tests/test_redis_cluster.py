"""The whole system on a local 3-master Redis Cluster (``redis+cluster://``): typed and
spoken turns end to end, resume after a dropped socket, and where the keys land."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from shared.keys import Keys
from shared.settings import load_settings
from tests.audio_checks import decode_mp3, speech_16k, word_error_rate
from tests.support import System, running_system
from voice_agent.client import Turn, VoiceClient

PREFIX = "rc"


@pytest.fixture(scope="module")
def on_cluster(
    redis_cluster_url: str, fixture_http: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    log_dir = tmp_path_factory.mktemp("cluster-system")
    env = {"STREAM_PREFIX": PREFIX}
    with running_system(redis_cluster_url, fixture_http, Path(log_dir), **env) as up:
        yield up


@pytest.fixture
def nodes(redis_cluster_url: str) -> Iterator[RedisCluster]:
    client = RedisCluster.from_url(redis_cluster_url.replace("+cluster://", "://"))
    yield client
    client.close()


def cluster_keys(url: str) -> Keys:
    return load_settings(redis_url=url, stream_prefix=PREFIX).keys


def all_keys_of(keys: Keys, session_id: str) -> list[str]:
    per_turn = [keys.asr_input(session_id, "t1"), keys.tts_input(session_id, "t1")]
    per_turn += [keys.checkpoint(kind, session_id, "t1") for kind in ("asr", "llm", "tts")]
    streams = [keys.jobs_for(kind, session_id) for kind in ("asr", "llm", "tts")]
    dead = keys.dead_letters_of(keys.partition(session_id))
    early = [keys.early_verdicts(session_id), keys.news_state(f"{session_id}~t2")]
    return [*keys.session_keys(session_id), *per_turn, *streams, dead, *early]


async def test_keys_of_a_session_share_a_slot_and_sessions_spread_over_masters(
    on_cluster: System, nodes: RedisCluster
) -> None:
    keys = cluster_keys(on_cluster.redis_url)
    session_ids = []
    for _ in range(6):
        async with VoiceClient.connect(on_cluster.ws_url) as client:
            turn = await client.ask("sports headlines")
            assert turn.complete and not turn.errors
            session_ids.append(client.session_id)
    masters = set()
    for session_id in session_ids:
        # the server's own hash (CLUSTER KEYSLOT), not the client library's
        slots = {nodes.cluster_keyslot(key) for key in all_keys_of(keys, session_id)}
        assert len(slots) == 1, (session_id, slots)
        assert nodes.exists(keys.reply(session_id)) and nodes.exists(keys.session(session_id))
        masters.add(nodes.get_node_from_key(keys.reply(session_id)).name)
    feeds = [f"https://news.example/{topic}.xml" for topic in ("a", "b", "c", "d")]
    assert len({nodes.cluster_keyslot(keys.news_feed(url)) for url in feeds}) == 1  # one MGET
    many = [f"session-{n}" for n in range(60)]  # the partitions, over every master
    masters |= {nodes.get_node_from_key(keys.reply(s)).name for s in many}
    assert len(masters) == 3, masters
    assert {n.name for n in nodes.get_primaries()} == masters


async def typed_turn(url: str) -> tuple[str, Turn]:
    async with VoiceClient.connect(url) as client:
        return client.session_id, await client.ask("what's new in technology")


async def test_concurrent_typed_requests_in_several_slots(on_cluster: System) -> None:
    """Sessions in different slots at once: one gateway and one worker per kind follow
    them all (a read per slot; a single XREAD over them would be refused)."""
    results = await asyncio.gather(*(typed_turn(on_cluster.ws_url) for _ in range(6)))
    keys = cluster_keys(on_cluster.redis_url)
    assert len({keys.partition(session_id) for session_id, _ in results}) > 1
    for _session_id, turn in results:
        assert not turn.errors, turn.errors
        assert "battery" in turn.reply_text.lower()
        indexes = [c["chunk_index"] for c in turn.chunks]
        assert indexes == list(range(len(indexes))) and len(indexes) >= 2
        assert turn.complete["total_chunks_sent"] == len(indexes)
        assert decode_mp3(turn.audio)[1] > 2.0
    log = on_cluster.log_path.read_text(errors="replace")
    assert "CROSSSLOT" not in log and "news cache read failed" not in log


async def test_spoken_request_gets_partials_transcript_and_reply(on_cluster: System) -> None:
    spoken = "read me the sports headlines"
    async with VoiceClient.connect(on_cluster.ws_url) as client:
        turn = await client.say(speech_16k(spoken), realtime=True)
    assert not turn.errors, turn.errors
    assert turn.partials, "partials reach the client"
    assert word_error_rate(spoken, turn.transcript or "") <= 0.25, turn.transcript
    assert "striker" in turn.reply_text.lower()
    assert [c["chunk_index"] for c in turn.chunks] == list(range(len(turn.chunks)))


async def test_dropped_socket_resumes_exactly(on_cluster: System) -> None:
    async with VoiceClient.connect(on_cluster.ws_url) as client:
        session_id = client.session_id
        await client.send_command("business news please")
        while True:
            event = await client.next_event(30)
            if event["event"] == "tts_chunk":
                break
        position = client.resume_query()
        # the position is what the client's reader has received, which may be a chunk or
        # two past the one this test read (a busy machine): the resume goes on from there
        seen = client.last_chunk_index
        assert seen is not None
        client.ws.transport.abort()  # the phone lost its network
    async with VoiceClient.connect(f"{on_cluster.ws_url}?{position}") as again:
        assert again.connected["resumed"] is True and again.session_id == session_id
        turn = await again.collect_turn(60)
        chunks = [c["chunk_index"] for c in turn.chunks]
        assert chunks == list(range(seen + 1, seen + 1 + len(chunks))), chunks
        assert turn.complete["total_chunks_sent"] == seen + 1 + len(chunks)
        follow_up = await again.ask("tell me more about the first story")
        assert follow_up.complete and not follow_up.errors


async def test_resume_on_a_new_connection_closes_the_old_one(on_cluster: System) -> None:
    """The takeover reaches the old connection over the control channel (pub/sub), which
    the gateway subscribes before any other command has taught its client the slot map."""
    async with VoiceClient.connect(on_cluster.ws_url) as first:
        async with VoiceClient.connect(f"{on_cluster.ws_url}?{first.resume_query()}") as second:
            assert second.connected["resumed"] is True
            while (await first.next_event(30))["event"] != "_closed":
                pass
            assert first.ws.close_code == 1000, first.ws.close_code
            assert first.ws.close_reason == "session resumed on another connection"
