"""``Telemetry``: the App's one handle on OpenTelemetry (spans per call, metrics, shutdown).

``observe(name, call)`` wraps one operation in a span that is the current span while it runs
(so budget threshold events and dispatch's retry/fallback events land on it) and a child of
whatever context is current when it starts: the transport attaches the caller's
``traceparent`` there, so nothing below the transport knows about gRPC. The caller sets
``observation.completion`` once it has the answer; on leaving, the span gets the answer's
attributes (or ERROR with the status code name) and the metrics get one point each.

Providers are injected (``Telemetry(tracer_provider, meter_provider)``): the App builds them
from config (``from_config``), tests hand in SDK providers with in-memory exporters.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

from skinflint import __version__
from skinflint.call import Call
from skinflint.config import TelemetryConfig
from skinflint.errors import ResourceExhausted, SkinflintError
from skinflint.telemetry import attributes as attr
from skinflint.telemetry import content, events
from skinflint.telemetry.setup import Providers, build_providers, shutdown

if TYPE_CHECKING:
    from skinflint.pipeline.complete import Completion

#: Cache statuses that mean "answered from the response cache".
_HIT_STATUSES = frozenset({"exact", "coalesced", "semantic"})

_TOKEN_KINDS = (
    ("input", "input_tokens"),
    ("output", "output_tokens"),
    ("cache_read", "cache_read_tokens"),
    ("cache_write_5m", "cache_write_5m_tokens"),
    ("cache_write_1h", "cache_write_1h_tokens"),
    ("reasoning", "reasoning_tokens"),
)


@dataclass(slots=True)
class Observation:
    """One observed operation; set ``completion`` when the answer is known."""

    span: trace.Span
    call: Call | None
    metered: bool
    completion: Completion | None = None
    started: float = field(default_factory=time.perf_counter)


def status_name(exc: BaseException) -> str:
    """The gRPC status code name an exception ends the call with."""
    if isinstance(exc, SkinflintError):
        return exc.code.name
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return "INTERNAL"


class Telemetry:
    def __init__(
        self,
        tracer_provider: trace.TracerProvider,
        meter_provider: metrics.MeterProvider,
        *,
        capture_content: bool = False,
        providers: Providers | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.capture_content = capture_content
        self._providers = providers
        #: With the API's no-op meter there is nothing to record: skip building attributes.
        self._metering = not isinstance(meter_provider, metrics.NoOpMeterProvider)
        #: With the API's no-op tracer a span is never recorded: skip making one (and the
        #: transport skips attaching the caller's trace context).
        self.tracing = not isinstance(tracer_provider, trace.NoOpTracerProvider)
        #: Anything to record at all (false with the default exporter ``none``): callers on
        #: the hot path may skip ``observe`` entirely.
        self.active = self.tracing or self._metering
        self._tracer = tracer_provider.get_tracer("skinflint", __version__)
        meter = meter_provider.get_meter("skinflint", __version__)
        self._requests = meter.create_counter(
            "skinflint.requests", unit="{request}", description="Finished calls, by outcome"
        )
        self._cost = meter.create_counter(
            "skinflint.cost", unit="{nanousd}", description="Billed cost (nano-USD)"
        )
        self._baseline = meter.create_counter(
            "skinflint.baseline_cost",
            unit="{nanousd}",
            description="What the calls would have cost on the baseline model (nano-USD)",
        )
        # Up-down: a lever can cost money (a prompt-cache write premium), and the sum of the
        # levers must stay equal to baseline - cost.
        self._savings = meter.create_up_down_counter(
            "skinflint.savings", unit="{nanousd}", description="Savings by lever (nano-USD)"
        )
        self._tokens = meter.create_counter(
            "skinflint.tokens", unit="{token}", description="Tokens by kind"
        )
        self._cache_hits = meter.create_counter(
            "skinflint.cache.hits", unit="{hit}", description="Response-cache hits by kind"
        )
        self._duration = meter.create_histogram(
            "skinflint.request.duration", unit="s", description="Time to the full answer"
        )
        self._cost_per_call = meter.create_histogram(
            "skinflint.request.cost", unit="{nanousd}", description="Cost per call (nano-USD)"
        )

    @classmethod
    def from_config(cls, cfg: TelemetryConfig) -> Telemetry:
        providers = build_providers(cfg)
        return cls(
            providers.tracer_provider,
            providers.meter_provider,
            capture_content=cfg.capture_content,
            providers=providers,
        )

    @classmethod
    def disabled(cls) -> Telemetry:
        return cls(trace.NoOpTracerProvider(), metrics.NoOpMeterProvider())

    def shutdown(self) -> None:
        """Export what is pending and stop (providers built here only; injected ones are
        the injector's to shut down)."""
        providers, self._providers = self._providers, None
        if providers is not None:
            shutdown(providers)

    @contextlib.contextmanager
    def observe(
        self, name: str, call: Call | None = None, *, metered: bool = True
    ) -> Iterator[Observation]:
        """A span around one operation (see the module docstring)."""
        spanned = (
            self._tracer.start_as_current_span(
                name,
                kind=trace.SpanKind.SERVER,
                record_exception=False,
                set_status_on_exception=False,
            )
            if self.tracing
            else contextlib.nullcontext(trace.INVALID_SPAN)
        )
        with spanned as span:
            observation = Observation(span, call, self._metering and metered and call is not None)
            if call is not None and span.is_recording():
                span.set_attributes(attr.call_attributes(call))
                if self.capture_content:
                    span.set_attributes(content.input_attributes(call))
            outcome = "OK"
            try:
                yield observation
            except BaseException as exc:
                outcome = status_name(exc)
                self._failed(span, exc, outcome)
                raise
            finally:
                self._finish(observation, outcome)

    def _failed(self, span: trace.Span, exc: BaseException, code: str) -> None:
        span.set_status(Status(StatusCode.ERROR, code))
        span.set_attribute(attr.ERROR_TYPE, code)
        if isinstance(exc, ResourceExhausted):
            span.add_event(
                events.BUDGET_REJECTED,
                {"skinflint.budget.id": exc.budget_id, "skinflint.budget.scope": exc.scope},
            )
        if isinstance(exc, SkinflintError):
            # The caller-facing message: it names fields and budgets, never prompts or keys.
            span.add_event(
                "exception",
                {"exception.type": type(exc).__name__, "exception.message": exc.message},
            )

    def _finish(self, observation: Observation, outcome: str) -> None:
        span, call, completion = observation.span, observation.call, observation.completion
        # A stream can end in error after its answer was complete (the client went away):
        # the answer was billed, so its figures are recorded all the same.
        if completion is not None and span.is_recording():
            span.set_attributes(attr.completion_attributes(completion))
            if self.capture_content:
                span.set_attributes(content.output_attributes(completion.content))
            if outcome == "OK":
                span.set_status(Status(StatusCode.OK))
        if not observation.metered or call is None:
            return
        elapsed = time.perf_counter() - observation.started
        dims = attr.metric_attributes(call, completion, outcome)
        self._requests.add(1, dims)
        self._duration.record(elapsed, dims)
        if completion is None:
            return
        bill, usage = completion.bill, completion.usage
        self._cost.add(bill.cost_nanousd, dims)
        self._baseline.add(bill.baseline_cost_nanousd, dims)
        self._cost_per_call.record(bill.cost_nanousd, dims)
        status = completion.served.cache_status.value
        if status in _HIT_STATUSES:
            self._cache_hits.add(1, dims)
        else:
            # Provider-billed tokens only: a hit replays an answer and bills none.
            for kind, name in _TOKEN_KINDS:
                count = getattr(usage, name)
                if count:
                    self._tokens.add(count, {**dims, attr.TOKEN_KIND: kind})
        for lever in attr.LEVERS:
            amount = getattr(bill.savings, lever)
            if amount:
                self._savings.add(amount, {**dims, attr.SAVINGS_LEVER: lever})
