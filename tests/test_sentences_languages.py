"""Sentence boundaries per language, fed the way a model streams: news sentences with
dates, ordinals, numbers, abbreviations and quotes. Each row is the sentences a text must
be spoken as; the text is they, joined by spaces. ``bench.sentence_split`` scores
segmenters on this table."""

from __future__ import annotations

import re

import pytest

from llm_worker.sentences import SentenceSplitter

TABLE: dict[str, list[list[str]]] = {
    "de": [
        ["Am 3. Oktober sprach Nr. 5 mit z. B. Vertretern der Länder."],
        ["Das ist bzw. war ca. 1 Mio. Euro."],
        [
            "Bundeskanzler Merz reist am 12. März nach Paris.",
            "Dort trifft er Präsident Macron.",
        ],
        [
            "Die Zahl der Verletzten stieg auf 12.",
            "Die Polizei sucht nach Zeugen.",
        ],
        [
            "Bayern gewann am Samstag 2:1.",
            "Das Siegtor fiel in der 89. Minute.",
        ],
        [
            "Er sagte: „Das ist ein guter Tag für Europa.“",
            "Danach verließ er den Saal.",
        ],
        ["Laut Art. 5 Abs. 1 GG ist die Pressefreiheit geschützt, vgl. das Urteil von 2024."],
        [
            "Der Konzern verkaufte ca. 2,5 Mio. Autos, d. h. mehr als im Vorjahr.",
            "Die Aktie stieg.",
        ],
        [
            "Das Gesetz gilt seit dem 1. Januar 2025.",
            "Im Bundestag gab es dafür eine Mehrheit.",
        ],
        ["Dr. Anna Schmidt, Prof. an der TU München, erhielt den 1. Preis."],
    ],
    "es": [
        ["EE. UU. respondió."],
        ["El ministro habló el 3 de oct. sobre el presupuesto de 2026."],
        ["El Sr. García y la Sra. López llegaron juntos a la reunión."],
        [
            "El equipo terminó en 3.º lugar.",
            "El Barcelona ganó la liga.",
        ],
        [
            "«No vamos a subir los impuestos», dijo el presidente.",
            "La oposición criticó el plan.",
        ],
        [
            "La inflación subió al 3,2 % en septiembre.",
            "¿Habrá acuerdo?",
            "El Gobierno cree que sí.",
        ],
        [
            "Los EE. UU. y la UE firmaron el pacto el 5 de nov. de 2025.",
            "Entrará en vigor en enero.",
        ],
        ["La empresa ganó 1.200 millones de euros, aprox. un 5 % más que el año pasado."],
    ],
    "fr": [
        ["M. Macron a rencontré Mme Merkel à Berlin."],
        [
            "Les prix de l'énergie, p. ex. le gaz, ont augmenté de 3,5 % en 2024.",
            "Le gouvernement a réagi.",
        ],
        [
            "« Nous ne céderons pas », a déclaré M. Dupont mardi.",
            "Les syndicats appellent à la grève.",
        ],
        [
            "Le sommet aura lieu le 1er mars à Paris.",
            "Environ 40 chefs d'État sont attendus.",
        ],
        ["Selon le ministère, env. 2 000 personnes ont manifesté, cf. le bilan de la police."],
        ["Le pont, construit vers 50 av. J.-C., est classé depuis 1985."],
        ["Mme Dubois, née le 3 oct. 1962 à Lyon, a été élue au 2e tour."],
    ],
    "en": [
        [
            "Officials met at 3 p.m. on Jan. 5.",
            "The U.S. economy grew 2.8 percent last year.",
        ],
        ["Dr. Jones met Mr. Smith in the U.S. today."],
        [
            "Shares of Apple Inc. rose 3.5% on Tuesday.",
            "Analysts expect more gains.",
        ],
        [
            '"We will not back down," said Gov. Newsom.',
            "The vote is on Sept. 30.",
        ],
        [
            "The meeting ended at 11 a.m.",
            "The president left soon after.",
        ],
        ["J.K. Rowling's new book sold 1.2 million copies in Washington, D.C. and beyond."],
        [
            "She won the vote 52 to 48.",
            "It was the closest race since Nov. 2000.",
        ],
        ["The company, based in St. Louis, hired 1,200 workers, the U.K. paper said."],
    ],
}
ROWS = [(lang, " ".join(row), row) for lang, rows in TABLE.items() for row in rows]


def tokens(text: str) -> list[str]:
    """Pieces like a model's tokens: a word with its leading space, long words in parts."""
    return re.findall(r"\s*\S{1,4}", text)


def split_streamed(text: str, lang: str) -> list[str]:
    splitter = SentenceSplitter(language=lang)
    out = [s for piece in tokens(text) for s in splitter.push(piece)]
    return out + splitter.flush()


@pytest.mark.parametrize(("lang", "text", "expected"), ROWS, ids=[r[1][:40] for r in ROWS])
def test_news_sentences_are_spoken_whole(lang: str, text: str, expected: list[str]) -> None:
    assert split_streamed(text, lang) == expected


@pytest.mark.parametrize(("lang", "text", "expected"), ROWS[:3], ids=["de", "de2", "de3"])
def test_one_delta_gives_the_same_sentences(lang: str, text: str, expected: list[str]) -> None:
    splitter = SentenceSplitter(language=lang)
    assert splitter.push(text) + splitter.flush() == expected


def test_a_plain_sentence_is_released_without_waiting_for_the_next_word() -> None:
    splitter = SentenceSplitter(language="de")
    assert splitter.push("Die Aktie stieg deutlich. ") == ["Die Aktie stieg deutlich."]


def test_an_ordinal_waits_for_the_whole_next_word() -> None:
    splitter = SentenceSplitter(language="de")
    assert splitter.push("Die Sitzung ist am 3. ") == [] and splitter.push("Die") == []
    assert splitter.push("nstag im Monat. Die") == ["Die Sitzung ist am 3. Dienstag im Monat."]


def test_an_unsupported_language_code_uses_the_default_rules() -> None:
    assert SentenceSplitter(language="xx").push("Dr. Who came. Then") == ["Dr. Who came."]
