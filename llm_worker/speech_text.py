"""Text as it should be spoken: digits, money, symbols and abbreviations written out in words.

Speech engines read "$12.50" as "dollar twelve point five zero" and "10-12" as "ten dash
twelve" (espeak-ng does both). Each sentence is rewritten here just before it goes to
TTS, whatever agent wrote it; the text shown on screen keeps its digits. Number words come
from ``num2words``; the patterns around them are ours and deliberately conservative:
anything not recognised is left for the engine to read as it would have. Other
languages go through ``llm_worker.speech_locale`` (their own number words, or none).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from num2words import num2words

from llm_worker.speech_locale import localized_speech_text

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SCALES = {"k": "thousand", "m": "million", "bn": "billion", "tn": "trillion"}
_CURRENCIES = {  # symbol: (one, many, one hundredth, many hundredths)
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "sen", "sen"),
}
_UNITS = {  # unit: (one, many)
    "km": ("kilometre", "kilometres"),
    "kg": ("kilogram", "kilograms"),
    "cm": ("centimetre", "centimetres"),
    "mm": ("millimetre", "millimetres"),
    "mph": ("mile per hour", "miles per hour"),
    "km/h": ("kilometre per hour", "kilometres per hour"),
    "kph": ("kilometre per hour", "kilometres per hour"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
}
_TITLES = {
    "Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Prof": "Professor", "Gen": "General",
    "Sen": "Senator", "Rep": "Representative", "Gov": "Governor", "Lt": "Lieutenant",
    "Col": "Colonel", "Capt": "Captain", "Sgt": "Sergeant", "Jr": "Junior", "Sr": "Senior",
}  # fmt: skip
_WORDS = {"vs": "versus", "etc": "et cetera", "e.g": "for example", "i.e": "that is",
          "approx": "approximately"}  # fmt: skip
_MONTHS = ("January February March April May June July August September October November "
           "December").split()  # fmt: skip
_MONTH_SHORT = {m[:3]: m for m in _MONTHS} | {"Sept": "September"}
_FRACTIONS = {"1/2": "one half", "1/3": "one third", "2/3": "two thirds", "1/4": "one quarter",
              "3/4": "three quarters", "24/7": "twenty-four seven"}  # fmt: skip

_URL_RE = re.compile(r"\(?(?:https?://|www\.)[^\s()]*[^\s().,;:!?]\)?", re.IGNORECASE)
_BULLET_RE = re.compile(r"^\s*(?:[-•*]+|\d{1,2}\))\s+")
_MARKDOWN_RE = re.compile(r"[*_`#|\[\]{}<>]+")
_INITIALISM_RE = re.compile(r"\b(?:[A-Z]\.){2,}")
_TITLE_RE = re.compile(rf"\b(?:({'|'.join(_TITLES)})\.(?=\s)|(Mr|Mrs|Ms)(?=\s+[A-Z]))")
_SAINT_DOCTOR_RE = re.compile(r"\b(St|Dr)\b(\.)?(\s+[A-Z])?")
_WORD_RE = re.compile(r"(?<![\w.])(vs|etc|e\.g|i\.e|approx)\.?(?!\w)", re.IGNORECASE)
_COMPANY_RE = re.compile(r"\b(Inc|Corp|Ltd|Co)\.")
# "Jan." only next to a day or a year: "Jan. 5", "5 Jan. 2025", "since Nov. 2000"
_MONTH_SHORT_RE = re.compile(
    rf"\b({'|'.join(m for m in _MONTH_SHORT if m != 'May')})\.(?=\s*\d)"
    rf"|(?<=\d )({'|'.join(m for m in _MONTH_SHORT if m != 'May')})\."
)
_MONTH_DAY_RE = re.compile(
    rf"\b({'|'.join(_MONTHS)}) (\d{{1,2}})(?![\d:]|[.,]\d|st|nd|rd|th|\s?[-–—]\s?\d)"
)
_DAY_MONTH_RE = re.compile(rf"(?<![\w.,/:–—-])(?<!the )(\d{{1,2}}) ({'|'.join(_MONTHS)})\b")
_NUMBER_SIGN_RE = re.compile(r"(?:\bNo\.|#)\s?(?=\d)")
_ISO_DATE_RE = re.compile(r"\b(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])\b")
_TIME_RE = re.compile(r"\b([01]?\d|2[0-3])(?::([0-5]\d))?\s?(?:([AaPp])\.?\s?[Mm]\b\.?)?(?=\W|$)")
_MONEY_RE = re.compile(
    rf"(US)?([$£€¥])\s?({_NUM})(?:\s?(thousand|million|billion|trillion|bn|tn|k|m)\b)?"
)
_UNIT_RE = re.compile(rf"(?<![\w.])({_NUM})\s?({'|'.join(map(re.escape, _UNITS))})(?![\w/])")
_DEGREES_RE = re.compile(rf"(?<![\w.,-])(-?)({_NUM})\s?°\s?([CF]\b)?")
_DECADE_RE = re.compile(r"(?<![\w.])'?([1-9]0|1\d\d0|20\d0)'?s\b")
_RANGE_RE = re.compile(rf"(?<![\w.,])({_NUM})\s?[-–—]\s?({_NUM})(?![\w.]?\d)")
_PERCENT_RE = re.compile(rf"({_NUM})\s?(?:%|per ?cent\b)")
_ORDINAL_RE = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b")
_FRACTION_RE = re.compile(rf"(?<![\w/])(?:{'|'.join(map(re.escape, _FRACTIONS))})(?![\w/])")
_MINUS_RE = re.compile(r"(?<![\w.])[-−](?=\d)")
_NUMBER_RE = re.compile(rf"(?<![\w.,])({_NUM})(?![\w]|[.,]\d)")


def speech_text(text: str, language: str = "en") -> str:
    """``text`` with numbers, money, symbols and abbreviations written as they are said."""
    if language != "en":
        return localized_speech_text(text, language)
    text = _BULLET_RE.sub("", _URL_RE.sub("", text))
    text = _keep_final_stop(_INITIALISM_RE, lambda m: m.group().replace(".", ""), text)
    text = _TITLE_RE.sub(lambda m: _TITLES[m[1] or m[2]], text)
    text = _SAINT_DOCTOR_RE.sub(_saint_or_doctor, text)
    text = _keep_final_stop(_WORD_RE, lambda m: _WORDS[m[1].lower()], text)
    text = _keep_final_stop(_COMPANY_RE, lambda m: "Limited" if m[1] == "Ltd" else m[1], text)
    text = _keep_final_stop(_MONTH_SHORT_RE, lambda m: _MONTH_SHORT[m[1] or m[2]], text)
    text = _MONTH_DAY_RE.sub(_month_day, text)
    text = _DAY_MONTH_RE.sub(_day_month, text)
    text = _NUMBER_SIGN_RE.sub(lambda m: "Number " if m.group()[0] == "N" else "number ", text)
    text = _ISO_DATE_RE.sub(_iso_date, text)
    text = _FRACTION_RE.sub(lambda m: _FRACTIONS[m.group()], text)
    text = _keep_final_stop(_TIME_RE, _time, text)
    text = _MONEY_RE.sub(_money, text)
    text = _UNIT_RE.sub(_unit, text)
    text = _DEGREES_RE.sub(_degrees, text)
    text = _DECADE_RE.sub(_decade, text)
    text = _RANGE_RE.sub(lambda m: f"{_number(m[1])} to {_number(m[2])}", text)
    text = _MINUS_RE.sub("minus ", text)
    text = _PERCENT_RE.sub(lambda m: f"{_number(m[1])} percent", text)
    text = _ORDINAL_RE.sub(lambda m: num2words(int(m[1]), to="ordinal"), text)
    text = _NUMBER_RE.sub(lambda m: _number(m[1]), text)
    return _symbols(text)


def _number(token: str, year_style: bool = True) -> str:
    """Words for a number token: "1,234" and "3.05" as said, 1100-2099 as a year."""
    whole, _, decimals = token.replace(",", "").partition(".")
    value = int(whole)
    if year_style and not decimals and "," not in token and 1100 <= value <= 2099:
        words = num2words(value, to="year")
    else:
        words = num2words(value)
    if decimals:
        words += " point " + " ".join(num2words(int(d)) for d in decimals)
    return words.replace(",", "")


def _keep_final_stop(
    pattern: re.Pattern[str], spell: Callable[[re.Match[str]], str], text: str
) -> str:
    """Substitute, putting back a full stop the match swallowed at the end of the sentence."""

    def replace(m: re.Match[str]) -> str:
        words = spell(m)
        return words + "." if m.group().endswith(".") and m.end() == len(text) else words

    return pattern.sub(replace, text)


def _saint_or_doctor(m: re.Match[str]) -> str:
    """ "St. Louis" / "Dr Lee" before a name; "Baker St." / "Main Dr." after one."""
    stop, name = m[2], m[3]
    if not stop and not name:
        return m.group()
    word = {"St": ("Street", "Saint"), "Dr": ("Drive", "Doctor")}[m[1]][name is not None]
    return word + (name or ("." if m.end() == len(m.string) else ""))


def _iso_date(m: re.Match[str]) -> str:
    day = num2words(int(m[3]), to="ordinal")
    return f"the {day} of {_MONTHS[int(m[2]) - 1]} {_number(m[1])}"


def _month_day(m: re.Match[str]) -> str:
    """ "January 5" -> "January fifth"."""
    day = int(m[2])
    return f"{m[1]} {num2words(day, to='ordinal')}" if 1 <= day <= 31 else m.group()


def _day_month(m: re.Match[str]) -> str:
    """ "5 January" -> "the fifth of January"."""
    day = int(m[1])
    return f"the {num2words(day, to='ordinal')} of {m[2]}" if 1 <= day <= 31 else m.group()


def _time(m: re.Match[str]) -> str:
    hour, minutes, half = m[1], m[2], m[3]
    if minutes is None and half is None:
        return m.group()  # a bare number, not a time
    words = num2words(int(hour))
    if minutes and minutes != "00":
        words += " oh " + num2words(int(minutes)) if minutes[0] == "0" else " " + _number(minutes)
    elif minutes == "00" and not half:
        words += " hundred" if int(hour) > 12 else " o'clock"
    return f"{words} {half.upper()}M" if half else words


def _money(m: re.Match[str]) -> str:
    us, symbol, amount, scale = m[1], m[2], m[3], m[4]
    one, many, cent, cents = _CURRENCIES[symbol]
    many = f"US {many}" if us else many
    if scale:
        return f"{_number(amount, False)} {_SCALES.get(scale, scale)} {many}"
    whole, _, decimals = amount.replace(",", "").partition(".")
    if decimals and len(decimals) != 2:
        return f"{_number(amount, False)} {many}"
    parts = []
    if int(whole) or not decimals or not int(decimals):
        parts.append(f"{_number(whole, False)} {one if int(whole) == 1 else many}")
    if decimals and int(decimals):
        parts.append(f"{_number(decimals, False)} {cent if int(decimals) == 1 else cents}")
    return " and ".join(parts)


def _unit(m: re.Match[str]) -> str:
    one, many = _UNITS[m[2]]
    return f"{_number(m[1], False)} {one if m[1] == '1' else many}"


def _degrees(m: re.Match[str]) -> str:
    sign = "minus " if m[1] else ""
    scale = {"C": " Celsius", "F": " Fahrenheit"}.get(m[3] or "", "")
    return f"{sign}{_number(m[2], False)} degrees{scale}"


def _decade(m: re.Match[str]) -> str:
    words = _number(m[1]) if len(m[1]) == 4 else num2words(int(m[1]))
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def _symbols(text: str) -> str:
    """Symbols left over, in words; markdown marks dropped; spacing tidied."""
    text = re.sub(r"(?<![A-Z])&|&(?![A-Z])", " and ", text)
    text = re.sub(r"(?<!\+)\+(?!\+)", " plus ", text)
    text = re.sub(r"\s?=\s?", " equals ", text)
    text = re.sub(r"\s@\s", " at ", text)
    text = re.sub(r"~\s?", "about ", text)
    text = re.sub(r"\band/or\b", "and or", text)
    text = re.sub(r"(?<=[A-Za-z])/(?=[A-Za-z])", " or ", text)
    text = re.sub(r"\s*°\s?C\b", " degrees Celsius", text)
    text = re.sub(r"\s*°\s?F\b", " degrees Fahrenheit", text)
    text = re.sub(r"\s*°", " degrees", text)
    text = re.sub(r"\s*%", " percent", text)
    text = _MARKDOWN_RE.sub(" ", text)
    text = re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"\s+", " ", text))
    return text.strip()
