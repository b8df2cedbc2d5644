"""One pipeline for the writes of every task of a process.

A gateway with a thousand sessions makes ten thousand audio XADDs a second, and an ASR
worker commits a checkpointed partial per audio chunk of every utterance it hears; sent
one by one, each costs a pool checkout, redis-py's per-command bookkeeping and its own
round trip, and under load callers queue for connections. Here each caller's command
joins a list that one flush task sends as a single pipeline: at low load that is one
round trip as before; under load every write made while the last pipeline was in
flight goes out in the next one. One pipeline at a time, and callers that await their
own write, keep each stream's entries (and each turn's commits) in the order written.
On a Redis Cluster that holds per node: each node has its own pipeline in flight, so a
node that is failing over delays only the writes of its own slots.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from shared.bells import bell_verbs
from shared.cluster_redirects import moved, not_run, refresh_slot_map, refused
from shared.messages import FIELD
from shared.resp import Lane, pack

Resend = Callable[[], Awaitable[object]]

# An append that pushes its entry to the stream's readers (``shared/bells.py``).
# KEYS[1] stream; ARGV[1] maxlen ("0": untrimmed), ARGV[2] TTL ("0": none), ARGV[3]
# PUBLISH or SPUBLISH, ARGV[4] the entry's one field's value
APPEND_SCRIPT = """
local id
if ARGV[1] ~= '0' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[4])
else
  id = redis.call('XADD', KEYS[1], '*', 'm', ARGV[4])
end
if ARGV[2] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
redis.pcall(ARGV[3], KEYS[1], id .. ' ' .. ARGV[4])
return id
"""


@dataclass(slots=True)
class _Command:
    """Packed command(s) on one key's slot; the caller gets the first error among their
    replies, else the first reply. ``resend`` runs it alone through redis-py, which
    follows a slot that moved (``MOVED``/``ASK`` on a cluster)."""

    key: str
    packed: bytes
    replies: int
    future: asyncio.Future[object]
    resend: Resend


class WriteBatcher:
    """Sends the writes of every task of a process in shared pipelines (see module doc)."""

    MAX_BATCH = 1024

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._pending: list[_Command] = []
        self._flusher: asyncio.Task[None] | None = None
        self._lane = Lane(redis, "writes")  # one flush at a time: one connection, kept
        self._publish = bell_verbs(isinstance(redis, RedisCluster))[0]
        self._append = redis.register_script(APPEND_SCRIPT)
        self._append_sha = self._append.sha.encode()
        self._cluster = isinstance(redis, RedisCluster)
        # on a cluster: commands waiting for their node's pipeline, and its sender
        self._by_node: dict[str, list[_Command]] = {}
        self._node_senders: dict[str, asyncio.Task[None]] = {}
        self.round_trips = 0
        self.resent = 0  # commands a cluster node refused, sent again

    async def xadd(
        self,
        key: str,
        fields: dict[bytes, bytes],
        maxlen: int | None = None,
        ttl: int | None = None,
    ) -> bytes:
        """XADD (trimmed approximately to ``maxlen``), then EXPIRE ``ttl``; the entry id.

        A message entry (its one field ``FIELD``) is also pushed to the stream's readers
        (``APPEND_SCRIPT``, ``shared/bells.py``).
        """
        if len(fields) != 1 or FIELD not in fields:
            return await self._plain_xadd(key, fields, maxlen, ttl)
        args = [b"%d" % (maxlen or 0), b"%d" % (ttl or 0), self._publish, fields[FIELD]]

        async def resend() -> object:
            return await self._append(keys=[key], args=args)

        packed = pack(b"EVALSHA", self._append_sha, b"1", key.encode(), *args)
        try:
            return await self.call(key, packed, 1, resend)  # type: ignore[return-value]
        except NoScriptError:  # first use, or Redis restarted: load once, send again
            await load_script(self._redis, APPEND_SCRIPT)
            return await self.call(key, packed, 1, resend)  # type: ignore[return-value]

    async def _plain_xadd(
        self, key: str, fields: dict[bytes, bytes], maxlen: int | None, ttl: int | None
    ) -> bytes:
        packed = pack_xadd(key.encode(), fields, maxlen)
        if ttl:
            packed += pack(b"EXPIRE", key.encode(), b"%d" % ttl)

        async def resend() -> object:
            entry_id = await self._redis.xadd(key, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
            if ttl:
                await self._redis.expire(key, ttl)
            return entry_id

        return await self.call(key, packed, 2 if ttl else 1, resend)  # type: ignore[return-value]

    async def call(self, key: str, packed: bytes, replies: int, resend: Resend) -> object:
        """Send ``packed`` (``replies`` commands, all on ``key``'s slot) in the next pipeline.

        Returns the first reply; raises the first command error among the replies. Not
        retried once sent (a lost reply may mean it was applied), like any write here.
        """
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._pending.append(_Command(key, packed, replies, future, resend))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="redis-write-batcher")
        return await future

    async def _flush(self) -> None:
        if self._cluster:
            await self._dispatch_by_node()
            return
        while self._pending:
            batch = self._pending[: self.MAX_BATCH]
            del self._pending[: self.MAX_BATCH]
            await self._send_batch(batch)

    async def _send_batch(self, batch: list[_Command], lane: Lane | None = None) -> None:
        """One round trip for the whole batch; each caller gets its reply or error.

        The commands are packed by the callers rather than through redis-py's pipeline,
        whose per-command bookkeeping in Python cost more than the writes themselves;
        they are sent under the client's retry policy (``shared/resp.py``).
        """
        try:
            results = await self._send_one(batch, lane)
            refused = [index for index, result in enumerate(results) if result is _NOT_RUN]
            if refused:
                # refused by a node that no longer serves the slot (``MOVED``), is
                # migrating it (``ASK``) or is electing (``CLUSTERDOWN``…): it did not
                # run; redis-py's own command follows the cluster to the right node
                resent = await asyncio.gather(
                    *(self._resend(batch[index]) for index in refused), return_exceptions=True
                )
                for index, result in zip(refused, resent, strict=True):
                    results[index] = result
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else RedisConnectionError("cancelled")
            for command in batch:
                if not command.future.done():
                    command.future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        for command, result in zip(batch, results, strict=True):
            if command.future.done():
                continue
            if isinstance(result, BaseException):
                command.future.set_exception(result)
            else:
                command.future.set_result(result)

    async def _dispatch_by_node(self) -> None:
        """On a cluster, one pipeline in flight per node, each node's at its own pace: a
        node that cannot be reached (a killed master until its replica takes over) holds
        up only the writes of its own slots."""
        cluster: RedisCluster = self._redis  # type: ignore[assignment]
        await cluster.initialize()
        pending, self._pending = self._pending, []
        for command in pending:
            name = cluster.get_node_from_key(command.key).name
            self._by_node.setdefault(name, []).append(command)
            sender = self._node_senders.get(name)
            if sender is None or sender.done():
                self._node_senders[name] = asyncio.create_task(
                    self._send_to_node(name), name=f"redis-write-batcher-{name}"
                )

    async def _send_to_node(self, name: str) -> None:
        queue = self._by_node.setdefault(name, [])
        lane = Lane(self._redis, "writes")
        while queue:
            batch = queue[: self.MAX_BATCH]
            del queue[: self.MAX_BATCH]
            await self._send_batch(batch, lane)

    async def _resend(self, command: _Command) -> object:
        self.resent += 1
        try:
            return await command.resend()
        except ResponseError as exc:
            if not (refused(exc) and moved(exc)):
                raise
        await refresh_slot_map(self._redis)  # type: ignore[arg-type]
        return await command.resend()  # redis-py gave up on the slot map it had

    async def _send_one(self, batch: list[_Command], lane: Lane | None = None) -> list[object]:
        self.round_trips += 1
        total = sum(command.replies for command in batch)
        replies = await (lane or self._lane).round_trip(
            b"".join([command.packed for command in batch]),
            total,
            idempotent=False,
            key=batch[0].key,
        )
        results: list[object] = []
        position = 0
        for command in batch:
            own = replies[position : position + command.replies]
            position += command.replies
            if self._cluster and not_run(own):
                results.append(_NOT_RUN)  # sent again by ``_send_batch``
                continue
            error = next((reply for reply in own if isinstance(reply, Exception)), None)
            results.append(error if error is not None else own[0])
        return results


_NOT_RUN = object()  # a command a cluster node refused to run (``not_run``)


def pack_xadd(key: bytes, fields: dict[bytes, bytes], maxlen: int | None) -> bytes:
    """XADD trimmed approximately to ``maxlen`` (None: untrimmed), as RESP."""
    args = [b"XADD", key]
    if maxlen is not None:
        args += [b"MAXLEN", b"~", b"%d" % maxlen]
    args.append(b"*")
    for name, value in fields.items():
        args += [name, value]
    return pack(*args)


_batchers: weakref.WeakKeyDictionary[aioredis.Redis, WriteBatcher] = weakref.WeakKeyDictionary()


_loading: weakref.WeakKeyDictionary[aioredis.Redis, dict[str, asyncio.Future[object]]] = (
    weakref.WeakKeyDictionary()
)


async def load_script(redis: aioredis.Redis, text: str) -> None:
    """One ``SCRIPT LOAD`` for every write that found ``text`` missing at once: the first
    writes of a hundred turns (or of every turn in flight after a Redis restart) would
    otherwise each load it through redis-py, a burst that stalled an ASR worker's first
    second for 200-350 ms in the capacity bench."""
    loading = _loading.setdefault(redis, {})
    future = loading.get(text)
    if future is None or future.done():
        future = loading[text] = asyncio.ensure_future(redis.script_load(text))
    await asyncio.shield(future)


def write_batcher(redis: aioredis.Redis) -> WriteBatcher:
    """The process's one ``WriteBatcher`` for ``redis`` (all its callers share pipelines)."""
    batcher = _batchers.get(redis)
    if batcher is None:
        batcher = _batchers[redis] = WriteBatcher(redis)
    return batcher
