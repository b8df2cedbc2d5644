"""render.yaml (services on paid plans) and render.free.yaml (one free all-in-one service).

Render ignores nothing loudly, so a typo in a blueprint would deploy a broken service:
both files are checked against a schema of the documented fields
(``deploy_schemas/render_blueprint.schema.json``), then for wiring, secrets, plans and
commands that really start this project's services.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft201909Validator

from shared.settings import Settings
from tests.support import ROOT, free_port, wait_for_http
from tests.test_deploy_compose import (
    SCHEMAS,
    SETTINGS_VARS,
    dockerfile_stages,
    is_entry_point,
    load_yaml,
)

BLUEPRINTS = ("render.yaml", "render.free.yaml")
SECRETS = frozenset({"OPENAI_API_KEY", "LLM_API_KEY"})
VALIDATOR = Draft201909Validator(json.loads((SCHEMAS / "render_blueprint.schema.json").read_text()))


def env_vars(blueprint: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(owner name, env var) for every service and every group."""
    for owner in blueprint["services"] + blueprint.get("envVarGroups", []):
        for var in owner.get("envVars", []):
            yield owner["name"], var


def value_of(blueprint: dict[str, Any], service: dict[str, Any], key: str) -> str | None:
    """The value a service sees for ``key``: its own, else from the groups it uses."""
    groups = {g["name"]: g for g in blueprint.get("envVarGroups", [])}
    own = {v["key"]: v.get("value") for v in service.get("envVars", []) if "key" in v}
    for var in service.get("envVars", []):
        if "fromGroup" in var:
            own = {v["key"]: v["value"] for v in groups[var["fromGroup"]]["envVars"]} | own
    return own.get(key)


@pytest.mark.parametrize("name", BLUEPRINTS)
def test_blueprint_uses_only_documented_types_and_fields(name: str) -> None:
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(load_yaml(name))
    ]
    assert not errors


@pytest.mark.parametrize(
    ("service", "problem"),
    [
        ({"type": "worker", "runtime": "docker", "healthCheckPath": "/health"}, "health on worker"),
        ({"type": "keyvalue", "plan": "starter"}, "keyvalue without ipAllowList"),
        ({"type": "web", "runtime": "docker", "dockerCmd": "x"}, "unknown field"),
        (
            {
                "type": "web",
                "runtime": "docker",
                "envVars": [{"key": "A", "sync": False, "value": "x"}],
            },
            "secret with a value",
        ),
        ({"type": "background", "runtime": "docker"}, "unknown type"),
    ],
)
def test_schema_rejects_what_render_would_reject(service: dict[str, Any], problem: str) -> None:
    assert not VALIDATOR.is_valid({"services": [{"name": "x", **service}]}), problem


@pytest.mark.parametrize("name", BLUEPRINTS)
def test_store_is_internal_noeviction_and_wired_into_every_service(name: str) -> None:
    blueprint = load_yaml(name)
    stores = {s["name"]: s for s in blueprint["services"] if s["type"] == "keyvalue"}
    groups = {g["name"] for g in blueprint.get("envVarGroups", [])}
    assert stores and all(
        s["ipAllowList"] == [] and s["maxmemoryPolicy"] == "noeviction" for s in stores.values()
    )
    for owner, var in env_vars(blueprint):
        if "fromGroup" in var:
            assert var["fromGroup"] in groups, owner
        if "fromService" in var:
            assert var["key"] == "REDIS_URL", owner
            assert var["fromService"]["type"] == "keyvalue", owner
            assert var["fromService"]["name"] in stores, owner
            assert var["fromService"]["property"] == "connectionString", owner
    for service in blueprint["services"]:
        if service["type"] != "keyvalue":
            wired = [v for v in service["envVars"] if v.get("key") == "REDIS_URL"]
            assert wired and "fromService" in wired[0], service["name"]


@pytest.mark.parametrize("name", BLUEPRINTS)
def test_variables_are_settings_and_secrets_are_never_in_the_file(name: str) -> None:
    for owner, var in env_vars(load_yaml(name)):
        if "key" not in var:
            continue
        assert var["key"] in SETTINGS_VARS, (owner, var["key"])
        if var["key"] in SECRETS:
            assert var == {"key": var["key"], "sync": False}, (owner, var["key"])


@pytest.mark.parametrize("name", BLUEPRINTS)
def test_every_service_starts_a_real_entry_point(name: str) -> None:
    default_cmd = json.loads(
        next(ln for ln in dockerfile_stages()[-1] if ln.startswith("CMD "))[4:]
    )
    for service in load_yaml(name)["services"]:
        if service["type"] == "keyvalue":
            continue
        assert (
            service["runtime"] == "docker"
            and service.get("dockerfilePath", "./Dockerfile") == "./Dockerfile"
        )
        command = service.get("dockerCommand") or service.get("startCommand") or default_cmd
        assert is_entry_point(command), (service["name"], command)
        if service["type"] == "web":
            assert service["healthCheckPath"] == "/health"
        assert shlex.split(command)[-1] != "gateway" or service["type"] == "web"


def test_paid_blueprint_runs_each_stage_as_its_own_service_on_paid_plans() -> None:
    blueprint = load_yaml("render.yaml")
    commands = {s.get("dockerCommand"): s for s in blueprint["services"]}
    for module in ("asr_worker", "llm_worker", "tts_worker"):
        assert commands[f"python -m {module}"]["type"] == "worker", module
    assert commands["python -m gateway"]["type"] == "web"
    assert all(s["plan"] != "free" for s in blueprint["services"]), "workers need a paid plan"
    default_grace = Settings.model_fields["shutdown_grace_seconds"].default
    for service in blueprint["services"]:
        if service["type"] != "keyvalue":
            grace = float(value_of(blueprint, service, "SHUTDOWN_GRACE_SECONDS") or default_grace)
            assert grace < service.get("maxShutdownDelaySeconds", 30), service["name"]


def test_free_blueprint_is_one_all_in_one_web_service_and_a_free_store() -> None:
    blueprint = load_yaml("render.free.yaml")
    kinds = sorted((s["type"], s["plan"]) for s in blueprint["services"])
    assert kinds == [("keyvalue", "free"), ("web", "free")]
    web = next(s for s in blueprint["services"] if s["type"] == "web")
    assert web["dockerCommand"] == "voice-agent up"
    assert value_of(blueprint, web, "USE_EXTERNAL_ASR") in (None, "false")
    # a tenth of a CPU cannot recognise speech in real time (bench/free_tier.py):
    # recognition on the phone, no recogniser loaded
    assert value_of(blueprint, web, "ASR_PROVIDER") == "none"
    assert Settings(asr_provider="none").worker_kinds == ("llm", "tts")
    assert float(value_of(blueprint, web, "MAX_UTTERANCE_SECONDS") or 30) <= 10


def test_all_in_one_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """Render sends SIGTERM on every deploy of the free service: exit 0, nothing left over."""
    env = {**os.environ, "PORT": str(free_port()), "HOST": "127.0.0.1", "LOG_LEVEL": "WARNING"}
    env.pop("REDIS_URL", None)  # the embedded valkey, a child process
    with open(tmp_path / "up.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voice_agent.cli", "up"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    children: list[int] = []
    try:
        wait_for_http(f"http://127.0.0.1:{env['PORT']}/health", proc)
        children = [
            int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        ]
        assert children, "the embedded valkey runs as a child"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

        def alive() -> list[int]:
            return [
                c
                for c in children
                if Path(f"/proc/{c}/cmdline").exists() and Path(f"/proc/{c}/cmdline").read_bytes()
            ]

        while alive():  # a child left running would end in pytest's timeout, naming this line
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        for child in children:  # an orphaned valkey-server of this test
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)


def _runs(service: dict[str, Any], stage: str) -> bool:
    command = service.get("dockerCommand", "")
    return command == "voice-agent up" or command == f"python -m {stage}"


@pytest.mark.parametrize("name", BLUEPRINTS)
def test_blueprints_say_how_to_choose_a_model_and_speak_with_neural_voices(name: str) -> None:
    blueprint = load_yaml(name)
    assert "docs/providers.md" in (ROOT / name).read_text()  # the comment beside them
    services = [s for s in blueprint["services"] if s["type"] != "keyvalue"]
    for service in services:
        keys = {v["key"]: v for v in service["envVars"] if "key" in v}
        if _runs(service, "llm_worker"):
            for key in ("LLM_PROVIDER", "LLM_BASE_URL", "LLM_MODEL"):
                assert value_of(blueprint, service, key), (service["name"], key)
            assert keys["LLM_API_KEY"] == {"key": "LLM_API_KEY", "sync": False}
        if _runs(service, "tts_worker"):
            assert value_of(blueprint, service, "TTS_FALLBACK") == "edge,espeak"
        env = {
            key: value_of(blueprint, service, key)
            for key in SETTINGS_VARS
            if value_of(blueprint, service, key) is not None
        }
        env.pop("REDIS_URL", None)
        Settings(**{key.lower(): value for key, value in env.items()})  # every value valid
    assert any(_runs(s, "llm_worker") for s in services)
    assert any(_runs(s, "tts_worker") for s in services)
