"""Hand-packed Redis commands and one raw round trip on a pooled connection.

Four uses pack their commands here instead of going through redis-py's public calls,
each kept for a figure of the whole system (docs/performance.md, "The lean Redis path
against plain redis-py"): a process's write pipeline (``shared/write_batcher.py``: through
redis-py it cost the gateway 12-47 % and the ASR worker 27-59 % more CPU per frame), the
pushed entries (``shared/bells.py``, the worker's 12 %), a stream mux's reads
(``shared/mux.py``, 17-36 % when polling) and a worker's job reads
(``shared/job_reads.py``: not for speed, but because a read whose reply was lost is
never sent again here and the job it handed out starts at once; through redis-py, which
sends it again, that job waited 6.7 s, ``bench/lost_job_read.py``). ``round_trip`` sends them under
the same policy as redis-py's own commands: the connection's ``Retry`` (jittered
exponential backoff, set up in ``shared/streams.connect``) on connection and timeout
errors, and a connection that failed or was cancelled mid-reply is closed before it goes
back to the pool, so a late reply never reaches its next user.

On a Redis Cluster (``RedisCluster`` client) a round trip goes to the master of the slot
of ``key``, on one of that node's connections; all its commands must touch that slot
(callers group by slot or node). It follows the cluster through failovers and reshards
(``MOVED``, ``ASK``, ``TRYAGAIN``…: ``_cluster_round_trip``).

``REDIS_PLAIN_CALLS`` sends chosen uses of this layer through redis-py's public pipeline
instead (``through_redis_py``), so each can be measured against plain redis-py under the
same load (``bench/capacity.py --variant``; figures in docs/performance.md).

This layer uses redis-py internals that are not its public API (a connection's
``_writer``/``_reader``/``_parser``, the hiredis reader's ``gets``, a cluster node's
``acquire_connection``/``release``/``_free``): pyproject.toml bounds redis-py to the
major versions it was tested with, and tests/test_resp_internals.py names what changed
if a new one lacks them.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import Iterable
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AskError, MovedError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.backoff import Backoff
from shared.cluster_redirects import ask_target, moved, must_wait, refresh_slot_map, refused

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


# The uses of this layer, each of which ``REDIS_PLAIN_CALLS`` can send through redis-py:
# the write pipeline of a process, a stream mux's reads, a worker's job reads, and the
# pub/sub listener of stream bells (``shared/bells.py``).
USES = ("writes", "stream_reads", "job_reads", "bells")
_through_redis_py: frozenset[str] = frozenset()


def send_through_redis_py(uses: Iterable[str]) -> None:
    """Send these uses (names from ``USES``) through redis-py's public API, this process."""
    global _through_redis_py
    unknown = set(uses) - set(USES)
    if unknown:
        raise ValueError(f"unknown uses {sorted(unknown)}; choose from {', '.join(USES)}")
    _through_redis_py = frozenset(uses)


def through_redis_py(use: str) -> bool:
    """Whether ``use`` goes through redis-py's public API in this process."""
    return use in _through_redis_py


def bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def pack(*args: bytes) -> bytes:
    """One command as a RESP array of bulk strings."""
    return b"*%d\r\n%s" % (len(args), b"".join([bulk(arg) for arg in args]))


class ReplyLost(RedisError):
    """Commands that are not reads were sent, then the connection failed or timed out
    before their replies came: they may have run, so they are not sent again (the caller
    decides: a job read re-reads its pending entries, a write is reported failed).
    Raised as ``ReplyLostTimeout`` or ``ReplyLostConnection``, still redis-py's
    ``TimeoutError`` or ``ConnectionError``."""


class ReplyLostTimeout(ReplyLost, RedisTimeoutError):
    pass


class ReplyLostConnection(ReplyLost, RedisConnectionError):
    pass


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
    """One round trip to the master of ``key``'s slot, following the cluster as it
    changes (``shared/cluster_redirects.py``): a command refused with ``MOVED`` is sent
    again after the slot map is learnt anew, with ``ASK`` once to the node it names
    (after ``ASKING``), after ``TRYAGAIN``/``CLUSTERDOWN``/``LOADING`` after a pause; a
    node that cannot be reached (a killed master until its replica takes over) is tried
    again on the slot's master of the moment, as long as nothing was sent. Within
    ``REDIRECT_WINDOW_S``, then the last refusal is returned in place (or the error
    raised). A trip of several commands that are not reads comes back in place at the
    first refusal: only its caller knows which of them ran."""
    if key is None:
        raise ValueError("a round trip on a Redis Cluster needs the key of its slot")
    retry_whole = idempotent or replies == 1
    backoff = Backoff(longest_s=1.0)
    deadline = asyncio.get_running_loop().time() + REDIRECT_WINDOW_S
    ask_node: Any = None
    while True:
        await redis.initialize()  # learns the slot map once
        node = ask_node or redis.get_node_from_key(key)
        asking, ask_node = ask_node is not None, None
        conn = node.acquire_connection()
        try:
            results = await _on_connection(
                conn,
                _ONCE,
                (_ASKING + packed) if asking else packed,
                replies + asking,
                reply_timeout,
                idempotent,
            )
        except ReplyLost:
            raise  # a write whose reply was lost may have run: never sent twice
        except (RedisConnectionError, RedisTimeoutError):
            # the node is gone (its replica takes over soon) or unreachable: the next
            # try goes to whoever serves the slot then
            if asyncio.get_running_loop().time() > deadline:
                raise
            await refresh_slot_map(redis)
            await backoff.wait()
            continue
        finally:
            release_to_node(node, conn)
        if asking:
            results = results[1:]  # ASKING's OK
        refusal = next((reply for reply in results if refused(reply)), None)
        if refusal is None:
            return results
        if moved(refusal):
            await refresh_slot_map(redis)  # the next trip (this one's, or the caller's) goes right
        if not (retry_whole and refused(results[0])):
            return results
        if asyncio.get_running_loop().time() > deadline:
            return results
        redirected[type(refusal).__name__] += 1
        if isinstance(refusal, AskError) and not isinstance(refusal, MovedError):
            ask_node = ask_target(redis, refusal, node.host)
            if ask_node is None:  # a node this process has not met yet
                await refresh_slot_map(redis)
                ask_node = ask_target(redis, refusal, node.host)
            if ask_node is not None:
                continue
        if must_wait(refusal) or backoff.failures or not moved(refusal):
            await backoff.wait()  # a second MOVED in a row: the map was not settled yet
        else:
            backoff.failures += 1


REDIRECT_WINDOW_S = 20.0  # longer than a replica's promotion with a node timeout of 15 s
_ASKING = b"*1\r\n$6\r\nASKING\r\n"
# one try per call: a cluster round trip retries on its own, against the slot's master
_ONCE = Retry(NoBackoff(), 0)
# how often the round trips of this process were refused and sent again, by refusal
redirected: Counter[str] = Counter()


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
        lost = (
            ReplyLostTimeout if isinstance(failed.error, RedisTimeoutError) else ReplyLostConnection
        )
        raise lost(str(failed.error)) from failed.error
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


async def _plain_round_trip(redis: aioredis.Redis, packed: bytes) -> list[Any]:
    """``packed`` through redis-py's public pipeline: what a use of this layer costs
    without it. The commands are unpacked again first (hiredis, about 1 µs a command),
    which the comparison pays on the plain side. Replies as ``round_trip`` gives them:
    raw, a command's error in its place (bytes command names match no redis-py reply
    callback)."""
    reader = hiredis.Reader()
    reader.feed(packed)
    pipe = redis.pipeline(transaction=False)
    while (command := reader.gets()) is not False:
        pipe.execute_command(*command)
    return await pipe.execute(raise_on_error=False)


class Lane:
    """One pooled connection kept by one sequential user: the write batcher's flusher, a
    stream mux's reader. Saves a pool checkout and release (a lock and a timeout each)
    on every round trip of the two hottest paths. On a Redis Cluster each round trip
    goes to its slot's node as ``round_trip`` does. ``use``: which of ``USES`` it serves."""

    def __init__(self, redis: aioredis.Redis, use: str) -> None:
        self._redis = redis
        self._conn: Any = None
        self._plain = through_redis_py(use)
        self._cluster = isinstance(redis, RedisCluster)  # a protocol check: 0.5 µs a call

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
        if self._plain:
            return await _plain_round_trip(self._redis, packed)
        if self._cluster:
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
