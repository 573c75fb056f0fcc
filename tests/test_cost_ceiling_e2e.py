"""``policy.max_cost_nanousd``, the per-request cost ceiling, end to end: gRPC -> pipeline ->
emulators. The ceiling is checked against the same worst case a budget reserves (which
Estimate reports as its high figure), so a call that starts can never cost more."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from complete_fixtures import Rig, RigFactory, request
from conftest import rich_status
from google.rpc import error_details_pb2

from skinflint.v1 import skinflint_pb2 as pb

LONG = pb.GenerationParams(max_tokens=1000)


def capped(model: str, ceiling: int, **policy: Any) -> pb.CompleteRequest:
    req = request(model, params=LONG)
    req.policy.CopyFrom(pb.Policy(max_cost_nanousd=ceiling, **policy))
    return req


async def worst_case(rig: Rig, model: str) -> int:
    """The worst case of ``model`` for the test's request: Estimate's high figure."""
    estimate = await rig.stub.Estimate(pb.EstimateRequest(request=request(model, params=LONG)))
    return estimate.cost.high_nanousd


def provider_calls(rig: Rig) -> int:
    return len(rig.anthropic.requests) + len(rig.openai.requests) + len(rig.vllm.requests)


def quota_subject(error: grpc.aio.AioRpcError) -> str:
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            found = error_details_pb2.QuotaFailure()
            detail.Unpack(found)
            return found.violations[0].subject
    raise AssertionError(f"no QuotaFailure in {error.details()}")


async def test_a_pinned_model_above_the_ceiling_is_rejected_before_any_call(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig()
    worst = await worst_case(rig, "anthropic/claude-sonnet-4-6")
    for call in (rig.stub.Complete, rig.stub.CompleteStream):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            result = call(capped("anthropic/claude-sonnet-4-6", worst - 1))
            if call is rig.stub.CompleteStream:
                _ = [event async for event in result]
            else:
                await result
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = info.value.details()
        assert details.startswith("policy.max_cost_nanousd: ")
        assert f"is {worst} nano-USD, above the ceiling of {worst - 1}" in details
        assert "lower params.max_tokens" in details
        assert quota_subject(info.value) == "policy.max_cost_nanousd"
    assert provider_calls(rig) == 0


async def test_a_ceiling_equal_to_the_worst_case_runs_the_model(start_rig: RigFactory) -> None:
    rig = await start_rig()
    worst = await worst_case(rig, "anthropic/claude-sonnet-4-6")
    response = await rig.stub.Complete(capped("anthropic/claude-sonnet-4-6", worst))
    assert response.served_by.model == "claude-sonnet-4-6"
    assert 0 < response.cost_nanousd <= worst
    assert "max_cost" not in response.served_by.route_reason


async def test_a_tier_drops_the_models_above_the_ceiling(start_rig: RigFactory) -> None:
    rig = await start_rig()
    haiku = await worst_case(rig, "anthropic/claude-haiku-4-5")
    mini = await worst_case(rig, "openai/gpt-4o-mini")
    assert mini < haiku  # the premise: small's fallback is the cheaper model
    response = await rig.stub.Complete(capped("small", mini))
    served = response.served_by
    assert (served.provider, served.model) == ("openai", "gpt-4o-mini")
    assert "skipped anthropic/claude-haiku-4-5 (worst case above it)" in served.route_reason
    assert response.cost_nanousd <= mini
    assert len(rig.anthropic.requests) == 0


async def test_a_tier_above_the_ceiling_falls_to_a_cheaper_tier(start_rig: RigFactory) -> None:
    rig = await start_rig()
    ceiling = await worst_case(rig, "anthropic/claude-haiku-4-5")
    response = await rig.stub.Complete(capped("mid", ceiling))
    served = response.served_by
    assert served.tier == pb.TIER_SMALL
    assert "tier 'small' fits" in served.route_reason
    assert response.cost_nanousd <= ceiling


async def test_the_policy_floor_is_kept_even_under_a_ceiling(start_rig: RigFactory) -> None:
    rig = await start_rig()
    ceiling = await worst_case(rig, "anthropic/claude-haiku-4-5")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(capped("mid", ceiling, min_tier=pb.TIER_MID))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "the cheaper tiers the policy allows" in info.value.details()
    assert provider_calls(rig) == 0


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.05, 0.2, 0.5, 0.9, 1.0, 3.0])
async def test_no_answered_call_ever_costs_more_than_its_ceiling(
    start_rig: RigFactory, fraction: float
) -> None:
    rig = await start_rig()
    frontier = await worst_case(rig, "frontier")
    ceiling = max(1, int(frontier * fraction))  # 0 would mean "no ceiling"
    for model in ("frontier", "mid", "small", "auto", "anthropic/claude-opus-4-6"):
        try:
            response = await rig.stub.Complete(capped(model, ceiling))
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
            continue
        assert response.cost_nanousd <= ceiling, (model, ceiling, response.served_by)
