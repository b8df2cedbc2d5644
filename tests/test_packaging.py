"""A plain (non-editable) ``pip install .`` must carry the data the engines load."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_wheel_contains_packages_grammar_and_dictionary(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("voice_news_agent-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "asr_worker/data/news.gram",
        "asr_worker/data/news.dict",
        "gateway/app.py",
        "voice_agent/cli.py",
        "llm_worker/news/agent.py",
        "tts_worker/mp3.py",
        "gateway/static/index.html",
        "gateway/static/app.js",
        "gateway/static/mic-worklet.js",
    ):
        assert required in names, required
    assert not any(name.startswith("tests/") for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "voice-agent = voice_agent.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    )
