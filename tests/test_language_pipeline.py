"""A reply in the user's language, end to end: a real gateway, LLM and TTS workers on one
event loop, a real WebSocket client, the OpenAI-compatible model stand-in streaming the
reply, and the offline voice (espeak-ng) or the edge-tts stand-in speaking it.

The model stand-in holds back its last piece until the test lets it go, so "the first
audio left before the model finished" is an ordering of events, not a stopwatch.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from llm_worker.providers import build as build_llm
from shared.client import VoiceClient
from shared.service import run_worker
from shared.settings import Settings, load_settings
from tests.conftest import free_port
from tests.edge_standin import EdgeStandIn, point_edge_tts_at, running_edge_standin
from tests.openai_standin import ChatScript, StandIn, running_standin
from tts_worker.providers import build as build_tts

ZH_PIECES = [
    "今天有三条",
    "新闻。第一条，",
    "芯片公司发布了新的处理器。",
    "第二条，高铁新线路开通了。",
    "你还想听哪一条",
    "？",
]
ES_PIECES = [
    "El paro bajó al 3,5 % ",
    "en 2025. La bolsa ",
    "subió un 2 %. Hoy juegan ",
    "los dos equipos. ¿Quieres saber ",
    "más?",
]


@pytest.fixture(scope="module")
def model() -> Iterator[StandIn]:
    with running_standin(StandIn(), free_port()) as standin:
        yield standin


@contextlib.asynccontextmanager
async def gateway_and_workers(settings: Settings) -> AsyncIterator[str]:
    """Gateway + LLM + TTS workers in this event loop until the block ends; yields ws url."""
    from gateway.__main__ import gateway_server

    stop = asyncio.Event()
    workers = [
        asyncio.create_task(run_worker(build, settings, stop)) for build in (build_llm, build_tts)
    ]
    server = gateway_server(settings)
    serving = asyncio.create_task(server.serve())
    http = f"http://127.0.0.1:{settings.port}"
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(60):
            while True:  # until the gateway answers and both workers have a heartbeat
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{http}/ready")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
        yield f"ws://127.0.0.1:{settings.port}/ws/voice"
    finally:
        server.should_exit = True
        await serving
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)


def settings_for(redis_url: str, model: StandIn, tts: str) -> Settings:
    return load_settings(
        redis_url=f"{redis_url}/3",
        stream_prefix=f"lang{free_port()}",
        host="127.0.0.1",
        port=free_port(),
        asr_provider="none",
        llm_provider="openai",
        llm_base_url=model.base_url,
        llm_api_key=model.api_key,
        llm_max_tool_rounds=0,
        tts_provider=tts,
        tts_timeout=10.0,
        log_level="WARNING",
    )


async def reply_with_held_last_token(
    client: VoiceClient, model: StandIn, command: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ask; return the first tts_chunk (which must come while the model's last piece is
    still held back) and every event of the turn."""
    await client.send_command(command)
    seen: list[dict[str, Any]] = []
    while True:
        event = await client.next_event(limit_s=60)
        seen.append(event)
        if event["event"] == "tts_chunk":
            break
    assert model.chat.hold_last is not None
    assert not model.chat.last_sent.is_set()  # the model has not finished writing
    assert not any(e["event"] == "agent_response" and e["data"]["is_final"] for e in seen)
    first_chunk = seen[-1]
    model.chat.hold_last.set()
    while seen[-1]["event"] != "streaming_complete":
        seen.append(await client.next_event(limit_s=60))
    return first_chunk, seen


@pytest.mark.parametrize(
    ("lang", "pieces", "voice"),
    [("zh-CN", ZH_PIECES, "espeak:cmn"), ("es", ES_PIECES, "espeak:es")],
)
async def test_offline_voice_speaks_each_sentence_as_the_model_writes_it(
    redis_url: str, model: StandIn, lang: str, pieces: list[str], voice: str
) -> None:
    model.chat = ChatScript(pieces=pieces, hold_last=threading.Event())
    async with gateway_and_workers(settings_for(redis_url, model, "espeak")) as ws_url:
        async with VoiceClient.connect(f"{ws_url}?lang={lang}") as client:
            assert client.connected["lang"] == lang and client.connected["lang_auto"] is False
            first, events = await reply_with_held_last_token(client, model, "noticias / 新闻")
    assert first["data"]["sentence"] == 1
    sentences = {e["data"]["sentence"] for e in events if e["event"] == "tts_chunk"}
    assert sentences == {1, 2, 3, 4}  # one TTS sentence per 。/./？ of the reply
    complete = events[-1]["data"]
    assert complete["voices"] == [voice] and complete["lang"] == lang
    final = next(e for e in events if e["event"] == "agent_response" and e["data"]["is_final"])
    assert final["data"]["text"] == "".join(pieces).strip()
    system = model.chat.requests[-1]["messages"][0]["content"]
    assert ("Reply in Chinese" if lang == "zh-CN" else "Reply in Spanish") in system


@pytest.mark.parametrize(
    ("lang", "pieces", "voice"),
    [("zh-CN", ZH_PIECES, "zh-CN-XiaoxiaoNeural"), ("es", ES_PIECES, "es-ES-ElviraNeural")],
)
async def test_cloud_voice_is_the_languages_neural_voice(
    redis_url: str, model: StandIn, monkeypatch, lang: str, pieces: list[str], voice: str
) -> None:
    model.chat = ChatScript(pieces=pieces, hold_last=threading.Event())
    async with running_edge_standin(EdgeStandIn()) as edge:
        point_edge_tts_at(monkeypatch, edge.url)
        async with gateway_and_workers(settings_for(redis_url, model, "edge")) as ws_url:
            async with VoiceClient.connect(f"{ws_url}?lang={lang}") as client:
                _, events = await reply_with_held_last_token(client, model, "hola / 你好")
    assert events[-1]["data"]["voices"] == [f"edge:{voice}"]
    locale, name = voice.rsplit("-", 1)  # edge-tts sends the voice's long form
    long_name = f"Microsoft Server Speech Text to Speech Voice ({locale}, {name})"
    assert [r.voice for r in edge.requests] == [long_name] * 4  # one request per sentence
    spoken = [r.text for r in edge.requests]
    if lang == "zh-CN":
        assert spoken[0] == "今天有三条新闻。" and spoken[-1] == "你还想听哪一条？"
    else:  # numbers in Spanish words, not English ones
        assert spoken[0] == "El paro bajó al tres coma cinco por ciento en dos mil veinticinco."
        assert spoken[1] == "La bolsa subió un dos por ciento."
        assert "two" not in " ".join(spoken) and "percent" not in " ".join(spoken)


async def test_language_is_detected_from_the_first_request(redis_url: str, model: StandIn) -> None:
    model.chat = ChatScript(pieces=ZH_PIECES, hold_last=threading.Event())
    async with gateway_and_workers(settings_for(redis_url, model, "espeak")) as ws_url:
        async with VoiceClient.connect(ws_url) as client:  # no ?lang=
            assert client.connected["lang"] == "en" and client.connected["lang_auto"] is True
            _, events = await reply_with_held_last_token(client, model, "今天有什么科技新闻？")
            model.chat = ChatScript(reply="Okay.")
            later = await client.ask("BBC")  # tells no language: the session's stays
    final = next(e for e in events if e["event"] == "agent_response" and e["data"]["is_final"])
    assert final["data"]["lang"] == "zh-CN"
    assert events[-1]["data"]["voices"] == ["espeak:cmn"]
    assert later.complete is not None and later.complete["lang"] == "zh-CN"
    assert "Reply in Chinese" in model.chat.requests[-1]["messages"][0]["content"]
