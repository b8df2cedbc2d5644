"""The outbox counts the bytes it holds exactly: what goes in, comes out or is dropped
leaves the counter where it started, so its bound neither drifts nor leaks."""

from __future__ import annotations

import pytest

from gateway.outbox import Outbox, OutboxOverflow, OutFrame, frame_cost


def chunk(turn: str, size: int = 5000) -> OutFrame:
    return OutFrame("x" * size, turn_id=turn, event="tts_chunk")


async def test_bytes_in_equal_bytes_out_and_dropped() -> None:
    outbox = Outbox(max_bytes=64 * 1024, control_limit=4)
    for turn in ("t1", "t2", "t1"):
        outbox.put(chunk(turn))
    outbox.put_control(OutFrame('{"event":"pong"}'))
    assert outbox.queued_bytes == 3 * frame_cost("x" * 5000) + frame_cost('{"event":"pong"}')
    assert outbox.drop_turn("t1") == 2
    assert (await outbox.get()).text.startswith("{")  # control first
    assert (await outbox.get()).turn_id == "t2"
    assert outbox.queued_bytes == 0 and len(outbox) == 0


async def test_a_full_lane_refuses_but_one_event_always_fits() -> None:
    outbox = Outbox(max_bytes=64 * 1024, control_limit=4)
    outbox.put(chunk("t1", 200_000))  # larger than the bound, alone: it goes out
    with pytest.raises(OutboxOverflow):
        outbox.put(chunk("t1", 10))
    await outbox.get()
    while outbox.queued_bytes + frame_cost("x" * 5000) <= outbox.max_bytes:
        outbox.put(chunk("t2"))
    with pytest.raises(OutboxOverflow):
        outbox.put(chunk("t2"))
    assert outbox.peak_bytes == frame_cost("x" * 200_000)
    outbox.put_close()
    assert outbox.queued_bytes == 0
