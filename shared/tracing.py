"""Optional OpenTelemetry traces: one trace per turn, across the gateway and the workers.

On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (and ``OTEL_SDK_DISABLED`` is not true);
the ``tracing`` extra brings the packages. Off, no OpenTelemetry module is imported and
every hook in the hot paths is one ``is None`` test (its cost is measured in
docs/tracing.md). On, each service (gateway, asr, llm, tts) has its own tracer provider
with ``service.name`` ``voice-agent-<service>`` (or ``OTEL_SERVICE_NAME``) and the
resource attribute ``voice_agent.service``, so ``voice-agent up``, which runs all four in
one process, still shows four services. The SDK's own variables apply as usual
(``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
``OTEL_BSP_SCHEDULE_DELAY``, ``OTEL_TRACES_SAMPLER``, ...).

A turn's spans: the gateway's ``turn`` (its first frame or command until its reply has
been sent), with ``gateway receive`` (until its job was published), ``end of speech``
(the silence that ended the utterance) and ``gateway relay`` (the reply's events to the
socket); each worker's ``<stage> job`` and ``<stage> first output`` (job start until the
first partial, token or audio chunk). The context travels in the jobs (``trace``, a W3C
``traceparent``): the gateway's turn is the parent of the ASR (or LLM) job, each job the
parent of the job it hands on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger(__name__)

TURNS_OPEN_LIMIT = 64  # a session's turns with open spans; beyond, the oldest are ended
EXPORT_WARNING_EVERY_S = 60.0  # a collector that does not answer: one line this often
_EXPORTER_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"

_tracers: dict[str, ServiceTracer] = {}
_lock = threading.Lock()


def tracer_for(settings: Settings, service: str) -> ServiceTracer | None:
    """The tracer of ``service`` in this process; None when tracing is off."""
    if not settings.tracing:
        return None
    with _lock:
        tracer = _tracers.get(service)
        if tracer is None:
            tracer = _tracers[service] = ServiceTracer(settings, service)
        return tracer


def flush() -> None:
    """Export every finished span now (tests; the providers also flush at exit)."""
    for tracer in list(_tracers.values()):
        tracer.provider.force_flush()


def _traces_url(settings: Settings) -> str | None:
    """``OTEL_EXPORTER_OTLP_ENDPOINT`` is the collector's base URL (the standard's
    meaning); a traces-specific endpoint in the environment wins, as in the SDK."""
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return None  # the exporter reads it itself
    return settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"


class _OneLineExportErrors(logging.Filter):
    """The exporter logs every failed try of every batch (three retries, then an error):
    a collector that is down is said in one line a minute instead."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._next = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if record.levelno < logging.WARNING or now < self._next:
            return record.levelno < logging.WARNING
        self._next = now + EXPORT_WARNING_EVERY_S
        record.msg = "traces not sent: no answer from %s (OTEL_EXPORTER_OTLP_ENDPOINT); "
        record.msg += "spans are dropped until it answers"
        record.args = (self._url,)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        return True


class ServiceTracer:
    """One service's tracer provider, exporting in batches over OTLP/HTTP (protobuf)."""

    def __init__(self, settings: Settings, service: str) -> None:
        from opentelemetry.context import Context
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import SpanKind, set_span_in_context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.service = service
        name = settings.otel_service_name or f"voice-agent-{service}"
        resource = Resource.create({"service.name": name, "voice_agent.service": service})
        self.provider = TracerProvider(resource=resource)
        url = _traces_url(settings)
        exporter = OTLPSpanExporter(endpoint=url)
        logger = logging.getLogger(_EXPORTER_LOGGER)
        if not any(isinstance(f, _OneLineExportErrors) for f in logger.filters):
            logger.addFilter(_OneLineExportErrors(url or "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self.provider.get_tracer("voice_agent")
        self._propagator = TraceContextTextMapPropagator()
        self._in_context = set_span_in_context
        self._no_parent = Context()  # never the ambient context: a turn is its own trace
        self.kinds = SpanKind
        target = url or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        log.info("traces of %s go to %s", name, target)

    def start(
        self,
        name: str,
        parent: Any = None,
        start_ns: int | None = None,
        kind: Any = None,
        **attributes: Any,
    ) -> Any:
        """A started span, child of ``parent`` (a span, or None for a new trace)."""
        context = self._in_context(parent) if parent is not None else self._no_parent
        return self._tracer.start_span(
            name,
            context=context,
            kind=kind or self.kinds.INTERNAL,
            attributes=attributes,
            start_time=start_ns,
        )

    def traceparent(self, span: Any) -> str:
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=self._in_context(span))
        return carrier.get("traceparent", "")

    def parent_of(self, traceparent: str) -> Any:
        """The remote span a job's ``trace`` names, as a parent (None: a new trace)."""
        if not traceparent:
            return None
        from opentelemetry.trace import get_current_span

        context = self._propagator.extract({"traceparent": traceparent})
        span = get_current_span(context)
        return span if span.get_span_context().is_valid else None

    def job(self, job: Any, deliveries: int) -> JobSpan:
        return JobSpan(self, job, deliveries)


class JobSpan:
    """A worker's span for one job, and its first output's."""

    __slots__ = ("_first_done", "_span", "_tracer", "traceparent")

    def __init__(self, tracer: ServiceTracer, job: Any, deliveries: int) -> None:
        self._tracer = tracer
        self._span = tracer.start(
            f"{tracer.service} job",
            tracer.parent_of(getattr(job, "trace", "")),
            kind=tracer.kinds.CONSUMER,
            **{
                "session.id": getattr(job, "session_id", ""),
                "turn.id": getattr(job, "turn_id", ""),
                "job.deliveries": deliveries,
            },
        )
        self._first_done = False
        self.traceparent = tracer.traceparent(self._span)  # for the job handed on

    def first_output(self, what: str) -> None:
        """The job's first partial / token / audio chunk: a span from the job's start."""
        if self._first_done:
            return
        self._first_done = True
        span = self._tracer.start(
            f"{self._tracer.service} first output",
            self._span,
            start_ns=getattr(self._span, "start_time", None),  # None: not sampled
            output=what,
        )
        span.end()

    def end(self, outcome: str) -> None:
        self._span.set_attribute("job.outcome", outcome)
        self._span.end()


@dataclass
class _Turn:
    root: Any
    receive: Any | None
    relay: Any | None = None


class TurnSpans:
    """The gateway's open spans of one session's turns."""

    def __init__(self, tracer: ServiceTracer, session_id: str) -> None:
        self._tracer = tracer
        self._session_id = session_id
        self._turns: dict[str, _Turn] = {}

    def begin(self, turn_id: str, source: str) -> str:
        """A turn's first frame or command: its trace starts; returns its traceparent."""
        tracer = self._tracer
        attributes = {"session.id": self._session_id, "turn.id": turn_id, "turn.source": source}
        root = tracer.start("turn", kind=tracer.kinds.SERVER, **attributes)
        receive = tracer.start("gateway receive", root, start_ns=getattr(root, "start_time", None))
        if len(self._turns) >= TURNS_OPEN_LIMIT:
            self.finish(next(iter(self._turns)), "forgotten")
        self._turns[turn_id] = _Turn(root, receive)
        return tracer.traceparent(root)

    def received(self, turn_id: str) -> None:
        """The turn's job is published."""
        turn = self._turns.get(turn_id)
        if turn is not None and turn.receive is not None:
            turn.receive.end()
            turn.receive = None

    def traceparent(self, turn_id: str) -> str:
        turn = self._turns.get(turn_id)
        return self._tracer.traceparent(turn.root) if turn is not None else ""

    def end_of_speech(self, turn_id: str, timings: dict[str, object]) -> None:
        """The utterance ended: a span over the silence that ended it."""
        turn = self._turns.get(turn_id)
        if turn is None:
            return
        now = time.time_ns()
        silence_ms = timings.get("end_of_speech_silence_ms") or 0
        span = self._tracer.start(
            "end of speech",
            turn.root,
            start_ns=now - int(float(silence_ms) * 1_000_000),  # type: ignore[arg-type]
            **{"end_of_speech.rule": str(timings.get("end_of_speech_rule", ""))},
        )
        span.end(end_time=now)

    def relaying(self, turn_id: str) -> None:
        """One of the reply's events went to the socket (the first starts the relay)."""
        turn = self._turns.get(turn_id)
        if turn is not None and turn.relay is None:
            turn.relay = self._tracer.start("gateway relay", turn.root)

    def finish(self, turn_id: str, outcome: str, chunks_sent: int = 0) -> None:
        """The turn's reply has been sent (or cut off): its spans end."""
        turn = self._turns.pop(turn_id, None)
        if turn is None:
            return
        if turn.receive is not None:
            turn.receive.end()
        if turn.relay is not None:
            turn.relay.set_attribute("reply.chunks_sent", chunks_sent)
            turn.relay.end()
        turn.root.set_attribute("turn.outcome", outcome)
        turn.root.end()

    def close(self) -> None:
        """The connection ended: what is still open ends with it."""
        for turn_id in list(self._turns):
            self.finish(turn_id, "disconnected")
