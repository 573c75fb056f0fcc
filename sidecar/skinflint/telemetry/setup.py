"""Tracer and meter providers from ``telemetry`` config: the exporter choice lives here only.

``exporter: none`` returns the API's no-op providers: no SDK object is built and a span costs
a few attribute calls into nothing. The others build SDK providers with a batch span processor
and a periodic metric reader (export happens off the request path, in the SDK's threads).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace

from skinflint import __version__
from skinflint.config import TelemetryConfig


@dataclass(frozen=True, slots=True)
class Providers:
    tracer_provider: trace.TracerProvider
    meter_provider: metrics.MeterProvider
    #: Whether ``shutdown`` has work to do (SDK providers flush their exporters).
    sdk: bool


def build_providers(cfg: TelemetryConfig) -> Providers:
    if cfg.exporter == "none":
        return Providers(trace.NoOpTracerProvider(), metrics.NoOpMeterProvider(), sdk=False)
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    span_exporter, metric_exporter = _exporters(cfg)
    resource = Resource.create({"service.name": cfg.service_name, "service.version": __version__})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    reader = PeriodicExportingMetricReader(
        metric_exporter, export_interval_millis=cfg.metric_interval_s * 1000
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    return Providers(tracer_provider, meter_provider, sdk=True)


def _exporters(cfg: TelemetryConfig) -> tuple[Any, Any]:
    headers = dict(cfg.headers) or None
    timeout = cfg.export_timeout_s
    if cfg.exporter == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # The stdout of now: the SDK's default argument is the one it had at import.
        return ConsoleSpanExporter(out=sys.stdout), ConsoleMetricExporter(out=sys.stdout)
    if cfg.exporter == "otlp_grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return (
            GrpcSpanExporter(
                endpoint=cfg.endpoint, insecure=cfg.insecure, headers=headers, timeout=timeout
            ),
            GrpcMetricExporter(
                endpoint=cfg.endpoint, insecure=cfg.insecure, headers=headers, timeout=timeout
            ),
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    base = cfg.endpoint.rstrip("/") if cfg.endpoint else None
    return (
        HttpSpanExporter(
            endpoint=f"{base}/v1/traces" if base else None, headers=headers, timeout=timeout
        ),
        HttpMetricExporter(
            endpoint=f"{base}/v1/metrics" if base else None, headers=headers, timeout=timeout
        ),
    )


def shutdown(providers: Providers) -> None:
    """Flush and stop the SDK providers (exports what is pending)."""
    if not providers.sdk:
        return
    for provider in (providers.tracer_provider, providers.meter_provider):
        provider.shutdown()  # type: ignore[attr-defined]
