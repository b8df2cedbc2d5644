"""Sentence splitters scored on the news sentences of ``tests/test_sentences_languages``,
fed token by token as a model streams them; printed as JSON.

Per splitter: rows split exactly right per language, CPU microseconds per token fed,
and how late sentences are released (tokens fed after the one that ended a sentence
before it came out: 1 is the least, the next token brings the space after the stop).
``pysbd`` (when installed) is made streaming the only way a whole-text segmenter can
be: re-segment the pending text on every token and release every segment but the last.
``--old FILE`` also scores another version of ``llm_worker/sentences.py`` (from
``git show``).

    python -m bench.sentence_split [--repeat 20] [--old /tmp/old_sentences.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from collections.abc import Callable
from typing import Any, Protocol

from llm_worker.sentences import SentenceSplitter
from tests.test_sentences_languages import TABLE, tokens


class Splitter(Protocol):
    def push(self, delta: str) -> list[str]: ...
    def flush(self) -> list[str]: ...


class PysbdStreaming:
    """pysbd on a stream: a segment is final once another one has begun after it."""

    def __init__(self, language: str) -> None:
        import pysbd

        self._segmenter = pysbd.Segmenter(language=language, clean=False)
        self._pending = ""

    def push(self, delta: str) -> list[str]:
        self._pending += delta
        segments = self._segmenter.segment(self._pending)
        if len(segments) < 2:
            return []
        self._pending = segments[-1]
        return [s.strip() for s in segments[:-1] if s.strip()]

    def flush(self) -> list[str]:
        rest, self._pending = self._pending.strip(), ""
        return [rest] if rest else []


def _run(make: Callable[[str], Splitter], lang: str, text: str) -> tuple[list[str], list[int]]:
    """The sentences, and for each how many tokens were fed after the one that ended it
    before it came out (1: the next token, which brings the space after the stop)."""
    splitter = make(lang)
    out: list[str] = []
    lags: list[int] = []
    fed = ""
    ends: list[int] = []  # fed length after each token
    for piece in tokens(text):
        fed += piece
        ends.append(len(fed))
        for sentence in splitter.push(piece):
            out.append(sentence)
            end = fed.find(sentence) + len(sentence)
            lags.append(len(ends) - 1 - next(n for n, e in enumerate(ends) if e >= end))
    out += splitter.flush()
    return out, lags


def score(make: Callable[[str], Splitter], repeat: int) -> dict[str, Any]:
    report: dict[str, Any] = {}
    lags: list[int] = []
    for lang, rows in TABLE.items():
        right = 0
        for row in rows:
            got, row_lags = _run(make, lang, " ".join(row))
            right += got == row
            lags += row_lags
        report[lang] = f"{right}/{len(rows)}"
    texts = [(lang, " ".join(row)) for lang, rows in TABLE.items() for row in rows]
    count = sum(len(tokens(text)) for _, text in texts)
    started = time.process_time()
    for _ in range(repeat):
        for lang, text in texts:
            splitter = make(lang)
            for piece in tokens(text):
                splitter.push(piece)
            splitter.flush()
    elapsed = time.process_time() - started
    report["us_per_token"] = round(elapsed / (repeat * count) * 1e6, 1)
    report["release_lag_tokens_median"] = statistics.median(lags) if lags else None
    report["release_lag_tokens_max"] = max(lags) if lags else None
    return report


def _old_splitter(path: str) -> Callable[[str], Splitter]:
    spec = importlib.util.spec_from_file_location("old_sentences", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return lambda lang: module.SentenceSplitter(language=lang)


def main(repeat: int, old: str | None) -> dict[str, Any]:
    rows = sum(len(r) for r in TABLE.values())
    results: dict[str, Any] = {"rows": rows, "repeat": repeat}
    results["per-language rules"] = score(lambda lang: SentenceSplitter(language=lang), repeat)
    if old:
        results["old"] = score(_old_splitter(old), repeat)
    try:
        import pysbd  # noqa: F401
    except ImportError:
        results["pysbd"] = "not installed (pip install pysbd)"
    else:
        results["pysbd"] = score(PysbdStreaming, max(1, repeat // 10))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--old", help="another sentences.py to score as well")
    args = parser.parse_args()
    print(json.dumps(main(args.repeat, args.old), indent=2))
