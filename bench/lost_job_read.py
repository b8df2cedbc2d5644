"""A job read whose reply is lost: how late the job starts, lean path against redis-py.

A TCP proxy between one worker and Redis cuts the worker's connection as the reply that
hands it a job goes by (the job's text is the marker): Redis has given the job to this
worker, which never saw it. The lean job read (``shared/job_reads.py``) knows a read was
sent and its reply lost, and reads the worker's own pending entries again at once.
Through redis-py (``REDIS_PLAIN_CALLS=job_reads``) the read is sent again whole after
the reconnect, finds nothing new, and the job waits until it is claimed as idle
(``RECLAIM_IDLE_MS``). Prints JSON: per path, milliseconds from publish to the job's start.

    python -m bench.lost_job_read [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time

from shared import resp
from shared.embedded_redis import start_embedded_redis
from shared.messages import LlmJob
from shared.settings import load_settings
from shared.streams import connect, publish_job
from shared.worker import JobContext, StageWorker

STREAM, GROUP = "bench:lost-read:jobs", "g"


class CuttingProxy:
    """Forwards bytes both ways; cuts the connection (forwarding nothing of it) the first
    time a reply from Redis holds ``marker``."""

    def __init__(self, upstream_port: int, marker: bytes) -> None:
        self._upstream_port = upstream_port
        self._marker = marker
        self.cut = asyncio.Event()
        self.port = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        redis_r, redis_w = await asyncio.open_connection("127.0.0.1", self._upstream_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, watch: bool) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    if watch and not self.cut.is_set() and self._marker in data:
                        self.cut.set()
                        break
                    dst.write(data)
                    await dst.drain()
            for writer in (client_w, redis_w):
                writer.transport.abort()

        await asyncio.gather(pump(client_r, redis_w, False), pump(redis_r, client_w, True))


async def _blocked_in_read(redis: object) -> None:
    while not any(  # noqa: ASYNC110 - polling Redis-side state
        client.get("cmd") == "xreadgroup" and "b" in client.get("flags", "")
        for client in await redis.client_list()  # type: ignore[attr-defined]
    ):
        await asyncio.sleep(0.02)


async def one_run(redis_port: int, plain: bool, number: int) -> float:
    marker = f"lost-reply-{number}-{os.getpid()}"
    proxy = CuttingProxy(redis_port, marker.encode())
    server = await proxy.start()
    direct = connect(f"redis://127.0.0.1:{redis_port}/0")
    await direct.delete(STREAM)
    await direct.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    resp.send_through_redis_py(["job_reads"] if plain else [])
    through_proxy = connect(f"redis://127.0.0.1:{proxy.port}/0")
    started = asyncio.Event()

    async def handler(job: LlmJob, ctx: JobContext) -> None:
        started.set()

    config = load_settings(shutdown_grace_seconds=1)
    worker = StageWorker(
        through_proxy,
        config,
        kind="llm",
        streams=(STREAM,),
        group=GROUP,
        job_type=LlmJob,
        handler=handler,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await _blocked_in_read(direct)  # the job comes while the worker waits for it
        begun = time.perf_counter()
        await publish_job(direct, STREAM, LlmJob("s", "t1", marker), 100)
        await proxy.cut.wait()
        await started.wait()
        return (time.perf_counter() - begun) * 1000
    finally:
        stop.set()
        await task
        server.close()
        await through_proxy.aclose()
        await direct.aclose()
        resp.send_through_redis_py([])


async def main_async(rounds: int) -> dict[str, object]:
    results: dict[str, list[float]] = {"lean": [], "redis_py": []}
    with start_embedded_redis() as redis_server:
        port = int(redis_server.url.rsplit(":", 1)[1].split("/")[0])
        for number in range(rounds):
            for name in ("lean", "redis_py"):
                ms = await one_run(port, name == "redis_py", number)
                results[name].append(round(ms, 1))
    return {
        "reclaim_idle_ms": load_settings().reclaim_idle_ms,
        "load_average_1m": round(os.getloadavg()[0], 2),
        **{f"{name}_ms": runs for name, runs in results.items()},
        **{f"{name}_ms_median": statistics.median(runs) for name, runs in results.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.rounds)), indent=2))


if __name__ == "__main__":
    main()
