"""A real browser for page tests: Debian's chromium driven by Playwright.

Playwright's Python package carries its own driver, and ``executable_path`` points it at
the system chromium, so nothing is downloaded besides Debian's package. When chromium is
missing and we are root with apt-get (CI, a fresh development machine), it is installed
here; elsewhere the tests skip and say how to install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
APT_PACKAGES = ("chromium", "fonts-liberation")


def find_chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM_PATH")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _apt_install() -> str:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES]
    for command in (["apt-get", "update", "-qq"], install):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=540)
        if result.returncode != 0:
            return f"{' '.join(command[:2])} failed: {result.stderr.strip()[-300:]}"
    return ""


def _unavailable(reason: str) -> NoReturn:
    """Skip, or fail where a browser is required (CI sets VNA_REQUIRE_BROWSER=1)."""
    if os.environ.get("VNA_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def ensure_chromium() -> str:
    """The path of a chromium binary, installing Debian's package if we can."""
    path = find_chromium()
    if path:
        return path
    can_apt = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
    if not can_apt:
        _unavailable(
            "chromium is not installed and cannot be installed here (needs root and "
            "apt-get); install it (apt-get install chromium) or set CHROMIUM_PATH"
        )
    problem = _apt_install()
    path = find_chromium()
    if not path:
        _unavailable(f"chromium could not be installed with apt-get: {problem or 'not found'}")
    return path


def ensure_playwright() -> None:
    """Playwright's Python package (a test dependency); installed with pip if missing."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "playwright>=1.45"],
            check=True,
            timeout=600,
        )


def chromium_args(fake_mic_wav: Path) -> list[str]:
    """A fake microphone that plays ``fake_mic_wav`` once, without a permission prompt."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake_mic_wav}%noloop",
    ]
