"""A bad setting stops every entry point before anything starts: one line on stderr naming
the setting and what would be right, exit code 2, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from asr_worker.providers import PROVIDERS as ASR_ENGINES
from llm_worker.providers import PROVIDERS as LLM_AGENTS
from shared.settings import ASR_PROVIDERS, LLM_PROVIDERS, TTS_PROVIDERS
from tts_worker.providers import PROVIDERS as TTS_ENGINES

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINTS = {
    "voice-agent up": ["-m", "voice_agent.cli", "up"],
    "python -m gateway": ["-m", "gateway"],
    "python -m asr_worker": ["-m", "asr_worker"],
    "python -m llm_worker": ["-m", "llm_worker"],
    "python -m tts_worker": ["-m", "tts_worker"],
}
SECRET = "Sup3rSecretPw"
# each bad setting -> words the one line must carry (the setting, and what would be right)
MISTAKES = {
    "LLM_PROVIDER=gpt": ["LLM_PROVIDER='gpt'", "'news', 'openai' or 'echo'"],
    "ASR_PROVIDER=whisper": ["ASR_PROVIDER='whisper'", "'pocketsphinx', 'none' or 'echo'"],
    "TTS_PROVIDER=polly": ["TTS_PROVIDER='polly'", "'espeak', 'edge' or 'openai'"],
    "TTS_FALLBACK=edge,polly": ["TTS_FALLBACK", "'polly'", "espeak, edge, openai"],
    "LLM_PROVIDER=openai": ["LLM_PROVIDER=openai", "LLM_API_KEY", "LLM_BASE_URL"],
    "TTS_PROVIDER=openai": ["openai TTS engine", "OPENAI_API_KEY"],
    "USE_EXTERNAL_ASR=true": ["USE_EXTERNAL_ASR", "OPENAI_API_KEY"],
    "ASR_MODE=fuzzy": ["ASR_MODE='fuzzy'", "'grammar' or 'open'"],
    "PORT=abc": ["PORT='abc'", "integer"],
    "PORT=70000": ["PORT='70000'", "65535"],
    "REDIS_URL=localhost:6379": ["REDIS_URL", "redis://host:6379/0"],
    "LLM_BASE_URL=localhost:11434": ["LLM_BASE_URL", "http(s)://"],
    "NEWS_FEEDS=tech=ftp://feeds.example": ["NEWS_FEEDS", "topic=http(s)://url"],
    "LOG_LEVEL=loud": ["LOG_LEVEL='loud'", "DEBUG, INFO, WARNING, ERROR, CRITICAL"],
    "LOG_FORMAT=xml": ["LOG_FORMAT='xml'", "'auto', 'json' or 'text'"],
    "WORKER_CONCURRENCY=0": ["WORKER_CONCURRENCY='0'", "greater than or equal to 1"],
    "GATEWAY_PROCESSES=0": ["GATEWAY_PROCESSES='0'", "greater than or equal to 1"],
}


def run(entry: str, setting: str, tmp_path: Path, **more: str) -> subprocess.CompletedProcess[str]:
    name, _, value = setting.partition("=")
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_KEY", "_KEYS", "_URL"))}
    env.update({"PYTHONPATH": str(ROOT), name: value, **more})
    return subprocess.run(
        [sys.executable, *ENTRY_POINTS[entry]],
        cwd=tmp_path,  # no .env file around
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], entry: str, words: list[str]):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{entry}: invalid configuration: ")
    for word in words:
        assert word in lines[0]
    assert "Traceback" not in result.stderr and not result.stdout


@pytest.mark.parametrize("setting", list(MISTAKES))
def test_voice_agent_up_names_the_bad_setting(setting: str, tmp_path: Path) -> None:
    assert_one_clear_line(
        run("voice-agent up", setting, tmp_path), "voice-agent up", MISTAKES[setting]
    )


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        (
            f"REDIS_URL=redsi://:{SECRET}@127.0.0.1:6379/0",
            ["REDIS_URL='redsi://***@127.0.0.1:6379/0'", "use redis://host:6379/0"],
        ),
        (  # the clients would refuse it later, each service on its own
            f"REDIS_URL=redis://:{SECRET}@127.0.0.1:notaport/0",
            ["REDIS_URL='redis://***@127.0.0.1:notaport/0'", "port must be a number"],
        ),
    ],
)
def test_a_bad_redis_url_is_one_line_without_its_password(
    setting: str, words: list[str], tmp_path: Path
) -> None:
    result = run("voice-agent up", setting, tmp_path)
    assert_one_clear_line(result, "voice-agent up", words)
    assert SECRET not in result.stderr


def test_the_debug_traceback_shows_no_secret(tmp_path: Path) -> None:
    """pydantic's error lists the inputs of a check across settings: keys included."""
    result = run(
        "voice-agent up",
        "REDIS_CLUSTER=true",  # refused with a unix:// URL, by that check
        tmp_path,
        REDIS_URL=f"unix://:{SECRET}@/tmp/redis.sock",
        LLM_API_KEY=f"sk-{SECRET}",
        LOG_LEVEL="debug",
    )
    assert result.returncode == 2 and "Traceback" in result.stderr, result.stderr
    assert "REDIS_CLUSTER=true needs a redis:// URL" in result.stderr.splitlines()[-1]
    assert SECRET not in result.stderr


@pytest.mark.parametrize("entry", [e for e in ENTRY_POINTS if e != "voice-agent up"])
@pytest.mark.parametrize("setting", ["LLM_PROVIDER=gpt", "PORT=abc"])
def test_each_service_names_the_bad_setting(entry: str, setting: str, tmp_path: Path) -> None:
    assert_one_clear_line(run(entry, setting, tmp_path), entry, MISTAKES[setting])


@pytest.mark.parametrize("entry", ["voice-agent up", "python -m gateway"])
def test_a_port_in_use_is_one_line(entry: str, tmp_path: Path) -> None:
    with socket.create_server(("0.0.0.0", 0)) as taken:
        port = taken.getsockname()[1]
        result = run(entry, f"PORT={port}", tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"{entry}: PORT={port} on 0.0.0.0: Address already in use; "
        "stop the other server or choose another PORT"
    ]


def test_debug_level_adds_the_traceback(tmp_path: Path) -> None:
    result = run("python -m tts_worker", "TTS_PROVIDER=polly", tmp_path / ".")
    assert "Traceback" not in result.stderr
    env_debug = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TTS_PROVIDER": "polly",
        "LOG_LEVEL": "debug",
    }
    debug = subprocess.run(
        [sys.executable, "-m", "tts_worker"],
        cwd=tmp_path,
        env=env_debug,
        capture_output=True,
        text=True,
    )
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1].startswith("python -m tts_worker: invalid configuration")


def test_settings_offer_exactly_the_engines_the_workers_have() -> None:
    assert set(ASR_PROVIDERS) == {*ASR_ENGINES, "none"}  # none: no ASR worker at all
    assert set(LLM_PROVIDERS) == set(LLM_AGENTS)
    assert set(TTS_PROVIDERS) == set(TTS_ENGINES)
