"""Every Prometheus metric of the system, in one place, labelled by stage and provider.

Latency buckets are tuned for voice: tens of milliseconds to seconds. The gateway serves
``/metrics``; a worker running on its own serves them on ``METRICS_PORT``; the all-in-one
process exposes everything through the gateway. Several gateway processes
(``GATEWAY_PROCESSES``) use prometheus-client's multiprocess mode: each writes its values
to files in ``PROMETHEUS_MULTIPROC_DIR`` (set by their supervisor before this module is
imported) and whichever process answers ``/metrics`` reads them all. Counters and
histograms then add up over every process that ran; a gauge says how it combines
(``multiprocess_mode``; ``live...``: processes still running).
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector

VOICE_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)

# --- gateway ---------------------------------------------------------------------------
SESSIONS_OPEN = Gauge(
    "vna_sessions_open", "WebSocket sessions open on this gateway", multiprocess_mode="livesum"
)
GATEWAY_PROCESSES = Gauge(
    "vna_gateway_processes", "gateway processes serving this port", multiprocess_mode="livesum"
)
EVENTS = Counter(
    "vna_ws_events_total", "WebSocket events by direction and type", ["direction", "event"]
)
ERRORS = Counter("vna_errors_total", "error events sent to clients, by code", ["code"])
TURN_LATENCY = Histogram(
    "vna_turn_latency_seconds",
    "End-to-end latency seen at the gateway: input complete -> first audio chunk sent",
    ["source"],  # speech | command
    buckets=VOICE_BUCKETS,
)
END_OF_SPEECH = Counter(
    "vna_end_of_speech_total",
    "spoken requests ended, by the rule that ended them",
    ["rule"],  # complete | unfinished | default (a pause of that length) | is_final
)
PREEMPTIVE_REPLIES = Counter(
    "vna_preemptive_replies_total",
    "replies started during a pause before the end of speech was confirmed",
    ["outcome"],  # started | used | discarded
)
DEVICE_TRANSCRIPTS = Counter(
    "vna_device_transcripts_total",
    "voice_commands by what they were to the utterance in progress",
    ["kind"],  # new | revision | repeat (same words again) | after_end (revised an ended one)
)

# --- stages ----------------------------------------------------------------------------
STAGE_LATENCY = Histogram(
    "vna_stage_latency_seconds",
    "Per-stage latency from the end of the request",
    ["stage", "provider", "measure"],  # transcript_final, first_token, first_sentence, ...
    buckets=VOICE_BUCKETS,
)
JOBS = Counter("vna_jobs_total", "jobs finished by stage and outcome", ["stage", "outcome"])
JOB_SECONDS = Histogram(
    "vna_job_seconds",
    "wall time of one job (one turn of one stage)",
    ["stage"],
    buckets=VOICE_BUCKETS,
)
RECLAIMS = Counter("vna_reclaims_total", "jobs taken over from a dead worker", ["stage"])
DEAD_LETTERS = Counter("vna_dead_letters_total", "jobs moved to the dead-letter stream", ["stage"])
QUEUE_PENDING = Gauge(
    "vna_queue_pending",
    "entries delivered but not acknowledged",
    ["stage"],
    multiprocess_mode="livemostrecent",
)
QUEUE_LAG = Gauge(
    "vna_queue_lag",
    "entries not yet delivered to any consumer",
    ["stage"],
    multiprocess_mode="livemostrecent",
)
CANCELS = Counter(
    "vna_cancels_total", "replies stopped early, by reason (cancel, barge_in)", ["reason"]
)
BARGE_INS = Counter(
    "vna_barge_ins_total",
    "speech over a reply, by what came of it (paused, resumed, cut, echo_rejected)",
    ["outcome"],
)
RESUMES = Counter("vna_resumes_total", "session resume attempts, by outcome", ["outcome"])
CANCELLED_WORK = Counter(
    "vna_cancelled_jobs_total",
    "jobs a worker stopped or skipped because the turn was cancelled",
    ["stage"],
)
PROVIDER_FAILURES = Counter(
    "vna_provider_failures_total", "engine calls that failed", ["stage", "provider"]
)
PROVIDER_FALLBACKS = Counter(
    "vna_provider_fallbacks_total",
    "switches to the next engine of a fallback chain",
    ["stage", "from_provider", "to_provider"],
)


EVENT_COUNTS_DELAY_S = 1.0  # WebSocket events reach ``EVENTS`` this long after at most
_event_counts: dict[tuple[str, str], int] = {}
_event_counts_due: asyncio.TimerHandle | None = None


@functools.lru_cache(maxsize=512)
def _event_counter(direction: str, event: str) -> Any:
    return EVENTS.labels(direction, event)


def count_event(direction: str, event: str) -> None:
    """``EVENTS`` + 1, added up here and handed over once a second (and before every
    ``/metrics`` page of this process): two increments per audio frame, each a label
    lookup, prometheus-client's checks and a lock, cost more than the rest of the
    frame's bookkeeping. Outside an event loop it is counted at once."""
    global _event_counts_due
    key = (direction, event)
    _event_counts[key] = _event_counts.get(key, 0) + 1
    if _event_counts_due is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            flush_event_counts()
            return
        _event_counts_due = loop.call_later(EVENT_COUNTS_DELAY_S, flush_event_counts)


def flush_event_counts() -> None:
    """Hand the WebSocket events counted so far to ``EVENTS`` (from the event loop's
    thread: ``/metrics`` calls it before reading, the gateway when it stops)."""
    global _event_counts_due
    if _event_counts_due is not None:
        _event_counts_due.cancel()
        _event_counts_due = None
    counts = list(_event_counts.items())
    _event_counts.clear()
    for (direction, event), count in counts:
        _event_counter(direction, event).inc(count)


def observe_ms(histogram_child: object, milliseconds: float) -> None:
    """Observe a duration given in ms (the unit of protocol timings) in seconds."""
    histogram_child.observe(max(0.0, milliseconds) / 1000.0)  # type: ignore[attr-defined]


def _registry() -> CollectorRegistry:
    """This process's metrics, or (multiprocess mode) every process's."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def exposition() -> bytes:
    """The ``/metrics`` page: the text format, over all processes in multiprocess mode."""
    return generate_latest(_registry())


def gateway_totals() -> tuple[int, int] | None:
    """(gateway processes running, sessions open on them) over all processes; None when
    this is the only one (it knows its own)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    totals = {"vna_gateway_processes": 0.0, "vna_sessions_open": 0.0}
    for metric in _registry().collect():
        if metric.name in totals:
            totals[metric.name] = sum(sample.value for sample in metric.samples)
    return int(totals["vna_gateway_processes"]), int(totals["vna_sessions_open"])


def serve_metrics(port: int) -> None:
    """Expose this process's metrics on ``port`` (a worker running on its own)."""
    start_http_server(port)
