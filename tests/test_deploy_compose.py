"""compose.yaml and the Dockerfile, checked without a Docker engine.

The file is validated against the Compose Specification schema (a copy in
``deploy_schemas/``), its services against the project (real entry points, known
settings, scaling rules), and then every service's command is run as a local process with
the service's environment, pointed at the test valkey: gateway, one ASR, one LLM and two
TTS workers serve real WebSocket turns, both TTS workers do work, and all exit cleanly on
SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import shlex
import signal
import subprocess
import sys
import tomllib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import yaml
from jsonschema import Draft201909Validator

from shared.keys import ASR_GROUP, LLM_GROUP, TTS_GROUP, Keys
from shared.settings import Settings, load_settings
from tests.audio_checks import speech_16k
from tests.support import E2E_FEEDS, ROOT, free_port
from voice_agent.client import VoiceClient

SCHEMAS = Path(__file__).parent / "deploy_schemas"
SETTINGS_VARS = frozenset(name.upper() for name in Settings.model_fields)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = frozenset(
    p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
)


def load_yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())


def is_entry_point(command: str | list[str]) -> bool:
    """``python -m X`` for a shipped package with ``X/__main__.py``, or ``voice-agent up``."""
    argv = shlex.split(command) if isinstance(command, str) else command
    if len(argv) == 3 and argv[:2] == ["python", "-m"]:
        return argv[2] in PACKAGES and (ROOT / argv[2] / "__main__.py").is_file()
    return argv == ["voice-agent", "up"] and "voice-agent" in PYPROJECT["project"]["scripts"]


def dotenv(path: Path) -> dict[str, str]:
    pairs = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return dict(p.split("=", 1) for p in pairs if "=" in p)


def dockerfile_stages() -> list[list[str]]:
    """Instructions (continuations joined, comments dropped), grouped by ``FROM``."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_compose_matches_the_compose_spec_schema() -> None:
    validator = Draft201909Validator(json.loads((SCHEMAS / "compose_spec.json").read_text()))
    compose = load_yaml("compose.yaml")
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors
    typo = copy.deepcopy(compose)
    typo["services"]["tts_worker"]["comand"] = typo["services"]["tts_worker"].pop("command")
    assert not validator.is_valid(typo), "the schema must reject unknown keys"


def test_the_tracing_overlay_is_valid_and_keeps_the_base_stack_free_of_other_images() -> None:
    """Jaeger lives in its own file: the base stack names only the project's and valkey's images."""
    validator = Draft201909Validator(json.loads((SCHEMAS / "compose_spec.json").read_text()))
    overlay = load_yaml("compose.tracing.yaml")
    assert not [e.message for e in validator.iter_errors(overlay)]
    assert "jaeger" in overlay["services"]
    images = {s["image"] for s in load_yaml("compose.yaml")["services"].values() if "image" in s}
    assert all(image.startswith(("valkey/", "redis")) for image in images), images


def default_stack() -> dict:
    """The services a plain ``docker compose up`` starts (no profile)."""
    services = load_yaml("compose.yaml")["services"]
    return {name: service for name, service in services.items() if "profiles" not in service}


def test_services_run_real_entry_points_with_known_settings() -> None:
    services = default_stack()
    assert set(services) == {"redis", "gateway", "asr_worker", "llm_worker", "tts_worker"}
    for name, service in services.items():
        if name == "redis":
            continue
        assert service["build"] == "." and is_entry_point(service["command"]), name
        assert set(service["environment"]) <= SETTINGS_VARS, name
        assert service["environment"]["REDIS_URL"].startswith("redis://redis:6379/"), name
        assert service["depends_on"] == {"redis": {"condition": "service_healthy"}}, name
        assert service["env_file"] == ".env", name
    assert set(dotenv(ROOT / ".env.example")) <= SETTINGS_VARS


def test_workers_can_scale_and_the_store_keeps_its_streams() -> None:
    services = default_stack()
    for name in ("asr_worker", "llm_worker", "tts_worker"):
        assert not {"container_name", "ports"} & set(services[name]), name
    gateway = services["gateway"]
    assert gateway["ports"] == [f"8000:{gateway['environment']['PORT']}"]
    assert "/health" in " ".join(gateway["healthcheck"]["test"])
    grace = int(gateway["stop_grace_period"].rstrip("s"))
    assert grace > Settings.model_fields["shutdown_grace_seconds"].default
    store = services["redis"]
    args = " ".join(store["command"])
    assert store["image"].startswith("valkey/valkey:8") and "healthcheck" in store
    assert "--appendonly yes" in args and "--maxmemory-policy noeviction" in args


def test_dockerfile_is_one_slim_non_root_image_choosing_the_service_by_command() -> None:
    *builders, final = dockerfile_stages()
    assert builders and final[0].split()[1] == "python:3.11-slim"
    assert not any("apt-get" in line or "build-essential" in line for line in final)
    user = next(line.split()[1] for line in final if line.startswith("USER "))
    assert user not in {"root", "0"}
    cmd = next(line for line in reversed(final) if line.startswith("CMD "))
    assert json.loads(cmd[4:]) == ["python", "-m", "gateway"]
    builder = builders[-1]
    deps = next(i for i, line in enumerate(builder) if "pip install" in line)
    copied = {line.split()[1]: i for i, line in enumerate(builder) if line.startswith("COPY ")}
    # the dependency layer first; then the whole context, so a new package needs no edit
    assert copied["pyproject.toml"] < deps < copied["."], "deps layer first"
    assert all("--from=" in line for line in final if line.startswith("COPY ")), "venv only"


def test_dockerignore_keeps_the_packages_and_nothing_else_of_the_repository() -> None:
    """The build copies the whole context: .dockerignore is what keeps tests, docs,
    venvs and secrets out (tests/test_containers.py checks a real build's context)."""
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"tests", "docs", "bench", ".git", ".env", "**/.venv", "**/venv"} <= ignored
    assert not {p for p in PACKAGES if p in ignored or f"{p}/" in ignored}
    assert not {"pyproject.toml", "README.md"} & ignored  # the wheel's build needs both


def start_service(
    service: dict[str, Any], overrides: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """The service's command as a local process, with the environment compose gives it
    (``.env``, then ``environment``) and the test's overrides on top."""
    argv = [sys.executable if a == "python" else a for a in service["command"]]
    env = {**os.environ, **dotenv(ROOT / ".env.example"), **service["environment"], **overrides}
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def print_logs(directory: Path) -> None:
    for log in sorted(directory.glob("*.log")):
        print(f"--- {log.name}", log.read_text()[-2000:], sep="\n")


async def consumers(redis: aioredis.Redis, stream: str, group: str) -> list[dict[str, Any]]:
    try:
        return await redis.xinfo_consumers(stream, group)
    except aioredis.ResponseError:  # the group does not exist yet
        return []


@dataclass
class Deployment:
    ws_url: str
    keys: Keys
    redis: aioredis.Redis
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]


@pytest.fixture
async def deployment(
    redis_url: str, fixture_http: str, tmp_path: Path
) -> AsyncIterator[Deployment]:
    """gateway + asr + llm + two tts workers, as compose.yaml runs them, on db 3."""
    services = load_yaml("compose.yaml")["services"]
    port, keys = free_port(), Keys(f"deploy{uuid.uuid4().hex[:6]}")
    feeds = (spec.split("=") for spec in E2E_FEEDS)
    overrides = {
        "REDIS_URL": f"{redis_url}/3",
        "STREAM_PREFIX": keys.prefix,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "NEWS_FEEDS": ",".join(f"{topic}={fixture_http}{path}" for topic, path in feeds),
    }
    names = ("gateway", "asr_worker", "llm_worker", "tts_worker", "tts_worker")
    logs = [tmp_path / f"{n}-{name}.log" for n, name in enumerate(names)]
    procs = [
        start_service(services[name], overrides, log) for name, log in zip(names, logs, strict=True)
    ]
    redis = aioredis.Redis.from_url(overrides["REDIS_URL"])
    ready = {
        (keys.jobs("asr"), ASR_GROUP): 1,
        (keys.jobs("llm"), LLM_GROUP): 1,
        (keys.jobs("tts"), TTS_GROUP): 2,
    }
    try:
        async with asyncio.timeout(60), httpx.AsyncClient() as http:
            while True:
                assert all(p.poll() is None for p in procs), "a service exited early"
                counts = {k: len(await consumers(redis, *k)) for k in ready}
                with contextlib.suppress(httpx.HTTPError):
                    health = await http.get(f"http://127.0.0.1:{port}/health")
                    if counts == ready and health.status_code == 200:
                        break
                await asyncio.sleep(0.2)
        yield Deployment(f"ws://127.0.0.1:{port}/ws/voice", keys, redis, procs, logs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        print_logs(tmp_path)  # pytest shows them when the test fails
        await redis.flushdb()
        await redis.aclose()


async def test_compose_services_run_as_processes_share_work_and_stop_cleanly(
    deployment: Deployment,
) -> None:
    async with VoiceClient.connect(deployment.ws_url) as client:
        spoken = await client.say(speech_16k("read me the sports headlines"), realtime=False)
    assert spoken.transcript and spoken.complete and not spoken.errors, spoken.events[-1:]
    for _round in range(4):  # the group hands jobs to the longest-waiting consumer
        async with VoiceClient.connect(deployment.ws_url) as client:
            for text in ("technology news", "business news"):
                turn = await client.ask(text)
                assert turn.chunks and turn.complete and not turn.errors, turn.events[-1:]
        tts = await consumers(deployment.redis, deployment.keys.jobs("tts"), TTS_GROUP)
        if all(c["inactive"] >= 0 for c in tts):  # -1: this consumer never got a job
            break
    assert [c["inactive"] >= 0 for c in tts] == [True, True], tts
    for proc in deployment.procs:
        proc.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(asyncio.to_thread(p.wait, 20) for p in deployment.procs))
    # every service shuts down gracefully and exits 0 (the gateway too: see gateway_server)
    assert codes == [0] * 5, codes
    assert "Application shutdown complete" in deployment.logs[0].read_text()


def test_cluster_profile_runs_every_service_on_a_three_node_cluster() -> None:
    services = load_yaml("compose.yaml")["services"]
    cluster = {name: s for name, s in services.items() if s.get("profiles") == ["cluster"]}
    nodes = [name for name, s in cluster.items() if "--cluster-enabled" in s.get("command", [])]
    assert len(nodes) == 3, nodes
    apps = {name: s for name, s in cluster.items() if s.get("build") == "."}
    assert {" ".join(s["command"]) for s in apps.values()} == {
        f"python -m {m}" for m in ("gateway", "asr_worker", "llm_worker", "tts_worker")
    }
    for name, service in apps.items():
        assert service["environment"]["REDIS_URL"].startswith("redis+cluster://valkey-1:"), name
        assert load_settings(redis_url=service["environment"]["REDIS_URL"]).cluster
