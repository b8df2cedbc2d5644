"""Redis Streams I/O used by every service: connect, publish, follow a turn's input.

Writes to per-turn and per-session streams always refresh the key's TTL in the same
round trip, so abandoned sessions clean themselves up; work streams (with groups) are
only ever trimmed, never expired (an expired key would drop its consumer group).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.keys import Keys
from shared.messages import Message, ReplyEvent, encode
from shared.resp import pack, round_trip

log = logging.getLogger(__name__)

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


def now_ms() -> int:
    return int(time.time() * 1000)


def plain_url(url: str | None) -> str:
    """``url`` as redis-py's clients take it (``redis+cluster://`` -> ``redis://``)."""
    return (url or DEFAULT_REDIS_URL).replace("+cluster://", "://", 1)


def is_cluster(redis: object) -> bool:
    return isinstance(redis, RedisCluster)


def connect(url: str | None, max_connections: int = 64, cluster: bool = False) -> aioredis.Redis:
    """A client with a bounded pool that retries transient errors with jittered backoff.

    The pool blocks (up to 10 s) when all its connections are busy instead of failing:
    under load, commands queue for a connection rather than erroring out. Blocking reads
    hold a connection each, and each process has only two (its stream mux and, in a
    worker, its XREADGROUP); on a cluster, one per slot read (``shared/mux.py``).

    ``cluster`` (or a ``redis+cluster://`` URL): a ``RedisCluster`` client that learns
    the slot map from the node in the URL and sends each command to its slot's master;
    ``max_connections`` then bounds each node's connections.
    """
    if cluster or (url or "").startswith(("redis+cluster:", "rediss+cluster:")):
        return RedisCluster.from_url(  # type: ignore[return-value]
            plain_url(url),
            max_connections=max_connections,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=6),
            socket_keepalive=True,
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        url or DEFAULT_REDIS_URL,
        max_connections=max_connections,
        timeout=10,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=6),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=15,
        socket_keepalive=True,
    )
    return aioredis.Redis.from_pool(pool)


async def ensure_group(redis: aioredis.Redis, stream: str, group: str) -> None:
    """Create ``group`` on ``stream`` (and the stream) unless it exists already."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def publish_job(redis: aioredis.Redis, stream: str, job: Message, maxlen: int) -> bytes:
    """Add a job to a work stream; trimmed approximately so it stays bounded."""
    return await write_batcher(redis).xadd(stream, encode(job), maxlen=maxlen)


async def append_with_ttl(
    redis: aioredis.Redis, key: str, message: Message, ttl_seconds: int, maxlen: int | None = None
) -> None:
    """XADD to a stream that has no group, refreshing its TTL in the same round trip."""
    await write_batcher(redis).xadd(key, encode(message), maxlen=maxlen, ttl=ttl_seconds)


_Write = tuple[str, dict[bytes, bytes], int | None, int | None, "asyncio.Future[bytes]"]


class WriteBatcher:
    """Sends the stream writes of every task of a process in shared pipelines.

    A gateway with a thousand sessions makes ten thousand audio XADDs a second; sent one
    by one, each costs a pool checkout and its own round trip, and under load callers
    queue for connections. Here each caller's XADD (with its EXPIRE, if any) joins a
    list that one flush task sends as a single pipeline: at low load that is one round
    trip as before; under load every write made while the last pipeline was in flight
    goes out in the next one. One pipeline at a time and callers that await their own
    write keep each stream's entries in the order they were written.
    """

    MAX_BATCH = 1024

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._pending: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None
        self.round_trips = 0

    async def xadd(
        self,
        key: str,
        fields: dict[bytes, bytes],
        maxlen: int | None = None,
        ttl: int | None = None,
    ) -> bytes:
        """XADD (trimmed approximately to ``maxlen``), then EXPIRE ``ttl``; the entry id."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending.append((key, fields, maxlen, ttl, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="redis-write-batcher")
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self.MAX_BATCH]
            del self._pending[: self.MAX_BATCH]
            try:
                results = await self._send(batch)
            except BaseException as exc:
                error = exc if isinstance(exc, Exception) else RedisConnectionError("cancelled")
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(error)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (*_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _send(self, batch: list[_Write]) -> list[object]:
        """One round trip for the whole batch; per write, its XADD's reply or error.

        The commands are packed here rather than through redis-py's pipeline, whose
        per-command bookkeeping in Python cost more than the writes themselves; they
        are sent under the client's retry policy (``shared/resp.py``). On a cluster the
        batch splits by node: one round trip per node, all at once.
        """
        if isinstance(self._redis, RedisCluster):
            return await self._send_by_node(batch)
        return await self._send_one(batch)

    async def _send_by_node(self, batch: list[_Write]) -> list[object]:
        cluster = self._redis
        await cluster.initialize()  # type: ignore[union-attr]
        by_node: dict[str, list[int]] = {}
        for index, write in enumerate(batch):
            node = cluster.get_node_from_key(write[0])  # type: ignore[union-attr]
            by_node.setdefault(node.name, []).append(index)
        groups = list(by_node.values())
        sent = await asyncio.gather(
            *(self._send_one([batch[i] for i in group]) for group in groups),
            return_exceptions=True,
        )
        results: list[object] = [None] * len(batch)
        for group, outcome in zip(groups, sent, strict=True):
            for position, index in enumerate(group):
                results[index] = (
                    outcome if isinstance(outcome, BaseException) else outcome[position]
                )
        for index, result in enumerate(results):
            if isinstance(result, ResponseError) and str(result).startswith(("MOVED", "ASK")):
                # not written (the slot moved): once more through redis-py, which follows it
                key, fields, maxlen, ttl, _future = batch[index]
                results[index] = await self._redis.xadd(
                    key,
                    fields,
                    maxlen=maxlen,
                    approximate=True,  # type: ignore[arg-type]
                )
                if ttl:
                    await self._redis.expire(key, ttl)
        return results

    async def _send_one(self, batch: list[_Write]) -> list[object]:
        packed: list[bytes] = []
        for key, fields, maxlen, ttl, _future in batch:
            packed.append(_pack_xadd(key.encode(), fields, maxlen))
            if ttl:
                packed.append(pack(b"EXPIRE", key.encode(), b"%d" % ttl))
        self.round_trips += 1
        replies = await round_trip(
            self._redis, b"".join(packed), len(packed), idempotent=False, key=batch[0][0]
        )
        results: list[object] = []
        position = 0
        for _key, _fields, _maxlen, ttl, _future in batch:
            reply = replies[position]
            expired = replies[position + 1] if ttl else None
            position += 2 if ttl else 1
            results.append(expired if isinstance(expired, Exception) else reply)
        return results


def _pack_xadd(key: bytes, fields: dict[bytes, bytes], maxlen: int | None) -> bytes:
    args = [b"XADD", key]
    if maxlen is not None:
        args += [b"MAXLEN", b"~", b"%d" % maxlen]
    args.append(b"*")
    for name, value in fields.items():
        args += [name, value]
    return pack(*args)


_batchers: weakref.WeakKeyDictionary[aioredis.Redis, WriteBatcher] = weakref.WeakKeyDictionary()


def write_batcher(redis: aioredis.Redis) -> WriteBatcher:
    """The process's one ``WriteBatcher`` for ``redis`` (all its callers share pipelines)."""
    batcher = _batchers.get(redis)
    if batcher is None:
        batcher = _batchers[redis] = WriteBatcher(redis)
    return batcher


class StreamAppender:
    """XADD to streams without groups on hot paths, refreshing a key's TTL only when due.

    A TTL refresh per audio chunk or partial doubles the commands for nothing: the key
    is refreshed on its first write and then at most every quarter of its TTL, so it
    still outlives its last write by at least three quarters of the TTL. Writes go
    through the process's ``WriteBatcher``.
    """

    def __init__(self, redis: aioredis.Redis, ttl_seconds: int, maxlen: int | None = None):
        self._batcher = write_batcher(redis)
        self._ttl = ttl_seconds
        self._maxlen = maxlen
        self._refresh_due: dict[str, float] = {}

    async def append(self, key: str, message: Message) -> None:
        now = time.monotonic()
        if self._refresh_due.get(key, 0.0) > now:
            await self._batcher.xadd(key, encode(message), maxlen=self._maxlen)
            return
        await self._batcher.xadd(key, encode(message), maxlen=self._maxlen, ttl=self._ttl)
        self._refresh_due[key] = now + self._ttl / 4
        if len(self._refresh_due) > 4096:  # forget keys not written for a while
            self._refresh_due = {k: t for k, t in self._refresh_due.items() if t > now}


class ReplyWriter:
    """Writes client-visible events to a session's reply stream."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, ttl: int, maxlen: int):
        self._keys = keys
        self._appender = StreamAppender(redis, ttl, maxlen)

    async def emit(self, event: ReplyEvent) -> None:
        await self._appender.append(self._keys.reply(event.session_id), event)
