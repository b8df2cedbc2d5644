"""Per-turn progress of one stage, written in the same atomic step as the stage's output.

A worker killed mid-turn leaves its job pending; a live worker reclaims it and runs the
turn again from its input stream. For the client to see each event once (``chunk_index``
contiguous, no sentence spoken twice by count, no text delta repeated), a stage's output
and its progress must never disagree: every output write goes through ``commit``, a Lua
script that appends the stage's stream entries *and* updates the checkpoint hash in one
atomic step. A rerun reads the checkpoint first and skips what was already published.

The checkpoint also fences the turn: each commit names the version it read and bumps it.
A worker that lost its claim (it stalled longer than ``RECLAIM_IDLE_MS`` and another one
took the turn over) finds the version moved on; its write is refused and it stops with
``StaleTurn`` without acknowledging the job, so two workers never both write a turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from shared.bells import bell_verbs
from shared.early_reply import events_key
from shared.messages import FIELD, Message, encode
from shared.resp import bulk, pack
from shared.write_batcher import APPEND_SCRIPT, Resend, load_script, write_batcher

if TYPE_CHECKING:
    from shared.settings import Settings

# KEYS[1] checkpoint hash, KEYS[2..] streams (one entry each)
# ARGV[1] expected version, ARGV[2] checkpoint TTL, ARGV[3] number of field/value pairs,
# ARGV[4] PUBLISH or SPUBLISH, to push each entry to the stream's readers
# (``shared/bells.py``), then the pairs, then per
# stream: maxlen ("0" = untrimmed), ttl ("0" = none), payload
_COMMIT = """
local version = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if version ~= tonumber(ARGV[1]) then return -1 end
local pairs_count = tonumber(ARGV[3])
local set = {'v', version + 1}
local i = 5
for _ = 1, pairs_count do
  set[#set + 1] = ARGV[i]
  set[#set + 1] = ARGV[i + 1]
  i = i + 2
end
redis.call('HSET', KEYS[1], unpack(set))
redis.call('EXPIRE', KEYS[1], ARGV[2])
for k = 2, #KEYS do
  local maxlen, ttl, payload, id = ARGV[i], ARGV[i + 1], ARGV[i + 2], nil
  i = i + 3
  if maxlen ~= '0' then
    id = redis.call('XADD', KEYS[k], 'MAXLEN', '~', maxlen, '*', 'm', payload)
  else
    id = redis.call('XADD', KEYS[k], '*', 'm', payload)
  end
  if ttl ~= '0' then redis.call('EXPIRE', KEYS[k], ttl) end
  redis.pcall(ARGV[4], KEYS[k], id .. ' ' .. payload)
end
return version + 1
"""


class StaleTurn(Exception):
    """Another worker took this turn over; stop writing and leave the job to it."""


@dataclass(frozen=True, slots=True)
class Append:
    """One stream entry to add with a commit.

    ``ttl`` 0 for streams that carry a consumer group (they must never expire);
    ``maxlen`` 0 for untrimmed streams.
    """

    key: str
    message: Message
    ttl: int = 0
    maxlen: int = 0


class TurnCheckpoint:
    """The progress hash of one stage for one turn (``Keys.checkpoint``)."""

    def __init__(self, redis: aioredis.Redis, key: str, ttl_seconds: int) -> None:
        self.key = key
        self._redis = redis
        self._ttl = ttl_seconds
        self._script = redis.register_script(_COMMIT)
        self._sha = self._script.sha.encode()
        self._batcher = write_batcher(redis)
        self._bell = bell_verbs(isinstance(redis, RedisCluster))[0]
        self.fields: dict[str, str] = {}
        self.version = 0

    @property
    def resumed(self) -> bool:
        """True when an earlier run of this turn already published something."""
        return self.version > 0

    async def load(self) -> TurnCheckpoint:
        """Read the checkpoint, in the shared pipeline (every job start reads one)."""

        async def through_redis_py() -> object:
            return await self._redis.hgetall(self.key)

        raw = await self._batcher.call(
            self.key, pack(b"HGETALL", self.key.encode()), 1, through_redis_py
        )
        if isinstance(raw, list):  # RESP2, as sent raw: a flat list of names and values
            raw = dict(zip(raw[::2], raw[1::2], strict=True))
        self.fields = {k.decode(): v.decode() for k, v in raw.items()}  # type: ignore[union-attr]
        self.version = int(self.fields.get("v", 0))
        return self

    def number(self, name: str, default: int = 0) -> int:
        return int(self.fields.get(name, default))

    def text(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default)

    async def commit(self, appends: Sequence[Append] = (), **fields: object) -> None:
        """Append ``appends`` and set ``fields``, atomically and only if still ours.

        Sent as an ``EVALSHA`` in the process's shared write pipeline
        (``shared/write_batcher.py``): an ASR worker commits a partial per audio chunk
        of every utterance it hears, and one round trip per commit would cost more than
        the recognition. A Redis that does not know the script yet (first use, or after
        a restart) answers ``NOSCRIPT`` to every commit of that moment: the script is
        loaded once for all of them (``load_script``) and they are sent again.
        """
        # the arguments packed once, numbers straight to bytes (a commit per audio chunk
        # adds up); redis-py's fallback takes the same bytes
        keys = [self.key, *(append.key for append in appends)]
        args = [b"%d" % self.version, b"%d" % self._ttl, b"%d" % len(fields), self._bell]
        for name, value in fields.items():
            args += [name.encode(), _as_bytes(value)]
        for append in appends:
            args += [b"%d" % append.maxlen, b"%d" % append.ttl, encode(append.message)[FIELD]]
        words = [b"EVALSHA", self._sha, b"%d" % len(keys), *(key.encode() for key in keys)]

        async def through_redis_py() -> object:
            return await self._script(keys=keys, args=args)

        await self._send(pack(*words, *args), through_redis_py)
        self.fields.update({name: str(value) for name, value in fields.items()})

    async def _send(self, packed: bytes, through_redis_py: Resend) -> None:
        """Send one packed commit (``through_redis_py``: the same one, redis-py's way);
        the checkpoint's version moves on, or ``StaleTurn``."""
        try:
            result = await self._batcher.call(self.key, packed, 1, through_redis_py)
        except NoScriptError:
            await load_script(self._redis, _COMMIT)
            try:
                result = await self._batcher.call(self.key, packed, 1, through_redis_py)
            except NoScriptError:  # a node that still lacks it (a cluster's): redis-py's way
                result = await through_redis_py()
        if int(result) < 0:  # type: ignore[call-overload]
            raise StaleTurn(f"{self.key} was taken over by another worker")
        self.version = int(result)  # type: ignore[call-overload]

    def repeated(self, stream: str, ttl: int, maxlen: int, name: str) -> RepeatedCommit:
        """A commit of one shape made many times (see ``RepeatedCommit``)."""
        return RepeatedCommit(self, stream, ttl, maxlen, name)


class RepeatedCommit:
    """``commit([Append(stream, ..., ttl, maxlen)], name=number)`` with an encoded
    payload, made again and again on one turn: an ASR worker's partial per audio chunk
    with the input seq heard through. The same ``EVALSHA``, with the parts that never
    change packed once per turn instead of per chunk."""

    def __init__(
        self, checkpoint: TurnCheckpoint, stream: str, ttl: int, maxlen: int, name: str
    ) -> None:
        self._checkpoint = checkpoint
        self._stream, self._name = stream, name
        self._constants = (b"%d" % maxlen, b"%d" % ttl)
        # EVALSHA sha 2 checkpoint stream | version | ttl 1 bell name | number | maxlen
        # ttl | payload: 14 words
        words = (b"EVALSHA", checkpoint._sha, b"2", checkpoint.key.encode(), stream.encode())
        self._head = b"*14\r\n" + b"".join(bulk(word) for word in words)
        self._middle = b"".join(
            bulk(word) for word in (b"%d" % checkpoint._ttl, b"1", checkpoint._bell, name.encode())
        )
        self._tail = b"".join(bulk(word) for word in self._constants)

    async def __call__(self, payload: bytes, number: int) -> None:
        checkpoint = self._checkpoint
        version, value = b"%d" % checkpoint.version, b"%d" % number
        packed = b"".join(
            (self._head, bulk(version), self._middle, bulk(value), self._tail, bulk(payload))
        )

        async def through_redis_py() -> object:
            args = [version, b"%d" % checkpoint._ttl, b"1", checkpoint._bell]
            args += [self._name.encode(), value, *self._constants, payload]
            return await checkpoint._script(keys=[checkpoint.key, self._stream], args=args)

        await checkpoint._send(packed, through_redis_py)
        checkpoint.fields[self._name] = str(number)


async def preload_scripts(redis: aioredis.Redis) -> None:
    """Load the write scripts at start-up: otherwise the first burst of writes of a fresh
    Redis all meet ``NOSCRIPT`` and wait for a load (4 ms on the first partials). Best
    effort: a Redis that is not up yet, or restarts later, is served by ``load_script``."""
    with contextlib.suppress(RedisError, TimeoutError):
        async with asyncio.timeout(2.0):
            for text in (_COMMIT, APPEND_SCRIPT):
                await load_script(redis, text)


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return b"%d" % value
    return str(value).encode()


class StageProgress:
    """Base of a stage's checkpointed writer for one turn: loads the stage's checkpoint
    and says whether an earlier run already finished the turn."""

    stage = ""

    def __init__(self, redis: aioredis.Redis, settings: Settings, job: Message) -> None:
        session_id, turn_id = job.session_id, job.turn_id  # type: ignore[attr-defined]
        self._settings = settings
        # an attempt's events go aside until its verdict (``shared.early_reply``)
        self._reply_key = events_key(settings.keys, session_id, getattr(job, "options", None))
        self.checkpoint = TurnCheckpoint(
            redis,
            settings.keys.checkpoint(self.stage, session_id, turn_id),
            settings.turn_ttl_seconds,
        )

    async def load(self) -> Self:
        await self.checkpoint.load()
        return self

    @property
    def done(self) -> bool:
        return bool(self.checkpoint.number("done"))
