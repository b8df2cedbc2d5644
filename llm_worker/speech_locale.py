"""Speech text for languages other than English: numbers, money and symbols in their words.

``llm_worker.speech_text`` does English in depth; here the common cases are done for
each language num2words speaks (Spanish, French, German): plain and decimal numbers
(a decimal comma as these languages write it, and the decimal point models often write
anyway), thousands separators, years, percentages, money, ranges, negative numbers,
clock times, scores and degrees, after ``llm_worker.speech_words`` has put the language's
abbreviations and ordinals into words. Languages num2words does not have (Chinese) keep
their digits: their TTS voices read digits in the language. Anything not recognised is
left as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from num2words import num2words

from llm_worker.speech_words import spell_words
from shared.languages import language


@dataclass(frozen=True, slots=True)
class _Words:
    point: str  # decimal separator said aloud
    percent: str
    to: str  # "3-5" -> "three to five"
    minus: str
    degrees: str
    currencies: dict[str, tuple[str, str]]  # symbol: (one, many)
    cents: tuple[str, str]
    and_: str  # "&" and between money parts
    clock: str  # "{h} heures {m}"; "{h}" alone for a full hour
    full_hour: str
    score: str  # "2:1" -> "two to one"


_WORDS = {
    "es": _Words(
        "coma",
        "por ciento",
        "a",
        "menos",
        "grados",
        {"$": ("dólar", "dólares"), "€": ("euro", "euros"), "£": ("libra", "libras")},
        ("céntimo", "céntimos"),
        "y",
        "{h} y {m}",
        "{h} en punto",
        "a",
    ),
    "fr": _Words(
        "virgule",
        "pour cent",
        "à",
        "moins",
        "degrés",
        {"$": ("dollar", "dollars"), "€": ("euro", "euros"), "£": ("livre", "livres")},
        ("centime", "centimes"),
        "et",
        "{h} heures {m}",
        "{h} heures",
        "à",
    ),
    "de": _Words(
        "Komma",
        "Prozent",
        "bis",
        "minus",
        "Grad",
        {"$": ("Dollar", "Dollar"), "€": ("Euro", "Euro"), "£": ("Pfund", "Pfund")},
        ("Cent", "Cent"),
        "und",
        "{h} Uhr {m}",
        "{h} Uhr",
        "zu",
    ),
}

_UNITS: dict[str, dict[str, tuple[str, str]]] = {  # unit after a number: (one, many)
    "es": {"km/h": ("kilómetro por hora", "kilómetros por hora"), "km": ("kilómetro", "kilómetros"),
           "m": ("metro", "metros"), "cm": ("centímetro", "centímetros"),
           "mm": ("milímetro", "milímetros"), "kg": ("kilo", "kilos"), "h": ("hora", "horas")},
    "fr": {"km/h": ("kilomètre heure", "kilomètres heure"), "km": ("kilomètre", "kilomètres"),
           "m": ("mètre", "mètres"), "cm": ("centimètre", "centimètres"),
           "mm": ("millimètre", "millimètres"), "kg": ("kilo", "kilos"), "h": ("heure", "heures")},
    "de": {"km/h": ("Kilometer pro Stunde",) * 2, "km": ("Kilometer",) * 2, "m": ("Meter",) * 2,
           "cm": ("Zentimeter",) * 2, "mm": ("Millimeter",) * 2, "kg": ("Kilogramm",) * 2,
           "h": ("Stunde", "Stunden")},
}  # fmt: skip

_ONE = {"es": "un", "fr": "un", "de": "ein"}  # before a noun
_ONE_FEMININE = {"es": "una", "fr": "une", "de": "eine"}

# 1.500.000 / 1 500 000 / 1,500,000 with an optional decimal part; or a plain 3,5 / 3.5
_NUM = r"\d{1,3}(?:[.,\u00a0\u202f ]\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?"
_URL_RE = re.compile(r"\(?(?:https?://|www\.)[^\s()]*[^\s().,;:!?]\)?", re.IGNORECASE)
_BULLET_RE = re.compile(r"^\s*(?:[-•*]+|\d{1,2}\))\s+")
_MARKDOWN_RE = re.compile(r"[*_`#|\[\]{}<>]+")
# 14:30, 14h30, 14 h 30, 14.30 Uhr
_TIME_RE = re.compile(
    r"\b([01]?\d|2[0-3])(?::|\s?h\s?|\.(?=[0-5]\d\s?Uhr\b))([0-5]\d)\b(?:\s?(?:Uhr|h)\b)?"
)
_SCORE_RE = re.compile(r"(?<![\w.,:])(\d{1,2}):(\d{1,2})(?![\w:]|[.,]\d)")
_MONEY_BEFORE_RE = re.compile(rf"([$€£])\s?({_NUM})")
_MONEY_AFTER_RE = re.compile(rf"(?<![\w.,])({_NUM})\s?([$€£])")
_DEGREES_RE = re.compile(rf"(?<![\w.,])(-?)({_NUM})\s?°\s?([CF]\b)?")
_UNIT_RE = re.compile(
    rf"(?<![\w.,])({_NUM})(?:\s?[-–]\s?({_NUM}))?\s?(km/h|km|cm|mm|kg|m|h)(?![\w/²³])"
)
_PERCENT_RE = re.compile(rf"(?<![\w.,])(-?)({_NUM})\s?%")
_RANGE_RE = re.compile(rf"(?<![\w.,])({_NUM})\s?[-–—]\s?({_NUM})(?![\w.,]?\d)")
_MINUS_RE = re.compile(r"(?<![\w.])[-−](?=\d)")
_NUMBER_RE = re.compile(rf"(?<![\w.,])({_NUM})(?![\w]|[.,]\d)")


def localized_speech_text(text: str, code: str) -> str:
    """``text`` for a voice in language ``code`` (not English; see the module docstring)."""
    lang = language(code)
    gap = "" if lang.cjk else " "  # no spaces between CJK words
    text = _MARKDOWN_RE.sub(gap, _BULLET_RE.sub("", _URL_RE.sub("", text)))
    words = _WORDS.get(lang.num2words or "")
    if words is not None:
        text = spell_words(text, lang.num2words or "")
        text = _spell_numbers(text, lang.num2words or "", words)
    text = re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"[ \t]+", " ", text))
    return text.strip()


def _spell_numbers(text: str, lang: str, w: _Words) -> str:
    def number(token: str) -> str:
        return _number(token, lang, w)

    def time(m: re.Match[str]) -> str:
        hour = num2words(int(m[1]), lang=lang)
        if m[2] == "00":
            return w.full_hour.format(h=hour)
        return w.clock.format(h=hour, m=num2words(int(m[2]), lang=lang))

    def money(amount: str, symbol: str) -> str:
        one, many = w.currencies[symbol]
        whole, cents = _split_decimal(amount)
        said = f"{_before_noun(number(whole), lang)} {one if whole == '1' else many}"
        if cents and len(cents) == 2 and int(cents):
            cent_one, cent_many = w.cents
            said += f" {w.and_} {_before_noun(num2words(int(cents), lang=lang), lang)} "
            said += cent_one if cents == "01" else cent_many
        elif cents:
            said = f"{number(amount)} {many}"
        return said

    def degrees(m: re.Match[str]) -> str:
        scale = {"C": " Celsius", "F": " Fahrenheit"}.get(m[3] or "", "")
        sign = f"{w.minus} " if m[1] else ""
        unit = w.degrees.removesuffix("s") if m[2] == "1" else w.degrees  # "un grado"
        return f"{sign}{_before_noun(number(m[2]), lang)} {unit}{scale}"

    text = _TIME_RE.sub(time, text)
    text = _SCORE_RE.sub(lambda m: f"{m[1]} {w.score} {m[2]}", text)
    text = _MONEY_BEFORE_RE.sub(lambda m: money(m[2], m[1]), text)
    text = _MONEY_AFTER_RE.sub(lambda m: money(m[1], m[2]), text)

    def unit(m: re.Match[str]) -> str:
        one, many = _UNITS[lang][m[3]]
        if m[2]:  # "3-5 km"
            return f"{number(m[1])} {w.to} {number(m[2])} {many}"
        if m[1] == "1":  # hours are feminine: "eine Stunde", "una hora", "une heure"
            return f"{(_ONE_FEMININE if m[3] == 'h' else _ONE)[lang]} {one}"
        return f"{number(m[1])} {many}"

    text = _DEGREES_RE.sub(degrees, text)
    text = _UNIT_RE.sub(unit, text)
    text = _PERCENT_RE.sub(
        lambda m: f"{w.minus + ' ' if m[1] else ''}{number(m[2])} {w.percent}", text
    )
    text = _RANGE_RE.sub(lambda m: f"{number(m[1])} {w.to} {number(m[2])}", text)
    text = _MINUS_RE.sub(f"{w.minus} ", text)
    return _NUMBER_RE.sub(lambda m: number(m[1]), text)


def _before_noun(words: str, lang: str) -> str:
    """ "eins" -> "ein Euro", "veintiuno" -> "veintiún euros": a one before a noun."""
    if lang == "de" and words == "eins":
        return "ein"
    if lang == "es" and words.endswith("uno"):
        return words[:-3] + ("ún" if words.endswith("iuno") else "un")
    return words


def _split_decimal(token: str) -> tuple[str, str]:
    """("1500", "25") for "1.500,25", "1,500.25", "1 500,25"; ("3", "5") for "3,5" or "3.5".

    A single separator followed by exactly three digits is a thousands separator
    ("1.500" is fifteen hundred in these languages), otherwise a decimal one.
    """
    token = re.sub(r"[\u00a0\u202f ]", "", token)
    separators = [c for c in token if c in ".,"]
    if not separators:
        return token, ""
    last = max(token.rfind("."), token.rfind(","))
    decimals = token[last + 1 :]
    if len(set(separators)) == 1 and (len(separators) > 1 or len(decimals) == 3):
        return token.replace(separators[0], ""), ""
    return re.sub(r"[.,]", "", token[:last]), decimals


def _number(token: str, lang: str, w: _Words) -> str:
    whole, decimals = _split_decimal(token)
    value = int(whole)
    if not decimals and 1100 <= value <= 2099 and len(token) == 4:
        words = num2words(value, lang=lang, to="year")
    else:
        words = num2words(value, lang=lang)
    if decimals:
        if len(decimals) <= 2 and not decimals.startswith("0"):
            words += f" {w.point} {num2words(int(decimals), lang=lang)}"
        else:
            words += f" {w.point} " + " ".join(num2words(int(d), lang=lang) for d in decimals)
    return words
