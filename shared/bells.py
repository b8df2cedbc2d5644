"""Stream bells: every append to a followed stream is also pushed to its readers.

A stream mux that polls (``XREAD BLOCK`` over every followed stream) must pace its reads
or they cost Redis and the reader O(followed streams) each, and the pacing is latency:
with a hundred sessions an entry waited about 2 ms for the gateway's next read, and as
long again for the ASR worker's. So every append is a script that adds the entry and,
in the same atomic step, publishes ``<entry id> <value>`` on a channel named after the
stream (``PUBLISH``; ``SPUBLISH`` on a Redis Cluster, where that sharded channel lives on
the stream's own slot). As scripts run one at a time, a subscriber gets a stream's pushes
in the stream's order, and each carries its id: the reader delivers them as they come,
without reading the stream at all.

The stream stays the record (ids, resume and replay are unchanged). It is read only to
catch up: after a subscription is confirmed (so every later entry will be pushed), and
after the pub/sub connection was lost. Pushes that arrive during a catch-up read are
deferred and delivered after it, newer ids only (``shared/mux.py``).

``BellListener`` is the reading side: one pub/sub connection per Redis node a mux reads
from, subscribed to every followed key.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from shared.backoff import Backoff
from shared.cluster_redirects import refresh_slot_map
from shared.lifecycle import shutting_down
from shared.resp import _GET_CONNECTION_ARGS, _send, pack, release_to_node, through_redis_py

log = logging.getLogger(__name__)


def bell_verbs(cluster: bool) -> tuple[bytes, bytes, bytes]:
    """(publish, subscribe, unsubscribe): sharded pub/sub on a cluster (Redis >= 7)."""
    if cluster:
        return b"SPUBLISH", b"SSUBSCRIBE", b"SUNSUBSCRIBE"
    return b"PUBLISH", b"SUBSCRIBE", b"UNSUBSCRIBE"


OnPush = Callable[[str, bytes], None]  # (stream key, b"<entry id> <value>")
OnSubscribed = Callable[[str], None]
OnLost = Callable[[], None]


class BellListener:
    """Subscribes to the pushes of the streams a mux follows on one node: ``on_push`` for
    each, ``on_subscribed`` when Redis confirms a subscription, ``on_lost`` when the
    connection drops (its subscriptions with it). Reconnects with backoff."""

    def __init__(
        self,
        redis: aioredis.Redis,
        node_key: str,
        on_push: OnPush,
        on_subscribed: OnSubscribed,
        on_lost: OnLost,
    ) -> None:
        self._redis = redis
        self._node_key = node_key  # any key of the slot whose node this listens to
        self._on_push = on_push
        self._on_subscribed = on_subscribed
        self._on_lost = on_lost
        self._cluster = isinstance(redis, RedisCluster)
        _, self._subscribe, self._unsubscribe = bell_verbs(self._cluster)
        self._keys: dict[str, None] = {}
        self._unsubscribing: dict[str, int] = {}  # our own unsubscribes not yet answered
        self._conn: Any = None  # connected and subscribed to every key in ``_keys``
        self._node_name = ""  # on a cluster: the node ``_conn`` is connected to
        self._pending: list[tuple[bytes, str]] = []  # (un)subscribes for the next write
        self._flush_scheduled = False
        self.connected = asyncio.Event()
        # REDIS_PLAIN_CALLS=bells: redis-py's own PubSub instead of the parser loop
        self._pubsub: Any = None
        self._plain = through_redis_py("bells")
        self._sending: set[asyncio.Future[None]] = set()

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._queue(self._subscribe, key)

    def remove(self, key: str) -> None:
        if self._keys.pop(key, 0) is None and (self._conn or self._pubsub) is not None:
            self._unsubscribing[key] = self._unsubscribing.get(key, 0) + 1
            self._queue(self._unsubscribe, key)

    def follow_slot_owner(self) -> None:
        """On a cluster, after the slot map changed (a failover, a reshard): a listener
        still connected to the node that served its slot before (now a replica, or a
        master of other slots) reconnects to the one that serves it now. A replica
        accepts the subscription but is not where pushes are sure to arrive."""
        if not self._cluster or self._conn is None:
            return
        node = self._redis.get_node_from_key(self._node_key)  # type: ignore[attr-defined]
        writer = getattr(self._conn, "_writer", None)
        if node.name != self._node_name and writer is not None:
            self._node_name = node.name
            writer.transport.abort()  # the read loop reconnects and subscribes again

    def _queue(self, verb: bytes, key: str) -> None:
        """Subscriptions made in one turn of the event loop go out in one write (a hundred
        sessions opening at once)."""
        if self._conn is None and self._pubsub is None:
            return  # the connection being made subscribes to every key
        self._pending.append((verb, key))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        commands, self._pending = self._pending, []
        if self._pubsub is not None and commands:
            task = asyncio.ensure_future(self._send_through_redis_py(self._pubsub, commands))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
            return
        conn = self._conn
        if conn is None or not commands:
            return
        writer = getattr(conn, "_writer", None)
        if writer is None or writer.transport.is_closing():
            return  # lost: the reconnect subscribes to every key again
        writer.write(b"".join([pack(verb, key.encode()) for verb, key in commands]))

    async def _send_through_redis_py(self, pubsub: Any, commands: list[tuple[bytes, str]]) -> None:
        with contextlib.suppress(RedisError, OSError):  # lost: the reconnect subscribes all
            for verb, key in commands:
                if verb == self._subscribe:
                    await pubsub.subscribe(key)
                else:
                    await pubsub.unsubscribe(key)

    async def run(self) -> None:
        """Listen until cancelled."""
        backoff = Backoff()
        while True:
            try:
                await self._listen()
                problem: BaseException | None = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # lost Redis, or a node's refusal (a slot that moved)
                problem = exc
            finally:
                if self.connected.is_set():  # it worked for a while: a first failure again
                    backoff.reset()
                self.connected.clear()
                self._on_lost()
            delay = backoff.next_delay()
            expected = isinstance(problem, (RedisError, OSError))
            if not expected or (backoff.repeated and not shutting_down()):
                log.warning(
                    "stream bells lost Redis (%s); retrying in %.2fs",
                    f"{type(problem).__name__}: {problem}",
                    delay,
                    exc_info=not expected,
                )
            await asyncio.sleep(delay)
            if self._cluster:  # a slot may have moved: learn the map again
                with contextlib.suppress(RedisError):
                    await refresh_slot_map(self._redis)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        if self._plain:
            await self._listen_through_redis_py()
            return
        conn, release = await self._connection()
        try:
            await conn.connect()
            # from here to the first await, nothing else runs: every key added so far is
            # in this SUBSCRIBE, every later one is queued on this connection
            self._conn, self._pending, self._unsubscribing = conn, [], {}
            if self._keys:
                await _send(conn, pack(self._subscribe, *(k.encode() for k in self._keys)))
            self.connected.set()
            try:
                await self._read_messages(conn._parser)
            except OSError as exc:
                raise RedisConnectionError(f"Error while reading from Redis: {exc}") from exc
        finally:
            self._conn = None
            await conn.disconnect(nowait=True)  # never hand a subscribed connection back
            await release(conn)

    async def _listen_through_redis_py(self) -> None:
        """``_listen`` with redis-py's ``PubSub`` (a single Redis server): the plain
        redis-py side of the comparison in docs/performance.md."""
        pubsub = self._redis.pubsub()
        try:
            await pubsub.connect()
            self._pubsub, self._pending, self._unsubscribing = pubsub, [], {}
            if self._keys:
                await pubsub.subscribe(*self._keys)
            self.connected.set()
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is not None:
                    kind = message["type"]
                    kind = kind.encode() if isinstance(kind, str) else kind
                    self._handle([kind, message["channel"], message["data"]])
        finally:
            self._pubsub = None
            await pubsub.aclose()

    async def _read_messages(self, parser: Any) -> None:
        reader = getattr(parser, "_reader", None)
        nothing = getattr(sys.modules.get(type(parser).__module__), "NOT_ENOUGH_DATA", None)
        if nothing is not None and hasattr(reader, "gets") and hasattr(parser, "read_from_socket"):
            # hiredis: every message already received, then one socket read (a
            # coroutine per message through ``read_response`` cost more than the rest)
            while True:
                message = reader.gets()  # type: ignore[union-attr]
                while message is not nothing:
                    self._handle(message)
                    message = reader.gets()  # type: ignore[union-attr]
                await parser.read_from_socket()
        read = parser.read_response
        # redis-py with hiredis 3 takes pub/sub messages for RESP3 pushes and hands them
        # to a handler unless they are asked for
        asks = "push_request" in inspect.signature(read).parameters
        kwargs = {"push_request": True} if asks else {}
        while True:
            self._handle(await read(disable_decoding=False, **kwargs))

    def _handle(self, message: object) -> None:
        if isinstance(message, Exception):
            raise message  # e.g. MOVED for a sharded subscription: reconnect
        if not isinstance(message, list) or len(message) < 2:
            return
        kind, channel = message[0], message[1]
        key = channel.decode() if isinstance(channel, bytes) else str(channel)
        if kind in (b"message", b"smessage"):
            if key in self._keys:
                self._on_push(key, message[2])
        elif kind in (b"subscribe", b"ssubscribe"):
            if key in self._keys:
                self._on_subscribed(key)
        elif kind in (b"unsubscribe", b"sunsubscribe"):
            if self._unsubscribing.get(key):  # ours (a key may be followed again since)
                self._unsubscribing[key] -= 1
                if not self._unsubscribing[key]:
                    del self._unsubscribing[key]
            elif kind == b"sunsubscribe" and key in self._keys:
                # Redis dropped a subscription we still want: its slot moved elsewhere
                raise RedisConnectionError(f"bell of {key} moved to another node")

    async def _connection(self) -> tuple[Any, Callable[[Any], Awaitable[None]]]:
        if self._cluster:
            cluster: RedisCluster = self._redis  # type: ignore[assignment]
            await cluster.initialize()
            node = cluster.get_node_from_key(self._node_key)
            self._node_name = node.name

            async def release(connection: Any) -> None:
                release_to_node(node, connection)

            return node.acquire_connection(), release
        pool = self._redis.connection_pool
        return await pool.get_connection(*_GET_CONNECTION_ARGS), pool.release
