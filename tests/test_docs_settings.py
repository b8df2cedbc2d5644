"""The docs name every setting the program reads, with the program's defaults.

Sources compared with ``shared.settings.Settings``: the table in docs/configuration.md
(every setting, none stale) and the README's short one,
``.env.example`` (every setting, set to its default or commented out), and every
``NAME`` / ``NAME=value`` / ``NAME (default)`` mentioned in docs/*.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FIELDS = {name.upper(): field for name, field in Settings.model_fields.items()}
# environment variables the docs mention that are not settings of the program
NOT_SETTINGS = {
    "VOICE_AGENT_TOKEN",  # voice-agent talk's token
    "TEST_REDIS_URL",  # the test suite's Redis
    "VNA_SCREENSHOT",  # the browser test's screenshot
    "VNA_REQUIRE_BROWSER",  # CI: the browser test must run
    "VNA_REQUIRE_CLUSTER",  # CI: the Redis Cluster tests must run
    "DEBIAN_FRONTEND",
    "PROMETHEUS_MULTIPROC_DIR",  # prometheus-client: several gateway processes' metrics
    "ASR_PROVIDERS",  # the choices, constants in shared/settings.py
    "LLM_PROVIDERS",
    "TTS_PROVIDERS",
    "OLLAMA_HOST",  # Ollama's own listen address, in the model recipes
}
UNSET = {"unset", "—", "-", "empty", ""}


def default_text(name: str) -> str:
    """A setting's default as the docs write it."""
    value = FIELDS[name].default
    if value is None or (isinstance(value, SecretStr) and not value.get_secret_value()):
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def same_default(name: str, written: str) -> bool:
    expected = default_text(name)
    written = written.strip().strip("`")
    if written.lower() in UNSET or expected in ("unset", ""):
        return written.lower() in UNSET and expected in ("unset", "")
    return written == expected


def settings_table(path: Path) -> dict[str, str]:
    """Setting -> default as written, from the first table whose header starts with
    "| Variable | Default |" in ``path``."""
    text = path.read_text().split("| Variable | Default |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for names, default in re.findall(r"^\| ((?:`[A-Z0-9_]+`(?: / )?)+) \| ([^|]+) \|", text, re.M):
        for name in re.findall(r"`([A-Z0-9_]+)`", names):
            rows[name] = default.strip()
    return rows


def assert_defaults(rows: dict[str, str]) -> None:
    special = {"NEWS_FEEDS": "BBC feeds"}  # empty means the built-in BBC feeds
    for name, written in rows.items():
        if name in special:
            assert written == special[name] and default_text(name) == ""
        elif name.startswith("NEWS_FEEDS_"):  # empty: NEWS_FEEDS, else built-in per language
            assert written.startswith("`NEWS_FEEDS` if set") and default_text(name) == ""
        else:
            assert same_default(name, written), (name, written, default_text(name))


def test_the_configuration_page_lists_every_setting_with_its_default() -> None:
    rows = settings_table(ROOT / "docs" / "configuration.md")
    missing, stale = set(FIELDS) - set(rows), set(rows) - set(FIELDS)
    assert not missing, f"docs/configuration.md lacks {sorted(missing)}"
    assert not stale, f"docs/configuration.md lists settings the program lacks: {sorted(stale)}"
    assert_defaults(rows)


def test_the_readme_names_a_few_settings_and_points_to_all_of_them() -> None:
    section = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ")[0]
    assert "(docs/configuration.md)" in section
    rows = settings_table(ROOT / "README.md")
    assert 3 <= len(rows) <= 15 and set(rows) <= set(FIELDS), set(rows) - set(FIELDS)
    assert_defaults(rows)


def test_env_example_sets_every_setting_to_its_default() -> None:
    seen = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]+)=(.*)$", line.strip())
        if match:
            seen[match[2]] = (bool(match[1]), match[3])
    assert set(seen) == set(FIELDS), (set(FIELDS) - set(seen), set(seen) - set(FIELDS))
    for name, (commented, value) in seen.items():
        if not commented:
            assert same_default(name, value), (name, value, default_text(name))


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_docs_name_only_real_settings_with_their_defaults(path: Path) -> None:
    text = path.read_text()
    names = set(re.findall(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)(?:=[^`]*)?`", text))
    names |= set(re.findall(r"^\s*(?:export )?([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)=", text, re.M))
    # OTEL_*: OpenTelemetry's own variables, read by its SDK (docs/tracing.md)
    unknown = {n for n in names - set(FIELDS) - NOT_SETTINGS if not n.startswith(("VNA_", "OTEL_"))}
    # a name that is a setting's prefix with a suffix (NEWS_FEEDS_*) is not a typo
    unknown = {n for n in unknown if not any(n.startswith(f"{f}_") for f in FIELDS)}
    assert not unknown, f"{path.name} names settings the program does not read: {unknown}"
    # "`NAME` (default)" in prose and tables: the default must be the program's
    for name, written in re.findall(r"`([A-Z][A-Z0-9_]+)` \(([^)]+)\)", text):
        words = [w.rstrip(",;") for w in written.removeprefix("default ").split()]
        if name not in FIELDS or not re.fullmatch(r"[\d.]+|true|false", words[0]):
            continue  # prose in parentheses, not a value
        value = words[0]
        if len(words) > 1 and words[1] in ("KiB", "MiB"):
            value = str(int(float(value) * 1024 ** (1 + (words[1] == "MiB"))))
        assert same_default(name, value), (path.name, name, written, default_text(name))
