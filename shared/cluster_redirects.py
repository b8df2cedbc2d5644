"""What a Redis Cluster answers while it changes, and what the hand-packed commands
(``shared/resp.py``) do about it.

During a failover, a reshard or a master's death a node answers a command it cannot run
with an error instead of running it: ``MOVED`` (the slot has a new master: learn the
slot map again, send it there), ``ASK`` (the slot is being migrated and this key is
already on the target: send it there once, after ``ASKING``), ``TRYAGAIN`` (a
multi-key command while its keys are split between two nodes), ``CLUSTERDOWN`` (a slot
has no master yet), ``LOADING`` (a restarted node reading its data), ``MASTERDOWN``, and
``UNBLOCKED`` (a blocked read whose node stopped being a master). None of them ran the
command, so sending it again is safe, for a write too.

redis-py strips the error code from the message (a MOVED reply is
``MovedError("3999 127.0.0.1:7001")``), so errors are told apart by their type, never by
their text; ``UNBLOCKED`` has no type of its own in redis-py, so it is told by its code.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    ResponseError,
    TryAgainError,
)

# refusals worth a short wait before the next try (nothing to follow)
_WAIT_AND_RETRY = (TryAgainError, ClusterDownError, BusyLoadingError, MasterDownError)


def error_code(error: BaseException) -> str:
    """The code of a Redis error reply: redis-py >= 8 keeps it in ``status_code``; older
    ones keep a code they do not know at the start of the message."""
    code = getattr(error, "status_code", None)
    if code:
        return str(code)
    word = str(error).split(" ", 1)[0]
    return word if word.isupper() else ""


def refused(reply: object) -> bool:
    """``reply`` is a node's refusal to run the command now (see module doc)."""
    if isinstance(reply, (AskError, *_WAIT_AND_RETRY)):  # MovedError is an AskError
        return True
    return isinstance(reply, ResponseError) and error_code(reply) == "UNBLOCKED"


def not_run(replies: list[Any]) -> bool:
    """The replies of one command group (one command, or a ``MULTI`` … ``EXEC``) say it
    did not run: its first command was refused, or its transaction was aborted because a
    queued command was refused."""
    if not replies:
        return False
    if refused(replies[0]):
        return True
    return isinstance(replies[-1], ResponseError) and any(refused(r) for r in replies[1:-1])


def moved(reply: object) -> bool:
    """The slot map this process has is out of date (or may be: a node lost its slots)."""
    if isinstance(reply, (MovedError, ClusterDownError)):
        return True
    return isinstance(reply, ResponseError) and error_code(reply) == "UNBLOCKED"


def must_wait(reply: object) -> bool:
    """Nothing to follow: try again after a pause (the cluster is electing, a migration
    is between two keys, a node is loading)."""
    return isinstance(reply, _WAIT_AND_RETRY)


def ask_target(cluster: RedisCluster, error: AskError, host: str) -> Any:
    """The node an ``ASK`` points to (None when this process does not know it yet);
    ``host``: the asking node's, for a reply that names only a port."""
    return cluster.get_node(host=error.host or host, port=int(error.port))


_refreshing: weakref.WeakKeyDictionary[RedisCluster, asyncio.Future[None]] = (
    weakref.WeakKeyDictionary()
)


async def refresh_slot_map(cluster: RedisCluster) -> None:
    """Learn the slot map again: one ``CLUSTER SLOTS`` for everyone who found it out of
    date at once (a failover redirects every command in flight)."""
    future = _refreshing.get(cluster)
    if future is None or future.done():
        future = _refreshing[cluster] = asyncio.ensure_future(cluster.nodes_manager.initialize())
    await asyncio.shield(future)
