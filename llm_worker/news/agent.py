"""The built-in offline "LLM": a news agent that reads RSS headlines aloud.

It keeps what it last presented to each session in Redis (``Keys.news_state``) so
follow-ups such as "more about the second one", "next" and "repeat" work across turns
and across worker processes. A job delivered twice (same turn id) replays the reply it
already composed instead of moving the session forward again.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace

import httpx
import msgpack
from redis.asyncio import Redis

from llm_worker.news.feeds import FeedReader, FeedSource, FetchResult, Story, make_http_client
from llm_worker.news.intents import Intent, IntentKind, keywords, mentions_topic, parse_intent
from llm_worker.news.speech import HEADLINES_PER_TURN, detail_sentences, headline_sentences
from shared.engines import AgentRequest
from shared.keys import Keys

log = logging.getLogger(__name__)

NO_SOURCES = "I couldn't reach any news sources right now. Please try again in a moment."
NOTHING_READ = (
    "I haven't read you any headlines yet.",
    "Ask me for the news first, for example, what's the latest in technology?",
)
FILLER = "One moment, I'm checking the news."
FILLER_AFTER_SECONDS = 0.7  # say something while a slow fetch runs, not silence
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


class NewsAgent:
    """ReplyAgent over RSS/Atom feeds; replies stream one sentence per delta."""

    name = "news"

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        feeds: Sequence[FeedSource],
        cache_ttl_seconds: int = 600,
        fetch_timeout_seconds: float = 3.0,
        http_client: httpx.AsyncClient | None = None,
        *,
        state_ttl_seconds: int = 3600,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._feeds = list(feeds)
        self._owns_http = http_client is None
        self._http = http_client or make_http_client(fetch_timeout_seconds)
        self._reader = FeedReader(
            redis,
            keys,
            self._http,
            cache_ttl_seconds=cache_ttl_seconds,
            fetch_timeout_seconds=fetch_timeout_seconds,
        )
        self._state_ttl = state_ttl_seconds

    async def aclose(self) -> None:
        """Close the HTTP client if this agent created it."""
        if self._owns_http:
            await self._http.aclose()

    async def reply(self, request: AgentRequest) -> AsyncIterator[str]:
        """Yield the reply one sentence at a time; later deltas start with a space."""
        intent = parse_intent(request.text)
        state = await self._load(request.session_id)
        log.info("news turn %s/%s intent %s", request.session_id, request.turn_id, intent.kind)
        spoke = False
        if state and state.turn_id == request.turn_id and state.last:
            sentences = state.last  # redelivered job: say the same thing again
        else:
            result = None
            if intent.kind in (IntentKind.HEADLINES, IntentKind.SEARCH):
                fetch = asyncio.create_task(
                    self._reader.read(self._sources_for(intent)),
                    name=f"news-fetch-{request.turn_id}",
                )
                try:
                    done, _ = await asyncio.wait({fetch}, timeout=FILLER_AFTER_SECONDS)
                    if not done:
                        yield FILLER
                        spoke = True
                    result = await fetch
                finally:
                    fetch.cancel()
            sentences, new_state = self._compose(intent, state, result)
            if new_state is not None:
                new_state.turn_id = request.turn_id
                await self._save(request.session_id, new_state)
        for sentence in sentences:
            yield f" {sentence}" if spoke else sentence
            spoke = True

    # --- composing replies ---------------------------------------------------------

    def _compose(
        self, intent: Intent, state: SessionState | None, result: FetchResult | None
    ) -> Reply:
        kind = intent.kind
        if kind is IntentKind.HEADLINES and result is not None:
            return self._headlines(intent.topic or "general", result)
        if kind is IntentKind.SEARCH and result is not None:
            return self._search(intent.query or "", result)
        if kind is IntentKind.STOP:
            return ["Okay. Just ask when you want more news."], None
        if kind is IntentKind.GREETING:
            return self._remember(state, self._greeting())
        if kind is IntentKind.HELP:
            return self._remember(state, self._help())
        if kind is IntentKind.UNKNOWN:
            sentences = ["Sorry, I can only help with the news.", *self._help()[1:3]]
            return self._remember(state, sentences)
        if state is None or not state.stories:
            if kind is IntentKind.REPEAT and state and state.last:
                return state.last, state
            return list(NOTHING_READ), None
        if kind is IntentKind.REPEAT:
            return (state.last or list(NOTHING_READ)), state
        if kind is IntentKind.DETAILS:
            return self._details(state, intent.index)
        if kind is IntentKind.NEXT and state.cursor >= 0:
            return self._next_story(state)
        if kind in (IntentKind.NEXT, IntentKind.MORE_HEADLINES):
            return self._more_headlines(state)
        return self._previous(state)

    def _sources_for(self, intent: Intent) -> list[FeedSource]:
        if intent.kind is IntentKind.HEADLINES:
            own = [f for f in self._feeds if f.topic == (intent.topic or "general")]
            if own:
                return own
            return [f for f in self._feeds if f.topic == "general"] or self._feeds
        return self._feeds

    def _headlines(self, topic: str, result: FetchResult) -> Reply:
        if result.all_failed or not result.requested:
            return [NO_SOURCES], None
        stories = _unique(result.stories)
        has_feed = any(f.topic == topic for f in self._feeds)
        label = "top headlines" if topic == "general" else f"{topic} headlines"
        intro = (
            "Here are the top headlines." if topic == "general" else f"Here are the latest {label}."
        )
        if not has_feed and topic != "general":
            stories = [s for s in stories if mentions_topic(f"{s.title} {s.summary}", topic)]
            if not stories:
                return [
                    f"I don't have a {topic} news source, and nothing in today's headlines "
                    f"is about {topic}.",
                    f"Try {self._topics_phrase()}.",
                ], None
            intro = f"I don't have a {topic} news source, but these headlines mention it."
            label = f"{topic} stories"
        elif topic == "general" and not has_feed:
            stories.sort(key=lambda s: s.published or 0.0, reverse=True)
        if not stories:
            return [f"There are no {label} right now."], None
        return self._first_page(label, intro, stories)

    def _search(self, query: str, result: FetchResult) -> Reply:
        if result.all_failed or not result.requested:
            return [NO_SOURCES], None
        terms = [re.compile(rf"\b{re.escape(t)}", re.IGNORECASE) for t in keywords(query)]
        scored = []
        for position, story in enumerate(_unique(result.stories)):
            if all(t.search(f"{story.title} {story.summary}") for t in terms):
                in_title = sum(bool(t.search(story.title)) for t in terms)
                scored.append((-in_title, position, story))
        if not scored:
            return [f"I couldn't find any stories about {query} right now."], None
        stories = [story for *_, story in sorted(scored)]
        label = f"stories about {query}"
        count = (
            "one story"
            if len(stories) == 1
            else f"{min(len(stories), MAX_SESSION_STORIES)} stories"
        )
        return self._first_page(label, f"I found {count} about {query}.", stories)

    def _first_page(self, label: str, intro: str, stories: list[Story]) -> Reply:
        stories = stories[:MAX_SESSION_STORIES]
        end = min(HEADLINES_PER_TURN, len(stories))
        sentences = headline_sentences(intro, stories[:end])
        return sentences, SessionState(label, stories, 0, end, -1, sentences)

    def _details(self, state: SessionState, index: int | None) -> Reply:
        if index is None:
            target = state.cursor if state.cursor >= 0 else state.page_start
            if target == state.cursor and state.last[:1] == self._story(state, target)[:1]:
                sentences = ["That's all I have on that story.", "Say next for the next one."]
                return sentences, replace(state, last=sentences)
        elif index < 0:
            target = state.page_end - 1
        else:
            target = state.page_start + index
            if target >= len(state.stories):
                read = state.page_end - state.page_start
                heard = "one headline" if read == 1 else f"{read} headlines"
                return [f"I only read {heard}. Which one would you like?"], None
        return self._read_story(state, target)

    def _next_story(self, state: SessionState) -> Reply:
        if state.cursor + 1 >= len(state.stories):
            return [f"That was the last of the {state.label} I have right now."], None
        return self._read_story(state, state.cursor + 1)

    def _more_headlines(self, state: SessionState) -> Reply:
        start = max(state.page_end, state.cursor + 1)
        if start >= len(state.stories):
            return [f"That's all the {state.label} I have right now."], None
        end = min(start + HEADLINES_PER_TURN, len(state.stories))
        sentences = headline_sentences(f"Here are more {state.label}.", state.stories[start:end])
        return sentences, replace(state, page_start=start, page_end=end, cursor=-1, last=sentences)

    def _previous(self, state: SessionState) -> Reply:
        if state.cursor > 0:
            return self._read_story(state, state.cursor - 1)
        if state.cursor == 0 or state.page_start == 0:
            return ["That was the first one.", "Say next to go on."], None
        start = max(0, state.page_start - HEADLINES_PER_TURN)
        sentences = headline_sentences(
            f"Here are the earlier {state.label}.", state.stories[start : state.page_start]
        )
        return sentences, replace(
            state, page_start=start, page_end=state.page_start, last=sentences
        )

    def _read_story(self, state: SessionState, target: int) -> Reply:
        page_start = min(state.page_start, target)
        sentences = detail_sentences(state.stories[target], target - page_start)
        new = replace(
            state,
            page_start=page_start,
            page_end=max(state.page_end, target + 1),
            cursor=target,
            last=sentences,
        )
        return sentences, new

    def _story(self, state: SessionState, target: int) -> list[str]:
        return detail_sentences(state.stories[target], target - state.page_start)

    def _remember(self, state: SessionState | None, sentences: list[str]) -> Reply:
        return sentences, replace(state or SessionState(), last=sentences)

    def _topics_phrase(self) -> str:
        topics = [t for t in dict.fromkeys(f.topic for f in self._feeds) if t != "general"]
        if not topics:
            return "asking for the top headlines"
        named = [f"{t} news" for t in topics]
        listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + f", or {named[-1]}"
        return f"the top headlines, or {listed}"

    def _greeting(self) -> list[str]:
        return [
            "Hello! I can read you the latest news.",
            f"Try asking for {self._topics_phrase()}.",
        ]

    def _help(self) -> list[str]:
        return [
            "I read the news from live headline feeds.",
            f"You can ask for {self._topics_phrase()}.",
            "You can also ask for news about a subject, like news about space.",
            "After the headlines, say tell me more about the first one, next, or repeat.",
        ]

    # --- session state -------------------------------------------------------------

    async def _load(self, session_id: str) -> SessionState | None:
        blob = await self._redis.get(self._keys.news_state(session_id))
        return SessionState.decode(blob) if isinstance(blob, bytes) else None

    async def _save(self, session_id: str, state: SessionState) -> None:
        key = self._keys.news_state(session_id)
        await self._redis.set(key, state.encode(), ex=self._state_ttl)


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
