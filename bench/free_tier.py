"""Render's free instance, simulated: the free blueprint's service from the image, with a
tenth of a CPU and 512 MB, printed as JSON.

It reads ``render.free.yaml`` (the web service's ``dockerCommand`` and its plain ``envVars``),
runs that command from the image with Podman (``--cpus=0.1 --memory=512m``, host network,
loopback), pointed at a Redis (``VNA_REDIS_URL``: the stand-in store that
``shared/containers/run.sh`` starts; a prefix of its own keeps the stack's workers out),
with the repository's fixture feeds served on loopback as the news sites and the voice the
blueprint promises (``TTS_FALLBACK=edge,espeak``): ``--edge standin`` (the default) points
edge-tts inside the container at the edge stand-in (``tests/edge_standin.py``, Microsoft's
read-aloud protocol on loopback, served from its own thread on the host like the real
service's own machines), ``--edge unreachable`` at a closed port, so espeak-ng speaks
every reply. edge-tts is redirected by a module mounted into the image's site-packages
with a ``.pth`` line (the image and the command stay as Render runs them). Then it measures:

* cold start: ``podman run`` to the first ``/health`` 200 (and to ``/ready``);
* the first typed turn: time to its first audio and to ``streaming_complete``;
* a spoken turn sent in real time: time from the end of speech to the transcript and to
  the first audio (or the error the configuration answers with);
* N concurrent sessions (``--sessions``, default the blueprint's
  ``MAX_WEBSOCKET_CONNECTIONS``) each asking a typed turn, and one session past the cap;
* peak memory of the container (cgroup v1 ``memory.max_usage_in_bytes`` or v2
  ``memory.peak``);
* which voice spoke: the sentences the edge stand-in was asked for, and the replies'
  sample rates (edge-tts 24 kHz, espeak-ng 22.05 kHz).

    shared/containers/run.sh . -- .venv/bin/python -m bench.free_tier \
        [--edge standin|unreachable] [--env ASR_PROVIDER=pocketsphinx] [--sessions 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import websockets
import yaml

from tests.audio_checks import speech_16k
from tests.edge_standin import EdgeStandIn, running_edge_standin
from tests.support import E2E_FEEDS, free_port, serve_fixtures
from voice_agent.client import Turn, VoiceClient

ROOT = Path(__file__).resolve().parent.parent

MB = 1024 * 1024
SITE_PACKAGES = "/opt/venv/lib/python3.11/site-packages"
# imported at every interpreter start in the container (a .pth line): edge-tts reads its
# module-level WSS_URL on every connection
EDGE_HOOK = """import os

if os.environ.get("VNA_EDGE_URL"):
    import edge_tts.communicate

    edge_tts.communicate.WSS_URL = os.environ["VNA_EDGE_URL"]
"""


@contextlib.contextmanager
def edge_standin_thread() -> Any:
    """The edge stand-in on its own event loop and thread: its MP3 encoding must not delay
    the clients whose arrival times are measured here."""
    state, started, stop = EdgeStandIn(), threading.Event(), threading.Event()

    async def serve() -> None:
        async with running_edge_standin(state):
            started.set()
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    started.wait(30)
    try:
        yield state
    finally:
        stop.set()
        thread.join(10)


def edge_hook_mounts(directory: Path) -> list[str]:
    """``-v`` flags that put the redirecting module and its .pth line into the image."""
    (directory / "vna_edge_hook.py").write_text(EDGE_HOOK)
    (directory / "vna_edge_hook.pth").write_text("import vna_edge_hook\n")
    directory.chmod(0o755)
    flags = []
    for name in ("vna_edge_hook.py", "vna_edge_hook.pth"):
        (directory / name).chmod(0o644)
        flags += ["-v", f"{directory / name}:{SITE_PACKAGES}/{name}:ro"]
    return flags


def free_service() -> tuple[str, dict[str, str]]:
    """The free web service's command and the env vars the blueprint gives it a value."""
    blueprint = yaml.safe_load((ROOT / "render.free.yaml").read_text())
    web = next(s for s in blueprint["services"] if s["type"] == "web")
    env = {v["key"]: str(v["value"]) for v in web["envVars"] if "value" in v}
    return web["dockerCommand"], env


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=True).stdout


def peak_memory(container: str) -> int | None:
    """The container's memory high-water mark from its cgroup (v1 or v2)."""
    pid = podman("inspect", "-f", "{{.State.Pid}}", container).strip()
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _n, controllers, path = line.split(":", 2)
        candidates = []
        if "memory" in controllers.split(","):
            candidates.append(
                Path("/sys/fs/cgroup/memory", path.lstrip("/"), "memory.max_usage_in_bytes")
            )
        if controllers == "":
            candidates.append(Path("/sys/fs/cgroup", path.lstrip("/"), "memory.peak"))
            candidates.append(Path("/sys/fs/cgroup/unified", path.lstrip("/"), "memory.peak"))
        for candidate in candidates:
            with contextlib.suppress(OSError, ValueError):
                return int(candidate.read_text())
    return None


def ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


async def wait_http(url: str, container: str, start: float) -> float:
    """Seconds from ``start`` until ``url`` answers 200."""
    async with httpx.AsyncClient() as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url, timeout=5)).status_code == 200:
                    return time.perf_counter() - start
            state = podman("inspect", "-f", "{{.State.Status}}", container).strip()
            if state != "running":
                raise RuntimeError(
                    f"container {state}: {podman('logs', '--tail', '20', container)}"
                )
            await asyncio.sleep(0.1)


def turn_figures(turn: Turn) -> dict[str, Any]:
    indexes = [c["chunk_index"] for c in turn.chunks]
    done = turn.input_done_ms or 0.0
    first_audio = turn.first_ms("tts_chunk")
    final = next(
        (
            at
            for e, at in zip(turn.events, turn.arrival_ms, strict=True)
            if e["event"] == "partial_transcription" and e["data"].get("is_final")
        ),
        None,
    )
    return {
        "first_audio_ms": None if first_audio is None else round(first_audio - done),
        "complete_ms": None
        if turn.first_ms("streaming_complete") is None
        else round(turn.first_ms("streaming_complete") - done),
        "transcript_ms": None if final is None else round(final - done),
        "transcript": turn.transcript,
        "chunks": len(indexes),
        "sample_rates": sorted({c.get("sample_rate") for c in turn.chunks} - {None}),
        "contiguous": indexes == list(range(len(indexes))),
        "errors": [e.get("code") for e in turn.errors],
    }


async def typed_turn(ws_url: str, text: str) -> dict[str, Any]:
    async with VoiceClient.connect(ws_url, open_timeout=60) as client:
        return turn_figures(await client.ask(text, limit_s=300))


async def spoken_turn(ws_url: str, text: str, recognition: bool) -> dict[str, Any]:
    pcm = speech_16k(text)
    async with VoiceClient.connect(ws_url, open_timeout=60) as client:
        if not recognition:  # ASR_PROVIDER=none: the first audio frame gets an error
            await client.send_audio(pcm[:3200], realtime=False)
            event = await client.next_event(120)
            return {"answer": event["event"], "code": event["data"].get("code")}
        turn = await client.say(pcm, limit_s=300, realtime=True)
    figures = turn_figures(turn)
    figures["speech_ms"] = round(len(pcm) / 32)
    return figures


async def concurrent(ws_url: str, sessions: int) -> dict[str, Any]:
    async def one(n: int) -> dict[str, Any]:
        try:
            return await typed_turn(
                ws_url, ("technology news", "business news", "sports news")[n % 3]
            )
        except (websockets.InvalidStatus, websockets.ConnectionClosed, ConnectionError) as exc:
            return {"refused": f"{type(exc).__name__}: {exc}"}

    start = time.perf_counter()
    results = await asyncio.gather(*(one(n) for n in range(sessions)))
    wall = time.perf_counter() - start
    served = [r for r in results if "refused" not in r and r["chunks"]]
    rates = sorted({rate for r in served for rate in r["sample_rates"]})
    firsts = sorted(r["first_audio_ms"] for r in served if r["first_audio_ms"] is not None)
    return {
        "sessions": sessions,
        "completed": sum(1 for r in served if r["contiguous"] and not r["errors"]),
        "refused": [r["refused"] for r in results if "refused" in r],
        "errors": sorted({e for r in results for e in r.get("errors", [])}),
        "sample_rates": rates,
        "first_audio_ms_p50": round(statistics.median(firsts)) if firsts else None,
        "first_audio_ms_max": firsts[-1] if firsts else None,
        "all_done_ms": ms(wall),
    }


async def past_the_cap(ws_url: str, cap: int) -> dict[str, Any]:
    """``cap`` idle sessions open, then one more: what does the extra client get?"""
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(cap):
            await stack.enter_async_context(VoiceClient.connect(ws_url, open_timeout=60))
        try:
            async with VoiceClient.connect(ws_url, open_timeout=60) as extra:
                event = await extra.next_event(30)
                return {"extra_session": "accepted", "event": event["event"]}
        except websockets.ConnectionClosed as exc:
            return {
                "extra_session": "closed",
                "code": exc.rcvd.code if exc.rcvd else None,
                "reason": exc.rcvd.reason if exc.rcvd else None,
            }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with edge_standin_thread() as edge, tempfile.TemporaryDirectory() as hook:
        if args.edge == "unreachable":
            edge_url = f"ws://127.0.0.1:{free_port()}/consumer/speech/synthesize/readaloud/edge/v1"
        else:
            edge_url = edge.url
        result = await measure(args, edge_url, edge_hook_mounts(Path(hook)))
        result["edge"] = {
            "mode": args.edge,
            "sentences_asked": len(edge.requests),
            "voices": sorted({r.voice for r in edge.requests}),
        }
        return result


async def measure(args: argparse.Namespace, edge_url: str, mounts: list[str]) -> dict[str, Any]:
    image = os.environ.get("VNA_IMAGE", "localhost/vna:latest")
    redis_url = os.environ.get("VNA_REDIS_URL")
    if not redis_url:
        raise SystemExit(
            "free_tier.py: set VNA_REDIS_URL (run it through shared/containers/run.sh)"
        )
    command, env = free_service()
    env.update(dict(pair.split("=", 1) for pair in args.env))
    port, feeds = free_port(), serve_fixtures()
    env |= {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "REDIS_URL": redis_url,
        "STREAM_PREFIX": f"free{uuid.uuid4().hex[:6]}",
        "NEWS_FEEDS": ",".join(f"{s.split('=')[0]}={feeds}{s.split('=')[1]}" for s in E2E_FEEDS),
    }
    flags = [f"--cpus={args.cpus}", f"--memory={args.memory}", "--network=host", *mounts]
    env_flags = [f for k, v in env.items() for f in ("-e", f"{k}={v}")]
    env_flags += ["-e", f"VNA_EDGE_URL={edge_url}"]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    container = podman("run", "-d", *flags, *env_flags, image, *command.split()).strip()
    try:
        url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/voice"
        health = await wait_http(f"{url}/health", container, start)
        ready = await wait_http(f"{url}/ready", container, start)
        result: dict[str, Any] = {
            "limits": {"cpus": args.cpus, "memory": args.memory},
            "command": command,
            "load_average_at_start": round(load, 2),
            "settings": {k: v for k, v in env.items() if k not in ("NEWS_FEEDS", "REDIS_URL")},
            "cold_start_to_health_ms": ms(health),
            "cold_start_to_ready_ms": ms(ready),
            "first_typed_turn": await typed_turn(ws_url, "technology news"),
            "second_typed_turn": await typed_turn(ws_url, "business news"),
            "spoken_turn": await spoken_turn(
                ws_url, "read me the sports headlines", env.get("ASR_PROVIDER") != "none"
            ),
        }
        cap = int(env.get("MAX_WEBSOCKET_CONNECTIONS", "200"))
        result["concurrent"] = await concurrent(ws_url, args.sessions or cap)
        result["past_the_cap"] = await past_the_cap(ws_url, cap)
        peak = peak_memory(container)
        result["peak_memory_mb"] = None if peak is None else round(peak / MB)
        result["oom_killed"] = podman("inspect", "-f", "{{.State.OOMKilled}}", container).strip()
        result["load_average_at_end"] = round(os.getloadavg()[0], 2)
        return result
    finally:
        await asyncio.to_thread(podman, "rm", "-f", "-t", "10", container)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", default="0.1")
    parser.add_argument("--memory", default="512m")
    parser.add_argument(
        "--edge",
        choices=("standin", "unreachable"),
        default="standin",
        help="edge-tts talks to the local stand-in, or to a closed port (espeak-ng speaks)",
    )
    parser.add_argument(
        "--sessions", type=int, default=0, help="default: MAX_WEBSOCKET_CONNECTIONS"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a blueprint setting (repeatable)",
    )
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
