"""Domain results -> wire messages (``skinflint.v1``): the way back from the pipeline.

``convert`` validates what comes in; this module only builds what goes out, so it has no
failure modes of its own beyond a bug (a domain value with no wire counterpart).
"""

from __future__ import annotations

import json
from dataclasses import replace

from google.protobuf.timestamp_pb2 import Timestamp

from skinflint.accounting import Usage
from skinflint.call import Lane, TextPart, Tier, ToolUsePart, thaw_json
from skinflint.memo import IdentityMemo
from skinflint.pipeline.budget_guard import Budget, Touch
from skinflint.pipeline.budgets import BudgetAction, BudgetSpec, BudgetWindow
from skinflint.pipeline.complete import Completion, Served, Started, StreamItem
from skinflint.pipeline.estimate import CostRange, Estimate, Lever
from skinflint.pipeline.pricing import Savings
from skinflint.pipeline.projection import Projection
from skinflint.pipeline.response_cache import CacheStatus
from skinflint.providers.base import Content, StopReason, TextDelta, ToolUseDelta
from skinflint.v1 import skinflint_pb2 as pb

_STOP_REASONS = {
    StopReason.END_TURN: pb.STOP_REASON_END_TURN,
    StopReason.MAX_TOKENS: pb.STOP_REASON_MAX_TOKENS,
    StopReason.STOP_SEQUENCE: pb.STOP_REASON_STOP_SEQUENCE,
    StopReason.TOOL_USE: pb.STOP_REASON_TOOL_USE,
    StopReason.REFUSAL: pb.STOP_REASON_REFUSAL,
    StopReason.CONTENT_FILTER: pb.STOP_REASON_CONTENT_FILTER,
    StopReason.PAUSE_TURN: pb.STOP_REASON_PAUSE_TURN,
}
_TIERS = {
    Tier.LOCAL: pb.TIER_LOCAL,
    Tier.SMALL: pb.TIER_SMALL,
    Tier.MID: pb.TIER_MID,
    Tier.FRONTIER: pb.TIER_FRONTIER,
}
_CACHE_STATUSES = {
    CacheStatus.MISS: pb.CACHE_STATUS_MISS,
    CacheStatus.EXACT: pb.CACHE_STATUS_EXACT,
    CacheStatus.COALESCED: pb.CACHE_STATUS_COALESCED,
    CacheStatus.BYPASS: pb.CACHE_STATUS_BYPASS,
    CacheStatus.SEMANTIC: pb.CACHE_STATUS_SEMANTIC,
}
_LANES = {
    Lane.INTERACTIVE: pb.LANE_INTERACTIVE,
    Lane.ASYNC: pb.LANE_ASYNC,
    Lane.LOCAL: pb.LANE_LOCAL,
}


def served_by(served: Served) -> pb.ServedBy:
    return pb.ServedBy(
        provider=served.provider,
        model=served.model,
        tier=_TIERS[served.tier] if served.tier is not None else pb.TIER_UNSPECIFIED,
        lane=_LANES[served.lane],
        cache_status=_CACHE_STATUSES[served.cache_status],
        route_reason=served.route_reason,
        attempts=served.attempts,
    )


def usage(value: Usage) -> pb.Usage:
    return pb.Usage(
        input_tokens=value.input_tokens,
        output_tokens=value.output_tokens,
        cache_read_tokens=value.cache_read_tokens,
        cache_write_5m_tokens=value.cache_write_5m_tokens,
        cache_write_1h_tokens=value.cache_write_1h_tokens,
        reasoning_tokens=value.reasoning_tokens,
    )


def savings(value: Savings) -> pb.Savings:
    return pb.Savings(
        response_cache_nanousd=value.response_cache,
        routing_nanousd=value.routing,
        prompt_caching_nanousd=value.prompt_caching,
        batching_nanousd=value.batching,
        local_tier_nanousd=value.local_tier,
        total_nanousd=value.total,
    )


def content_part(part: Content) -> pb.ContentPart:
    if isinstance(part, TextPart):
        return pb.ContentPart(text=pb.TextPart(text=part.text))
    if isinstance(part, ToolUsePart):
        return pb.ContentPart(
            tool_use=pb.ToolUsePart(
                id=part.id,
                name=part.name,
                input_json=json.dumps(thaw_json(part.input), separators=(",", ":")),
            )
        )
    raise TypeError(f"no wire form for content part {type(part).__name__}")


def complete_response(result: Completion) -> pb.CompleteResponse:
    return pb.CompleteResponse(
        request_id=result.request_id,
        content=[content_part(p) for p in result.content],
        stop_reason=_STOP_REASONS[result.stop_reason],
        served_by=served_by(result.served),
        usage=usage(result.usage),
        cost_nanousd=result.bill.cost_nanousd,
        baseline_cost_nanousd=result.bill.baseline_cost_nanousd,
        savings=savings(result.bill.savings),
        budgets=[budget_touch(t) for t in result.budgets],
    )


class CompleteResponses:
    """``complete_response``, with the wire form of exact hits kept and copied.

    Performance (bench/cache.py): building a ``CompleteResponse`` field by field costs about
    ten times a ``CopyFrom``. An exact hit of a repeated request carries the very same
    content, ``Served``, usage and bill objects each time (the pipeline's memos), so its
    response is built once without the per-call fields (request id, budget touches), kept
    by those objects' identity, and copied with the per-call fields set: the same bytes as
    ``complete_response``. Only exact hits are kept, each at most ``max_bytes``.
    """

    def __init__(self, *, max_entries: int = 1024, max_bytes: int = 16 * 1024) -> None:
        self._max_bytes = max_bytes
        self._kept: IdentityMemo[pb.CompleteResponse] = IdentityMemo(max_entries)

    def __call__(self, result: Completion) -> pb.CompleteResponse:
        if result.served.cache_status is not CacheStatus.EXACT:
            return complete_response(result)
        parts = (result.content, result.stop_reason, result.served, result.usage, result.bill)
        kept = self._kept.get(parts)
        if kept is None:
            built = complete_response(replace(result, request_id="", budgets=()))
            if built.ByteSize() > self._max_bytes:
                response = built  # too big to keep: this call's own, built once
            else:
                response = pb.CompleteResponse()
                response.CopyFrom(self._kept.put(parts, built))
        else:
            response = pb.CompleteResponse()
            response.CopyFrom(kept)
        response.request_id = result.request_id
        if result.budgets:
            response.budgets.extend(budget_touch(t) for t in result.budgets)
        return response


_WINDOWS = {
    BudgetWindow.MINUTE: pb.BUDGET_WINDOW_MINUTE,
    BudgetWindow.HOUR: pb.BUDGET_WINDOW_HOUR,
    BudgetWindow.DAY: pb.BUDGET_WINDOW_DAY,
    BudgetWindow.MONTH: pb.BUDGET_WINDOW_MONTH,
    BudgetWindow.TOTAL: pb.BUDGET_WINDOW_TOTAL,
}
_ACTIONS = {
    BudgetAction.REJECT: pb.BUDGET_ACTION_REJECT,
    BudgetAction.DOWNGRADE: pb.BUDGET_ACTION_DOWNGRADE,
    BudgetAction.DEFER: pb.BUDGET_ACTION_DEFER,
}


def _timestamp(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


def budget_touch(touch: Touch) -> pb.BudgetTouch:
    message = pb.BudgetTouch(
        budget_id=touch.budget_id,
        scope=touch.scope,
        remaining_nanousd=touch.remaining_nanousd,
        remaining_tokens=touch.remaining_tokens,
    )
    if touch.resets_at is not None:
        message.resets_at.CopyFrom(_timestamp(touch.resets_at))
    return message


def budget_spec(spec: BudgetSpec) -> pb.BudgetSpec:
    return pb.BudgetSpec(
        id=spec.id,
        scope=str(spec.scope),
        window=_WINDOWS[spec.window],
        limit_nanousd=spec.limit_nanousd,
        limit_tokens=spec.limit_tokens,
        soft_thresholds_percent=list(spec.soft_thresholds_percent),
        action=_ACTIONS[spec.action],
    )


def budget(value: Budget) -> pb.Budget:
    state = value.state
    message = pb.Budget(
        spec=budget_spec(value.spec),
        state=pb.BudgetState(
            spent_nanousd=state.spent_nanousd,
            reserved_nanousd=state.reserved_nanousd,
            remaining_nanousd=value.remaining_nanousd,
            spent_tokens=state.spent_tokens,
            reserved_tokens=state.reserved_tokens,
            remaining_tokens=value.remaining_tokens,
            requests=state.requests,
            window_start=_timestamp(value.window_start),
        ),
    )
    if value.resets_at is not None:
        message.state.resets_at.CopyFrom(_timestamp(value.resets_at))
    return message


def stream_event(item: StreamItem) -> pb.CompleteStreamEvent:
    if isinstance(item, Started):
        return pb.CompleteStreamEvent(
            started=pb.StreamStarted(request_id=item.request_id, served_by=served_by(item.served))
        )
    if isinstance(item, TextDelta):
        return pb.CompleteStreamEvent(delta=pb.ContentDelta(index=item.index, text=item.text))
    if isinstance(item, ToolUseDelta):
        return pb.CompleteStreamEvent(
            delta=pb.ContentDelta(
                index=item.index,
                tool_use=pb.ToolUseDelta(
                    id=item.id, name=item.name, partial_json=item.partial_json
                ),
            )
        )
    return pb.CompleteStreamEvent(done=complete_response(item))


_LEVERS = {
    Lever.RESPONSE_CACHE: pb.LEVER_RESPONSE_CACHE,
    Lever.ROUTING: pb.LEVER_ROUTING,
    Lever.PROMPT_CACHING: pb.LEVER_PROMPT_CACHING,
    Lever.BATCHING: pb.LEVER_BATCHING,
    Lever.LOCAL_TIER: pb.LEVER_LOCAL_TIER,
}


def cost_range(value: CostRange) -> pb.CostRange:
    return pb.CostRange(
        low_nanousd=value.low, expected_nanousd=value.expected, high_nanousd=value.high
    )


def estimate_response(value: Estimate) -> pb.EstimateResponse:
    primary = value.primary
    route = Served(
        provider=primary.provider,
        model=primary.model,
        tier=primary.tier,
        lane=Lane.INTERACTIVE,
        route_reason=value.route_reason,
        attempts=0,
        cache_status=value.cache_status,
    )
    out = value.output_tokens
    message = pb.EstimateResponse(
        route=served_by(route),
        input_tokens=value.input_tokens,
        input_tokens_exact=value.input_tokens_exact,
        tokenizer=value.tokenizer,
        cost=cost_range(value.cost),
        baseline_cost=cost_range(value.baseline),
        levers=[
            pb.LeverEstimate(
                lever=_LEVERS[lever.lever],
                without_lever=cost_range(lever.without),
                with_lever=cost_range(lever.with_),
                applies=lever.applies,
                reason=lever.reason,
            )
            for lever in value.levers
        ],
        predicted_cache_status=_CACHE_STATUSES[value.cache_status],
        output_tokens=pb.TokenRange(low=out.low, expected=out.expected, high=out.high),
        method=f"output tokens: {out.source}",
    )
    for admission in value.budgets:
        budget_view = admission.budget
        item = pb.BudgetAdmission(
            budget_id=budget_view.spec.id,
            scope=str(budget_view.spec.scope),
            admitted=admission.admitted,
            remaining_nanousd=budget_view.remaining_nanousd,
            reason=(
                "fits"
                if admission.admitted
                else f"would cross its {admission.limit_kind} limit "
                f"(action {budget_view.spec.action.value})"
            ),
        )
        if budget_view.resets_at is not None:
            item.resets_at.CopyFrom(_timestamp(budget_view.resets_at))
        message.budgets.append(item)
    return message


def projection_response(value: Projection) -> pb.ProjectResponse:
    return pb.ProjectResponse(
        months=[
            pb.MonthProjection(
                month=m.month,
                requests=m.requests,
                cost_nanousd=m.cost_nanousd,
                baseline_cost_nanousd=m.baseline_cost_nanousd,
                savings=savings(m.savings),
            )
            for m in value.months
        ],
        method=value.method,
    )


__all__ = [
    "budget",
    "budget_spec",
    "budget_touch",
    "complete_response",
    "content_part",
    "cost_range",
    "estimate_response",
    "projection_response",
    "savings",
    "served_by",
    "stream_event",
    "usage",
]
