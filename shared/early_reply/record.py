"""The record of a session's attempts in Redis (``EarlyVerdicts``) and the LLM worker's
side of an attempt (``LlmAttempt``): the scripts that open, decide and copy, each atomic.
The protocol and its failure table are in ``shared/early_reply/__init__.py``."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from shared.bells import bell_verbs
from shared.early_reply.names import (
    DROPPED,
    OPEN,
    POLL_S,
    USED,
    is_attempt,
    open_value,
    reply_turn,
)
from shared.messages import FIELD, LlmJob, ReplyEvent, encode

if TYPE_CHECKING:
    from shared.control import ControlChannel
    from shared.keys import Keys

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
        args = [job.turn_id, open_value(words), self._ttl, jobs_maxlen, encode(job)[b"m"]]
        return bool(await self._open(keys=keys, args=args))

    async def decide(self, session_id: str, attempt: str, final: str | None) -> str:
        """``used`` if the attempt is open for exactly ``final``, else ``dropped``; an
        attempt decided before keeps its verdict. ``final=None`` withdraws it."""
        wanted = "" if final is None else open_value(final)
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
