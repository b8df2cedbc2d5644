"""The voice page has a sentence for people for every error code the protocol defines."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_error_code_has_a_sentence() -> None:
    source = (ROOT / "gateway/static/errors.js").read_text()
    table = source.split("const SENTENCES = {", 1)[1].split("};", 1)[0]
    sentences = dict(re.findall(r'^\s+(\w+):\s*"([^"]+)"', table, re.M | re.S))
    # the protocol's codes: the block of constants under "# error codes" in shared/protocol.py
    block = (ROOT / "shared/protocol.py").read_text().split("# error codes", 1)[1]
    codes = set(re.findall(r'^[A-Z_]+ = "(\w+)"(?:  #.*)?$', block.split("\n\n", 1)[0], re.M))
    docs = (ROOT / "docs/protocol.md").read_text().split("### Error codes", 1)[1]
    documented = set(re.findall(r"^\| `(\w+)` \|", docs.split("###", 1)[0], re.M))
    assert len(codes) >= 16 and documented == codes
    assert codes <= set(sentences), codes - set(sentences)
    for code, sentence in sentences.items():
        assert code not in sentence and sentence[0].isupper(), sentence  # no jargon as text
