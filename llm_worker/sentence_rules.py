"""Which full stops end a sentence, per language: abbreviations, ordinals, sentence starters.

A word before a full stop is one of three kinds. A *title* ("Dr.", "Nr.", "Sra.", "p. ex."
"ex.") or a single letter ("J. Smith", "z. B.") is always followed by more of the same
sentence. An *ending* abbreviation ("etc.", "U.S.", "a.m.", "Jan.", "Mio.") may also
close a sentence, and so may a German ordinal number ("am 3. Oktober" / "stieg auf 12.
Die Polizei"): the next word decides. A lowercase word or a digit continues the sentence,
an opening quote starts a new one, and a capitalised word starts one only if it is a
common first word of a sentence in that language ("The", "Die", "El", "Le"); German
capitalises every noun, and "U.S. President" is one sentence, so capitals alone do not
tell. Any other word before a full stop ends its sentence at once, without waiting.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from shared import languages


class Kind(enum.Enum):
    ENDS = "ends"  # the sentence ends here
    GOES_ON = "goes on"  # a title or initial: the sentence continues
    ASK_NEXT = "ask next"  # the next word decides


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_COMMON_TITLES = _words("dr prof")
# letters with inner dots: "U.S", "a.m", "J.K", "D.C", "e.g", "J.-C" (French "av. J.-C.")
_DOTTED = re.compile(r"(?:[^\W\d_]{1,2}\.-?)+[^\W\d_]{1,2}")
_ORDINAL = re.compile(r"\d{1,3}")
_OPENERS = "„\"“«»‹›¿¡‘'"
_NEXT_WORD = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True, slots=True)
class Rules:
    titles: frozenset[str]  # lower case, without the final full stop
    endings: frozenset[str]
    starters: frozenset[str]  # lower case first words of sentences
    ordinals: bool = False  # "3. Oktober": a short number with a full stop is an ordinal

    def kind(self, word: str) -> Kind:
        """What the full stop after ``word`` (as written, without that stop) means."""
        lower = word.lower()
        if not lower:
            return Kind.ENDS
        if lower in self.titles or lower in _COMMON_TITLES:
            return Kind.GOES_ON
        if len(lower) == 1 and lower.isalpha():
            return Kind.GOES_ON
        if lower in self.endings or _DOTTED.fullmatch(lower):
            return Kind.ASK_NEXT
        if self.ordinals and _ORDINAL.fullmatch(lower):
            return Kind.ASK_NEXT
        return Kind.ENDS

    def next_starts_sentence(self, text: str, pos: int) -> bool | None:
        """Whether the word at ``text[pos:]`` begins a new sentence; None until it is known."""
        if pos >= len(text):
            return None
        first = text[pos]
        if first in _OPENERS:
            return True
        if not first.isalpha() or first.islower():
            return False  # "oct. sobre", "Jan. 5", "U.S. $5 billion"
        word = _NEXT_WORD.match(text, pos)
        if word is None or word.end() == len(text):
            return None  # "Die" or "Dieselpreise"? wait for the rest of the word
        return word.group().lower() in self.starters


_EN = Rules(
    titles=_words("mr mrs ms mx sen rep gen lt col capt sgt rev vs fig approx est"),
    endings=_words(
        "etc inc ltd co corp jr sr st gov no jan feb mar apr jun jul aug sep sept oct nov dec"
    ),
    starters=_words(
        "the a an it its he she they we i you this that these those there here but and or "
        "so yet in on at after before however meanwhile also his her their our my when while "
        "as if what why how who some many most one two three several no not later then still "
        "now today yesterday both each every all for from with by since despite although "
        "though once more according officials police analysts shares stocks markets prices"
    ),
)
_DE = Rules(
    titles=_words(
        "nr bzw ca vgl abs art bsp bspw ggf evtl inkl exkl zzgl sog hr fr st str geb gest ggü "
        "rd mind tel dt engl franz kath"
    ),
    endings=_words(
        "usw etc mio mrd tsd jh jhd std min sek jan feb mär apr jun jul aug sep sept okt nov dez"
    ),
    starters=_words(
        "der die das den dem des ein eine einer eines einem einen er sie es wir ich ihr man "
        "dies diese dieser dieses diesem diesen doch aber auch und oder denn so nun dann damit "
        "danach dabei dort hier heute gestern zudem außerdem jedoch trotzdem laut nach mit in "
        "im am an auf aus bei beim für von vom vor seit wie was wer wo wann warum zuvor bisher "
        "bereits noch nur erst insgesamt allerdings deshalb daher somit zwar sein seine ihre "
        "unser unsere als wenn weil ob dass nicht kein keine mehr viele einige alle beide zum zur"
    ),
    ordinals=True,
)
_ES = Rules(
    titles=_words(
        "sr sra srta sres dr dra dña lic ing núm pág art aprox av avda gral excmo excma "
        "ud uds vd vds cap vol pp tel ee"
    ),
    endings=_words("etc uu cía ene feb mar abr jun jul ago sep sept oct nov dic"),
    starters=_words(
        "el la los las un una unos unas lo esto este esta estos estas ese esa eso aquel él ella "
        "ellos ellas nosotros yo usted se su sus en por para con sin según desde tras durante "
        "pero y o además también así hoy ayer ahora luego después antes entonces cuando "
        "mientras si no nadie todo todos muchos varios otros ya aún al del mi nuestro"
    ),
)
_FR = Rules(
    titles=_words(
        "m mm mme mmes mlle mlles pr me st ste ex cf env av apr vol éd chap art tél bd fig "
        "réf coll mgr"
    ),
    endings=_words("etc janv févr avr juil sept oct nov déc"),
    starters=_words(
        "le la les l un une des du de d ce cet cette ces c il elle ils elles on nous je j vous "
        "en au aux dans par pour avec sans selon depuis après avant pendant mais et ou donc "
        "ainsi puis alors aujourd hier demain quand lorsque si ne n tout tous plusieurs son sa "
        "ses leur leurs mon notre qu"
    ),
)
RULES = {"en": _EN, "de": _DE, "es": _ES, "fr": _FR}


def rules_for(code: str) -> Rules:
    """The rules of a session's language; English for languages without rules of their own
    (Chinese text uses them for the Latin words it contains)."""
    return RULES.get(languages.language(code).code, _EN)
