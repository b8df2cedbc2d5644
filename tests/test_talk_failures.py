"""``voice-agent talk`` when something is off: one line saying what to do, and the exit
code README.md documents for that failure; a server restarting mid-reply is resumed.

Real servers throughout: a refused port, a TLS listener with a certificate nobody signed,
an HTTP server that answers 401, a gateway with no workers behind it (no reply ever
comes), a guarded full gateway, and for the restart two gateways behind a small TCP
forwarder (the load balancer a deployment has in front of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.openai_standin import ChatScript, StandIn, running_standin
from tests.support import ROOT, ServiceProcesses, free_port, wait_for_http
from voice_agent import talk as talk_module
from voice_agent.client import VoiceClient

API_KEY = "talk-test-key-5e1d"


def talk(*args: str, url: str = "ws://127.0.0.1:9/ws/voice") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"VOICE_AGENT_TOKEN", "LOG_LEVEL"}}
    command = [sys.executable, "-m", "voice_agent.cli", "talk", "--url", url, *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("voice-agent talk: "), result.stderr
    for word in words:
        assert word in lines[0]


def test_nothing_listening() -> None:
    port = free_port()
    result = talk("--text", "hi", url=f"ws://127.0.0.1:{port}/ws/voice")
    assert_one_line(result, talk_module.EXIT_UNREACHABLE, "nothing listens", "voice-agent up")


def test_unknown_host() -> None:
    result = talk("--text", "hi", url="ws://no-such-host.invalid:8000/ws/voice")
    assert_one_line(result, talk_module.EXIT_UNREACHABLE, "cannot find host", "--url")


def test_the_file_is_read_before_connecting(tmp_path: Path) -> None:
    # nothing listens at the URL either: the file's problem is the one reported
    assert_one_line(
        talk(str(tmp_path / "missing.wav")), talk_module.EXIT_AUDIO_FILE, "no such audio file"
    )
    text = tmp_path / "notes.wav"
    text.write_text("these are notes, not sound\n")
    assert_one_line(talk(str(text)), talk_module.EXIT_AUDIO_FILE, "WAV, MP3, FLAC or Ogg")
    assert_one_line(talk(str(tmp_path)), talk_module.EXIT_AUDIO_FILE, "folder")


@contextlib.contextmanager
def tls_listener(tmp_path: Path) -> Iterator[int]:
    """A TLS server whose certificate no authority signed (a typo'd or private host)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *"openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost".split(),
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_tls_failure(tmp_path: Path) -> None:
    with tls_listener(tmp_path) as port:
        result = talk("--text", "hi", url=f"wss://127.0.0.1:{port}/ws/voice")
    assert_one_line(result, talk_module.EXIT_UNREACHABLE, "TLS", "certificate")


class _Unauthorized(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # a proxy in front of the server that wants credentials
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_http_401_on_the_upgrade() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = talk("--text", "hi", url=f"ws://127.0.0.1:{server.server_port}/ws/voice")
    finally:
        server.shutdown()
    assert_one_line(result, talk_module.EXIT_REFUSED, "HTTP 401", "--token")


@pytest.fixture(scope="module")
def lone_gateway(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A guarded gateway with room for one session and no workers: nothing ever replies."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": f"{redis_url}/6",
        "STREAM_PREFIX": f"lone{uuid.uuid4().hex[:6]}",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "API_KEYS": API_KEY,
        "MAX_WEBSOCKET_CONNECTIONS": "1",
    }
    log = open(tmp_path_factory.mktemp("lone") / "gateway.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", proc)
        yield f"ws://127.0.0.1:{port}/ws/voice"
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_wrong_token(lone_gateway: str) -> None:
    result = talk("--text", "hi", "--token", "not-the-key", url=lone_gateway)
    assert_one_line(result, talk_module.EXIT_REFUSED, "refused", "token")


def test_no_reply_within_the_timeout(lone_gateway: str) -> None:
    result = talk("--text", "hi", "--token", API_KEY, "--timeout", "1", url=lone_gateway)
    assert_one_line(result, talk_module.EXIT_NO_REPLY, "no reply within 1 s", "/ready")


def test_a_wrong_path_is_named_with_the_right_one(lone_gateway: str) -> None:
    base = lone_gateway.removesuffix("/ws/voice")
    result = talk("--text", "hi", "--token", API_KEY, url=f"{base}/ws")
    assert_one_line(result, talk_module.EXIT_UNREACHABLE, f"no voice endpoint at {base}/ws;")
    assert result.stderr.rstrip().endswith("the path is /ws/voice")


def test_the_server_answers_an_unknown_websocket_path_with_404(lone_gateway: str) -> None:
    base = lone_gateway.removesuffix("/ws/voice")
    # a path that ends like the endpoint (as behind a proxy) reaches the server: 404, not 403
    result = talk("--text", "hi", "--token", API_KEY, url=f"{base}/api/ws/voice")
    assert_one_line(
        result, talk_module.EXIT_UNREACHABLE, f"no voice endpoint at {base}/api/ws/voice;"
    )
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        answer = b""
        while b"the path is" not in answer and (data := sock.recv(4096)):
            answer += data
    assert answer.startswith(b"HTTP/1.1 404"), answer
    assert b"no voice endpoint at /ws; the path is /ws/voice" in answer


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:{port}", "ws://127.0.0.1:{port}/ws/voice"),
        ("http://127.0.0.1:{port}/", "ws://127.0.0.1:{port}/ws/voice"),
        ("127.0.0.1:{port}", "ws://127.0.0.1:{port}/ws/voice"),
        ("ws://127.0.0.1:{port}/ws/voice/", "ws://127.0.0.1:{port}/ws/voice"),
    ],
)
def test_a_base_address_reaches_the_voice_endpoint(
    lone_gateway: str, given: str, expected: str
) -> None:
    port = lone_gateway.rsplit(":", 1)[1].split("/")[0]
    assert talk_module.voice_url(given.format(port=port)) == expected.format(port=port)
    # the real server answers there: the wrong token is refused, which needs the endpoint
    result = talk("--text", "hi", "--token", "not-the-key", url=given.format(port=port))
    assert_one_line(result, talk_module.EXIT_REFUSED, "refused", "token")


def test_https_maps_to_wss_and_the_query_is_kept() -> None:
    assert talk_module.voice_url("https://agent.example.com") == "wss://agent.example.com/ws/voice"
    assert talk_module.voice_url("wss://h/ws/voice?lang=de") == "wss://h/ws/voice?lang=de"
    assert_one_line(talk("--text", "hi", url="ftp://h/ws/voice"), talk_module.EXIT_USAGE, "ws://")


async def test_a_full_server(lone_gateway: str) -> None:
    async with VoiceClient.connect(f"{lone_gateway}?token={API_KEY}"):  # the one place
        result = await asyncio.to_thread(talk, "--text", "hi", "--token", API_KEY, url=lone_gateway)
    assert_one_line(result, talk_module.EXIT_BUSY, "full", "try again")


@contextlib.contextmanager
def closing_server(reason: str) -> Iterator[str]:
    """A WebSocket server that closes every session at once with 1013 and ``reason``."""
    from websockets.sync.server import ServerConnection, serve

    def handler(ws: ServerConnection) -> None:
        ws.close(1013, reason)

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/ws/voice"
        finally:
            server.shutdown()


@pytest.mark.parametrize(
    ("reason", "words", "not_said"),
    [
        ("server full, retry later", ("is full right now", "try again"), "slow"),
        ("client too slow to receive", ("too slowly", "network"), "full"),
        ("too many resumes, retry later", ("resume", "too many resumes"), "full"),
        ("maintenance", ("try again later", "maintenance"), "full"),
    ],
)
def test_1013_says_why(reason: str, words: tuple[str, ...], not_said: str) -> None:
    with closing_server(reason) as url:
        result = talk("--text", "hi", url=url)
    assert_one_line(result, talk_module.EXIT_BUSY, *words)
    assert not_said not in result.stderr


# --- a restart mid-reply ----------------------------------------------------------------

REPLY = " ".join(f"Story {n} of the bulletin is a calm and quiet one today." for n in range(1, 9))


class Forwarder:
    """A TCP forwarder in front of the gateways: new connections go to ``target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_a_restart_mid_reply_resumes_on_its_own(redis_url: str, tmp_path: Path) -> None:
    with running_standin(StandIn(), free_port()) as standin:
        standin.chat = ChatScript(reply=REPLY, chunk_delay=0.08)
        env = {
            **os.environ,
            "REDIS_URL": f"{redis_url}/4",
            "STREAM_PREFIX": f"tr{uuid.uuid4().hex[:6]}",
            "ASR_PROVIDER": "none",
            **standin.llm_env(),
            "HOST": "127.0.0.1",
            "GATEWAY_DRAIN_SECONDS": "0.3",
        }
        with ServiceProcesses(env, tmp_path) as services:
            services.start("llm_worker")
            services.start("tts_worker")
            ports = [free_port(), free_port()]
            gateways = [services.start("gateway", PORT=str(port)) for port in ports]
            for port, proc in zip(ports, gateways, strict=True):
                wait_for_http(f"http://127.0.0.1:{port}/ready", proc)
            forwarder = Forwarder(ports[0])
            command = [sys.executable, "-m", "voice_agent.cli", "talk", "--text", "the bulletin"]
            command += ["--url", f"ws://127.0.0.1:{forwarder.port}/ws/voice"]
            command += ["--out", str(tmp_path / "reply.mp3")]
            talking = subprocess.Popen(
                command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            while not standin.chat.requests:  # the reply is being written: restart now
                assert talking.poll() is None, talking.communicate()
                time.sleep(0.02)
            forwarder.target = ports[1]
            gateways[0].send_signal(signal.SIGTERM)
            out, err = talking.communicate(timeout=120)
            forwarder.listener.close()
    assert talking.returncode == 0, err
    assert "resuming the reply" in err
    assert "agent: Story 1" in out and "Story 8" in out
    assert (tmp_path / "reply.mp3").stat().st_size > 0
