"""Spans and metrics of real calls (gRPC -> pipeline -> emulators) read back from the SDK's
in-memory exporter and metric reader: a miss, a hit, a fallback, a budget rejection, a stream,
the caller's traceparent, and what must never appear in a span."""

from __future__ import annotations

import json

import grpc
import pytest
from complete_fixtures import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    Rig,
    RigFactory,
    request,
)
from opentelemetry.trace import StatusCode
from telemetry_fixtures import Captured, in_memory_telemetry

from skinflint.emulators import Fault
from skinflint.v1 import skinflint_pb2 as pb

PROMPT = "What is the capital of France?"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


async def observed(
    start_rig: RigFactory, extra: str = "", *, capture_content: bool = False
) -> tuple[Rig, Captured]:
    rig = await start_rig(extra)
    captured = in_memory_telemetry(capture_content=capture_content)
    rig.app.telemetry = captured.telemetry
    return rig, captured


def everything_in(captured: Captured) -> str:
    """Every attribute and event of every finished span, as one string."""
    dump = []
    for span in captured.spans.get_finished_spans():
        dump.append(json.dumps(dict(span.attributes or {}), default=str))
        dump.append(span.status.description or "")
        for event in span.events:
            dump.append(event.name + json.dumps(dict(event.attributes or {}), default=str))
    return "\n".join(dump)


async def test_miss_span_has_gen_ai_and_cost_attributes_and_metrics(
    start_rig: RigFactory,
) -> None:
    rig, captured = await observed(start_rig)
    response = await rig.stub.Complete(request("small"))
    [span] = captured.finished("skinflint.complete")
    a = span.attributes or {}
    assert span.status.status_code is StatusCode.OK
    assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "anthropic"
    assert a["gen_ai.request.model"] == "small"
    assert a["gen_ai.response.model"] == response.served_by.model == "claude-haiku-4-5"
    usage = response.usage
    prompt = (
        usage.input_tokens
        + usage.cache_read_tokens
        + usage.cache_write_5m_tokens
        + usage.cache_write_1h_tokens
    )
    assert a["gen_ai.usage.input_tokens"] == prompt > 0
    assert a["gen_ai.usage.output_tokens"] == usage.output_tokens > 0
    assert a["gen_ai.usage.cache_read.input_tokens"] == usage.cache_read_tokens
    assert a["skinflint.cost_nanousd"] == response.cost_nanousd > 0
    assert a["skinflint.baseline_cost_nanousd"] == response.baseline_cost_nanousd
    assert a["skinflint.savings.routing_nanousd"] == response.savings.routing_nanousd
    assert a["skinflint.savings.total_nanousd"] == response.savings.total_nanousd
    assert a["skinflint.cache.status"] == "miss"
    assert (a["skinflint.tier"], a["skinflint.lane"]) == ("small", "interactive")
    assert a["skinflint.route.reason"] == response.served_by.route_reason
    assert (a["skinflint.tenant"], a["skinflint.team"], a["skinflint.feature"]) == (
        "acme",
        "search",
        "qa",
    )
    assert a["skinflint.request_id"] == response.request_id

    dims = {"skinflint.feature": "qa", "skinflint.cache.status": "miss"}
    assert captured.total("skinflint.requests", **dims, **{"skinflint.outcome": "OK"}) == 1
    assert captured.total("skinflint.cost", **dims) == response.cost_nanousd
    assert captured.total("skinflint.baseline_cost", **dims) == response.baseline_cost_nanousd
    assert captured.total("skinflint.tokens", **{"skinflint.token.kind": "output"}) == (
        usage.output_tokens
    )
    assert captured.total("skinflint.savings", **{"skinflint.savings.lever": "routing"}) == (
        response.savings.routing_nanousd
    )
    assert captured.total("skinflint.cache.hits") == 0
    [duration] = captured.points("skinflint.request.duration")
    assert duration.count == 1
    [cost] = captured.points("skinflint.request.cost")
    assert (cost.count, cost.sum) == (1, response.cost_nanousd)


async def test_hit_span_and_metrics_show_zero_cost_and_the_cache_saving(
    start_rig: RigFactory,
) -> None:
    rig, captured = await observed(start_rig)
    first = await rig.stub.Complete(request("small"))
    hit = await rig.stub.Complete(request("small"))
    assert hit.served_by.cache_status == pb.CACHE_STATUS_EXACT
    spans = captured.finished("skinflint.complete")
    assert len(spans) == 2
    a = spans[1].attributes or {}
    assert a["skinflint.cache.status"] == "exact"
    assert a["skinflint.cost_nanousd"] == 0
    assert a["skinflint.savings.response_cache_nanousd"] == first.cost_nanousd > 0
    assert a["skinflint.attempts"] == 0
    assert captured.total("skinflint.cache.hits", **{"skinflint.cache.status": "exact"}) == 1
    assert captured.total("skinflint.requests") == 2
    assert captured.total("skinflint.cost") == first.cost_nanousd
    # Tokens count what providers billed: the hit adds none.
    assert captured.total("skinflint.tokens", **{"skinflint.token.kind": "output"}) == (
        first.usage.output_tokens
    )
    assert captured.total("skinflint.savings", **{"skinflint.savings.lever": "response_cache"}) == (
        first.cost_nanousd
    )


async def test_fallback_is_a_span_event_and_the_served_model_is_the_fallback(
    start_rig: RigFactory,
) -> None:
    rig, captured = await observed(start_rig)
    rig.anthropic.faults.add(Fault(status=529))
    response = await rig.stub.Complete(request("small"))
    [span] = captured.finished("skinflint.complete")
    a = span.attributes or {}
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.response.model"] == "gpt-4o-mini"
    assert a["skinflint.attempts"] == 2
    names = [e.name for e in span.events]
    assert names == ["skinflint.provider.attempt_failed", "skinflint.fallback"]
    failed, fallback = span.events
    assert failed.attributes["http.response.status_code"] == 529
    assert failed.attributes["skinflint.model"] == "anthropic/claude-haiku-4-5"
    assert fallback.attributes["skinflint.fallback.from"] == "anthropic/claude-haiku-4-5"
    assert fallback.attributes["skinflint.fallback.to"] == "openai/gpt-4o-mini"
    assert captured.total("skinflint.cost", **{"skinflint.model": "openai/gpt-4o-mini"}) == (
        response.cost_nanousd
    )


async def test_retry_is_a_span_event(start_rig: RigFactory) -> None:
    rig, captured = await observed(start_rig)
    rig.anthropic.faults.add(Fault(status=500))
    await rig.stub.Complete(request("anthropic/claude-haiku-4-5"))
    [span] = captured.finished("skinflint.complete")
    names = [e.name for e in span.events]
    assert names == ["skinflint.provider.attempt_failed", "skinflint.retry"]
    assert span.events[1].attributes["skinflint.model"] == "anthropic/claude-haiku-4-5"


async def test_budget_rejection_is_an_error_span_and_a_rejected_request_metric(
    start_rig: RigFactory,
) -> None:
    rig, captured = await observed(start_rig)
    await rig.stub.SetBudget(
        pb.SetBudgetRequest(
            budget=pb.BudgetSpec(
                id="acme-tiny", scope="tenant:acme", window=pb.BUDGET_WINDOW_DAY, limit_nanousd=1
            )
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request("small"))
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    [span] = captured.finished("skinflint.complete")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "RESOURCE_EXHAUSTED"
    a = span.attributes or {}
    assert a["error.type"] == "RESOURCE_EXHAUSTED"
    assert "skinflint.cost_nanousd" not in a
    [rejected] = [e for e in span.events if e.name == "skinflint.budget.rejected"]
    assert rejected.attributes["skinflint.budget.id"] == "acme-tiny"
    assert rejected.attributes["skinflint.budget.scope"] == "tenant:acme"
    outcome = {"skinflint.outcome": "RESOURCE_EXHAUSTED", "skinflint.feature": "qa"}
    assert captured.total("skinflint.requests", **outcome) == 1
    assert captured.total("skinflint.requests", **{"skinflint.outcome": "OK"}) == 0
    assert captured.points("skinflint.cost") == []
    # The budget RPC has its own span.
    [set_span] = captured.finished("skinflint.set_budget")
    assert set_span.status.status_code is not StatusCode.ERROR


async def test_stream_span_carries_the_done_figures(start_rig: RigFactory) -> None:
    rig, captured = await observed(start_rig)
    events = [e async for e in rig.stub.CompleteStream(request("small"))]
    done = events[-1].done
    [span] = captured.finished("skinflint.complete_stream")
    a = span.attributes or {}
    assert a["skinflint.cost_nanousd"] == done.cost_nanousd > 0
    assert a["gen_ai.usage.output_tokens"] == done.usage.output_tokens
    assert captured.total("skinflint.cost") == done.cost_nanousd


async def test_span_is_a_child_of_the_callers_traceparent(start_rig: RigFactory) -> None:
    rig, captured = await observed(start_rig)
    metadata = (("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"),)
    await rig.stub.Complete(request("small"), metadata=metadata)
    await rig.stub.Complete(request("small", text="An unrelated question?"))
    first, second = captured.finished("skinflint.complete")
    assert first.parent is not None and first.parent.is_remote
    assert format(first.parent.span_id, "016x") == CALLER_SPAN
    assert format(first.context.trace_id, "032x") == CALLER_TRACE
    # Without a traceparent the span starts its own trace.
    assert second.parent is None
    assert format(second.context.trace_id, "032x") != CALLER_TRACE


async def test_stream_and_estimate_spans_follow_the_traceparent(start_rig: RigFactory) -> None:
    rig, captured = await observed(start_rig)
    metadata = (("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"),)
    _ = [e async for e in rig.stub.CompleteStream(request("small"), metadata=metadata)]
    await rig.stub.Estimate(pb.EstimateRequest(request=request("small")), metadata=metadata)
    for name in ("skinflint.complete_stream", "skinflint.estimate"):
        [span] = captured.finished(name)
        assert span.parent is not None, name
        assert format(span.parent.span_id, "016x") == CALLER_SPAN, name


async def test_no_prompt_answer_or_key_in_spans_by_default(start_rig: RigFactory) -> None:
    rig, captured = await observed(start_rig)
    response = await rig.stub.Complete(request("small", text=PROMPT))
    rig.anthropic.faults.add(Fault(status=529))
    await rig.stub.Complete(request("small", text="Another prompt entirely?"))
    answer = response.content[0].text.text
    dump = everything_in(captured)
    assert "skinflint.cost_nanousd" in dump
    for secret in (PROMPT, "Another prompt", answer, ANTHROPIC_KEY, OPENAI_KEY):
        assert secret not in dump, secret


async def test_capture_content_puts_prompt_and_answer_on_the_span(
    start_rig: RigFactory,
) -> None:
    rig, captured = await observed(start_rig, capture_content=True)
    response = await rig.stub.Complete(request("small", text=PROMPT))
    [span] = captured.finished("skinflint.complete")
    a = span.attributes or {}
    assert json.loads(a["gen_ai.input.messages"])[0]["parts"][0]["content"] == PROMPT
    output = json.loads(a["gen_ai.output.messages"])
    assert output[0]["parts"][0]["content"] == response.content[0].text.text
    assert ANTHROPIC_KEY not in everything_in(captured)


async def test_stream_fallback_is_a_span_event(start_rig: RigFactory) -> None:
    rig, captured = await observed(start_rig)
    rig.anthropic.faults.add(Fault(status=529))
    events = [e async for e in rig.stub.CompleteStream(request("small"))]
    assert events[-1].done.served_by.provider == "openai"
    [span] = captured.finished("skinflint.complete_stream")
    [fallback] = [e for e in span.events if e.name == "skinflint.fallback"]
    assert fallback.attributes["skinflint.fallback.to"] == "openai/gpt-4o-mini"
    assert (span.attributes or {})["gen_ai.provider.name"] == "openai"


async def test_budget_soft_threshold_is_an_event_on_the_call_span(start_rig: RigFactory) -> None:
    rig, captured = await observed(start_rig)
    await rig.stub.SetBudget(
        pb.SetBudgetRequest(
            budget=pb.BudgetSpec(
                id="acme-watch",
                scope="tenant:acme",
                window=pb.BUDGET_WINDOW_DAY,
                limit_nanousd=10**12,
                limit_tokens=1000,
                soft_thresholds_percent=[1],
            )
        )
    )
    await rig.stub.Complete(request("small"))
    [span] = captured.finished("skinflint.complete")
    [crossed] = [e for e in span.events if e.name == "skinflint.budget.soft_threshold"]
    assert crossed.attributes["skinflint.budget.id"] == "acme-watch"
    assert crossed.attributes["skinflint.budget.limit_kind"] == "tokens"
