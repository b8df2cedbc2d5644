"""The languages a session can speak, and what each engine needs to speak them.

One row per supported language: the code a client sends (``?lang=zh-CN``), espeak-ng's
voice for it (shipped in the espeakng-loader wheel), an edge-tts neural voice, the
language hint for OpenAI transcription, the tag for a browser's recogniser, and whether
num2words writes its numbers (it has no Chinese: those digits are left to the engine).
Adding a language whose engines have the data costs one row here plus its phrase and
keyword tables in ``llm_worker.news.phrases``.

``detect_language`` reads the language of a request when the client did not say:
script first (Han characters are Chinese; kana and hangul name languages we do not
speak), then, among Latin-script languages, function words and letters that only one of
them uses. It is deliberately small: py3langid (the maintained langid fork) reads short
requests well but adds ~76 MB of resident memory and 1.4 s of start-up to a process
that must fit a 512 MB instance, and the requests here are short commands whose giveaway
words are few and known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Language:
    code: str  # as sent and echoed: "zh-CN"
    name: str  # in English, for logs and docs
    native: str  # in the language itself, for the voice page's picker
    espeak_voice: str  # espeak-ng voice name
    edge_voice: str  # edge-tts neural voice
    transcription: str  # ISO-639-1 hint for OpenAI transcription
    num2words: str | None  # num2words language, None: digits are left to the TTS engine
    cjk: bool = False  # sentences end at 。！？ without a following space

    @property
    def base(self) -> str:
        """ "zh" for "zh-CN": the prefix voices and settings are matched by."""
        return self.code.split("-")[0].lower()


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("en", "English", "English", "en-us", "en-US-AriaNeural", "en", "en"),
        Language(
            "zh-CN", "Chinese (Mandarin)", "中文", "cmn", "zh-CN-XiaoxiaoNeural", "zh", None, True
        ),
        Language("es", "Spanish", "Español", "es", "es-ES-ElviraNeural", "es", "es"),
        Language("fr", "French", "Français", "fr", "fr-FR-DeniseNeural", "fr", "fr"),
        Language("de", "German", "Deutsch", "de", "de-DE-KatjaNeural", "de", "de"),
    )
}
SUPPORTED = tuple(LANGUAGES)
_ALIASES = {"zh": "zh-CN", "cmn": "zh-CN", "zh-hans": "zh-CN", "zh-sg": "zh-CN"}


def canonical_language(tag: str) -> str | None:
    """The supported code for a BCP-47 tag ("es-MX" -> "es", "zh" -> "zh-CN"), else None."""
    tag = tag.strip().replace("_", "-")
    lowered = tag.lower()
    for code in LANGUAGES:
        if code.lower() == lowered:
            return code
    if lowered in _ALIASES:
        return _ALIASES[lowered]
    if lowered.startswith(("zh-hans", "zh-cn")):
        return "zh-CN"
    base = lowered.split("-")[0]
    if base == "zh":  # Traditional/Cantonese tags: not Mandarin in simplified script
        return None
    return base if base in LANGUAGES else None


def language(code: str | None, default: str = "en") -> Language:
    """The row for ``code`` (any accepted tag), else for ``default``, else English."""
    for candidate in (code, default):
        if candidate and (found := canonical_language(candidate)):
            return LANGUAGES[found]
    return LANGUAGES["en"]


def voice_language(voice: str) -> str:
    """The base language a voice name speaks: "en-us" -> "en", "zh-CN-XiaoxiaoNeural" -> "zh",
    "cmn" -> "zh"; "" when the name does not say (OpenAI's "alloy")."""
    base = voice.split("-")[0].lower()
    if base == "cmn":
        return "zh"
    return base if len(base) == 2 else ""


# --- detection ----------------------------------------------------------------------

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)

# Words (lower case) that, in a short spoken request, point at one language only. Words
# shared by two of them ("de", "la", "en", "es") are left out on purpose.
_GIVEAWAYS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "the what what's whats is are news me tell read about more next please and with "
        "headlines latest today hello hi stop repeat sports technology business world "
        "science how give show any story one second first third again thanks thank you "
        "new happening going on latest there search find".split()
    ),
    "es": frozenset(
        "el los las del que qué y noticias hoy dame dime cuéntame cuentame más mas sobre por "
        "favor hola siguiente otra vez deportes tecnología tecnologia negocios economía "
        "mundo ciencia primera segunda tercera primero segundo repite gracias titulares "
        "últimas ultimas hay cómo como una lo qué pasa léeme leeme busca algo".split()
    ),
    "fr": frozenset(
        "le les des du et est quoi quelles quels quelle nouvelles actualités actualites "
        "infos aujourd'hui moi dis donne raconte plus sur suivant suivante bonjour salut "
        "merci technologie économie monde sciences première deuxième troisième premier "
        "répète repete encore une au aux c'est qu'est-ce pour lis cherche quoi "
        "neuf".split()
    ),
    "de": frozenset(
        "der die das den dem und ist gibt neues nachrichten heute mir mehr über "
        "nächste naechste weiter hallo danke bitte wirtschaft welt wissenschaft erste "
        "zweite dritte wiederhole noch einmal eine ein zu mit von wie erzähl erzähle gib "
        "lies schlagzeilen aktuelle neuesten neuigkeiten sag suche etwas".split()
    ),
}
_MARKS = {  # letters one of the four uses and the others do not (or rarely)
    "es": frozenset("ñ¿¡áíóú"),
    "fr": frozenset("çœèêàùâîôë"),
    "de": frozenset("ßäöü"),
}


def detect_language(text: str) -> str | None:
    """The supported language ``text`` is written in, or None when it does not tell.

    None also for Japanese and Korean (recognised by script, not spoken here): the
    caller keeps its default rather than answering in the wrong language.
    """
    letters = _LETTER.findall(text)
    if not letters:
        return None
    han = len(_HAN.findall(text))
    if _KANA.search(text) or _HANGUL.search(text):
        return None
    if han and han * 4 >= len(letters) - han:  # a Han character says as much as a word
        return "zh-CN"
    scores = dict.fromkeys(_GIVEAWAYS, 0.0)
    for word in _WORD.findall(text.lower().replace("’", "'")):
        for code, words in _GIVEAWAYS.items():
            if word in words:
                scores[code] += 1
    for char in text.lower():
        for code, marks in _MARKS.items():
            if char in marks:
                scores[code] += 0.5
    best = max(scores, key=lambda code: scores[code])
    ranked = sorted(scores.values(), reverse=True)
    if ranked[0] < 1 or ranked[0] == ranked[1]:
        return None
    return best
