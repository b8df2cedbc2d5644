"""The product as separately deployed services: one gateway and N workers of each kind,
each its own ``python -m`` process, so a test can kill or stop any one of them.

Worker processes get ``WORKER_NAME=<kind><n>`` (consumer ``<kind><n>-<kind>``), so the
consumer that holds a job (``XPENDING``) names the process to kill.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from shared.keys import Keys
from shared.messages import decode
from tests.support import E2E_FEEDS, ROOT, free_port, wait_for_http

MODULES = {"gateway": "gateway", "asr": "asr_worker", "llm": "llm_worker", "tts": "tts_worker"}


@dataclass
class Cluster:
    redis_url: str
    log_dir: Path
    env: dict[str, str]
    ws_url: str = ""
    http_url: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.env.get("STREAM_PREFIX", "vna")

    @property
    def on_redis_cluster(self) -> bool:
        return self.redis_url.startswith("redis+cluster://")

    @property
    def keys(self) -> Keys:
        partitions = self.env.get("JOB_PARTITIONS") or (16 if self.on_redis_cluster else 1)
        return Keys(self.prefix, int(partitions), self.on_redis_cluster)

    def client(self) -> redis.Redis:
        """A plain client, or a cluster client for a ``redis+cluster://`` URL."""
        if self.on_redis_cluster:
            url = self.redis_url.replace("+cluster://", "://", 1)
            return RedisCluster.from_url(url)  # type: ignore[return-value]
        return redis.Redis.from_url(self.redis_url)

    def async_client(self) -> aioredis.Redis:
        """The asyncio counterpart of ``client``."""
        if self.on_redis_cluster:
            url = self.redis_url.replace("+cluster://", "://", 1)
            return AsyncRedisCluster.from_url(url)  # type: ignore[return-value]
        return aioredis.Redis.from_url(self.redis_url)

    def start(self, name: str, **extra_env: str) -> subprocess.Popen[bytes]:
        """Start service ``name`` (``gateway`` or ``<kind><n>``, e.g. ``tts2``)."""
        kind = name.rstrip("0123456789")
        env = {**self.env, **extra_env}
        if kind != "gateway":
            env["WORKER_NAME"] = name
        with open(self.log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", MODULES[kind]],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        return proc

    def signal(self, name: str, sig: int) -> subprocess.Popen[bytes]:
        proc = self.procs[name]
        proc.send_signal(sig)
        return proc

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def wait_for_workers(self, names: list[str], limit_s: float = 60) -> None:
        """Until every named worker has written its heartbeat."""
        client = self.client()
        deadline = time.monotonic() + limit_s
        try:
            while time.monotonic() < deadline:
                seen = set()
                for kind in MODULES:
                    members = client.zrange(f"{self.prefix}:hb:{kind}", 0, -1)
                    seen |= {m.decode().rsplit("-", 1)[0] for m in members}
                if set(names) <= seen:
                    return
                for name in names:
                    if self.procs[name].poll() is not None:
                        raise RuntimeError(f"{name} exited:\n{self.log(name)[-3000:]}")
                time.sleep(0.1)
        finally:
            client.close()
        raise RuntimeError(f"workers {names} not all up within {limit_s:.0f} s")

    def owner(self, kind: str, limit_s: float = 10) -> str:
        """The worker process holding the (only) pending job of ``kind``."""
        client = self.client()
        deadline = time.monotonic() + limit_s
        try:
            while time.monotonic() < deadline:
                for stream in self.keys.job_streams(kind):
                    rows = client.xpending_range(stream, kind, "-", "+", 10)
                    if rows:
                        return str(rows[0]["consumer"].decode().rsplit("-", 1)[0])
                time.sleep(0.02)
        finally:
            client.close()
        raise RuntimeError(f"no pending {kind} job within {limit_s:.0f} s")

    def reply_events(self, session_id: str) -> list[str]:
        """The event names in a session's reply stream so far."""
        client = self.client()
        try:
            entries = client.xrange(self.keys.reply(session_id))
        finally:
            client.close()
        return [decode(fields).event for _id, fields in entries]  # type: ignore[union-attr]

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def feeds_env(fixture_http: str) -> str:
    return ",".join(
        f"{spec.split('=')[0]}={fixture_http}{spec.split('=')[1]}" for spec in E2E_FEEDS
    )


@contextlib.contextmanager
def running_cluster(
    redis_url: str, fixture_http: str, log_dir: Path, workers: list[str], **extra_env: str
) -> Iterator[Cluster]:
    """A gateway and the named workers (e.g. ``["llm1", "tts1", "tts2"]``), all up."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "NEWS_FEEDS": feeds_env(fixture_http),
        "LOG_LEVEL": "INFO",
        **extra_env,
    }
    cluster = Cluster(redis_url, log_dir, env)
    cluster.ws_url = f"ws://127.0.0.1:{port}/ws/voice"
    cluster.http_url = f"http://127.0.0.1:{port}"
    try:
        gateway = cluster.start("gateway")
        for name in workers:
            cluster.start(name)
        cluster.wait_for_workers(workers)
        wait_for_http(f"{cluster.http_url}/health", gateway)
        yield cluster
    finally:
        cluster.stop_all()
