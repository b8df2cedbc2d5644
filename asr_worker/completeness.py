"""Is a hypothesis a whole request? The gateway ends a turn sooner when it is.

Each partial transcript carries ``complete``: ``True`` when what was heard so far is a
whole request, ``False`` when it is clearly unfinished ("read me the", "tell me more
about"), ``None`` when it cannot be told. The gateway waits a short, a long or the
configured pause accordingly (``gateway.utterance.EndOfSpeechPolicy``).

Cutting a person off costs far more than waiting 300 ms, so "complete" is claimed only
when both hold: the request can end here (the news grammar reached a final state, or for
other recognisers the last word is one requests end on: "headlines", "today", "please"),
and its last word is not one that usually leads on to more ("read me the latest …
sports headlines", "what's new … in science"): an adjective, "new", "more". Those get
the configured pause, which a mid-sentence hesitation of 300-500 ms does not reach.
"""

from __future__ import annotations

import re

# A request never ends on these: articles, prepositions, conjunctions, a bare verb or "me".
UNFINISHED = frozenset(
    """a an the some any my your our their this that these those of on in about for from
    with to into at by around regarding and or but then also plus me us what what's whats
    is are was were tell read give show play get find search look bring let lets let's
    i i'd i'm want wanna like need can could would will""".split()
)
# Phrases that end unfinished although their last word alone may not say so.
UNFINISHED_ENDINGS = ("more about", "related to", "in the world of")
# ... unless the phrase is one that ends on such a word.
FINISHED_ENDINGS = ("going on", "go on", "carry on", "hold on", "move on", "fill me in")

# Words that often lead on to a noun: a hypothesis ending on one is left to the default.
LEADS_ON = frozenset(
    """latest top main big biggest breaking important major current recent new trending
    quick daily more other all today's happening""".split()
)
# Without a grammar: last words that end requests (nouns of news, times, closers, replies).
ENDS_REQUEST = frozenset(
    """news headlines stories articles updates story headline article update briefing summary
    roundup bulletin report rundown recap overview highlights scores results developments
    coverage events today tonight yesterday now lately recently morning evening afternoon
    week weekend please thanks again next previous stop pause continue resume help yes
    no okay""".split()
)

_WORD = re.compile(r"[a-z']+")


def is_complete(text: str, grammar_accepts: bool | None = None) -> bool | None:
    """Whether ``text`` is a whole request; ``grammar_accepts`` from a grammar recogniser."""
    words = _WORD.findall(text.lower())
    if not words:
        return None
    last, joined = words[-1], " ".join(words)
    finished_phrase = joined.endswith(FINISHED_ENDINGS)
    if not finished_phrase and (last in UNFINISHED or joined.endswith(UNFINISHED_ENDINGS)):
        return False
    if last in LEADS_ON:
        return None
    if grammar_accepts is not None:
        return True if grammar_accepts else None
    return True if last in ENDS_REQUEST else None
