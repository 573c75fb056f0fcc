"""Complete end to end: gRPC -> pipeline -> official SDKs -> provider emulators, and back with
content, usage and the exact cost."""

from __future__ import annotations

import grpc
import pytest
from complete_fixtures import (
    VLLM_MODEL,
    RigFactory,
    hand_baseline,
    hand_cost,
    request,
)

from skinflint.v1 import skinflint_pb2 as pb


def assert_savings_add_up(response: pb.CompleteResponse) -> None:
    s = response.savings
    levers = (
        s.response_cache_nanousd
        + s.routing_nanousd
        + s.prompt_caching_nanousd
        + s.batching_nanousd
        + s.local_tier_nanousd
    )
    assert s.total_nanousd == levers
    assert s.total_nanousd == response.baseline_cost_nanousd - response.cost_nanousd


async def test_pinned_anthropic_model_answers_with_exact_cost(start_rig: RigFactory) -> None:
    rig = await start_rig()
    response = await rig.stub.Complete(request("anthropic/claude-haiku-4-5", request_id="r-1"))

    assert response.request_id == "r-1"
    assert response.content[0].text.text
    assert response.stop_reason in (pb.STOP_REASON_END_TURN, pb.STOP_REASON_MAX_TOKENS)
    served = response.served_by
    assert (served.provider, served.model) == ("anthropic", "claude-haiku-4-5")
    assert served.tier == pb.TIER_SMALL  # config lists it as the small primary
    assert served.lane == pb.LANE_INTERACTIVE
    assert served.cache_status == pb.CACHE_STATUS_MISS  # looked up, not found
    assert served.attempts == 1
    assert "pinned: anthropic/claude-haiku-4-5" in served.route_reason
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert response.cost_nanousd == hand_cost(usage, "anthropic/claude-haiku-4-5")
    # Haiku 4.5: $1/M in, $5/M out -> 1000 and 5000 nano-USD per token, exactly.
    assert response.cost_nanousd == usage.input_tokens * 1000 + usage.output_tokens * 5000
    assert response.baseline_cost_nanousd == hand_baseline(usage)
    assert response.savings.routing_nanousd == response.baseline_cost_nanousd - (
        response.cost_nanousd
    )
    assert response.savings.prompt_caching_nanousd == 0
    assert_savings_add_up(response)
    sent = rig.anthropic.requests.last
    assert sent.body["model"] == "claude-haiku-4-5"
    assert sent.body["max_tokens"] == 64


async def test_pinned_openai_model_answers_with_exact_cost(start_rig: RigFactory) -> None:
    rig = await start_rig()
    response = await rig.stub.Complete(request("openai/gpt-4o-mini"))
    assert response.content[0].text.text
    assert (response.served_by.provider, response.served_by.model) == ("openai", "gpt-4o-mini")
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert response.cost_nanousd == hand_cost(usage, "openai/gpt-4o-mini")
    assert response.baseline_cost_nanousd == hand_baseline(usage)
    assert response.baseline_cost_nanousd > response.cost_nanousd > 0
    assert_savings_add_up(response)
    assert rig.openai.requests.last.body["model"] == "gpt-4o-mini"
    assert len(rig.anthropic.requests) == 0  # pinned means exactly that provider


async def test_pinned_dearer_model_shows_negative_routing_saving(start_rig: RigFactory) -> None:
    # Opus 4.1 ($15/M in) is dearer than the baseline Opus 4.6 ($5/M): routing lost money.
    rig = await start_rig()
    response = await rig.stub.Complete(request("anthropic/claude-opus-4-1"))
    assert response.savings.routing_nanousd < 0
    assert response.cost_nanousd == hand_cost(response.usage, "anthropic/claude-opus-4-1")
    assert_savings_add_up(response)


async def test_tier_name_runs_its_primary(start_rig: RigFactory) -> None:
    rig = await start_rig()
    response = await rig.stub.Complete(request("mid"))
    assert response.served_by.model == "claude-sonnet-4-6"
    assert response.served_by.tier == pb.TIER_MID
    assert "tier 'mid' requested" in response.served_by.route_reason


async def test_auto_runs_the_feature_default_tier(start_rig: RigFactory) -> None:
    rig = await start_rig("features:\n  qa:\n    default_tier: mid\n")
    response = await rig.stub.Complete(request("auto"))
    assert response.served_by.tier == pb.TIER_MID
    assert response.served_by.model == "claude-sonnet-4-6"
    reason = response.served_by.route_reason
    # The classifier keeps this easy question on the cheap (default) tier.
    assert "classifier P(cheap tier not good enough)=" in reason
    assert "stay on tier 'mid'" in reason

    other = await rig.stub.Complete(
        request("auto", attribution=pb.Attribution(tenant="acme", feature="unconfigured"))
    )
    assert other.served_by.tier == pb.TIER_SMALL  # the default default tier
    bounded = await rig.stub.Complete(request("auto", policy=pb.Policy(max_tier=pb.TIER_SMALL)))
    assert bounded.served_by.tier == pb.TIER_SMALL
    assert "lowered to policy.max_tier 'small'" in bounded.served_by.route_reason


async def test_local_tier_runs_on_vllm_at_zero_cost(start_rig: RigFactory) -> None:
    rig = await start_rig()
    response = await rig.stub.Complete(request("local"))
    assert (response.served_by.provider, response.served_by.model) == ("vllm", VLLM_MODEL)
    assert response.cost_nanousd == 0
    assert response.baseline_cost_nanousd == hand_baseline(response.usage) > 0
    assert_savings_add_up(response)


async def test_missing_key_is_failed_precondition_naming_the_variable(
    start_rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = await start_rig()
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request("openai/gpt-4o-mini"))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "OPENAI_API_KEY" in info.value.details()
    assert len(rig.openai.requests) == 0


async def test_missing_key_of_the_primary_falls_back_to_a_configured_provider(
    start_rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = await start_rig()
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    response = await rig.stub.Complete(request("small"))
    assert response.served_by.model == "gpt-4o-mini"
    assert response.served_by.attempts == 1  # no call went to the unconfigured provider
    assert "ANTHROPIC_API_KEY" in response.served_by.route_reason


async def test_unknown_pinned_model_is_invalid_argument(start_rig: RigFactory) -> None:
    rig = await start_rig()
    for model, expected in (
        ("anthropic/claude-haiku-9", "unknown model anthropic/claude-haiku-9"),
        ("mistral/large", "provider 'mistral' is not configured"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await rig.stub.Complete(request(model))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert expected in info.value.details()


async def test_async_lane_is_unimplemented(start_rig: RigFactory) -> None:
    rig = await start_rig()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request("small", policy=pb.Policy(lane=pb.LANE_ASYNC)))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "async lane" in info.value.details()
