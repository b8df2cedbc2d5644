"""Cut a stream of text deltas into sentences, so speech can start before the reply ends.

A sentence is released as soon as its terminator is followed by whitespace. A full stop
after an abbreviation, an initial or a German ordinal is read by the session language's
rules (``llm_worker.sentence_rules``): "Dr." and "z. B." never end a sentence; after
"U.S." or "am 3." the next word decides, so only those few sentences wait for one more
word, and a plain sentence is released at once. Decimals ("2.8", "3,5") and "3.º" have
no space after the stop. Chinese (and other CJK) text has no spaces: its full-width
terminators ``。！？；`` end a sentence at once, in any language, and in a CJK session so
does ``…``. An over-long run without a terminator is released at a comma (``,`` ``，``
``、``) or space, so a rambling model never stalls the voice; CJK runs are cut shorter,
since a character is about a syllable of speech.
"""

from __future__ import annotations

import re

from llm_worker.sentence_rules import Kind, rules_for
from shared import languages

_CLOSERS = r"[\"')\]”“’‘»«›‹」』）》]*"
_BOUNDARY = re.compile(rf"[.!?…]+{_CLOSERS}\s+|[。！？；．]+{_CLOSERS}")
_CJK_BOUNDARY = re.compile(rf"[.!?]+{_CLOSERS}\s+|(?:[。！？；．…]|\.\.\.)+{_CLOSERS}")
_OPENING = "(\"'„“«»‹›¿¡[‘"
_SOFT_MARKS = (", ", "; ", "，", "；", "、", "：", " ")
CJK_MAX_CHARS = 60  # about 12 s of Mandarin speech


class SentenceSplitter:
    def __init__(self, max_chars: int | None = None, language: str = "en") -> None:
        cjk = languages.language(language).cjk
        self._pending = ""
        self._max_chars = max_chars or (CJK_MAX_CHARS if cjk else 240)
        self._boundary = _CJK_BOUNDARY if cjk else _BOUNDARY
        self._rules = rules_for(language)

    def push(self, delta: str) -> list[str]:
        """Add a delta; return the sentences it completed."""
        self._pending += delta
        text = self._pending
        sentences: list[str] = []
        start = 0
        for match in self._boundary.finditer(text):
            ends = self._ends_sentence(text, start, match)
            if ends is None:
                break  # the next word decides, and it has not arrived yet
            if ends:
                sentences.append(text[start : match.end()].strip())
                start = match.end()
        self._pending = text[start:]
        while len(self._pending) > self._max_chars:
            cut = _soft_cut(self._pending, self._max_chars)
            sentences.append(self._pending[:cut].strip())
            self._pending = self._pending[cut:]
        return [s for s in sentences if s]

    def flush(self) -> list[str]:
        """The rest, at the end of the reply."""
        rest, self._pending = self._pending.strip(), ""
        return [rest] if rest else []

    def _ends_sentence(self, text: str, start: int, match: re.Match[str]) -> bool | None:
        """Whether this terminator ends the sentence begun at ``start``; None: not known yet."""
        mark = match.group()
        if not mark.startswith(".") or mark.startswith(".."):
            return True  # ? ! … 。 and "..." always end one
        words = text[start : match.start()].split()
        word = words[-1].lstrip(_OPENING) if words else ""
        kind = self._rules.kind(word)
        if kind is Kind.ASK_NEXT:
            return self._rules.next_starts_sentence(text, match.end())
        return kind is Kind.ENDS


def _soft_cut(text: str, limit: int) -> int:
    for mark in _SOFT_MARKS:
        cut = text.rfind(mark, 0, limit)
        if cut > limit // 3:
            return cut + len(mark)
    return limit
