"""Write ``data/news.dict``: the cmudict entries for the words of ``data/news.gram``.

Why: with the full 126k-word cmudict a custom-model decoder took about 10 s to load
(NOTES.md); a dictionary holding only the grammar's words loads in a fraction of a
second. Run ``python -m asr_worker.build_dictionary`` after editing the grammar and
commit the output.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"

# Words the grammar needs that cmudict lacks: word -> ARPAbet phones.
EXTRA_PRONUNCIATIONS: dict[str, str] = {
    "cryptocurrencies": "K R IH P T OW K ER AH N S IY Z",
    "elon": "IY L AA N",
    "summarise": "S AH M ER AY Z",
    "unpause": "AH N P AO Z",
}

_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)
_NON_WORDS = re.compile(r"<[^>]*>|\{[^}]*\}|/[0-9.]+/|[()\[\]|*+;=]")


def cmudict_path() -> Path:
    from pocketsphinx import get_model_path

    return Path(get_model_path()) / "en-us" / "cmudict-en-us.dict"


def grammar_words(jsgf: str) -> set[str]:
    """Every word a JSGF grammar can produce (rule names, weights, tags and syntax dropped)."""
    text = _COMMENTS.sub(" ", jsgf)
    words: set[str] = set()
    for statement in text.split(";"):
        if "=" not in statement:  # header ("#JSGF V1.0", "grammar news")
            continue
        body = statement.split("=", 1)[1]
        words.update(_NON_WORDS.sub(" ", body).split())
    return words


def filter_dictionary(words: set[str], cmudict: Path) -> tuple[list[str], set[str]]:
    """Return the dictionary lines for ``words`` (all variants) and the words not found."""
    lines: list[str] = []
    found: set[str] = set()
    with cmudict.open(encoding="utf-8") as source:
        for line in source:
            entry = line.split(maxsplit=1)
            if len(entry) == 2 and entry[0].split("(", 1)[0] in words:
                lines.append(f"{entry[0]} {entry[1].strip()}")
                found.add(entry[0].split("(", 1)[0])
    for word, phones in EXTRA_PRONUNCIATIONS.items():
        if word in words and word not in found:
            lines.append(f"{word} {phones}")
            found.add(word)
    return sorted(lines), words - found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grammar", type=Path, default=DATA_DIR / "news.gram")
    parser.add_argument("--output", type=Path, default=DATA_DIR / "news.dict")
    args = parser.parse_args(argv)
    words = grammar_words(args.grammar.read_text(encoding="utf-8"))
    lines, missing = filter_dictionary(words, cmudict_path())
    if missing:
        print(f"not in cmudict, add to EXTRA_PRONUNCIATIONS: {sorted(missing)}", file=sys.stderr)
        return 1
    args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{args.output}: {len(words)} words, {len(lines)} pronunciations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
