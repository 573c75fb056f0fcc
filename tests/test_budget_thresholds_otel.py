"""Soft thresholds reach OpenTelemetry: a span event on the current span and a counter."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from skinflint.budget_store.memory import MemoryBudgetStore
from skinflint.call import Attribution
from skinflint.pipeline.budget_guard import BudgetGuard, Hold
from skinflint.pipeline.budgets import BudgetSpec, BudgetWindow, parse_scope

ACME = Attribution(tenant="acme", team="search", feature="chat")


async def test_crossings_become_span_events_and_counter_points() -> None:
    reader = InMemoryMetricReader()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tracer_provider.get_tracer("test")
    guard = BudgetGuard(MemoryBudgetStore(), meter_provider=MeterProvider(metric_readers=[reader]))
    await guard.set_budget(
        BudgetSpec(
            id="acme-day",
            scope=parse_scope("tenant:acme"),
            window=BudgetWindow.DAY,
            limit_nanousd=1000,
            soft_thresholds_percent=(50, 80),
        )
    )

    async def spend(rid: str, amount: int) -> None:
        with tracer.start_as_current_span("skinflint.complete"):
            held = await guard.reserve(rid, ACME, nanousd=amount, tokens=0, ttl_s=60)
            assert isinstance(held, Hold)
            await guard.commit(held, nanousd=amount, tokens=0)

    await spend("a", 400)  # 40 %: nothing
    await spend("b", 450)  # 85 %: crosses 50 and 80 in one commit
    await spend("c", 50)  # 90 %: nothing new

    spans = exporter.get_finished_spans()
    events = [[e for e in s.events if e.name == "skinflint.budget.soft_threshold"] for s in spans]
    assert [len(e) for e in events] == [0, 2, 0]
    crossed = events[1]
    assert [e.attributes["skinflint.budget.threshold_percent"] for e in crossed] == [50, 80]
    assert {e.attributes["skinflint.budget.id"] for e in crossed} == {"acme-day"}
    assert {e.attributes["skinflint.budget.spent"] for e in crossed} == {850}
    assert {e.attributes["skinflint.budget.limit"] for e in crossed} == {1000}

    data = reader.get_metrics_data()
    points = [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "skinflint.budget.soft_threshold_crossings"
        for point in metric.data.data_points
    ]
    by_percent = {p.attributes["skinflint.budget.threshold_percent"]: p.value for p in points}
    assert by_percent == {50: 1, 80: 1}
    assert {p.attributes["skinflint.budget.limit_kind"] for p in points} == {"nanousd"}
