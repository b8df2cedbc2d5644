"""SIGTERM on a gateway: replies in progress finish, then 1012, then resume elsewhere.

Real processes: two gateways, an LLM worker and a TTS worker (text-only: no ASR) on one
Redis, with the slow OpenAI-compatible stand-in as the agent so a reply is mid-way
when the signal lands.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import websockets

from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import ServiceProcesses, free_port, wait_for_http
from tests.test_gateway_limits import closed_before_any_event, running_gateway
from voice_agent.client import VoiceClient

REPLY = " ".join(f"Item {n} of the bulletin is a calm and quiet one today." for n in range(1, 9))


@dataclass
class Cluster:
    gateways: list[subprocess.Popen[bytes]]
    urls: list[str]


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with running_standin(StandIn(), free_port()) as standin:
        standin.chat = ChatScript(reply=REPLY, chunk_delay=0.08)
        env = {
            **os.environ,
            "REDIS_URL": f"{redis_url}/4",
            "STREAM_PREFIX": f"gw{uuid.uuid4().hex[:6]}",
            "ASR_PROVIDER": "none",
            **standin.llm_env(),
            "HOST": "127.0.0.1",
        }
        with ServiceProcesses(env, tmp_path) as services:
            services.start("llm_worker")
            services.start("tts_worker")
            ports = [free_port(), free_port()]
            gateways = [
                services.start("gateway", PORT=str(port), GATEWAY_DRAIN_SECONDS="0.5")
                for port in ports
            ]
            for port, proc in zip(ports, gateways, strict=True):
                wait_for_http(f"http://127.0.0.1:{port}/ready", proc)
            yield Cluster(gateways, [f"ws://127.0.0.1:{port}/ws/voice" for port in ports])


async def test_sigterm_closes_with_1012_and_the_reply_resumes_on_another_gateway(
    cluster: Cluster,
) -> None:
    first, second = cluster.urls
    async with VoiceClient.connect(first) as client:
        await client.send_command("read me the bulletin")
        received = []
        while len(received) < 2:
            event = await client.next_event(30)
            if event["event"] == "tts_chunk":
                received.append(event["data"]["chunk_index"])
        cluster.gateways[0].send_signal(signal.SIGTERM)
        while True:  # the rest of what the first gateway sent before closing
            event = await client.next_event(30)
            if event["event"] == "_closed":
                break
            if event["event"] == "tts_chunk":
                received.append(event["data"]["chunk_index"])
        assert client.ws.close_code == 1012, client.ws.close_reason
        query = client.resume_query()
    assert cluster.gateways[0].wait(20) == 0  # a clean exit
    async with VoiceClient.connect(f"{second}?{query}") as again:
        assert again.connected["resumed"] is True
        turn = await again.collect_turn(60)
        rest = [e["data"]["chunk_index"] for e in turn.events if e["event"] == "tts_chunk"]
        assert received + rest == list(range(len(received) + len(rest)))
        assert turn.events[-1]["data"]["total_chunks_sent"] == len(received) + len(rest)


async def test_new_connections_during_drain_are_told_to_go_elsewhere(cluster: Cluster) -> None:
    """Once SIGTERM has landed the gateway no longer listens: connecting fails."""
    async with VoiceClient.connect(cluster.urls[0]) as client:
        await client.send_command("read me the bulletin")
        await client.next_event(30)
        cluster.gateways[0].send_signal(signal.SIGTERM)
        while True:  # until the signal has landed: before, a connection is served normally
            try:
                async with websockets.connect(cluster.urls[0]) as ws:
                    event = json.loads(await ws.recv())
            except (OSError, websockets.InvalidStatus, websockets.ConnectionClosed):
                break  # refused, or closed (1012) if it slipped in as the listener closed
            assert event["event"] == "connected"


async def test_new_sockets_are_refused_with_1012_while_draining(redis_url: str) -> None:
    """The app's own check: a handshake that reaches it after the drain began."""
    async with running_gateway(redis_url) as gateway:
        await gateway.app.state.drain(0)  # type: ignore[attr-defined]
        async with websockets.connect(gateway.url) as late:
            assert await closed_before_any_event(late) == (1012, "server restarting")
