"""The redis-py internals the hand-packed Redis layer (``shared/resp.py``, ``mux.py``,
``bells.py``, ``write_batcher.py``, ``worker.py``) relies on, checked one by one so that a
new redis-py that lacks one fails here, naming it, instead of somewhere in a turn.

When one fails: adapt the layer to the new redis-py (or take its public calls), then
raise the upper bound on ``redis`` in pyproject.toml.
"""

from __future__ import annotations

import inspect
import sys

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, NodesManager, RedisCluster
from redis.exceptions import AskError, MovedError

from shared.resp import _GET_CONNECTION_ARGS


def missing(owner: object, *names: str) -> list[str]:
    return [name for name in names if not hasattr(owner, name)]


def test_the_installed_redis_py_is_within_the_tested_bound() -> None:
    major = int(redis.__version__.split(".")[0])
    assert 5 <= major < 9, f"redis-py {redis.__version__}: pyproject.toml allows >=5.3,<9"


async def test_a_pooled_connection_has_the_stream_writer_reader_and_parser(
    redis_url: str,
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    conn = await client.connection_pool.get_connection(*_GET_CONNECTION_ARGS)
    try:
        await conn.connect()
        gone = missing(conn, "_writer", "_reader", "_parser", "retry", "socket_timeout")
        gone += missing(conn, "is_connected", "send_packed_command", "read_response")
        assert not gone, f"redis-py connections lost {gone} (shared/resp.py _send/_replies)"
        assert not missing(conn._writer, "transport", "write", "drain")
        assert not missing(conn._reader, "at_eof", "exception")
        read = getattr(conn._parser, "read_response", None)
        assert read is not None, "the reply parser lost read_response (shared/resp.py)"
        assert "disable_decoding" in inspect.signature(read).parameters, (
            "the parser's read_response no longer takes disable_decoding (shared/resp.py)"
        )
        assert "nowait" in inspect.signature(conn.disconnect).parameters
    finally:
        await client.connection_pool.release(conn)
        await client.aclose()


async def test_the_hiredis_parser_offers_what_the_bells_read_with(redis_url: str) -> None:
    """``shared/bells.py`` drains hiredis's reader (``gets`` until ``NOT_ENOUGH_DATA``),
    then reads the socket once; without these it falls back to ``read_response``."""
    pytest.importorskip("hiredis")
    client = aioredis.Redis.from_url(redis_url)
    conn = await client.connection_pool.get_connection(*_GET_CONNECTION_ARGS)
    try:
        await conn.connect()
        parser = conn._parser
        module = sys.modules[type(parser).__module__]
        assert getattr(module, "NOT_ENOUGH_DATA", None) is not None, (
            f"{module.__name__} lost NOT_ENOUGH_DATA (shared/bells.py _read_messages)"
        )
        assert hasattr(parser, "read_from_socket"), "hiredis parser lost read_from_socket"
        assert hasattr(getattr(parser, "_reader", None), "gets"), "hiredis parser lost _reader"
    finally:
        await client.connection_pool.release(conn)
        await client.aclose()


def test_cluster_nodes_lend_and_take_back_connections() -> None:
    gone = missing(ClusterNode, "acquire_connection", "name", "host", "port")
    assert not gone, f"ClusterNode lost {gone} (shared/resp.py _cluster_round_trip)"
    assert hasattr(ClusterNode, "release") or "_free" in ClusterNode.__slots__, (
        "ClusterNode has neither release() nor _free (shared/resp.py release_to_node)"
    )


def test_the_cluster_client_exposes_its_slot_map() -> None:
    gone = missing(RedisCluster, "get_node_from_key", "get_node", "initialize")
    gone += missing(RedisCluster, "get_connection_kwargs", "nodes_manager")
    assert not gone, f"RedisCluster lost {gone} (shared/resp.py, mux.py, bells.py)"
    assert not missing(NodesManager, "initialize"), (
        "NodesManager lost initialize (shared/cluster_redirects.py refresh_slot_map)"
    )


def test_redirect_errors_carry_their_target() -> None:
    """redis-py strips the code: a MOVED reply is a MovedError("slot host:port")."""
    moved = MovedError("3999 127.0.0.1:7001")
    assert isinstance(moved, AskError)
    assert (moved.slot_id, moved.host, int(moved.port)) == (3999, "127.0.0.1", 7001)
