"""Thousands of malformed frames against a live server (a bounded, seeded random loop):
random bytes, random JSON, wrong types, huge fields, binary audio of odd length. The
server never crashes or drops the socket, answers every bad frame with an ``error``
event, and a well-behaved session running at the same time gets its complete reply."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import string
from collections import Counter
from collections.abc import Callable

import httpx
import websockets

from voice_agent.client import VoiceClient

FRAMES = 3000
KNOWN_EVENTS = {"voice_command", "voice_data", "cancel", "ping"}


def _text(rng: random.Random, size: int) -> str:
    alphabet = string.printable + "éß中😀\u0000\ud7ff"
    return "".join(rng.choice(alphabet) for _ in range(size))


def _json_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.randint(-(2**70), 2**70)
    if kind == 1:
        return rng.random() * 1e300
    if kind == 2:
        return _text(rng, rng.randrange(0, 40))
    if kind == 3:
        return rng.choice([None, True, False])
    if kind == 4:
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {_text(rng, 5): _json_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _bad_frame(rng: random.Random) -> str | bytes:
    """One frame the protocol must refuse."""
    wrong = _json_value(rng)
    makers: list[Callable[[], str | bytes]] = [
        lambda: rng.randbytes(rng.randrange(0, 4000) | 1),  # odd-length binary audio
        lambda: _text(rng, rng.randrange(1, 200)).replace("{", ""),  # not JSON (or not an object)
        lambda: json.dumps(_json_value(rng)) if rng.random() < 0.5 else "[" * 100_000,
        lambda: json.dumps({"event": "x-" + _text(rng, 8), "data": {}}),
        lambda: (
            json.dumps({"event": "voice_command", "data": {"command": wrong}})
            if not isinstance(wrong, str) or not wrong.strip()
            else json.dumps({"event": "voice_command", "data": {"command": 7}})
        ),
        lambda: json.dumps({"event": "voice_command", "data": {"command": "x" * 5000}}),
        lambda: json.dumps(
            {"event": "voice_command", "data": {"command": "hi", "session_id": "x"}}
        ),
        lambda: json.dumps(
            {"event": "voice_command", "data": wrong if not isinstance(wrong, dict) else 5}
        ),
        lambda: json.dumps({"event": "voice_data", "data": {"audio_chunk": _text(rng, 9) + "!"}}),
        lambda: json.dumps(
            {"event": "voice_data", "data": {"audio_chunk": base64.b64encode(b"abc").decode()}}
        ),
        lambda: json.dumps({"event": "voice_data", "data": {"audio_chunk": "", "is_final": "yes"}}),
        lambda: json.dumps({"event": "voice_data", "data": {"is_final": True}}),  # no audio
        lambda: json.dumps({"event": rng.choice([1, None, [], {}]), "data": {}}),
        lambda: "x" * rng.choice([300_000, 600_000]),  # over MAX_FRAME_BYTES, under ws max
    ]
    weights = [10, 10, 10, 8, 8, 3, 3, 5, 6, 4, 3, 3, 4, 0.3]
    return rng.choices(makers, weights)[0]()


async def test_fuzzed_frames_are_each_answered_and_hurt_nobody(system) -> None:
    rng = random.Random(20251125)
    frames = [_bad_frame(rng) for _ in range(FRAMES)]
    codes: Counter[str] = Counter()
    async with (
        websockets.connect(system.ws_url, max_size=None) as fuzz,
        VoiceClient.connect(system.ws_url) as neighbour,
    ):
        await fuzz.recv()  # connected
        polite = asyncio.create_task(neighbour.ask("technology news", limit_s=120))
        for start in range(0, FRAMES, 50):
            batch = frames[start : start + 50]
            for frame in batch:
                await fuzz.send(frame)
            for _ in batch:
                answer = json.loads(await asyncio.wait_for(fuzz.recv(), 20))
                assert answer["event"] == "error", answer
                codes[answer["data"]["code"]] += 1
        turn = await polite
        await fuzz.send(json.dumps({"event": "voice_command", "data": {"command": "sports news"}}))
        after = [json.loads(await asyncio.wait_for(fuzz.recv(), 30))]
        while after[-1]["event"] not in ("streaming_complete", "error"):
            after.append(json.loads(await asyncio.wait_for(fuzz.recv(), 30)))
    assert sum(codes.values()) == FRAMES
    assert {"bad_audio", "bad_json", "unknown_event", "invalid_field", "frame_too_large"} <= set(
        codes
    ), codes
    assert not turn.errors and turn.complete and "battery" in turn.reply_text.lower()
    assert [c["chunk_index"] for c in turn.chunks] == list(range(len(turn.chunks)))
    assert after[-1]["event"] == "streaming_complete", after[-1]  # the fuzzed session still works
    async with httpx.AsyncClient() as http:
        health = (await http.get(f"{system.http_url}/health", timeout=5)).json()
    assert health["status"] == "ok"
    print(json.dumps({"fuzz_frames": FRAMES, "error_codes": dict(codes)}))
