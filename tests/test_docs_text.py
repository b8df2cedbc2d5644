"""The docs read as a product's docs: Markdown tables that render whole, and no words
about how the project was made (its seed, issue numbers, branches, commits, the agents
that wrote it). Over README.md and every docs/**/*.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
HISTORY = {
    "the seed": re.compile(r"\bseed\b", re.I),
    "an issue number": re.compile(r"\bissues? #?\d+", re.I),
    "other agents": re.compile(r"\b(?:other|three|four|five) (?:agents|helpers)\b", re.I),
    "agents at work": re.compile(r"\bagents? (?:working|at work)\b|\bhelpers'", re.I),
    "this branch": re.compile(r"\b(?:this|the feature|my) branch\b", re.I),
    "a commit hash": re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b"),
    "this work": re.compile(r"\b(?:start|beginning) of this work\b", re.I),
    "an earlier version": re.compile(
        r"\b(?:previous|earlier) (?:release|version|code|runs?)s?\b|\(earlier:"
        r"|\b(?:before|after) the (?:optimi[sz]ations?|changes?)\b",
        re.I,
    ),
}
_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def cells(row: str) -> int:
    """Cells of a table row as GitHub counts them: unescaped pipes split."""
    inner = row.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return len(re.split(r"(?<!\\)\|", inner))


def table_problems(path: Path) -> list[str]:
    """Rows whose cell count differs from their header's, and table rows that no header
    owns (a blank line inside a table ends it: what follows renders as text)."""
    problems = []
    lines = prose_lines(path)
    header: int | None = None
    previous = -1
    for index, (number, line) in enumerate(lines):
        is_row = line.lstrip().startswith("|")
        following = lines[index + 1][1] if index + 1 < len(lines) else ""
        contiguous = number == previous + 1
        previous = number
        if not is_row:
            header = None
            continue
        if header is not None and contiguous:
            if not _SEPARATOR.match(line.strip()) and cells(line) != header:
                problems.append(f"{path.name}:{number}: {cells(line)} cells, header has {header}")
        elif _SEPARATOR.match(following.strip()):
            header = cells(line)
            if cells(following) != header:
                problems.append(f"{path.name}:{number + 1}: separator does not match header")
        else:
            problems.append(f"{path.name}:{number}: table row outside a table (a blank line?)")
            header = None
    return problems


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_table_renders_whole(path: Path) -> None:
    assert not table_problems(path)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_words_about_how_the_project_was_made(path: Path) -> None:
    found = [
        f"{path.name}:{number}: {what}: {match[0]!r}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        for what, pattern in HISTORY.items()
        if (match := pattern.search(line))
    ]
    assert not found


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    broken = tmp_path / "broken.md"
    broken.write_text(
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n| 3 | 4 |\n\n| x | y |\n|---|---|\n| 1 | 2 | 3 |\n"
    )
    assert [p.split(": ", 1)[1] for p in table_problems(broken)] == [
        "table row outside a table (a blank line?)",
        "3 cells, header has 2",
    ]
    whole = tmp_path / "whole.md"
    whole.write_text("| a | b |\n|---|---|\n| `x \\| y` | 2 |\n\n```\n| not | a | table\n```\n")
    assert table_problems(whole) == []
    for line in (
        "the seed's client",
        "issue 7",
        "this branch",
        "at `425bdbb`",
        "records earlier runs of the bench",
        "before the optimisations described below",
        "the previous release",
    ):
        assert any(p.search(line) for p in HISTORY.values()), line
    for line in ("a seeded random loop", "event 1764500000000-3", "7 issues"):
        assert not any(p.search(line) for p in HISTORY.values()), line
