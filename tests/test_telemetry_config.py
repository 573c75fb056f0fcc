"""Telemetry config: exporters chosen by config, bad values named with the key, and the
otlp_http exporter against a real OTLP/HTTP receiver (protobuf bodies on /v1/traces)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from skinflint.app import App
from skinflint.call import Attribution, Call, Message, ModelKind, ModelSpec, Role, TextPart
from skinflint.config import Settings
from skinflint.errors import ConfigError

CALL = Call(
    model=ModelSpec("small", ModelKind.TIER),
    messages=(Message(Role.USER, (TextPart("a prompt that must not be exported"),)),),
    request_id="req-http-1",
    attribution=Attribution(tenant="acme", team="search", feature="qa"),
)


def test_default_is_the_no_op_api(make_settings: Callable[..., Settings]) -> None:
    with App.open(make_settings()) as app:
        assert isinstance(app.telemetry.tracer_provider, trace.NoOpTracerProvider)
        assert isinstance(app.telemetry.meter_provider, metrics.NoOpMeterProvider)


def test_unknown_exporter_is_a_config_error_naming_the_key(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings("telemetry: {exporter: jaeger}")
    assert "telemetry.exporter" in str(info.value)
    with pytest.raises(ConfigError) as info:
        make_settings("ledger: {retention_days: 0}")
    assert "ledger.retention_days" in str(info.value)


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes, dict[str, str]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_collector() -> Iterator[tuple[list[tuple[str, bytes, dict[str, str]]], int]]:
    received: list[tuple[str, bytes, dict[str, str]]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_otlp_http_exports_spans_to_the_v1_traces_path(
    make_settings: Callable[..., Settings],
    http_collector: tuple[list[tuple[str, bytes, dict[str, str]]], int],
) -> None:
    received, port = http_collector
    settings = make_settings(
        "telemetry:\n"
        "  exporter: otlp_http\n"
        f"  endpoint: http://127.0.0.1:{port}\n"
        "  headers: {x-api-key: k-123}\n"
    )
    app = App.open(settings)
    try:
        with app.telemetry.observe("skinflint.complete", CALL):
            pass
    finally:
        await asyncio.to_thread(app.close)
    traces = [(body, headers) for path, body, headers in received if path == "/v1/traces"]
    assert traces, [path for path, _, _ in received]
    assert {headers.get("x-api-key") for _, headers in traces} == {"k-123"}
    spans = [
        span
        for body, _ in traces
        for rs in trace_service_pb2.ExportTraceServiceRequest.FromString(body).resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    [span] = spans
    assert span.name == "skinflint.complete"
    attributes = {kv.key: kv.value.string_value for kv in span.attributes}
    assert attributes["skinflint.request_id"] == "req-http-1"
    assert attributes["gen_ai.request.model"] == "small"
    assert all(b"must not be exported" not in body for body, _ in traces)
    assert any(path == "/v1/metrics" for path, _, _ in received)


def test_console_exporter_prints_the_span(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    app = App.open(make_settings("telemetry: {exporter: console, metric_interval_s: 3600}"))
    try:
        with app.telemetry.observe("skinflint.complete", CALL):
            pass
    finally:
        app.close()
    out = capsys.readouterr().out
    assert '"name": "skinflint.complete"' in out
    assert '"skinflint.request_id": "req-http-1"' in out
    assert "must not be exported" not in out
