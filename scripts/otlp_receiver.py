"""A small real OTLP/HTTP trace receiver for the tests and the benchmark (loopback only).

It accepts `POST /v1/traces` with a protobuf `ExportTraceServiceRequest` (decoded with `opentelemetry-proto`),
keeps every span it accepted, and can refuse the next N requests with a status (503 by default, with
`Retry-After: 0` so the SDK's own retries do not wait). Gzip and deflate bodies are inflated.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

TRACES_PATH = "/v1/traces"


def attribute_value(value: AnyValue) -> Any:
    """A protobuf attribute value as Python (str, bool, int, float; arrays as lists)."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [attribute_value(v) for v in value.array_value.values]
    return None if kind is None else getattr(value, kind)


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as received: hex ids (parent "" for a root), times in ns, attributes decoded."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    resource: dict[str, Any]
    scope: str

    @classmethod
    def of(cls, span: Span, resource: dict[str, Any], scope: str) -> ReceivedSpan:
        return cls(
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex(),
            name=span.name,
            kind=span.kind,
            start_ns=span.start_time_unix_nano,
            end_ns=span.end_time_unix_nano,
            attributes={a.key: attribute_value(a.value) for a in span.attributes},
            status_code=span.status.code,
            status_message=span.status.message,
            resource=resource,
            scope=scope,
        )


class OtlpReceiver:
    """The receiver's state: accepted spans (in arrival order), request counts, and refusals still to give."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.refused = 0
        self.headers: list[dict[str, str]] = []
        self._refuse = 0
        self._refuse_status = 503
        self.server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        """The full traces URL to export to."""
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{TRACES_PATH}"

    def refuse_next(self, count: int, status: int = 503) -> None:
        """Answer the next `count` requests with `status` (and accept nothing from them)."""
        with self.lock:
            self._refuse = count
            self._refuse_status = status

    def distinct_span_ids(self) -> set[tuple[str, str]]:
        """(trace id, span id) of every span accepted, duplicates collapsed."""
        with self.lock:
            return {(s.trace_id, s.span_id) for s in self.spans}

    def snapshot(self) -> list[ReceivedSpan]:
        """The spans accepted so far."""
        with self.lock:
            return list(self.spans)

    def receive(self, body: bytes, headers: dict[str, str]) -> int:
        """Handle one request's body; returns the HTTP status to answer."""
        with self.lock:
            self.requests += 1
            self.headers.append(headers)
            if self._refuse > 0:
                self._refuse -= 1
                self.refused += 1
                return self._refuse_status
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        received = []
        for rs in request.resource_spans:
            resource = {a.key: attribute_value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                received += [ReceivedSpan.of(span, resource, ss.scope.name) for span in ss.spans]
        with self.lock:
            self.spans += received
        return 200


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != TRACES_PATH:
                self.send_error(404)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = self.headers.get("Content-Encoding", "")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            status = receiver.receive(body, {k.lower(): v for k, v in self.headers.items()})
            payload = ExportTraceServiceResponse().SerializeToString() if status == 200 else b""
            self.send_response(status)
            if status != 200:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read the receiver's state, not its log."""

    return Handler


@contextmanager
def running_receiver() -> Iterator[OtlpReceiver]:
    """A receiver serving on a free loopback port for the duration of the block."""
    receiver = OtlpReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.server = server
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="otlp-receiver", daemon=True
    )
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
