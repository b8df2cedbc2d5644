"""What the offline news agent says in one turn, in the session's language.

A ``Composer`` is made per turn with that turn's phrase table and feeds, so turns in
different languages can run side by side in one agent; it turns an intent, the session's
state and the fetched stories into the reply's sentences and the next state.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import msgpack

from llm_worker.news.demo import demo_notice
from llm_worker.news.feeds import FeedSource, FetchResult, Story
from llm_worker.news.intents import Intent, IntentKind, mentions_topic
from llm_worker.news.phrases import Phrases
from llm_worker.news.search import search, subject
from llm_worker.news.speech import HEADLINES_PER_TURN, detail_sentences, headline_sentences

MAX_SESSION_STORIES = 15
_STATE_FORMAT = 1


@dataclass(slots=True)
class SessionState:
    """What a session last heard: the story list and where the listener is in it."""

    label: str = ""  # "technology headlines", "stories about space"
    stories: list[Story] = field(default_factory=list)
    page_start: int = 0  # first story of the headlines last read ("the first one")
    page_end: int = 0  # one past the last headline read
    cursor: int = -1  # story last read in detail; -1 while only headlines were read
    last: list[str] = field(default_factory=list)  # sentences of the last reply, for "repeat"
    turn_id: str = ""  # the turn that produced ``last``

    def encode(self) -> bytes:
        rows = [[s.title, s.summary, s.link, s.published, s.source, s.topic] for s in self.stories]
        position = [self.page_start, self.page_end, self.cursor]
        return msgpack.packb([_STATE_FORMAT, self.label, rows, *position, self.last, self.turn_id])

    @classmethod
    def decode(cls, blob: bytes) -> SessionState | None:
        try:
            version, label, rows, start, end, cursor, last, turn_id = msgpack.unpackb(blob)
            if version != _STATE_FORMAT:
                return None
            stories = [Story(*row) for row in rows]
            return cls(label, stories, start, end, cursor, list(last), turn_id)
        except (ValueError, TypeError, msgpack.UnpackException):
            return None


Reply = tuple[list[str], SessionState | None]


class Composer:
    """One turn's reply in one language from one set of feeds."""

    def __init__(self, phrases: Phrases, feeds: Sequence[FeedSource]) -> None:
        self.p = phrases
        self._feeds = list(feeds)

    def compose(
        self, intent: Intent, state: SessionState | None, result: FetchResult | None
    ) -> Reply:
        p = self.p
        kind = intent.kind
        if kind is IntentKind.HEADLINES and result is not None:
            return self._from_demo(result, self._headlines(intent.topic or "general", result))
        if kind is IntentKind.SEARCH and result is not None:
            return self._from_demo(result, self._search(intent.query or "", result))
        if kind is IntentKind.STOP:
            return [p.stop], None
        if kind is IntentKind.GREETING:
            return self._remember(state, self._greeting())
        if kind is IntentKind.HELP:
            return self._remember(state, self._help())
        if kind is IntentKind.UNKNOWN:
            sentences = [p.only_news, *self._help()[1:3]]
            return self._remember(state, sentences)
        if state is None or not state.stories:
            if kind is IntentKind.REPEAT and state and state.last:
                return state.last, state
            return list(p.nothing_read), None
        if kind is IntentKind.REPEAT:
            return (state.last or list(p.nothing_read)), state
        if kind is IntentKind.DETAILS:
            return self._details(state, intent.index)
        if kind is IntentKind.NEXT and state.cursor >= 0:
            return self._next_story(state)
        if kind in (IntentKind.NEXT, IntentKind.MORE_HEADLINES):
            return self._more_headlines(state)
        return self._previous(state)

    def _from_demo(self, result: FetchResult, reply: Reply) -> Reply:
        """A reply read from the demo set opens by saying so (once; "repeat" leaves it out)."""
        if not result.demo:
            return reply
        sentences, state = reply
        notice = demo_notice(self.p.code, offline=result.demo == "offline")
        return [notice, *sentences], state

    def sources_for(self, intent: Intent) -> list[FeedSource]:
        """The feeds to read for ``intent``: the topic's own, else the general ones."""
        if intent.kind is IntentKind.HEADLINES:
            own = [f for f in self._feeds if f.topic == (intent.topic or "general")]
            if own:
                return own
            return [f for f in self._feeds if f.topic == "general"] or self._feeds
        return self._feeds

    def _headlines(self, topic: str, result: FetchResult) -> Reply:
        p = self.p
        if result.all_failed or not result.requested:
            return list(p.no_sources), None
        stories = _unique(result.stories)
        has_feed = any(f.topic == topic for f in self._feeds)
        named = p.topic(topic)
        label = p.label_top if topic == "general" else p.label_topic.format(topic=named)
        intro = p.intro_top if topic == "general" else p.intro_topic.format(label=label)
        if not has_feed and topic != "general":
            stories = [s for s in stories if mentions_topic(f"{s.title} {s.summary}", topic)]
            if not stories:
                first, second = p.no_topic_source
                topics = self._topics_phrase()
                return [first.format(topic=named), second.format(topics=topics)], None
            intro = p.topic_mentions.format(topic=named)
            label = p.label_mentions.format(topic=named)
        elif topic == "general" and not has_feed:
            stories.sort(key=lambda s: s.published or 0.0, reverse=True)
        if not stories:
            return [p.none_right_now.format(label=label)], None
        return self._first_page(label, intro, stories)

    def _search(self, query: str, result: FetchResult) -> Reply:
        p = self.p
        if result.all_failed or not result.requested:
            return list(p.no_sources), None
        stories = search(_unique(result.stories), query)
        query = subject(query)
        if not stories:
            return [p.search_none.format(query=query)], None
        label = p.label_search.format(query=query)
        shown = min(len(stories), MAX_SESSION_STORIES)
        count = p.one_story if len(stories) == 1 else p.n_stories.format(n=shown)
        return self._first_page(label, p.search_found.format(count=count, query=query), stories)

    def _first_page(self, label: str, intro: str, stories: list[Story]) -> Reply:
        stories = stories[:MAX_SESSION_STORIES]
        end = min(HEADLINES_PER_TURN, len(stories))
        sentences = headline_sentences(intro, stories[:end], phrases=self.p)
        return sentences, SessionState(label, stories, 0, end, -1, sentences)

    def _details(self, state: SessionState, index: int | None) -> Reply:
        p = self.p
        if index is None:
            target = state.cursor if state.cursor >= 0 else state.page_start
            if target == state.cursor and state.last[:1] == self._story(state, target)[:1]:
                sentences = list(p.all_on_story)
                return sentences, replace(state, last=sentences)
        elif index < 0:
            target = state.page_end - 1
        else:
            target = state.page_start + index
            if target >= len(state.stories):
                read = state.page_end - state.page_start
                said = p.only_read_one if read == 1 else p.only_read_n.format(n=read)
                return [said], None
        return self._read_story(state, target)

    def _next_story(self, state: SessionState) -> Reply:
        if state.cursor + 1 >= len(state.stories):
            return [self.p.last_of.format(label=state.label)], None
        return self._read_story(state, state.cursor + 1)

    def _more_headlines(self, state: SessionState) -> Reply:
        p = self.p
        start = max(state.page_end, state.cursor + 1)
        if start >= len(state.stories):
            return [p.all_of.format(label=state.label)], None
        end = min(start + HEADLINES_PER_TURN, len(state.stories))
        intro = p.more_intro.format(label=state.label)
        sentences = headline_sentences(intro, state.stories[start:end], phrases=p)
        return sentences, replace(state, page_start=start, page_end=end, cursor=-1, last=sentences)

    def _previous(self, state: SessionState) -> Reply:
        p = self.p
        if state.cursor > 0:
            return self._read_story(state, state.cursor - 1)
        if state.cursor == 0 or state.page_start == 0:
            return list(p.first_one), None
        start = max(0, state.page_start - HEADLINES_PER_TURN)
        intro = p.earlier_intro.format(label=state.label)
        sentences = headline_sentences(intro, state.stories[start : state.page_start], phrases=p)
        return sentences, replace(
            state, page_start=start, page_end=state.page_start, last=sentences
        )

    def _read_story(self, state: SessionState, target: int) -> Reply:
        page_start = min(state.page_start, target)
        sentences = detail_sentences(state.stories[target], target - page_start, self.p)
        new = replace(
            state,
            page_start=page_start,
            page_end=max(state.page_end, target + 1),
            cursor=target,
            last=sentences,
        )
        return sentences, new

    def _story(self, state: SessionState, target: int) -> list[str]:
        return detail_sentences(state.stories[target], target - state.page_start, self.p)

    def _remember(self, state: SessionState | None, sentences: list[str]) -> Reply:
        return sentences, replace(state or SessionState(), last=sentences)

    def _topics_phrase(self) -> str:
        p = self.p
        topics = [t for t in dict.fromkeys(f.topic for f in self._feeds) if t != "general"]
        named = [p.top_headlines, *(p.topic_news.format(topic=p.topic(t)) for t in topics)]
        if len(named) == 1:
            return named[0]
        return p.list_sep.join(named[:-1]) + p.list_or + named[-1]

    def _greeting(self) -> list[str]:
        return [self.p.greeting, self.p.try_topics.format(topics=self._topics_phrase())]

    def _help(self) -> list[str]:
        first, second, *rest = self.p.help
        return [first, second.format(topics=self._topics_phrase()), *rest]


def _unique(stories: Sequence[Story]) -> list[Story]:
    """Stories with repeated titles removed (the same story is often in several feeds)."""
    seen: set[str] = set()
    unique = []
    for story in stories:
        key = re.sub(r"\W+", " ", story.title.lower()).strip()
        if key not in seen:
            seen.add(key)
            unique.append(story)
    return unique
