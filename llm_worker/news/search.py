"""Keyword search in headlines, shared by both news agents.

A word of a Latin-script query matches at a word start ("elect" finds "elections").
Chinese has no spaces, so a Chinese keyword ("华为手机", or a whole request such as
"有没有彗星" when the words around it were not in the keyword table) is first stripped
of request words ("有没有", "搜索", "的"), then matched by its character pairs: a story
matches when it holds at least half of them ("华为手机" finds "华为发布新手机"). A word
segmenter (jieba) would read Chinese better, but it adds about 68 MB of resident memory
and a second of start-up to a worker that fits a 512 MB instance; pairs cost nothing.
Articles and prepositions of the other languages are dropped as English ones are ("die
Bahn" looks for "Bahn"). Stories are ranked by how much of the query their title holds,
then in feed order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from llm_worker.news.feeds import Story
from llm_worker.news.intents import keywords

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_REQUEST_WORDS = re.compile(
    "|".join(
        sorted(
            "有没有 有什么 有关于 有关 关于 搜索 搜一下 搜搜 查找 查一下 查查 查询 找一下 找找 "
            "说说 讲讲 聊聊 告诉我 我想知道 我想听 我想看 想知道 想听 想看 看看 听听 最近 "
            "最新 今天 相关 方面 报道 新闻 消息 一下 哪些 什么 一些".split(),
            key=len,
            reverse=True,
        )
    )
)

_FUNCTION_WORDS = frozenset(
    "der die das den dem des ein eine einer einen einem und oder von vom zu zum zur mit im "
    "am bei über el la los las un una unos unas de del al y o en con sobre le les une des "
    "du et ou au aux sur avec".split()
)
_PARTICLES = re.compile(r"^[请的了吗呢吧啊]+|[的了吗呢吧啊]+$")  # only at the ends: "了解"

Matcher = Callable[[str], int]  # text -> how much of one keyword it holds (0: none)


def search(stories: Sequence[Story], query: str) -> list[Story]:
    """The stories matching every keyword of ``query``, best first; [] if it has none."""
    words = keywords(query)
    words = [w for w in words if w not in _FUNCTION_WORDS] or words
    matchers = [_matcher(word) for word in words]
    matchers = [m for m in matchers if m is not None]
    if not matchers:
        return []
    scored = []
    for position, story in enumerate(stories):
        text = f"{story.title} {story.summary}"
        if all(match(text) for match in matchers):
            in_title = sum(match(story.title) for match in matchers)
            scored.append((-in_title, position, story))
    return [story for *_, story in sorted(scored, key=lambda row: row[:2])]


def subject(query: str) -> str:
    """The query as it is said back ("有没有彗星" -> "彗星"); Latin-script queries unchanged."""
    if not _HAN.search(query):
        return query
    kept = [_without_request_words(w) for w in keywords(query)]
    return " ".join(w for w in kept if w) or query


def _matcher(word: str) -> Matcher | None:
    if not _HAN.search(word):
        pattern = re.compile(rf"\b{re.escape(word)}", re.IGNORECASE)
        return lambda text: int(pattern.search(text) is not None)
    core = _without_request_words(word)
    if not core:
        return None
    pairs = {core[i : i + 2] for i in range(len(core) - 1)} or {core}
    needed = math.ceil(len(pairs) / 2)

    def held(text: str) -> int:
        found = sum(pair in text for pair in pairs)
        return found if found >= needed else 0

    return held


def _without_request_words(word: str) -> str:
    return _PARTICLES.sub("", _REQUEST_WORDS.sub("", word))
