"""A local Redis Cluster for tests: Debian's ``redis-server`` with ``cluster-enabled yes``
on free loopback ports, joined by ``redis-cli --cluster create``; 3 masters, and with
``replicas=1`` a replica of each, which a test can promote (``failover``), kill a master
under (``kill``) or move a slot between masters (``move_slot``), as operators and
managed providers do.

Without the binaries the tests that need it are skipped with a message, unless
``VNA_REQUIRE_CLUSTER=1`` (CI), which makes that a failure.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

MASTERS = 3
# small enough that a killed master's replica takes over within seconds, large enough
# that a busy machine (2 cores, many test processes) does not fail over on its own
NODE_TIMEOUT_MS = 2000
_WAIT_S = 60.0


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


def _node(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=2, decode_responses=True)


def _ask(port: int, *command: str) -> object:
    client = _node(port)
    try:
        return client.execute_command(*command)
    finally:
        client.close()


def _cluster_ok(port: int) -> bool:
    try:
        info = _ask(port, "CLUSTER", "INFO")
    except redis.RedisError:
        return False
    return "cluster_state:ok" in str(info)


@dataclass
class LocalCluster:
    """The running nodes (by port) and the operations tests do to them."""

    ports: list[int]
    servers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def alive(self) -> list[int]:
        return [port for port, server in self.servers.items() if server.poll() is None]

    def _view(self) -> list[dict[str, str]]:
        """``CLUSTER NODES`` as seen by a live node: id, port, flags, master id, slots."""
        for port in self.alive():
            try:
                text = str(_ask(port, "CLUSTER", "NODES"))
            except redis.RedisError:
                continue
            rows = []
            for line in text.splitlines():
                parts = line.split()
                rows.append(
                    {
                        "id": parts[0],
                        "port": parts[1].split("@")[0].rsplit(":", 1)[1],
                        "flags": parts[2],
                        "master": parts[3],
                        "slots": " ".join(parts[8:]),
                    }
                )
            return rows
        raise RuntimeError("no cluster node answers")

    def masters(self) -> list[int]:
        """Live masters that own slots."""
        live = {str(port) for port in self.alive()}
        return sorted(
            int(row["port"])
            for row in self._view()
            if "master" in row["flags"] and row["slots"] and row["port"] in live
        )

    def replicas_of(self, master: int) -> list[int]:
        """The live replicas of ``master`` in the nodes' view now."""
        rows = self._view()
        ids = [row["id"] for row in rows if row["port"] == str(master)]
        live = {str(port) for port in self.alive()}
        return [
            int(row["port"])
            for row in rows
            if ids
            and row["master"] == ids[0]
            and row["port"] in live
            and "fail" not in row["flags"]
        ]

    def replica_of(self, master: int) -> int:
        """A live replica of ``master`` (once the nodes' view shows one)."""
        self._until(lambda: bool(self.replicas_of(master)))
        return self.replicas_of(master)[0]

    def master_of_slot(self, slot: int) -> int:
        for shard in _ask(self.alive()[0], "CLUSTER", "SLOTS"):  # type: ignore[union-attr]
            if shard[0] <= slot <= shard[1]:
                return int(shard[2][1])
        raise RuntimeError(f"slot {slot} not served")

    def failover(self, master: int) -> int:
        """``CLUSTER FAILOVER`` on ``master``'s replica (a provider's maintenance): the
        replica becomes master of its slots; returns its port once every node agrees."""
        replica = self.replica_of(master)
        swapped = lambda: self._role(replica) == "master" and self._role(master) == "slave"  # noqa: E731
        # a replica that has not caught up with its master (one that was failed over a
        # moment ago is still syncing) lets a manual failover time out: ask again
        for _ in range(5):
            self._until(lambda: _caught_up(master, replica))
            _ask(replica, "CLUSTER", "FAILOVER")
            if self._until(swapped, limit_s=6, fail=False):  # its own timeout: 5 s
                break
        self._until(swapped)
        self.wait_ok()
        return replica

    def kill(self, master: int) -> int:
        """``kill -9`` of ``master``: its replica is promoted after the node timeout;
        returns the new master's port once the cluster serves every slot again."""
        replica = self.sigkill(master)
        self.wait_promoted(replica)
        return replica

    def replicated(self, master: int) -> None:
        """Until ``master``'s replica has every write so far (``WAIT``): replication is
        asynchronous, and a master killed right after a write may take it along."""
        _ask(master, "WAIT", "1", "5000")

    def sigkill(self, master: int) -> int:
        """``kill -9`` of ``master`` alone; returns the replica that will take over."""
        replica = self.replica_of(master)
        self.servers[master].send_signal(signal.SIGKILL)
        self.servers[master].wait()
        return replica

    def wait_promoted(self, replica: int) -> None:
        self._until(lambda: self._role(replica) == "master")
        self.wait_ok()

    def move_slot(self, slot: int, target: int) -> None:
        """Reshard one slot as ``redis-cli --cluster reshard`` does: MIGRATING/IMPORTING,
        MIGRATE of its keys in batches, then SETSLOT NODE on both and every master."""
        self.begin_move(slot, target)
        while self.migrate_keys(slot, target, 10):
            pass
        self.finish_move(slot, target)

    def _ids(self) -> dict[int, str]:
        return {int(row["port"]): row["id"] for row in self._view()}

    def begin_move(self, slot: int, target: int) -> None:
        source, ids = self.master_of_slot(slot), self._ids()
        _ask(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", ids[source])
        _ask(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", ids[target])

    def migrate_keys(self, slot: int, target: int, count: int) -> int:
        """MIGRATE up to ``count`` keys of a slot being moved; how many there were."""
        source = self.master_of_slot(slot)
        keys = _ask(source, "CLUSTER", "GETKEYSINSLOT", str(slot), str(count))
        if keys:
            _ask(source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", *keys)  # type: ignore[misc]
        return len(keys)  # type: ignore[arg-type]

    def finish_move(self, slot: int, target: int) -> None:
        source, ids = self.master_of_slot(slot), self._ids()
        for port in (target, source, *self.masters()):
            with contextlib.suppress(redis.RedisError):
                _ask(port, "CLUSTER", "SETSLOT", str(slot), "NODE", ids[target])
        self._until(lambda: self.master_of_slot(slot) == target)

    def _role(self, port: int) -> str:
        try:
            return str(_ask(port, "ROLE")[0])  # type: ignore[index]
        except redis.RedisError:
            return ""

    def wait_ok(self) -> None:
        self._until(lambda: all(_cluster_ok(port) for port in self.alive()))

    def _until(
        self, condition: Callable[[], bool], limit_s: float = _WAIT_S, fail: bool = True
    ) -> bool:
        deadline = time.monotonic() + limit_s
        while not condition():
            if time.monotonic() > deadline:
                if not fail:
                    return False
                raise RuntimeError(f"the local Redis Cluster did not settle: {self._view()}")
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        for server in self.servers.values():
            if server.poll() is None:
                server.terminate()
        for server in self.servers.values():
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@contextlib.contextmanager
def started_cluster(workdir: Path, replicas: int = 0) -> Iterator[LocalCluster]:
    """Start a cluster of 3 masters with ``replicas`` replicas each; stop it after."""
    missing = _missing_binaries()
    if missing:
        if os.environ.get("VNA_REQUIRE_CLUSTER") == "1":
            pytest.fail(f"VNA_REQUIRE_CLUSTER=1 but {missing}")
        pytest.skip(f"no local Redis Cluster: {missing}")
    cluster = LocalCluster(_cluster_ports(MASTERS * (1 + replicas)))
    try:
        for port in cluster.ports:
            node_dir = workdir / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            log = (node_dir / "redis.log").open("wb")
            args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            args += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
            args += ["--dir", str(node_dir), "--save", "", "--appendonly", "no"]
            cluster.servers[port] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        for port in cluster.ports:
            _wait_ping(port)
        create = ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in cluster.ports)]
        create += ["--cluster-replicas", str(replicas), "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed: {done.stdout[-500:]!r}")
        try:
            cluster.wait_ok()
            if replicas:  # every replica attached and in sync before a test fails one over
                cluster._until(lambda: all(_in_sync(port) for port in cluster.ports))
        except RuntimeError:
            pytest.fail("the local Redis Cluster never reached cluster_state:ok")
        yield cluster
    finally:
        cluster.stop()


def _caught_up(master: int, replica: int) -> bool:
    """The replica is connected and has every write of its master so far."""
    try:
        ours, theirs = _ask(replica, "ROLE"), _ask(master, "ROLE")
    except redis.RedisError:
        return False
    return ours[3] == "connected" and int(ours[4]) >= int(theirs[1])  # type: ignore[index]


def _in_sync(port: int) -> bool:
    try:
        role = _ask(port, "ROLE")
    except redis.RedisError:
        return False
    return role[0] == "master" or role[3] == "connected"  # type: ignore[index]


@contextlib.contextmanager
def local_cluster(workdir: Path) -> Iterator[str]:
    """Start a 3-master cluster; yields its ``redis+cluster://`` URL; stops it after."""
    with started_cluster(workdir) as cluster:
        yield cluster.url


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
