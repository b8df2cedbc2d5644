"""Early (preemptive) replies: the protocol between the gateway and the workers.

With ``PREEMPTIVE_REPLY`` on, the gateway starts the reply to a complete hypothesis
during a pause, before the end of speech is confirmed. That reply is an *attempt*
(``t5.p1`` for utterance ``t5``; the client never sees that id). Whether it becomes
the turn's reply is decided once, in one place, and every side reads it there.

The record: ``Keys.early_verdicts(session)``, a hash, attempt id -> ``open:<words>``,
``used`` or ``dropped``. ``open`` is written only after the attempt's LLM job, in one
script (``EarlyVerdicts.open``): never a record without its job (a job left without its
record reads ``dropped``, a wasted call at worst). It leaves ``open`` once, atomically
(``EarlyVerdicts.decide``): to ``used`` only when the recogniser's final transcript is
exactly the words the attempt answered; to ``dropped`` for anything else, including
every withdrawal. An attempt never opened
(its publish failed, or its record expired) is ``dropped`` for everyone.

Who does what:

1. Gateway: opens the attempt (``open``); its LLM and TTS workers write its events to
   ``Keys.early_replies(session)`` under the attempt's id (``events_key``), which the
   gateway follows and keeps aside. The end-of-speech marker of the utterance names the
   attempt (``InputChunk.preempted``).
2. ASR worker: with the final transcript, ``decide(attempt, final)``: ``used`` -> it
   publishes no LLM job; ``dropped`` -> the normal LLM job for ``t5``, as without an
   attempt. Then the final transcript goes out (so whoever sees it can read the verdict).
3. Gateway, on that final transcript: ``decide(attempt, None)``, which returns the
   verdict already given (or drops an attempt nobody decided). ``used``: the kept events
   and those to come are copied to the reply stream as ``t5``'s; ``dropped``: its
   workers are cancelled and its events forgotten.
4. LLM worker, at the end of the attempt: waits for the verdict (``await_verdict``,
   woken by the control channel), and past its wait withdraws the attempt itself.
   ``used``: it keeps the agent's state and the history under ``t5``.

Anyone who sees the attempt break before the verdict withdraws it (``decide(attempt,
None)``): the ASR worker then publishes the normal job. Failures:

==========================================  ==============================================
failure                                     what happens
==========================================  ==============================================
publishing the attempt fails                never ``open``: the ASR worker publishes the
                                            normal job
the user speaks on / the hypothesis changes gateway withdraws it before the end marker
too many events kept while undecided        gateway withdraws it; if the ASR worker
                                            decided ``used`` first, the events go on
the verdict cannot be read (Redis blip)     read again a few times, else at close, where
                                            the attempt is withdrawn (or copied if used)
client gone before the final transcript     gateway withdraws it at close: normal job,
                                            whose reply a resume replays
client gone after ``used``                  the closing connection copies the rest of
                                            the attempt to the reply stream
gateway restarts (SIGTERM)                  as "client gone"; the gateway waits for
                                            those copies before it exits
LLM worker killed mid-attempt               its job is reclaimed like any job and resumes
                                            from its checkpoint into the early stream
an attempt's job fails or is dead-lettered  its error goes to the early stream under the
                                            attempt's id: the client sees it as ``t5``'s
                                            only if the attempt is used
ASR worker killed between verdict and final the job reruns: ``decide`` returns the same
                                            verdict, the final goes out once
the client cancels the turn                 its attempts stop whatever their verdict
gateway killed (SIGKILL) after ``used``     the copy's position is in the record: the
                                            gateway the client resumes on copies the
                                            rest from there (no resume: nothing to do,
                                            the keys expire after the resume window)
==========================================  ==============================================

No event naming an attempt id ever reaches the reply stream: the workers write an
attempt's events to the early stream only (``events_key``) and the gateway renames
them to the utterance's turn when it copies them.

The copy is resumable. Each copied event is appended by one script (``copy``) that also
records, in the same hash, the early entry id it came from (``copied:<attempt>``; ``done``
once the turn's end is copied), and appends only past that position. A gateway killed
mid-copy leaves it there; a resume of the session on any gateway reads the used attempts
whose copy is not ``done`` (``unfinished_copies``) and copies on from their position, and
a second copier (the old connection's, still alive) only skips what is copied already.
The copy stays in the gateway rather than in the workers: the LLM and TTS workers write
one attempt's events from two processes, in whatever order they finish, and only a
reader of the early stream knows the order the client must see them in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from shared.bells import bell_verbs
from shared.messages import FIELD, LlmJob, ReplyEvent, encode

if TYPE_CHECKING:
    from shared.control import ControlChannel
    from shared.keys import Keys

OPEN = "open"
USED = "used"
DROPPED = "dropped"
EARLY_OPTION = "early"  # job option: this job is an attempt (its events go aside)
REPLY_TURN_OPTION = "reply_turn"  # job option: the utterance's turn, as the client knows it
KEPT_EVENTS_LIMIT = 1000  # an attempt that waits with more events than this is withdrawn
MAX_ATTEMPTS = 3  # per utterance: a bound on model calls wasted
POLL_S = 0.5  # how often a waiter reads the record in case a notice was missed

# KEYS[1] the record, KEYS[2] the session's LLM work stream
# ARGV[1] attempt id, ARGV[2] "open:<words>", ARGV[3] record TTL, ARGV[4] maxlen, ARGV[5] job
# The job goes first: a script that fails midway keeps what it wrote, and a job without
# its record is only a wasted call (its verdict reads ``dropped``), never a silent turn.
_OPEN = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'm', ARGV[5])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS[1] the record, KEYS[2] the reply stream
# ARGV[1] the copy's position field, ARGV[2] the early entry id copied, ARGV[3] 1: it ends
# the turn, ARGV[4] TTL, ARGV[5] the reply stream's maxlen, ARGV[6] PUBLISH or SPUBLISH,
# ARGV[7] the event (the entry's one field). Appends only past the recorded position (ids
# compare as ms, then sequence), moving it in the same script: a copier that died is
# resumed from there, two copiers never repeat. Like every append to a followed stream it
# pushes the entry to the stream's readers (``shared/bells.py``).
# Returns 1 appended, 0 already copied, 2 the reply was copied to its end.
_COPY = """
local at = redis.call('HGET', KEYS[1], ARGV[1])
if at == 'done' then return 2 end
if at then
  local a, b = string.match(at, '(%d+)-(%d+)')
  local c, d = string.match(ARGV[2], '(%d+)-(%d+)')
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if c < a or (c == a and d <= b) then return 0 end
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'm', ARGV[7])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.pcall(ARGV[6], KEYS[2], id .. ' ' .. ARGV[7])
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], 'done')
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""
COPIED, BEHIND, FINISHED = 1, 0, 2  # what ``EarlyVerdicts.copy`` did
_COPY_FIELD = "copied:"  # the record's field of an attempt's copy position


# KEYS[1] the record; ARGV[1] attempt id, ARGV[2] the open value that makes it used ("":
# a withdrawal), ARGV[3] record TTL, ARGV[4] the control channel, ARGV[5] its notice.
# Returns the verdict, given now or before.
_DECIDE = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value and string.sub(value, 1, 5) ~= 'open:' then return value end
if value and value == ARGV[2] then value = 'used' else value = 'dropped' end
redis.call('HSET', KEYS[1], ARGV[1], value)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return value
"""


def attempt_id(turn_id: str, number: int) -> str:
    return f"{turn_id}.p{number}"


def attempt_turn(attempt: str) -> str:
    """``t5.p1`` -> ``t5``: the utterance's turn, as the client knows it."""
    return attempt.rsplit(".p", 1)[0]


def _open_value(words: str) -> str:
    """The record of an open attempt: its words, the only thing a final is compared to."""
    return f"{OPEN}:{words}"


def is_attempt(options: Mapping[str, Any] | None) -> bool:
    return bool((options or {}).get(EARLY_OPTION))


def reply_turn(job: Any) -> str:
    """The turn the client knows a job's reply by (an attempt's utterance, else its own)."""
    options = getattr(job, "options", None) or {}
    return str(options.get(REPLY_TURN_OPTION) or job.turn_id)


def events_key(keys: Keys, session_id: str, options: Mapping[str, Any] | None) -> str:
    """Where a job's events go: an attempt's aside, under its own id; others to the client."""
    if is_attempt(options):
        return keys.early_replies(session_id)
    return keys.reply(session_id)


class EarlyVerdicts:
    """The record of a session's attempts in Redis: open one, decide one, read one."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, ttl_seconds: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = ttl_seconds
        self._open = redis.register_script(_OPEN)
        self._decide = redis.register_script(_DECIDE)
        self._copy = redis.register_script(_COPY)
        self._publish = bell_verbs(isinstance(redis, RedisCluster))[0]

    async def open(self, job: LlmJob, words: str, jobs_maxlen: int) -> bool:
        """Publish the attempt's job with its ``open`` record (False: it existed already,
        or was decided before it could open: nothing was published)."""
        session_id = job.session_id
        keys = [self._keys.early_verdicts(session_id), self._keys.jobs_for("llm", session_id)]
        args = [job.turn_id, _open_value(words), self._ttl, jobs_maxlen, encode(job)[b"m"]]
        return bool(await self._open(keys=keys, args=args))

    async def decide(self, session_id: str, attempt: str, final: str | None) -> str:
        """``used`` if the attempt is open for exactly ``final``, else ``dropped``; an
        attempt decided before keeps its verdict. ``final=None`` withdraws it."""
        wanted = "" if final is None else _open_value(final)
        key = self._keys.early_verdicts(session_id)
        notice = f"decided {session_id} {attempt}"  # wakes ``ControlChannel.wait_decided``
        args = [attempt, wanted, self._ttl, self._keys.control, notice]
        verdict = await self._decide(keys=[key], args=args)
        return verdict.decode() if isinstance(verdict, bytes) else str(verdict)

    async def read(self, session_id: str, attempt: str) -> str:
        """The verdict, or ``open`` while there is none (an unknown attempt: ``dropped``)."""
        value = await self._redis.hget(self._keys.early_verdicts(session_id), attempt)
        if value is None:
            return DROPPED
        text = value.decode() if isinstance(value, bytes) else str(value)
        return OPEN if text.startswith(f"{OPEN}:") else text

    async def copy(
        self, session_id: str, attempt: str, entry_id: str, event: ReplyEvent, maxlen: int
    ) -> int:
        """Append a used attempt's event (renamed to the turn) to the reply stream, with
        the early entry id it came from as the copy's position, unless copied already:
        ``COPIED``, ``BEHIND`` (skipped) or ``FINISHED`` (the reply has its end)."""
        keys = [self._keys.early_verdicts(session_id), self._keys.reply(session_id)]
        ends = "1" if event.ends_turn else "0"
        message = encode(event)[FIELD]
        args = [_COPY_FIELD + attempt, entry_id, ends, self._ttl, maxlen, self._publish, message]
        return int(await self._copy(keys=keys, args=args))

    async def unfinished_copies(self, session_id: str) -> dict[str, str]:
        """The session's used attempts whose copy has no end yet -> the early entry id
        copied last ("0-0": none): what a resume finishes if their copier died."""
        record = await self._redis.hgetall(self._keys.early_verdicts(session_id))
        fields = {
            (k.decode() if isinstance(k, bytes) else str(k)): (
                v.decode() if isinstance(v, bytes) else str(v)
            )
            for k, v in record.items()
        }
        return {
            attempt: fields.get(_COPY_FIELD + attempt, "0-0")
            for attempt, verdict in fields.items()
            if verdict == USED and fields.get(_COPY_FIELD + attempt) != "done"
        }


async def await_verdict(
    verdicts: EarlyVerdicts,
    control: ControlChannel | None,
    session_id: str,
    attempt: str,
    wait_s: float,
) -> bool:
    """For the attempt's LLM worker: True once it is ``used``. Woken by the control
    channel's notice of a verdict, reading the record every ``POLL_S`` in case a notice
    was missed; after ``wait_s`` it withdraws the attempt (nobody decided it)."""
    deadline = time.monotonic() + wait_s
    while (verdict := await verdicts.read(session_id, attempt)) == OPEN:
        left = deadline - time.monotonic()
        if left <= 0:
            verdict = await verdicts.decide(session_id, attempt, None)
            break
        if control is None:
            await asyncio.sleep(min(left, POLL_S))
        else:
            await control.wait_decided(session_id, attempt, min(left, POLL_S))
    return verdict == USED


# --- the LLM worker's side -----------------------------------------------------------


class LlmAttempt:
    """What an attempt's reply leaves besides its events, kept aside until its verdict:

    * the agent's session state (the stories last presented, for "the second one") is a
      copy under the attempt's own name, moved over the session's only once used;
    * the conversation memory is written only once used, under the turn the client knows
      (``t5``, not ``t5.p1``), so a later cancel of that turn cuts it as usual.
    """

    def __init__(self, redis: aioredis.Redis, keys: Keys, job: LlmJob, ttl_seconds: int) -> None:
        self._redis = redis
        self._keys = keys
        self._job = job
        self._verdicts = EarlyVerdicts(redis, keys, ttl_seconds)
        self.agent_session = f"{job.session_id}~{job.turn_id}"  # the agent's state lives here
        self.reply_turn = reply_turn(job)

    @classmethod
    def of(
        cls, redis: aioredis.Redis, keys: Keys, job: LlmJob, ttl_seconds: int
    ) -> LlmAttempt | None:
        return cls(redis, keys, job, ttl_seconds) if is_attempt(job.options) else None

    async def begin(self) -> None:
        """Give the agent a copy of the session's state to work on."""
        scratch = self._keys.news_state(self.agent_session)
        await self._redis.delete(scratch)
        await self._redis.copy(self._keys.news_state(self._job.session_id), scratch)

    async def settle(self, control: ControlChannel | None, wait_s: float) -> bool:
        """Wait for the verdict; keep the agent's state only if the attempt was used."""
        job = self._job
        used = await await_verdict(self._verdicts, control, job.session_id, job.turn_id, wait_s)
        scratch = self._keys.news_state(self.agent_session)
        if used and await self._redis.exists(scratch):
            await self._redis.rename(scratch, self._keys.news_state(job.session_id))
        else:
            await self._redis.delete(scratch)
        return used


# --- the gateway's side, as a state machine without I/O ------------------------------


class Phase(StrEnum):
    KEPT = "kept"  # started, no verdict yet: its events are kept aside
    WITHDRAWING = "withdrawing"  # broken before its verdict; still kept until it is known
    USED = "used"  # the turn's reply: its events go to the client as the turn's
    DONE = "done"  # used, and its reply ended
    DROPPED = "dropped"  # not the reply: nothing of it reaches the client


@dataclass
class Attempt:
    attempt_id: str
    turn_id: str  # the utterance's turn, as the client knows it
    words: str
    phase: Phase = Phase.KEPT
    kept: list[tuple[str, ReplyEvent]] = field(default_factory=list)  # (early id, event)
    last_id: str = "0-0"  # the last entry of the early stream that was this attempt's

    @property
    def undecided(self) -> bool:
        return self.phase in (Phase.KEPT, Phase.WITHDRAWING)


@dataclass
class Step:
    """What the gateway must do after one input to ``Attempts``."""

    # (early entry id, event renamed to the turn), in order
    forward: list[tuple[str, ReplyEvent]] = field(default_factory=list)
    withdraw: bool = False  # decide(attempt, None), then ``settled`` with the verdict
    stop: bool = False  # cancel the attempt's workers


class Attempts:
    """One connection's attempts: which events wait, go to the client, or are forgotten.

    Inputs: ``start``, ``on_event`` (its early stream), ``drop`` (the utterance state
    machine gave it up), ``settled`` (a verdict read from the record). Outputs: ``Step``.
    """

    REMEMBERED = 64  # a long session forgets attempts that are over beyond this

    def __init__(self) -> None:
        self._attempts: dict[str, Attempt] = {}

    def get(self, attempt: str) -> Attempt | None:
        return self._attempts.get(attempt)

    def all(self) -> list[Attempt]:
        return list(self._attempts.values())

    def start(self, attempt: str, turn_id: str, words: str) -> Attempt:
        if len(self._attempts) > self.REMEMBERED:
            over = [a for a, item in self._attempts.items() if item.phase == Phase.DROPPED]
            over += [a for a, item in self._attempts.items() if item.phase == Phase.DONE][:-8]
            for old in over:
                del self._attempts[old]
        self._attempts[attempt] = item = Attempt(attempt, turn_id, words)
        return item

    def on_event(self, event: ReplyEvent, entry_id: str = "") -> Step:
        item = self._attempts.get(event.turn_id)
        if item is None:
            return Step()  # an attempt of an earlier connection, or not ours
        item.last_id = entry_id or item.last_id
        if item.phase == Phase.USED:
            return Step(forward=self._as_turn(item, [(item.last_id, event)]))
        if item.undecided:
            item.kept.append((item.last_id, event))
            if len(item.kept) > KEPT_EVENTS_LIMIT and item.phase == Phase.KEPT:
                item.phase = Phase.WITHDRAWING
                return Step(withdraw=True)
        return Step()

    def drop(self, attempt: str) -> Step:
        """Given up before the end of speech (speech again, another hypothesis, a cancel,
        the client gone): withdraw it; its verdict decides what happens to its events."""
        item = self._attempts.get(attempt)
        if item is None or item.phase != Phase.KEPT:
            return Step()
        item.phase = Phase.WITHDRAWING
        return Step(withdraw=True)

    def settled(self, attempt: str, verdict: str) -> Step:
        """The record's verdict on an undecided attempt."""
        item = self._attempts.get(attempt)
        if item is None or not item.undecided:
            return Step()
        kept, item.kept = item.kept, []
        if verdict == USED:
            item.phase = Phase.USED
            return Step(forward=self._as_turn(item, kept))
        item.phase = Phase.DROPPED
        return Step(stop=True)

    def cancel_turn(self, turn_id: str) -> list[Attempt]:
        """The client cancelled ``turn_id``: its attempts still going (undecided or used)
        are dropped whatever their verdict; returns them (their workers must stop)."""
        going = [
            item
            for item in self._attempts.values()
            if item.turn_id == turn_id and item.phase not in (Phase.DONE, Phase.DROPPED)
        ]
        for item in going:
            item.phase = Phase.DROPPED
            item.kept.clear()
        return going

    def _as_turn(
        self, item: Attempt, events: list[tuple[str, ReplyEvent]]
    ) -> list[tuple[str, ReplyEvent]]:
        renamed = []
        for entry_id, event in events:
            if item.phase == Phase.DONE:
                break  # nothing of a reply follows its end
            renamed.append((entry_id, as_turn(event, item.turn_id)))
            if event.ends_turn:
                item.phase = Phase.DONE
                item.kept.clear()
        return renamed


def as_turn(event: ReplyEvent, turn_id: str) -> ReplyEvent:
    return ReplyEvent(event.event, event.session_id, turn_id, event.data, event.audio)
