"""Hand-packed Redis commands and one raw round trip on a pooled connection.

The two hottest Redis paths, the write batcher (``shared/streams.py``) and the stream
mux (``shared/mux.py``), pack their commands here instead of through redis-py, whose
per-argument packing and per-command pipeline bookkeeping in Python cost more than the
commands themselves. ``round_trip`` sends them under the same policy as redis-py's own
commands: the connection's ``Retry`` (jittered exponential backoff, set up in
``shared/streams.connect``) on connection and timeout errors, and a connection that
failed or was cancelled mid-reply is closed before it goes back to the pool, so a late
reply never reaches its next user.

On a Redis Cluster (``RedisCluster`` client) a round trip goes to the master of the slot
of ``key``, on one of that node's connections, under the cluster client's ``Retry``; all
its commands must touch that slot (callers group by slot or node). A ``MOVED``/``ASK``
reply (slots moving) makes the client re-read the slot map before it is returned.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# redis-py < 5.3 requires a command name for get_connection(); newer ones deprecate it
_GET_CONNECTION_ARGS: tuple[str, ...] = (
    ("_",)
    if (
        param := inspect.signature(aioredis.ConnectionPool.get_connection).parameters.get(
            "command_name"
        )
    )
    is not None
    and param.default is inspect.Parameter.empty
    else ()
)


def bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def pack(*args: bytes) -> bytes:
    """One command as a RESP array of bulk strings."""
    return b"*%d\r\n%s" % (len(args), b"".join([bulk(arg) for arg in args]))


class _SentButFailed(Exception):
    """A non-idempotent round trip failed after its commands were sent: not retried."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


async def round_trip(
    redis: aioredis.Redis,
    packed: bytes,
    replies: int,
    *,
    reply_timeout: float | None = None,
    idempotent: bool,
    key: str | None = None,
) -> list[Any]:
    """Send ``packed`` (one or more commands) on one pooled connection; their replies.

    A command's own error (``WRONGTYPE``…) is returned in its place: it concerns that
    command alone. Connection and timeout errors are retried with the client's backoff:
    always when ``idempotent`` (a read), otherwise only when they happen before the
    commands were sent, since writes whose reply was lost may have been applied already
    (retrying them could write an entry twice). ``reply_timeout`` bounds each reply's wait
    (for a blocking read), in seconds. ``key``: on a cluster, a key of the commands' slot.
    """
    if isinstance(redis, RedisCluster):
        return await _cluster_round_trip(redis, packed, replies, reply_timeout, idempotent, key)
    pool = redis.connection_pool
    conn = await pool.get_connection(*_GET_CONNECTION_ARGS)
    try:
        return await _on_connection(conn, conn.retry, packed, replies, reply_timeout, idempotent)
    finally:
        await pool.release(conn)


async def _cluster_round_trip(
    redis: RedisCluster,
    packed: bytes,
    replies: int,
    reply_timeout: float | None,
    idempotent: bool,
    key: str | None,
) -> list[Any]:
    if key is None:
        raise ValueError("a round trip on a Redis Cluster needs the key of its slot")
    await redis.initialize()  # learns the slot map once
    node = redis.get_node_from_key(key)
    conn = node.acquire_connection()
    try:
        results = await _on_connection(
            conn, redis.retry, packed, replies, reply_timeout, idempotent
        )
    finally:
        release_to_node(node, conn)
    if any(isinstance(r, ResponseError) and str(r).startswith(_REDIRECTS) for r in results):
        await redis.nodes_manager.initialize()  # slots moved: the next trip goes right
    return results


_REDIRECTS = ("MOVED", "ASK")


def release_to_node(node: Any, conn: Any) -> None:
    """Give a cluster node's connection back (redis-py < 6 has no ``release``: its free
    list is what its own commands put connections back on)."""
    release = getattr(node, "release", None)
    if release is not None:
        release(conn)
    else:
        node._free.append(conn)


async def _on_connection(
    conn: Any,
    retry: Any,
    packed: bytes,
    replies: int,
    reply_timeout: float | None,
    idempotent: bool,
) -> list[Any]:
    deadline = reply_timeout if reply_timeout is not None else conn.socket_timeout

    async def attempt() -> list[Any]:
        await _send(conn, packed)
        try:
            return await _replies(conn, replies, deadline)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if idempotent:
                raise
            raise _SentButFailed(exc) from exc

    async def reconnect_later(_error: Exception) -> None:
        await conn.disconnect(nowait=True)  # the next attempt connects afresh

    try:
        return await retry.call_with_retry(attempt, reconnect_later)
    except _SentButFailed as failed:
        await conn.disconnect(nowait=True)
        raise failed.error from None
    except BaseException:
        # replies not read yet must not reach the next user; nowait: a cancelled read
        # (shutdown) must not hang on the socket's close handshake
        await conn.disconnect(nowait=True)
        raise


# Lean I/O on a connected redis-py connection: its stream writer and reply parser
# directly, under one deadline per round trip. redis-py's own ``send_packed_command``
# wraps every send in ``asyncio.wait_for`` (a task per send on Python 3.11) and every
# reply in a timeout; measured here, a PING round trip cost 108 us of CPU through the
# pool and redis-py's calls and 26 us this way. A connection without these attributes
# (another redis-py) takes redis-py's public calls.


async def _send(conn: Any, packed: bytes) -> None:
    writer, reader = getattr(conn, "_writer", None), getattr(conn, "_reader", None)
    if writer is None or reader is None or not conn.is_connected:
        await conn.send_packed_command(packed, check_health=False)  # connects first
        return
    if writer.transport.is_closing() or reader.at_eof() or reader.exception():
        # the server closed it (a restart) while the connection sat idle: reconnect
        # before sending, as the pool does on checkout, so a write is never lost to a
        # socket known to be dead
        await conn.disconnect(nowait=True)
        await conn.send_packed_command(packed, check_health=False)
        return
    try:
        writer.write(packed)
        if writer.transport.get_write_buffer_size():  # Redis is not reading fast enough
            async with asyncio.timeout(conn.socket_timeout):
                await writer.drain()
    except TimeoutError:
        raise RedisTimeoutError("Timeout writing to Redis") from None
    except OSError as exc:
        raise RedisConnectionError(f"Error while writing to Redis: {exc}") from exc


async def _replies(conn: Any, count: int, deadline: float | None) -> list[Any]:
    parser = getattr(conn, "_parser", None)
    if parser is None or not hasattr(parser, "read_response"):
        return [await _reply(conn, deadline) for _ in range(count)]
    try:
        async with asyncio.timeout(deadline):
            # the parser returns a command's error (a ResponseError) as its reply
            return [await parser.read_response(disable_decoding=False) for _ in range(count)]
    except TimeoutError:
        raise RedisTimeoutError("Timeout reading from Redis") from None
    except OSError as exc:
        raise RedisConnectionError(f"Error while reading from Redis: {exc}") from exc


async def _reply(conn: Any, reply_timeout: float | None) -> Any:
    try:
        if reply_timeout is None:
            return await conn.read_response()
        return await conn.read_response(timeout=reply_timeout)
    except ResponseError as exc:
        return exc


class Lane:
    """One pooled connection kept by one sequential user: the write batcher's flusher, a
    stream mux's reader. Saves a pool checkout and release (a lock and a timeout each)
    on every round trip of the two hottest paths. On a Redis Cluster each round trip
    goes to its slot's node as ``round_trip`` does."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._conn: Any = None

    async def round_trip(
        self,
        packed: bytes,
        replies: int,
        *,
        reply_timeout: float | None = None,
        idempotent: bool,
        key: str | None = None,
    ) -> list[Any]:
        """``round_trip`` on this lane's connection (one caller at a time)."""
        if isinstance(self._redis, RedisCluster):
            return await round_trip(
                self._redis,
                packed,
                replies,
                reply_timeout=reply_timeout,
                idempotent=idempotent,
                key=key,
            )
        if self._conn is None:
            self._conn = await self._redis.connection_pool.get_connection(*_GET_CONNECTION_ARGS)
        conn = self._conn
        return await _on_connection(conn, conn.retry, packed, replies, reply_timeout, idempotent)

    async def release(self) -> None:
        """Give the connection back to the pool (the user stops)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._redis.connection_pool.release(conn)
