"""The image and the compose stack, for real: run by ``.ci/run`` through
``shared/containers/run.sh --scale tts_worker=2 -- pytest -m containers ...``.

run.sh builds the Dockerfile with Podman, starts compose.yaml (host network, loopback) and
exports ``VNA_URL``, ``VNA_WS_URL``, ``VNA_IMAGE``, ``VNA_REDIS_URL`` and the podman setup.
These tests talk to that stack with the project's client, look inside the containers with
``podman`` and end by stopping the stack the way ``compose down`` does (last test).

Deselected by default (``addopts`` in pyproject.toml); selected with ``-m containers``
they fail, not skip, when no stack is running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from shared.keys import LLM_GROUP, TTS_GROUP, Keys
from shared.messages import ReplyEvent, decode
from tests.audio_checks import decode_mp3, speech_16k
from tests.support import ROOT, free_port
from voice_agent.client import Turn, VoiceClient

pytestmark = pytest.mark.containers

PROJECT = os.environ.get("VNA_COMPOSE_PROJECT", "vna")
PREFIX = "vna"  # STREAM_PREFIX in .env.example, which run.sh gives the stack as .env
APP_SERVICES = ("gateway", "asr_worker", "llm_worker", "tts_worker")


@dataclass(frozen=True)
class Stack:
    url: str
    ws_url: str
    image: str
    redis_url: str
    keys: Keys


@pytest.fixture(scope="module")
def stack() -> Stack:
    missing = [
        v for v in ("VNA_URL", "VNA_WS_URL", "VNA_IMAGE", "VNA_REDIS_URL") if v not in os.environ
    ]
    if missing:
        pytest.fail(
            f"no container stack: {', '.join(missing)} unset; run these tests through "
            "shared/containers/run.sh --scale tts_worker=2 -- python -m pytest -m containers",
            pytrace=False,
        )
    env = os.environ
    return Stack(
        env["VNA_URL"], env["VNA_WS_URL"], env["VNA_IMAGE"], env["VNA_REDIS_URL"], Keys(PREFIX)
    )


def podman(*args: str, check: bool = True) -> str:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def logs(container: str) -> str:
    """Everything the container printed (``podman logs`` replays its stderr on stderr)."""
    done = subprocess.run(["podman", "logs", container], capture_output=True, text=True, check=True)
    return done.stdout + done.stderr


def containers(service: str | None = None, running: bool = True) -> list[str]:
    filters = ["--filter", f"label=io.podman.compose.project={PROJECT}"]
    if service:
        filters += ["--filter", f"label=io.podman.compose.service={service}"]
    return podman("ps", "-q", *([] if running else ["-a"]), *filters).split()


def inspect(container: str, template: str) -> str:
    return podman("inspect", "-f", template, container)


def owner_of(consumer: str, candidates: list[str]) -> str:
    """The container whose log announces ``consumer`` (``... worker NAME consuming ...``)."""
    owners = [c for c in candidates if f"{consumer} consuming" in logs(c)]
    assert len(owners) == 1, (consumer, owners)
    return owners[0]


def assert_complete_reply(turn: Turn) -> None:
    assert not turn.errors, turn.errors
    indexes = [c["chunk_index"] for c in turn.chunks]
    assert indexes and indexes == list(range(len(indexes))), indexes
    assert turn.complete is not None and turn.complete["total_chunks_sent"] == len(indexes)
    _pcm, seconds = decode_mp3(turn.audio)
    assert seconds > 0.5, seconds


# --- inside the image -------------------------------------------------------------------


def test_image_runs_as_non_root_without_build_tools(stack: Stack) -> None:
    tools = ("gcc", "cc", "c++", "make", "ld", "as")
    probe = f"import os, shutil; print(os.getuid(), [t for t in {tools} if shutil.which(t)])"
    out = podman("run", "--rm", "--network=none", stack.image, "python", "-c", probe)
    uid, tools = out.split(" ", 1)
    assert uid != "0" and tools == "[]", out
    gateway = containers("gateway")[0]
    assert inspect(gateway, "{{.Config.User}}") not in ("", "root", "0")
    status = podman("exec", gateway, "cat", "/proc/1/status")
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert set(uid_line.split()[1:]) != {"0"}, uid_line  # the service process itself


def test_dockerignore_keeps_tests_docs_and_venvs_out_of_the_context(stack: Stack) -> None:
    """Build a throwaway image with the repository as context and list what arrived."""
    with tempfile.TemporaryDirectory() as tmp:
        dockerfile = Path(tmp) / "Containerfile"
        dockerfile.write_text(f"FROM {stack.image}\nCOPY . /tmp/context/\n")
        tag = "localhost/vna-context-probe:latest"
        podman("build", "-q", "--network=none", "-f", str(dockerfile), "-t", tag, str(ROOT))
    try:
        listing = podman(
            "run",
            "--rm",
            "--network=none",
            "--entrypoint=",
            tag,
            "python",
            "-c",
            "import os; print('\\n'.join(sorted(os.listdir('/tmp/context'))))",
        ).split()
    finally:
        podman("rmi", "-f", tag, check=False)
    assert "pyproject.toml" in listing and "gateway" in listing and "shared" in listing
    unwanted = {"tests", "docs", "bench", ".venv", "venv", ".git", ".env", ".ci"}
    assert not unwanted & set(listing), sorted(unwanted & set(listing))


def test_port_is_honoured(stack: Stack) -> None:
    port = free_port()
    env = ["-e", f"PORT={port}", "-e", "HOST=127.0.0.1", "-e", f"REDIS_URL={stack.redis_url}"]
    container = podman("run", "-d", "--network=host", *env, stack.image)  # default command
    try:
        with httpx.Client() as http:
            while True:
                assert inspect(container, "{{.State.Running}}") == "true", logs(container)
                try:
                    health = http.get(f"http://127.0.0.1:{port}/health", timeout=2)
                    break
                except httpx.TransportError:
                    continue
        assert health.status_code == 200 and health.json()["redis"] == "ok"
    finally:
        podman("rm", "-f", "-t", "5", container, check=False)


def test_compose_healthchecks_pass(stack: Stack) -> None:
    checked = []
    for container in containers():
        if inspect(container, "{{if .Config.Healthcheck}}y{{end}}") == "y":
            done = subprocess.run(["podman", "healthcheck", "run", container], check=False)
            assert done.returncode == 0, inspect(container, "{{.Name}}")
            checked.append(
                inspect(container, '{{index .Config.Labels "io.podman.compose.service"}}')
            )
    assert {"redis", "gateway"} <= set(checked), checked


# --- turns through the containers ---------------------------------------------------------


async def test_spoken_and_typed_turn_through_the_containers(stack: Stack) -> None:
    async with VoiceClient.connect(stack.ws_url) as client:
        typed = await client.ask("technology news")
        assert_complete_reply(typed)
        assert typed.reply_text
        spoken = await client.say(speech_16k("read me the sports headlines"), realtime=False)
        assert spoken.transcript, spoken.events[-3:]
        assert_complete_reply(spoken)


async def test_both_tts_replicas_get_work(stack: Stack) -> None:
    """Each TTS job stays pending on its consumer while its reply is spoken; watch the
    group's pending list during bursts of turns until both replicas have held one."""
    replicas = containers("tts_worker")
    assert len(replicas) == 2, "run.sh --scale tts_worker=2"
    redis = aioredis.Redis.from_url(stack.redis_url)
    seen: set[str] = set()
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            for entry in await redis.xpending_range(
                stack.keys.jobs("tts"), TTS_GROUP, "-", "+", 100
            ):
                seen.add(entry["consumer"].decode())
            await asyncio.sleep(0)

    async def one_turn(text: str) -> None:
        async with VoiceClient.connect(stack.ws_url) as client:
            assert_complete_reply(await client.ask(text))

    watcher = asyncio.create_task(watch())
    try:
        for _round in range(10):
            topics = ("technology", "business", "sports", "science") * 2
            await asyncio.gather(*(one_turn(f"{t} news") for t in topics))
            owners = {owner_of(c, replicas) for c in seen}
            if owners == set(replicas):
                break
    finally:
        stop.set()
        await watcher
        await redis.aclose()
    assert owners == set(replicas), (seen, replicas)


async def test_kill_9_of_a_worker_container_mid_turn(stack: Stack) -> None:
    """kill -9 of the ASR container's process while it recognises a live utterance:
    compose's restart policy brings it back, the new process reclaims the job and the
    reply completes."""
    victim = containers("asr_worker")[0]
    started = inspect(victim, "{{.State.StartedAt}}")
    async with VoiceClient.connect(stack.ws_url) as client:
        turn = Turn()
        sending = asyncio.create_task(
            client.send_audio(speech_16k("read me the business headlines", tail_silence_ms=900))
        )
        while not turn.partials:  # the recogniser is at work on this utterance
            event = await client.next_event(30)
            turn.events.append(event)
            turn.turn_id = turn.turn_id or event["data"].get("turn_id")
        # SIGKILL from outside the runtime, as the OOM killer or a crash ends a process:
        # `podman kill` would mark the container stopped by the user, and then no restart
        # policy applies (Docker does the same)
        os.kill(int(inspect(victim, "{{.State.Pid}}")), signal.SIGKILL)
        await sending
        turn = await client.collect_turn(90, turn)
    assert turn.transcript, turn.events[-3:]
    assert_complete_reply(turn)
    assert inspect(victim, "{{.State.Running}}") == "true"
    assert inspect(victim, "{{.State.StartedAt}}") != started, "restarted by its policy"
    assert "reclaimed job" in logs(victim)


# --- last: the stack stops as `compose down` stops it ---------------------------------------


async def test_compose_down_stops_every_container_cleanly(stack: Stack) -> None:
    """SIGTERM (``podman stop``, as compose down sends it) to every app container as a
    spoken turn's reply starts, then to the store: all exit 0 within the grace period
    (Podman's SIGKILL would be 137), and the reply finished (the client has it, or it waits
    in the session's reply stream for the client to resume) or its job was handed back."""
    redis = aioredis.Redis.from_url(stack.redis_url)
    async with VoiceClient.connect(stack.ws_url) as client:
        turn = Turn()
        sending = asyncio.create_task(
            client.send_audio(speech_16k("what is new in science today"), realtime=False)
        )
        while not turn.transcript:  # recognised: the reply is being written now
            event = await client.next_event(30)
            turn.events.append(event)
            turn.turn_id = turn.turn_id or event["data"].get("turn_id")
        service = '{{index .Config.Labels "io.podman.compose.service"}}'
        apps = [c for c in containers() if inspect(c, service) != "redis"]
        await asyncio.to_thread(podman, "stop", "-t", "30", *apps)
        await sending
        while (event := await client.next_event(30))["event"] != "_closed":
            turn.events.append(event)
    codes = {inspect(c, "{{.Name}}"): inspect(c, "{{.State.ExitCode}}") for c in apps}
    assert set(codes.values()) == {"0"}, codes
    stored = [decode(f) for _id, f in await redis.xrange(stack.keys.reply(client.session_id))]
    finished = any(
        isinstance(e, ReplyEvent) and e.turn_id == turn.turn_id and e.event == "streaming_complete"
        for e in stored
    )
    handed_back = 0
    for stream, group in (
        (stack.keys.jobs("llm"), LLM_GROUP),
        (stack.keys.jobs("tts"), TTS_GROUP),
    ):
        handed_back += (await redis.xpending(stream, group))["pending"]
    await redis.aclose()
    assert turn.complete or finished or handed_back, turn.events[-3:]
    store = containers("redis")
    podman("stop", "-t", "30", *store)
    assert [inspect(c, "{{.State.ExitCode}}") for c in store] == ["0"]
