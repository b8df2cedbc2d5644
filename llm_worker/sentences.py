"""Cut a stream of text deltas into sentences, so speech can start before the reply ends.

A sentence is released as soon as its terminator is followed by whitespace; common
abbreviations and decimal numbers do not end a sentence. Chinese (and other CJK) text
has no spaces: its full-width terminators ``。！？；`` end a sentence at once, in any
language, and in a CJK session so does ``…``. An over-long run without a terminator is
released at a comma (``,`` ``，`` ``、``) or space, so a rambling model never stalls the
voice; CJK runs are cut shorter, since a character is about a syllable of speech.
"""

from __future__ import annotations

import re

from shared import languages

_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc inc ltd co corp gov no fig e.g i.e u.s u.k a.m p.m".split()
)
_CLOSERS = r"[\"')\]”’」』）》]*"
_BOUNDARY = re.compile(rf"[.!?…]+{_CLOSERS}\s+|[。！？；．]+{_CLOSERS}")
_CJK_BOUNDARY = re.compile(rf"[.!?]+{_CLOSERS}\s+|(?:[。！？；．…]|\.\.\.)+{_CLOSERS}")
_SOFT_MARKS = (", ", "; ", "，", "；", "、", "：", " ")
CJK_MAX_CHARS = 60  # about 12 s of Mandarin speech


class SentenceSplitter:
    def __init__(self, max_chars: int | None = None, language: str = "en") -> None:
        cjk = languages.language(language).cjk
        self._pending = ""
        self._max_chars = max_chars or (CJK_MAX_CHARS if cjk else 240)
        self._boundary = _CJK_BOUNDARY if cjk else _BOUNDARY

    def push(self, delta: str) -> list[str]:
        """Add a delta; return the sentences it completed."""
        self._pending += delta
        sentences: list[str] = []
        start = 0
        for match in self._boundary.finditer(self._pending):
            candidate = self._pending[start : match.end()]
            if match.group()[0] == "." and _ends_with_abbreviation(
                self._pending[start : match.start() + 1]
            ):
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
    for mark in _SOFT_MARKS:
        cut = text.rfind(mark, 0, limit)
        if cut > limit // 3:
            return cut + len(mark)
    return limit
