"""A local 3-master Redis Cluster for tests: Debian's ``redis-server`` with
``cluster-enabled yes`` on free loopback ports, joined by ``redis-cli --cluster create``.

Without the binaries the tests that need it are skipped with a message, unless
``VNA_REQUIRE_CLUSTER=1`` (CI), which makes that a failure.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

MASTERS = 3


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (+10000) is free too (so at most 55535)."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 45000)
        if port not in ports and _port_free(port) and _port_free(port + 10000):
            ports.append(port)
    return ports


def _missing_binaries() -> str | None:
    for name in ("redis-server", "redis-cli"):
        if shutil.which(name) is None:
            return f"{name} not found (apt-get install -y redis-server redis-tools)"
    return None


def _cluster_ok(port: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=2)
    try:
        info = client.execute_command("CLUSTER", "INFO")
    except redis.RedisError:
        return False
    finally:
        client.close()
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text


@contextlib.contextmanager
def local_cluster(workdir: Path) -> Iterator[str]:
    """Start the cluster; yields its ``redis+cluster://`` URL; stops and removes it after."""
    missing = _missing_binaries()
    if missing:
        if os.environ.get("VNA_REQUIRE_CLUSTER") == "1":
            pytest.fail(f"VNA_REQUIRE_CLUSTER=1 but {missing}")
        pytest.skip(f"no local Redis Cluster: {missing}")
    ports = _cluster_ports(MASTERS)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            node_dir = workdir / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            log = (node_dir / "redis.log").open("wb")
            args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            args += ["--dir", str(node_dir), "--save", "", "--appendonly", "no"]
            servers.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
        for port in ports:
            _wait_ping(port)
        create = ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
        create += ["--cluster-replicas", "0", "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed: {done.stdout[-500:]!r}")
        deadline = time.monotonic() + 30
        while not all(_cluster_ok(port) for port in ports):
            if time.monotonic() > deadline:
                pytest.fail("the local Redis Cluster never reached cluster_state:ok")
            time.sleep(0.1)
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_ping(port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        client = redis.Redis(port=port, socket_timeout=1)
        try:
            if client.ping():
                return
        except redis.RedisError:
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server on port {port} did not start")
            time.sleep(0.05)
        finally:
            client.close()
