"""A local OTLP/HTTP trace receiver: what a collector does with ``POST /v1/traces``.

It speaks the real protocol: the body is a protobuf ``ExportTraceServiceRequest``
(gzip-compressed when the exporter says so), decoded with opentelemetry-proto's own
classes, answered with an ``ExportTraceServiceResponse``. Spans are kept flat, with their
resource's ``service.name``; tests wait on ``wait_for`` (a condition, not a sleep).
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    service: str  # the resource's service.name
    resource: dict[str, Any]
    attributes: dict[str, Any]
    start_ns: int
    end_ns: int


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def _attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


@dataclass
class OtlpReceiver:
    url: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        received = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.name,
                            str(resource.get("service.name", "")),
                            resource,
                            _attributes(span.attributes),
                            span.start_time_unix_nano,
                            span.end_time_unix_nano,
                        )
                    )
        with self._changed:
            self.spans.extend(received)
            self.requests += 1
            self._changed.notify_all()

    def wait_for(self, found: Callable[[list[ReceivedSpan]], Any], timeout: float = 60.0) -> Any:
        """Wait until ``found(spans)`` is truthy and return it (``timeout``: only a bound
        for a broken build, the test's own timeout is the real one)."""
        with self._changed:
            result = self._changed.wait_for(lambda: found(list(self.spans)), timeout)
        if not result:
            names = sorted({(s.service, s.name) for s in self.spans})
            raise AssertionError(f"no such spans after {timeout:.0f} s; received {names}")
        return result

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._changed:
            return [s for s in self.spans if s.trace_id == trace_id]


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.headers.get("Content-Type") != "application/x-protobuf":
                self.send_error(415, "OTLP/HTTP protobuf expected")
                return
            receiver.add(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_args: object) -> None:
            pass

    return Handler


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A receiver on a free loopback port; ``url`` is the OTLP base URL (no path)."""
    receiver = OtlpReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
