"""Requests in other languages, read by the English intent rules.

``llm_worker.news.intents`` understands English requests in depth. For the other
languages this module swaps the words that carry a request's meaning (news, the topics,
first/second, next, repeat, stop, hello, help, about) for the English words the rules
know, and leaves the rest, so "dame las noticias de tecnología" reads as
"dame las news de technology" (technology headlines) and "第二条详细说说" as
"the second one tell me more". Longer phrases are swapped first.
"""

from __future__ import annotations

import re
from functools import cache

from shared.languages import language

_TABLES: dict[str, dict[str, str]] = {
    "zh-CN": {
        "新闻": "news", "消息": "news", "资讯": "news", "头条": "headlines", "要闻": "headlines",
        "科技": "technology", "技术": "technology", "财经": "business", "经济": "business",
        "商业": "business", "股市": "business", "体育": "sports", "科学": "science",
        "健康": "science", "环境": "science", "国际": "world", "世界": "world",
        "下一条": "next", "下一个": "next", "下一": "next", "继续": "next",
        "上一条": "previous", "上一个": "previous", "重复": "repeat", "再说一遍": "repeat",
        "第一条": "the first one", "第一个": "the first one", "第一": "the first one",
        "第二条": "the second one", "第二个": "the second one", "第二": "the second one",
        "第三条": "the third one", "第三个": "the third one", "第三": "the third one",
        "最后一条": "the last one", "详细说说": "tell me more", "详细": "tell me more",
        "多说一点": "tell me more", "展开": "tell me more", "更多新闻": "more news",
        "更多头条": "more headlines", "停止": "stop", "够了": "stop", "不用了": "stop",
        "再见": "goodbye", "谢谢": "thanks", "你好": "hello", "您好": "hello",
        "帮助": "help", "你能做什么": "what can you do", "关于": "news about",
        "最新": "latest", "今天": "today", "有什么": "whats", "什么": "what",
        "给我讲讲": "tell me", "给我读": "read me", "讲讲": "tell me", "给我": "give me",
        "一下": "", "的": "",
    },
    "es": {
        "noticias": "news", "noticia": "news", "titulares": "headlines", "novedades": "news",
        "tecnología": "technology", "tecnologia": "technology", "economía": "business",
        "economia": "business", "negocios": "business", "finanzas": "business",
        "bolsa": "business", "deportes": "sports", "deporte": "sports", "fútbol": "sports",
        "ciencia": "science", "salud": "science", "medio ambiente": "science",
        "internacional": "world", "mundo": "world", "siguiente": "next", "próxima": "next",
        "anterior": "previous", "repite": "repeat", "repítelo": "repeat", "otra vez": "again",
        "primera": "the first one", "primero": "the first one",
        "segunda": "the second one", "segundo": "the second one",
        "tercera": "the third one", "tercero": "the third one",
        "última": "the last one", "último": "the last one",
        "cuéntame más": "tell me more", "dime más": "tell me more",
        "más detalles": "more details", "más noticias": "more news",
        "más titulares": "more headlines", "basta": "stop",
        "detente": "stop", "adiós": "goodbye", "gracias": "thanks", "hola": "hello",
        "buenos días": "hello", "ayuda": "help", "qué puedes hacer": "what can you do",
        "sobre": "about", "acerca de": "about", "últimas": "latest", "hoy": "today",
        "qué hay de nuevo": "whats new", "qué pasa": "whats happening",
    },
    "fr": {
        "nouvelles": "news", "actualités": "news", "actualites": "news", "actus": "news",
        "infos": "news", "informations": "news", "titres": "headlines",
        "technologie": "technology", "tech": "technology", "économie": "business",
        "economie": "business", "affaires": "business", "finance": "business",
        "bourse": "business", "sports": "sports", "sport": "sports", "sciences": "science",
        "science": "science", "santé": "science", "environnement": "science",
        "international": "world", "monde": "world", "suivant": "next", "suivante": "next",
        "précédent": "previous", "précédente": "previous", "répète": "repeat",
        "répéter": "repeat", "encore une fois": "again",
        "première": "the first one", "premier": "the first one",
        "deuxième": "the second one", "seconde": "the second one",
        "troisième": "the third one", "dernière": "the last one", "dernier": "the last one",
        "raconte-moi": "tell me more", "raconte moi": "tell me more",
        "dis-m'en plus": "tell me more", "plus de détails": "more details",
        "plus de nouvelles": "more news", "autres titres": "more headlines",
        "arrête": "stop", "ça suffit": "stop", "au revoir": "goodbye", "merci": "thanks",
        "bonjour": "hello", "salut": "hello", "aide": "help",
        "que peux-tu faire": "what can you do", "à propos de": "about", "sur": "about",
        "dernières": "latest", "aujourd'hui": "today", "quoi de neuf": "whats new",
    },
    "de": {
        "nachrichten": "news", "neuigkeiten": "news", "meldungen": "news",
        "schlagzeilen": "headlines", "technik": "technology", "technologie": "technology",
        "wirtschaft": "business", "finanzen": "business", "börse": "business",
        "sport": "sports", "wissenschaft": "science", "gesundheit": "science",
        "umwelt": "science", "ausland": "world", "welt": "world", "international": "world",
        "nächste": "next", "weiter": "next", "vorherige": "previous", "zurück": "previous",
        "wiederhole": "repeat", "nochmal": "again", "noch einmal": "again",
        "erste": "the first one", "ersten": "the first one",
        "zweite": "the second one", "zweiten": "the second one",
        "dritte": "the third one", "dritten": "the third one",
        "letzte": "the last one", "letzten": "the last one",
        "erzähl mir mehr": "tell me more", "erzähle mir mehr": "tell me more",
        "mehr dazu": "tell me more", "mehr details": "more details",
        "mehr nachrichten": "more news", "weitere schlagzeilen": "more headlines",
        "stopp": "stop", "genug": "stop", "tschüss": "goodbye", "danke": "thanks",
        "hallo": "hello", "guten tag": "hello", "guten morgen": "hello", "hilfe": "help",
        "was kannst du": "what can you do", "über": "about", "neueste": "latest",
        "heute": "today", "was gibt es neues": "whats new", "was gibt's neues": "whats new",
        "neues": "new",
    },
}  # fmt: skip


@cache
def _pattern(code: str) -> re.Pattern[str] | None:
    table = _TABLES.get(code)
    if not table:
        return None
    words = "|".join(re.escape(w) for w in sorted(table, key=len, reverse=True))
    if language(code).cjk:  # no spaces between words
        return re.compile(f"(?:{words})")
    return re.compile(rf"(?<![\w'-])(?:{words})(?![\w'-])", re.IGNORECASE)


def as_english_request(text: str, code: str) -> str:
    """``text`` with its meaning-bearing words in English (unchanged for English)."""
    pattern = _pattern(language(code).code)
    if pattern is None:
        return text
    table = _TABLES[language(code).code]
    swapped = pattern.sub(lambda m: f" {table[m.group().lower()]} ", text)  # "" drops a word
    return re.sub(r"\s+", " ", swapped).strip()
