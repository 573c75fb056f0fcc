"""The caller's trace context from gRPC metadata (W3C ``traceparent`` / ``tracestate``).

The transport is the only layer that sees metadata: it extracts the remote parent and attaches
it as the current OpenTelemetry context for the RPC, so the App's span is the caller's child
without the App or the pipeline knowing about gRPC.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


def remote_parent(context: Any) -> otel_context.Context:
    """The context the caller sent (an empty one when it sent no valid ``traceparent``)."""
    carrier = {
        key: value
        for key, value in (context.invocation_metadata() or ())
        if isinstance(value, str) and key in _PROPAGATOR.fields
    }
    return _PROPAGATOR.extract(carrier)


@contextlib.contextmanager
def caller_trace(context: Any) -> Iterator[None]:
    """Make the caller's trace the current context for the body (detached on exit)."""
    token = otel_context.attach(remote_parent(context))
    try:
        yield
    finally:
        otel_context.detach(token)
