"""News sentences rewritten for a voice in their own language: ordinals, dates and
abbreviations in words, and no full stop left inside a sentence (a voice falls at each)."""

from __future__ import annotations

import pytest

from llm_worker.speech_text import speech_text
from tests.test_sentences_languages import TABLE

SPOKEN: dict[str, list[tuple[str, str]]] = {
    "de": [
        ("Am 3. Oktober feiert Deutschland die Einheit.",
         "Am dritten Oktober feiert Deutschland die Einheit."),
        ("Der 3. Oktober ist seit 1990 ein Feiertag.",
         "Der dritte Oktober ist seit neunzehnhundertneunzig ein Feiertag."),
        ("Heute ist der 3. Oktober.", "Heute ist der dritte Oktober."),
        ("Die Sieger der 3. Runde reisen weiter.", "Die Sieger der dritten Runde reisen weiter."),
        ("Die Messe läuft vom 3. bis 5. Mai in Hannover.",
         "Die Messe läuft vom dritten bis fünften Mai in Hannover."),
        ("Das Tor fiel in der 89. Minute zum 2:1.",
         "Das Tor fiel in der neunundachtzigsten Minute zum zwei zu eins."),
        ("Die Wahl findet am 23.02.2025 statt.",
         "Die Wahl findet am dreiundzwanzigsten Februar zweitausendfünfundzwanzig statt."),
        ("Am 3. und 4. Juni tagt der 1. Senat.",
         "Am dritten und vierten Juni tagt der erste Senat."),
        ("Das kostet ca. 1 Mio. Euro bzw. 2,5 Mrd. € im Jahr.",
         "Das kostet circa eine Million Euro beziehungsweise zwei Komma fünf Milliarden Euro "
         "im Jahr."),
        ("Nr. 5 der Liste ist Dr. Anna Schmidt, z. B. für Bildung.",
         "Nummer fünf der Liste ist Doktor Anna Schmidt, zum Beispiel für Bildung."),
        ("Das Gesetz gilt ab dem 1. Januar, d. h. in drei Wochen.",
         "Das Gesetz gilt ab dem ersten Januar, das heißt in drei Wochen."),
        ("Der Schaden beträgt 3 Mrd.", "Der Schaden beträgt drei Milliarden."),
        ("Die Wahl ist am 3.10.", "Die Wahl ist am dritten Oktober."),
        ("Ein Ticket kostet 1 €.", "Ein Ticket kostet ein Euro."),
        ("Anpfiff ist um 14.30 Uhr, das Spiel dauert 1 h.",
         "Anpfiff ist um vierzehn Uhr dreißig, das Spiel dauert eine Stunde."),
        ("Der Käfer ist 2 cm groß und läuft 3-5 km.",
         "Der Käfer ist zwei Zentimeter groß und läuft drei bis fünf Kilometer."),
    ],
    "es": [
        ("El equipo quedó 3.º en la general.", "El equipo quedó tercero en la general."),
        ("El equipo terminó en 3.º lugar.", "El equipo terminó en tercer lugar."),
        ("Es la 1.ª vez que ocurre.", "Es la primera vez que ocurre."),
        ("El 1.er ministro habló ayer.", "El primer ministro habló ayer."),
        ("EE. UU. y China firmaron el acuerdo.", "Estados Unidos y China firmaron el acuerdo."),
        ("El Sr. Sánchez y la Sra. Díaz llegaron.", "El señor Sánchez y la señora Díaz llegaron."),
        ("Vinieron aprox. 2.000 personas el 5 de nov. de 2025.",
         "Vinieron aproximadamente dos mil personas el cinco de noviembre de dos mil "
         "veinticinco."),
        ("La entrada cuesta 21 €.", "La entrada cuesta veintiún euros."),
        ("Hoy hace 1 °C.", "Hoy hace un grado Celsius."),
        ("Corrió 1 km a 20 km/h.", "Corrió un kilómetro a veinte kilómetros por hora."),
    ],
    "fr": [
        ("M. Macron a reçu Mme Le Pen à l'Élysée.",
         "Monsieur Macron a reçu Madame Le Pen à l'Élysée."),
        ("Les prix, p. ex. l'essence, ont baissé le 1er mai.",
         "Les prix, par exemple l'essence, ont baissé le premier mai."),
        ("C'est la 1re fois au XXIe siècle.", "C'est la première fois au vingt et unième siècle."),
        ("Il est arrivé 2e au 1er tour.", "Il est arrivé deuxième au premier tour."),
        ("Le stade de St-Étienne accueille env. 40 000 fans.",
         "Le stade de Saint-Étienne accueille environ quarante mille fans."),
        ("M. et Mme Martin sont venus.", "Monsieur et Madame Martin sont venus."),
        ("Le vote a lieu à 14 h 30 et dure 1 h.",
         "Le vote a lieu à quatorze heures trente et dure une heure."),
        ("Le pont date de 50 av. J.-C.", "Le pont date de cinquante avant Jésus-Christ."),
    ],
    "en": [
        ("Officials met at 3 p.m. on Jan. 5.", "Officials met at three PM on January fifth."),
        ("The vote is on Sept. 30.", "The vote is on September thirtieth."),
        ("The law took effect on 1 January 2025.",
         "The law took effect on the first of January twenty twenty-five."),
        ("Shares of Apple Inc. rose 2% on Tuesday.",
         "Shares of Apple Inc rose two percent on Tuesday."),
    ],
}  # fmt: skip
ROWS = [(lang, text, spoken) for lang, rows in SPOKEN.items() for text, spoken in rows]


@pytest.mark.parametrize(("lang", "text", "spoken"), ROWS, ids=[f"{r[0]}:{r[1]}" for r in ROWS])
def test_news_sentence_is_read_as_a_newsreader_would(lang: str, text: str, spoken: str) -> None:
    assert speech_text(text, lang) == spoken


SENTENCES = [(lang, s) for lang, rows in TABLE.items() for row in rows for s in row]


@pytest.mark.parametrize(("lang", "sentence"), SENTENCES, ids=[s[:40] for _, s in SENTENCES])
def test_no_full_stop_is_left_inside_a_sentence(lang: str, sentence: str) -> None:
    """Every sentence of the splitter's table, as spoken: a full stop only at its end."""
    spoken = speech_text(sentence, lang).rstrip("“”\"'»")
    assert "." not in spoken[:-1], spoken


@pytest.mark.parametrize(
    ("lang", "text", "spoken"),
    [
        ("de", "Die Zahl stieg auf 12.", "Die Zahl stieg auf zwölf."),  # no ordinal at the end
        ("de", "Er wurde 3. Die Polizei kam.", "Er wurde drei. Die Polizei kam."),  # two sentences
        ("de", "Die Version 3.11.2 ist da.", "Die Version 3.11.2 ist da."),  # not a date
        ("de", "Sie lag bei 2.5.", "Sie lag bei zwei Komma fünf."),  # a decimal point
        ("en", "Talks run March 3-5.", "Talks run March three to five."),  # a range
        ("fr", "Le Président parle.", "Le Président parle."),  # "Le" is not roman fifty
        ("es", "El agua de mar.", "El agua de mar."),  # the sea, not March
        ("zh-CN", "今天是10月3日。", "今天是10月3日。"),  # left to the Chinese voice
    ],
)
def test_what_only_looks_like_an_ordinal_or_abbreviation_is_left(
    lang: str, text: str, spoken: str
) -> None:
    assert speech_text(text, lang) == spoken
