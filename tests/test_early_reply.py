"""Early replies: the gateway's attempts as a state machine (no Redis), and the one
verdict record every side decides and reads (a real Redis)."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from shared.early_reply import (
    BEHIND,
    COPIED,
    DROPPED,
    FINISHED,
    OPEN,
    USED,
    Attempts,
    EarlyVerdicts,
    Phase,
)
from shared.keys import Keys
from shared.messages import LlmJob, ReplyEvent, decode

S = "s1"


def _event(name: str, turn: str = "t1.p1", **data: object) -> ReplyEvent:
    return ReplyEvent(name, S, turn, dict(data))


def test_a_used_attempt_forwards_its_kept_events_as_the_turn_and_stops_at_its_end() -> None:
    attempts = Attempts()
    attempts.start("t1.p1", "t1", "sports")
    assert attempts.on_event(_event("agent_response", text="Here")).forward == []
    step = attempts.settled("t1.p1", USED)
    assert [(e.event, e.turn_id) for _id, e in step.forward] == [("agent_response", "t1")]
    step = attempts.on_event(_event("streaming_complete"))
    assert [e.turn_id for _id, e in step.forward] == ["t1"]
    assert attempts.get("t1.p1").phase == Phase.DONE  # type: ignore[union-attr]
    assert attempts.on_event(_event("tts_chunk")).forward == []  # nothing after its end


def test_a_dropped_attempt_is_stopped_and_nothing_of_it_goes_out() -> None:
    attempts = Attempts()
    attempts.start("t1.p1", "t1", "sports")
    attempts.on_event(_event("agent_response", text="Here"))
    step = attempts.settled("t1.p1", DROPPED)
    assert step.stop and step.forward == []
    assert attempts.on_event(_event("tts_chunk")).forward == []
    assert attempts.settled("t1.p1", USED).forward == []  # a verdict is given once


def test_giving_an_attempt_up_withdraws_it_and_its_verdict_decides() -> None:
    """A drop before the end of speech cannot know whether the recogniser already used
    the attempt: it withdraws it and keeps its events until the verdict is read."""
    attempts = Attempts()
    attempts.start("t1.p1", "t1", "sports")
    assert attempts.drop("t1.p1").withdraw
    assert not attempts.drop("t1.p1").withdraw  # once
    attempts.on_event(_event("agent_response", text="Here"))
    assert [e.turn_id for _id, e in attempts.settled("t1.p1", USED).forward] == ["t1"]


def test_too_many_kept_events_withdraw_the_attempt() -> None:
    from shared.early_reply import KEPT_EVENTS_LIMIT

    attempts = Attempts()
    attempts.start("t1.p1", "t1", "sports")
    steps = [attempts.on_event(_event("tts_chunk")) for _ in range(KEPT_EVENTS_LIMIT + 2)]
    assert [s.withdraw for s in steps].count(True) == 1 and steps[KEPT_EVENTS_LIMIT].withdraw
    assert attempts.settled("t1.p1", DROPPED).stop


def test_events_of_unknown_attempts_are_ignored() -> None:
    attempts = Attempts()
    step = attempts.on_event(_event("agent_response", turn="t9.p1"))
    assert step.forward == [] and not step.withdraw and not step.stop


def _job(attempt: str = "t1.p1") -> LlmJob:
    return LlmJob(S, attempt, "read me the sports headlines", "speech", 0, {"early": True})


async def test_the_final_with_the_same_words_uses_an_open_attempt_once(redis: Redis) -> None:
    keys = Keys()
    verdicts = EarlyVerdicts(redis, keys, 60)
    assert await verdicts.open(_job(), "read me the sports headlines", 100)
    assert await redis.xlen(keys.jobs("llm")) == 1  # the job went with its record
    assert await verdicts.read(S, "t1.p1") == OPEN
    assert await verdicts.decide(S, "t1.p1", "read me the sports headlines") == USED
    assert await verdicts.decide(S, "t1.p1", None) == USED  # a withdrawal too late reads it
    assert await verdicts.read(S, "t1.p1") == USED


async def test_other_words_a_withdrawal_or_no_record_drop_an_attempt(redis: Redis) -> None:
    keys = Keys()
    verdicts = EarlyVerdicts(redis, keys, 60)
    await verdicts.open(_job("t1.p1"), "read me the sports headlines", 100)
    assert await verdicts.decide(S, "t1.p1", "read me the sports headlines today") == DROPPED
    await verdicts.open(_job("t2.p1"), "next story", 100)
    assert await verdicts.decide(S, "t2.p1", None) == DROPPED  # withdrawn first ...
    assert await verdicts.decide(S, "t2.p1", "next story") == DROPPED  # ... the ASR reads it
    # never opened (its publish failed): dropped, and it cannot open after its verdict
    assert await verdicts.decide(S, "t3.p1", "next story") == DROPPED
    assert not await verdicts.open(_job("t3.p1"), "next story", 100)
    assert await redis.xlen(keys.jobs("llm")) == 2


async def test_a_used_attempts_copy_goes_forward_only_and_says_where_it_stopped(
    redis: Redis,
) -> None:
    """Two copiers (a killed gateway's position taken up while the old one still runs)
    append each event of the reply once, in order; the record says where a copy stopped
    until the reply's end is copied."""
    keys = Keys()
    verdicts = EarlyVerdicts(redis, keys, 60)
    await verdicts.open(_job(), "read me the sports headlines", 100)
    await verdicts.decide(S, "t1.p1", "read me the sports headlines")
    assert await verdicts.unfinished_copies(S) == {"t1.p1": "0-0"}  # nothing copied yet
    reply = [(f"5-{n}", _event("tts_chunk", turn="t1", chunk_index=n)) for n in range(3)]
    reply.append(("10-0", _event("streaming_complete", turn="t1")))
    first = [await verdicts.copy(S, "t1.p1", i, e, 100) for i, e in reply[:2]]
    assert first == [COPIED, COPIED]
    assert await verdicts.unfinished_copies(S) == {"t1.p1": "5-1"}
    second = [await verdicts.copy(S, "t1.p1", i, e, 100) for i, e in reply]  # from the start
    assert second == [BEHIND, BEHIND, COPIED, COPIED]
    assert await verdicts.copy(S, "t1.p1", *reply[2], 100) == FINISHED  # the first, late
    assert await verdicts.unfinished_copies(S) == {}
    stored = [decode(fields) for _id, fields in await redis.xrange(keys.reply(S))]
    assert [(e.event, e.data.get("chunk_index")) for e in stored] == [
        ("tts_chunk", 0),
        ("tts_chunk", 1),
        ("tts_chunk", 2),
        ("streaming_complete", None),
    ]


def test_a_cancelled_turn_drops_its_attempts_whatever_their_verdict() -> None:
    attempts = Attempts()
    attempts.start("t1.p1", "t1", "sports")
    attempts.start("t1.p2", "t1", "sports news")
    attempts.settled("t1.p1", DROPPED)
    attempts.drop("t1.p2")  # withdrawing: its verdict not read yet
    assert [a.attempt_id for a in attempts.cancel_turn("t1")] == ["t1.p2"]
    assert attempts.settled("t1.p2", USED).forward == []  # too late: nothing goes out
    assert attempts.on_event(_event("tts_chunk", turn="t1.p2")).forward == []


async def test_the_record_on_a_redis_cluster_wakes_the_waiting_worker(
    redis_cluster_url: str,
) -> None:
    """Its scripts touch one slot (the record and the session's work stream share the
    session's tag), and a verdict's notice reaches a control channel on the cluster."""
    from shared.control import ControlChannel
    from shared.settings import load_settings
    from shared.streams import connect

    keys = load_settings(redis_url=redis_cluster_url, stream_prefix="erc").keys
    redis = connect(redis_cluster_url, cluster=True)
    control = ControlChannel(redis, keys, 60)
    await control.start()
    try:
        verdicts = EarlyVerdicts(redis, keys, 60)
        session = uuid.uuid4().hex
        job = LlmJob(session, "t1.p1", "news", "speech", 0, {"early": True})
        assert await verdicts.open(job, "news", 100)
        waiting = asyncio.create_task(control.wait_decided(session, "t1.p1", 60))
        await asyncio.sleep(0)  # it waits from now on
        assert await verdicts.decide(session, "t1.p1", "news") == USED
        assert await waiting  # the notice, not the minute
        end = ReplyEvent("streaming_complete", session, "t1", {})
        assert await verdicts.copy(session, "t1.p1", "1-0", end, 100) == COPIED
        assert await redis.xlen(keys.reply(session)) == 1
    finally:
        await control.stop()
        await redis.aclose()
