"""Who gets in and how much they may send: tokens, origins, rate limits, idle timeout.

One guarded system (API keys, a token secret, an Origin allow-list, tight limits) run
as a real process; every refusal is checked for its error code or close code, and a
well-behaved session next to it keeps working.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from gateway.auth import sign_token
from tests.support import ROOT, System, running_system
from voice_agent.client import VoiceClient

API_KEY = "test-api-key-7f3a9c"
SECRET = "test-signing-secret-41d2"


@pytest.fixture(scope="module")
def guarded(
    redis_url: str, fixture_http: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    env = {
        "STREAM_PREFIX": "guarded",
        "ASR_PROVIDER": "echo",
        "API_KEYS": f"other-key,{API_KEY}",
        "AUTH_SECRET": SECRET,
        "ALLOWED_ORIGINS": "https://news.example,http://localhost:8000",
        "WEBSOCKET_TIMEOUT": "4",
        "COMMANDS_PER_MINUTE": "6",
        "AUDIO_RATE_LIMIT": "2",
        "AUDIO_BURST_SECONDS": "1",
    }
    log_dir = Path(tmp_path_factory.mktemp("guarded"))
    with running_system(f"{redis_url}/5", fixture_http, log_dir, **env) as up:
        yield up


def url(system: System, **query: str) -> str:
    return system.ws_url + "?" + "&".join(f"{k}={v}" for k, v in query.items())


async def refused(target: str, **kwargs: object) -> tuple[str, int]:
    """(error frame, close code) of a connection the server turns away."""
    async with websockets.connect(target, **kwargs) as ws:
        frame = await asyncio.wait_for(ws.recv(), 10)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    return str(frame), closed.value.rcvd.code


async def test_without_a_valid_token_the_socket_is_refused(guarded) -> None:
    for target in (url(guarded), url(guarded, token="wrong-key")):
        frame, code = await refused(target)
        assert '"unauthorized"' in frame and code == 1008
        assert "wrong-key" not in frame  # the credential is never echoed


async def test_api_key_by_query_or_bearer_header_lets_the_client_in(guarded) -> None:
    async with VoiceClient.connect(url(guarded, token=API_KEY, user_id="app-user")) as client:
        assert client.connected["user_id"] == "app-user"
        turn = await client.ask("technology news")
        assert turn.complete
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with VoiceClient.connect(guarded.ws_url, additional_headers=headers) as client:
        assert client.connected["session_id"]


async def test_signed_tokens_fix_the_user_and_expire(guarded) -> None:
    made = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "voice_agent.cli", "token", "--user", "alice", "--ttl", "60"],
        cwd=ROOT,
        env={**os.environ, "AUTH_SECRET": SECRET},
        capture_output=True,
        text=True,
        check=True,
    )
    token = made.stdout.strip()
    async with VoiceClient.connect(url(guarded, token=token, user_id="mallory")) as client:
        assert client.connected["user_id"] == "alice"  # the token's user, not the claimed one
    expired = sign_token(SECRET, "alice", -5)
    forged = sign_token("not-the-secret", "alice", 60)
    for bad in (expired, forged, token[:-3] + "AAA"):
        frame, code = await refused(url(guarded, token=bad))
        assert '"unauthorized"' in frame and code == 1008


async def test_another_user_cannot_resume_a_session(guarded) -> None:
    alice, bob = sign_token(SECRET, "alice", 60), sign_token(SECRET, "bob", 60)
    async with VoiceClient.connect(url(guarded, token=alice)) as client:
        session_id, resume_token = client.session_id, client.resume_token
    stolen = url(guarded, token=bob, session_id=session_id, resume_token=resume_token or "")
    frame, code = await refused(stolen)
    assert '"resume_failed"' in frame and code == 1008
    own = url(guarded, token=alice, session_id=session_id, resume_token=resume_token or "")
    async with VoiceClient.connect(own) as again:
        assert again.connected["resumed"] is True


async def test_browsers_from_other_origins_are_refused_at_the_handshake(guarded) -> None:
    target = url(guarded, token=API_KEY)
    with pytest.raises(websockets.InvalidStatus) as refusal:
        async with websockets.connect(target, origin="https://evil.example"):
            pass
    assert refusal.value.response.status_code == 403
    async with VoiceClient.connect(target, origin="https://news.example") as client:
        assert client.session_id
    own_page = guarded.http_url  # the page the gateway itself serves at /
    async with VoiceClient.connect(target, origin=own_page) as client:
        assert client.session_id


async def test_command_and_audio_floods_are_refused_without_hurting_others(guarded) -> None:
    async with (
        VoiceClient.connect(url(guarded, token=API_KEY)) as flooder,
        VoiceClient.connect(url(guarded, token=API_KEY)) as neighbour,
    ):
        assert (await neighbour.ask("world news")).complete
        for n in range(8):
            await flooder.send_command(f"news {n}")
        codes = await _error_codes(flooder, 2.0)
        assert codes.count("rate_limited") >= 2, codes
        second = b"\x00\x00" * 16000
        for _ in range(4):  # 4 s of audio at once; 1 s of burst, 2x real time allowed
            await flooder.ws.send(second)
        codes = await _error_codes(flooder, 1.0)
        assert "rate_limited" in codes, codes
        turn = await neighbour.ask("science news")
        assert turn.complete and not turn.errors


async def test_idle_sessions_are_closed_with_a_reason(guarded) -> None:
    async with websockets.connect(url(guarded, token=API_KEY)) as ws:
        await ws.recv()  # connected
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1000, "idle timeout")


def test_secrets_never_reach_the_logs(guarded) -> None:
    text = guarded.log_path.read_text()
    assert text  # the system did log
    assert API_KEY not in text and SECRET not in text


async def _error_codes(client: VoiceClient, seconds: float) -> list[str]:
    codes = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            event = await client.next_event(left)
        except TimeoutError:
            break
        if event["event"] == "error":
            codes.append(event["data"]["code"])
    return codes
