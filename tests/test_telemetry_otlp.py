"""The otlp_grpc exporter against a real OTLP receiver started here (the opentelemetry-proto
collector services on a grpc server): the attributes that arrive, and what never does."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from complete_fixtures import ANTHROPIC_KEY, RigFactory, request
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

PROMPT = "What is the capital of France?"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class Receiver(
    trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer
):
    def __init__(self) -> None:
        self.traces: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            self.headers.append({k: v for k, v in context.invocation_metadata()})
            if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
                self.traces.append(request)
                return trace_service_pb2.ExportTraceServiceResponse()
            self.metrics.append(request)
            return metrics_service_pb2.ExportMetricsServiceResponse()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    """A real OTLP/gRPC receiver on a thread pool (the exporter calls it from its own thread)."""
    found = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(found, server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(found, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield found, port
    finally:
        server.stop(None)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _attrs(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


async def test_spans_and_metrics_arrive_at_a_real_otlp_receiver(
    start_rig: RigFactory, receiver: tuple[Receiver, int]
) -> None:
    found, port = receiver
    rig = await start_rig(
        "telemetry:\n"
        "  exporter: otlp_grpc\n"
        f"  endpoint: 127.0.0.1:{port}\n"
        "  insecure: true\n"
        "  service_name: skinflint-under-test\n"
        "  headers: {x-collector-token: abc123}\n"
    )
    metadata = (("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"),)
    response = await rig.stub.Complete(request("small", text=PROMPT), metadata=metadata)
    hit = await rig.stub.Complete(request("small", text=PROMPT))
    # Shutting down flushes the batch span processor and the periodic metric reader.
    await asyncio.to_thread(rig.app.telemetry.shutdown)

    spans = [
        (_attrs(rs.resource.attributes), span)
        for req in found.traces
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    completes = [(res, s) for res, s in spans if s.name == "skinflint.complete"]
    assert len(completes) == 2
    resource, miss_span = completes[0]
    assert resource["service.name"] == "skinflint-under-test"
    a = _attrs(miss_span.attributes)
    assert miss_span.trace_id.hex() == CALLER_TRACE
    assert miss_span.parent_span_id.hex() == CALLER_SPAN
    assert a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.response.model"] == "claude-haiku-4-5"
    assert a["gen_ai.usage.output_tokens"] == response.usage.output_tokens
    assert a["skinflint.cost_nanousd"] == response.cost_nanousd
    assert a["skinflint.baseline_cost_nanousd"] == response.baseline_cost_nanousd
    assert a["skinflint.cache.status"] == "miss"
    assert a["skinflint.feature"] == "qa"
    hit_attrs = _attrs(completes[1][1].attributes)
    assert hit_attrs["skinflint.cache.status"] == "exact"
    assert hit_attrs["skinflint.cost_nanousd"] == hit.cost_nanousd == 0
    assert {h.get("x-collector-token") for h in found.headers} == {"abc123"}

    wire = b"".join(req.SerializeToString() for req in found.traces)
    assert PROMPT.encode() not in wire
    assert ANTHROPIC_KEY.encode() not in wire
    assert response.content[0].text.text.encode() not in wire

    sums: dict[tuple[str, str], int] = {}
    for req in found.metrics:
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.WhichOneof("data") != "sum":
                        continue
                    for point in metric.sum.data_points:
                        status = _attrs(point.attributes).get("skinflint.cache.status", "")
                        key = (metric.name, status)
                        sums[key] = max(sums.get(key, 0), point.as_int)
    assert sums[("skinflint.cost", "miss")] == response.cost_nanousd
    assert sums[("skinflint.requests", "miss")] == 1
    assert sums[("skinflint.requests", "exact")] == 1
    assert sums[("skinflint.cache.hits", "exact")] == 1
