"""What README.md tells a new user to run answers as written."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import httpx

from voice_agent.talk import EXIT_CODES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CODE = "\n".join(re.findall(r"```(?:bash|python)\n(.*?)```", README, re.S))


def test_the_endpoints_answer_as_described(system) -> None:
    page = httpx.get(f"{system.http_url}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    health = httpx.get(f"{system.http_url}/health")
    assert health.status_code == 200
    assert health.json()["status"] in ("ok", "degraded") and health.json()["redis"] == "ok"
    ready = httpx.get(f"{system.http_url}/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert set(ready.json()["workers"]) == {"asr", "llm", "tts"}
    assert "vna_" in httpx.get(f"{system.http_url}/metrics").text
    for path in ("/", "/health", "/ready", "/metrics"):
        assert f"`GET {path}`" in README


def test_the_python_example_runs(system) -> None:
    example = re.search(r"```python\n(import asyncio\nfrom voice_agent.*?)```", README, re.S)[1]
    script = example.replace("ws://localhost:8000/ws/voice", system.ws_url)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "audio chunks" in result.stdout and "battery" in result.stdout.lower()


def test_every_command_shown_exists() -> None:
    subcommands = set(re.findall(r"voice-agent (\w+)", CODE + README))
    assert {"up", "talk", "token"} <= subcommands
    for sub in subcommands:
        result = subprocess.run(
            [sys.executable, "-m", "voice_agent.cli", sub, "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, (sub, result.stderr)
    modules = set(re.findall(r"python -m ([\w.]+)", README)) - {"pytest"}
    assert {"gateway", "asr_worker", "bench.stop_time"} <= modules
    for module in modules:
        runnable = module if "." in module else f"{module}.__main__"  # bench.X: a script
        assert importlib.util.find_spec(runnable), module


def test_talk_exit_codes_are_the_documented_ones() -> None:
    table = README.split("| exit code | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = {
        int(code): text for code, text in re.findall(r"^\| (\d+) \| (.+) \|$", table, re.M)
    }
    assert set(documented) == set(EXIT_CODES)
    for code, meaning in EXIT_CODES.items():
        assert documented[code].replace("`", "") == meaning, code


# README's figures, each beside the text of the one place it is measured
QUOTED = [
    ("end of speech → final transcript p50 10 ms", "performance.md", "transcript p50\n10.3"),
    ("→ first audio chunk p50 36 ms", "performance.md", "first audio chunk p50 36.4"),
    ("→ first audio chunk p50 24 ms", "performance.md", "first audio chunk p50 24.2"),
    ("word error rate 0.13 ", "performance.md", "word error rate 0.132"),
    ("add 7-8 ms at p50 to a typed command", "performance.md", "**6.8-8.2 ms added**"),
    ("at p50 1.4-1.6 ms and p99 4.2-4.7 ms", "performance.md", "| 100 | 0.6 / 1.4 (0.52)"),
    ("holds 250 at p99 ≤ 50 ms", "performance.md", "| 18:53 | 1 | **250** |"),
    ("peaks at 154 MB with one active session", "deploy.md", "| 154 MB | 9 MB |"),
    ("(229 MB with four, plus 9-13 MB", "deploy.md", "| 229 MB | 13 MB |"),
    ("a gateway is 77 MB plus 54 KB per open session", "performance.md", "| 76.6 MB | 87.5 MB |"),
    ("54 KB per open session", "performance.md", "(54 KB each)"),
    ("arrives 746 ms after the voice stops", "performance.md", "included) | 746 ms |"),
    (
        "pauses it 273 ms after the voice starts and cuts it at 682 ms",
        "performance.md",
        "| no echo | 273 / 392 ms | 682 / 933 ms |",
    ),
]


def test_readme_figures_are_the_measured_ones() -> None:
    readme = " ".join(README.split())
    for quoted, page, measured in QUOTED:
        assert quoted in readme, quoted
        source = (ROOT / "docs" / page).read_text()
        assert " ".join(measured.split()) in " ".join(source.split()), (page, measured)
