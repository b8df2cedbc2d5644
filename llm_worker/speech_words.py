"""Abbreviations and ordinal numbers read as words, for German, Spanish and French.

A full stop inside a sentence makes a voice pause and drop its pitch as if the sentence had
ended ("Am 3. Oktober", "EE. UU.", "p. ex."), and engines spell some abbreviations letter
by letter ("Nr." as "N R"). The sentence splitter keeps such a sentence whole
(``llm_worker.sentence_rules``); here its abbreviations become the words a newsreader
says and its ordinals num2words' ordinal words, inflected as the words around them ask,
so that no full stop is left inside. A full stop that also ended the sentence is kept.
Only what is listed here is touched; numbers are spelled later by ``speech_locale``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from num2words import num2words

from llm_worker.sentence_rules import rules_for

_NUM = r"\d{1,3}(?:[.,\u00a0\u202f ]\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?"
_CAPITAL = r"[A-ZÀ-ÖØ-Þ]"
_DE_CURRENCY = {"€": "Euro", "$": "Dollar", "£": "Pfund"}


def _abbreviation(written: str, before: str = "") -> str:
    """A pattern for ``written`` ("z. B." also matches "z.B."), lowercase ones in any case;
    ``before`` is what must follow: "name" (a capitalised word) or "number" (a digit)."""
    parts = [re.escape(p) for p in re.split(r"(?<=\.)\s?", written) if p]
    pattern = r"\s?".join(parts)
    end = "" if written.endswith(".") else r"(?!\w)"
    follow = {"": "", "name": rf"(?=[\s-]*{_CAPITAL})", "number": r"(?=\s*\d)"}[before]
    pattern = f"(?i:{pattern})" if written.islower() else pattern
    return f"{pattern}{end}{follow}"


class _Table:
    """One abbreviation a line, ``written = words [| name|number]``, matched in one pass
    (earlier lines first where two could match at one place: "MM." before "M.")."""

    def __init__(self, rows: str) -> None:
        self.words: list[str] = []
        patterns = []
        for i, line in enumerate(rows.strip().splitlines()):
            written, _, rest = line.partition("=")
            words, _, before = rest.partition("|")
            patterns.append(f"(?P<a{i}>{_abbreviation(written.strip(), before.strip())})")
            self.words.append(words.strip())
        self.pattern = re.compile(rf"(?<![\w.])(?:{'|'.join(patterns)})")

    def spell(self, m: re.Match[str]) -> str:
        return self.words[int((m.lastgroup or "a0")[1:])]


_ABBREVIATIONS = {
    "de": _Table("""
        z. B. = zum Beispiel
        d. h. = das heißt
        u. a. = unter anderem
        u. U. = unter Umständen
        v. a. = vor allem
        o. Ä. = oder Ähnliches
        bzw. = beziehungsweise
        ca. = circa
        usw. = und so weiter
        etc. = et cetera
        vgl. = vergleiche
        inkl. = inklusive
        zzgl. = zuzüglich
        ggf. = gegebenenfalls
        evtl. = eventuell
        rd. = rund
        mind. = mindestens
        Nr. = Nummer
        Dr. = Doktor
        Prof. = Professor
        Hr. = Herr | name
        St. = Sankt | name
        Str. = Straße
        Jh. = Jahrhundert
        Art. = Artikel | number
        Abs. = Absatz | number
        Tsd. = Tausend
        Mio. = Millionen
        Mrd. = Milliarden
        sog. = sogenannte
    """),
    "es": _Table("""
        EE. UU. = Estados Unidos
        EEUU = Estados Unidos
        Sr. = señor
        Sra. = señora
        Srta. = señorita
        Sres. = señores
        Dr. = doctor
        Dra. = doctora
        Dña. = doña
        aprox. = aproximadamente
        etc. = etcétera
        núm. = número
        n.º = número | number
        N.º = número | number
        nº = número | number
        Nº = número | number
        pág. = página
        Avda. = avenida
        Av. = avenida
        Ud. = usted
        Uds. = ustedes
        Gral. = general
        a. m. = a m
        p. m. = p m
    """),
    "fr": _Table("""
        M. et Mme = Monsieur et Madame
        MM. = Messieurs | name
        M. = Monsieur | name
        Mmes = Mesdames
        Mme = Madame
        Mlles = Mesdemoiselles
        Mlle = Mademoiselle
        Me = Maître | name
        Dr = docteur | name
        Dr. = docteur | name
        Pr = professeur | name
        Pr. = professeur | name
        St = Saint | name
        Ste = Sainte | name
        p. ex. = par exemple
        c.-à-d. = c'est-à-dire
        av. J.-C. = avant Jésus-Christ
        apr. J.-C. = après Jésus-Christ
        J.-C. = Jésus-Christ
        etc. = et cetera
        env. = environ
        cf. = confer
        n° = numéro | number
        N° = numéro | number
        nº = numéro | number
    """),
}
_MONTHS = {
    "de": dict(
        Jan="Januar", Feb="Februar", Mär="März", Apr="April", Jun="Juni", Jul="Juli",
        Aug="August", Sep="September", Sept="September", Okt="Oktober", Nov="November",
        Dez="Dezember",
    ),
    "es": dict(
        ene="enero", feb="febrero", mar="marzo", abr="abril", may="mayo", jun="junio",
        jul="julio", ago="agosto", sep="septiembre", sept="septiembre", oct="octubre",
        nov="noviembre", dic="diciembre",
    ),
    "fr": dict(
        janv="janvier", févr="février", avr="avril", juil="juillet", sept="septembre",
        oct="octobre", nov="novembre", déc="décembre",
    ),
}  # fmt: skip
# only next to a day or a year: "3. Okt.", "3 de oct.", "oct. de 2025", "3 oct. 1962"
_MONTH_RE = {
    lang: re.compile(
        rf"(?:(?<=\d )|(?<=\d\. )|(?<=\d de )|(?<=\d\.º de ))({'|'.join(months)})\."
        rf"|(?<![\w.])({'|'.join(months)})\.(?=\s*(?:de\s+)?\d)",
        re.IGNORECASE,
    )
    for lang, months in _MONTHS.items()
}

_GERMAN_MONTHS = list(dict.fromkeys(_MONTHS["de"].values()))
_GERMAN_MONTHS.insert(4, "Mai")
_DE_SCALE_RE = re.compile(rf"(?<![\w.,])({_NUM})\s?(Mio|Mrd)\b\.?(?:\s?([$€£]))?")
_DE_DATE_RE = re.compile(
    r"(?<![\w.,])(0?[1-9]|[12]\d|3[01])\.(0?[1-9]|1[0-2])\.(?:(\d{4})(?![\w.,]?\d))?(?![\w,]|\.\d)"
)
_DE_ORDINAL_RE = re.compile(
    r"(?<![\w.,])(\d{1,3})\.(?:\s?[-–]\s?(\d{1,3})\.)?(?=\s+([^\W\d_][\w-]*))"
)
_LINK = r"\s*(?:und|oder|bis|bzw\.?|beziehungsweise|,)\s*"  # "am 3. und 4. Mai"
_WORD_BEFORE_DER = re.compile(r"([\w-]+)\s+der\s+$")
# after these the ordinal takes -n: "am dritten", "zum ersten Mal", "den zweiten Platz"
_DE_WEAK_N = frozenset(
    "am im vom zum zur beim dem den des einem einen eines seinem seinen seines ihrem "
    "ihren ihres diesem diesen dieses jedem jeden ab seit bis".split()
)
_DE_DATE_WORDS = _DE_WEAK_N | frozenset(
    "der und oder montag dienstag mittwoch donnerstag freitag samstag sonnabend sonntag".split()
)
_DE_PREPOSITIONS = frozenset(
    "in an auf aus bei mit nach seit von vor zu unter über hinter neben zwischen "
    "gegenüber während wegen trotz laut".split()
)
_ES_ORDINAL_RE = re.compile(r"(?<![\w.,])(\d{1,3})(?:\.?([ºª])|\.(°|er|os|as)(?!\w))")
_NEXT_WORD = re.compile(r"\s+([a-záéíóúñü]+)")
# after "3.º" these mean it stands alone ("quedó 3.º en"), else a noun follows ("3.º lugar")
_ES_NOT_NOUNS = frozenset("en de del con y e o u a al por para tras que como sin según".split())
_FR_ORDINAL_RE = re.compile(
    r"(?<![\w.,])(\d{1,4}|[IVX]{1,6})(ers|er|res|re|ères|ère|es|e|èmes|ème|ᵉʳ|ʳᵉ|ᵉ)(?!\w)"
)
_ROMAN = re.compile(r"X{0,3}(IX|IV|V?I{0,3})")


def spell_words(text: str, lang: str) -> str:
    """``text`` with the abbreviations and ordinals of ``lang`` (num2words code) in words."""
    if lang == "de":  # before "Mio." alone is read as "Millionen"
        text = _sub_keeping_stop(_DE_SCALE_RE, _german_scale, text)
    if table := _ABBREVIATIONS.get(lang):
        text = _sub_keeping_stop(table.pattern, table.spell, text)
    if lang in _MONTH_RE:
        months = {k.lower(): v for k, v in _MONTHS[lang].items()}
        month = _MONTH_RE[lang]
        text = _sub_keeping_stop(month, lambda m: months[(m[1] or m[2]).lower()], text)
    if lang == "de":
        text = _sub_keeping_stop(_DE_DATE_RE, _german_date, text)
        text = _german_ordinals(text)
    elif lang == "es":
        text = _ES_ORDINAL_RE.sub(_spanish_ordinal, text)
    elif lang == "fr":
        text = _FR_ORDINAL_RE.sub(_french_ordinal, text)
    return text


def _sub_keeping_stop(
    pattern: re.Pattern[str], spell: Callable[[re.Match[str]], str], text: str
) -> str:
    """Substitute; a full stop the match took from the end of the sentence is put back."""

    def replace(m: re.Match[str]) -> str:
        words = spell(m)
        at_end = not text[m.end() :].strip(" \"'»“”’)")
        lost_stop = at_end and m.group().endswith(".") and not words.endswith(".")
        return words + "." if lost_stop else words

    return pattern.sub(replace, text)


def _german_scale(m: re.Match[str]) -> str:
    """ "1 Mio." -> "eine Million", "2,5 Mrd. €" -> "2,5 Milliarden Euro"."""
    one = m[1] == "1"
    scale = {"Mio": ("Million", "Millionen"), "Mrd": ("Milliarde", "Milliarden")}[m[2]]
    said = f"eine {scale[0]}" if one else f"{m[1]} {scale[1]}"
    return f"{said} {_DE_CURRENCY[m[3]]}" if m[3] else said


def _german_date(m: re.Match[str]) -> str:
    """ "3.10.2025" -> "3. Oktober 2025", read as an ordinal date next.

    "bei 2.5." at the end of a sentence is a decimal number written with a point: a date
    without a year ends a sentence only after a word that leads to one ("am 3.10.").
    """
    if not m[3] and not m.string[m.end() :].strip():
        words = re.findall(r"\w+", m.string[: m.start()])
        if not words or words[-1].lower() not in _DE_DATE_WORDS:
            return m.group()
    date = f"{int(m[1])}. {_GERMAN_MONTHS[int(m[2]) - 1]}"
    return f"{date} {m[3]}" if m[3] else date


def _german_ordinals(text: str) -> str:
    """ "am 3. Oktober" -> "am dritten Oktober", "der 3. Oktober" -> "der dritte Oktober".

    A number of up to three digits with a full stop before a word is an ordinal unless
    that word begins a new sentence ("stieg auf 12. Die Polizei"). Its ending follows the
    word before it: -ten after a dative or accusative article or contraction, after "der"
    that follows a preposition or a noun ("in der 89. Minute"), and for the second of
    "3. und 4."; -te otherwise.
    """
    starters = rules_for("de").starters
    out: list[str] = []
    last = 0
    last_n = False
    for m in _DE_ORDINAL_RE.finditer(text):
        following = m[3]
        if following[0].isupper() and following.lower() in starters:
            continue
        before = text[last : m.start()]
        words = re.findall(r"[\w-]+", text[: m.start()])
        prev = words[-1].lower() if words else ""
        linked = bool(out) and re.fullmatch(_LINK, before)
        if linked:
            n_form = last_n
        elif prev in _DE_WEAK_N:
            n_form = True
        elif prev == "der" and (two_back := _WORD_BEFORE_DER.search(text, 0, m.start())):
            noun = two_back[1][0].isupper() and two_back.start() > 0  # genitive "der"
            n_form = noun or two_back[1].lower() in _DE_PREPOSITIONS
        else:
            n_form = False
        said = _german_ordinal(int(m[1]), n_form)
        if m[2]:
            said += " bis " + _german_ordinal(int(m[2]), n_form)
        out += [before, said]
        last, last_n = m.end(), n_form
    out.append(text[last:])
    return "".join(out)


def _german_ordinal(value: int, n_form: bool) -> str:
    word = num2words(value, lang="de", to="ordinal")
    return word + "n" if n_form else word


def _spanish_ordinal(m: re.Match[str]) -> str:
    """ "3.º" -> "tercero", "1.ª" -> "primera", "1.er" -> "primer", "2.os" -> "segundos"."""
    words = num2words(int(m[1]), lang="es", to="ordinal").split()
    mark = m[2] or m[3]
    if mark in ("ª", "as"):
        words = [w[:-1] + "a" if w.endswith("o") else w for w in words]
    nxt = _NEXT_WORD.match(m.string, m.end())
    before_noun = nxt is not None and nxt[1] not in _ES_NOT_NOUNS
    if (mark == "er" or (mark == "º" and before_noun)) and words[-1] in ("primero", "tercero"):
        words[-1] = words[-1][:-1]
    if mark in ("os", "as"):
        words = [w + "s" for w in words]
    return " ".join(words)


def _french_ordinal(m: re.Match[str]) -> str:
    """ "1er" -> "premier", "1re" -> "première", "2e" -> "deuxième", "XXIe" -> "vingt et
    unième"."""
    number, mark = m[1], m[2]
    if number.isdigit():
        value = int(number)
    elif _ROMAN.fullmatch(number):
        value = _roman(number)
    else:
        return m.group()
    if value == 0:
        return m.group()
    word = num2words(value, lang="fr", to="ordinal")
    if value == 1 and mark in ("re", "ère", "res", "ères", "ʳᵉ"):
        word = "première"
    return word + "s" if mark.endswith("s") else word


def _roman(numeral: str) -> int:
    values = {"I": 1, "V": 5, "X": 10}
    total = 0
    for i, c in enumerate(numeral):
        v = values[c]
        total += -v if i + 1 < len(numeral) and values[numeral[i + 1]] > v else v
    return total
