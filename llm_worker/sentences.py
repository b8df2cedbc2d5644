"""Cut a stream of text deltas into sentences, so speech can start before the reply ends.

A sentence is released as soon as its terminator is followed by whitespace; common
abbreviations and decimal numbers do not end a sentence. An over-long run without a
terminator is released at a comma or space, so a rambling model never stalls the voice.
"""

from __future__ import annotations

import re

_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc inc ltd co corp gov no fig e.g i.e u.s u.k a.m p.m".split()
)
_BOUNDARY = re.compile(r"[.!?…]+[\"')\]]*\s+")


class SentenceSplitter:
    def __init__(self, max_chars: int = 240) -> None:
        self._pending = ""
        self._max_chars = max_chars

    def push(self, delta: str) -> list[str]:
        """Add a delta; return the sentences it completed."""
        self._pending += delta
        sentences: list[str] = []
        start = 0
        for match in _BOUNDARY.finditer(self._pending):
            candidate = self._pending[start : match.end()]
            if _ends_with_abbreviation(self._pending[start : match.start() + 1]):
                continue
            sentences.append(candidate.strip())
            start = match.end()
        self._pending = self._pending[start:]
        while len(self._pending) > self._max_chars:
            cut = _soft_cut(self._pending, self._max_chars)
            sentences.append(self._pending[:cut].strip())
            self._pending = self._pending[cut:]
        return [s for s in sentences if s]

    def flush(self) -> list[str]:
        """The rest, at the end of the reply."""
        rest, self._pending = self._pending.strip(), ""
        return [rest] if rest else []


def _ends_with_abbreviation(text: str) -> bool:
    words = text.rstrip(".").split()
    if not words:
        return False
    last = words[-1].lower().strip("(\"'")
    if last in _ABBREVIATIONS:
        return True
    return len(last) == 1 and last.isalpha() and text.endswith(".")  # initials: "J. Smith"


def _soft_cut(text: str, limit: int) -> int:
    for mark in (", ", "; ", " "):
        cut = text.rfind(mark, 0, limit)
        if cut > limit // 3:
            return cut + len(mark)
    return limit
