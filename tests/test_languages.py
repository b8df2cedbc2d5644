"""Per-language text handling without the pipeline: detection, sentence cuts, speech words,
voices, the system prompt and the `lang` option."""

from __future__ import annotations

import pytest

from llm_worker.prompt import system_prompt
from llm_worker.sentences import SentenceSplitter
from llm_worker.speech_text import speech_text
from shared.engines import Voice
from shared.languages import canonical_language, detect_language
from shared.protocol import ProtocolError, parse_session_options
from shared.settings import SettingsError, load_settings
from tts_worker.edge_engine import edge_voice
from tts_worker.espeak_engine import EspeakEngine


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("给我讲讲科技新闻", "zh-CN"),
        ("Apple 发布 新 iPhone", "zh-CN"),
        ("dame las noticias de tecnología", "es"),
        ("¿Qué pasa en el mundo?", "es"),
        ("quelles sont les nouvelles du sport", "fr"),
        ("Was gibt es Neues in der Wirtschaft?", "de"),
        ("what was the news today", "en"),
        ("BBC", None),  # tells nothing: the session keeps its default
        ("ニュースを読んで", None),  # Japanese: recognised, not spoken here
    ],
)
def test_detection_reads_short_requests(text: str, expected: str | None) -> None:
    assert detect_language(text) == expected


def test_chinese_sentences_end_at_full_width_marks_without_a_space() -> None:
    splitter = SentenceSplitter(language="zh-CN")
    assert splitter.push("今天有三条") == []
    assert splitter.push("新闻。第一条，芯片") == ["今天有三条新闻。"]
    assert splitter.push("公司发布了新处理器！还有吗？好的；最后……") == [
        "第一条，芯片公司发布了新处理器！",
        "还有吗？",
        "好的；",
        "最后……",
    ]


def test_a_long_chinese_run_is_cut_at_a_chinese_comma() -> None:
    splitter = SentenceSplitter(language="zh-CN")
    pieces = splitter.push("这是一个没有句号的很长的句子，" * 8) + splitter.flush()
    assert len(pieces) > 1 and all(p.endswith("，") for p in pieces)
    assert all(len(p) <= 60 for p in pieces)


SPOKEN = [
    ("es", "Subió un 3,5 % en 2025.", "Subió un tres coma cinco por ciento en dos mil "
     "veinticinco."),
    ("fr", "Il coûte 12,50 € à 14h30.", "Il coûte douze euros et cinquante centimes à "
     "quatorze heures trente."),
    ("de", "Der DAX stieg auf 18.500 Punkte.", "Der DAX stieg auf "
     "achtzehntausendfünfhundert Punkte."),
    ("zh-CN", "今天**上涨**了3.5%。", "今天上涨了3.5%。"),  # digits left to the Chinese voice
    ("en", "It rose 3.5% in 2025.", "It rose three point five percent in twenty twenty-five."),
]  # fmt: skip


@pytest.mark.parametrize(("lang", "text", "spoken"), SPOKEN)
def test_numbers_are_spoken_in_the_sessions_language(lang: str, text: str, spoken: str) -> None:
    assert speech_text(text, lang) == spoken


def test_espeak_and_edge_pick_the_languages_voice_unless_the_client_chose() -> None:
    espeak = EspeakEngine(default_voice="en-gb")
    assert espeak.language_voice("zh-CN") == "cmn" and espeak.language_voice("de") == "de"
    assert espeak.language_voice("en") == "en-gb"  # TTS_VOICE speaks English: kept
    assert edge_voice(Voice(language="fr"), "en-US-AriaNeural") == "fr-FR-DeniseNeural"
    assert edge_voice(Voice(language="en"), "en-GB-SoniaNeural") == "en-GB-SoniaNeural"
    chosen = Voice(name="es-MX-DaliaNeural", language="zh-CN")
    assert edge_voice(chosen, "en-US-AriaNeural") == "es-MX-DaliaNeural"  # ?voice= wins


def test_system_prompt_asks_for_the_sessions_language() -> None:
    zh = system_prompt(["general"], language="zh-CN")
    assert "Reply in Chinese (中文)" in zh and "。" in zh
    assert "short, simple sentences" in zh  # the voice-first rules stay
    assert system_prompt(["general"]).endswith("Reply in English.")


def test_lang_option_is_validated_and_normalised() -> None:
    assert parse_session_options({"lang": "zh"}).lang == "zh-CN"
    assert parse_session_options({"lang": "es-MX"}).as_job_options()["lang"] == "es"
    assert "lang" not in parse_session_options({}).as_job_options()
    with pytest.raises(ProtocolError) as refused:
        parse_session_options({"lang": "klingon"})
    assert refused.value.code == "invalid_field" and "zh-cn" in refused.value.message.lower()
    assert canonical_language("zh-TW") is None  # Traditional Chinese is not Mandarin voice data
    with pytest.raises(SettingsError, match="DEFAULT_LANGUAGE"):
        load_settings(default_language="xx")
