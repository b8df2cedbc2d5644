"""bench/conversation_cost.py: its /proc readings and the arithmetic behind its sizing."""

import os
from pathlib import Path

from bench.conversation_cost import (
    conversations,
    cpu_ms_per_turn,
    derive,
    key_kind,
    stat_cpu_ms,
    status_kb,
)


def test_cpu_from_proc_stat_matches_the_kernels_own_count() -> None:
    sum(i * i for i in range(300_000))  # some CPU of our own to count
    before = stat_cpu_ms(Path(f"/proc/{os.getpid()}/stat").read_text())
    times = os.times()
    after = stat_cpu_ms(Path(f"/proc/{os.getpid()}/stat").read_text())
    assert before > 0
    assert before - 1e-6 <= (times.user + times.system) * 1000 <= after + 1e-6


def test_peak_memory_from_proc_status() -> None:
    status = Path(f"/proc/{os.getpid()}/status").read_text()
    rss_pages = int(Path(f"/proc/{os.getpid()}/statm").read_text().split()[1])
    assert status_kb(status, "VmHWM") >= status_kb(status, "VmRSS") > 0
    assert abs(status_kb(status, "VmRSS") - rss_pages * os.sysconf("SC_PAGE_SIZE") // 1024) < 8192
    assert status_kb("VmRSS:\t  1234 kB\n", "VmHWM") == 0


def test_cpu_per_turn_takes_off_the_idle_use() -> None:
    assert cpu_ms_per_turn(1000.0, 10.0, 20.0, 8) == 100.0
    assert cpu_ms_per_turn(100.0, 10.0, 20.0, 8) == 0.0  # idle measured high: not negative
    assert cpu_ms_per_turn(100.0, 0.0, 1.0, 0) == 0.0


def test_conversations_per_instance_the_smaller_bound_holds() -> None:
    # 0.1 CPU less 6 ms/s idle = 94 ms/s; 50 ms per turn every 20 s = 2.5 ms/s each
    free = conversations(0.1, 512, 50.0, 20.0, 6.0, base_mb=256, mb_per_conversation=1.4)
    assert free == {"conversations": 37, "limited_by": "cpu", "by_cpu": 37, "by_memory": 182}
    tight = conversations(0.5, 512, 50.0, 20.0, 0.0, base_mb=500, mb_per_conversation=1.0)
    assert (tight["conversations"], tight["limited_by"]) == (12, "memory")
    assert conversations(1.0, 512, 0.0, 20.0)["conversations"] is None  # costs nothing


def test_derived_figures_from_a_measurement() -> None:
    phase = {
        "turns": 8,
        "cpu_ms_per_turn": {"gateway": 10.0, "asr_worker": 400.0, "redis": 5.0, "total": 415.0},
        "peak_rss_mb": {"gateway": 60.0, "asr_worker": 200.0, "redis": 10.0},
    }
    keys = {"total": 300_000, "reply": 200_000, "reply_stream_entries": 100, "session": 300}
    result = {
        "sessions": 2,
        "speech_seconds_per_spoken_turn": 2.0,
        "idle_cpu_ms_per_s": {"gateway": 0.0, "asr_worker": 0.0, "redis": 0.0},
        "typed": phase,
        "spoken": phase,
        "redis_bytes_per_session": {"idle_after_turns": 300_000, "session_keys_after_turns": keys},
    }
    derived = derive({"offline": result}, 20.0)["offline"]
    assert derived["spoken"]["per_core"]["asr_worker"] == 50  # 1000 / (400 / 20)
    assert derived["spoken"]["per_core_whole_stack"] == 48
    assert derived["asr_cores_while_speaking"] == 0.2
    # 2,000 reply entries of 2,000 bytes + 100,000 bytes of other keys
    assert derived["redis"]["kb_per_session_at_reply_maxlen"][2000] == round(4_100_000 / 1024)
    assert derived["redis"]["kb_per_turn"] == round(300_000 / 1024 / 8, 1)


def test_key_kinds_drop_prefix_session_and_turn() -> None:
    assert key_kind("vna:asr:in:abc123:t3", "abc123") == "asr:in"
    assert key_kind("vna:held:abc123", "abc123") == "held"
    assert key_kind("vna:ckpt:tts:abc123:t12.p1", "abc123") == "ckpt:tts"
