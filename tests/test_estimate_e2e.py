"""Estimate end to end: gRPC -> App.estimate -> the real router, tokenizer, response cache
(LMDB), budget guard and price table, checked against what Complete then actually bills on the
provider emulators."""

from __future__ import annotations

from datetime import datetime

import pytest
from complete_fixtures import RigFactory, hand_cost, request

from skinflint.pipeline.history import OutputStats
from skinflint.pipeline.projection import WorkloadModel
from skinflint.v1 import skinflint_pb2 as pb

OPENAI = "openai/gpt-4o-mini"


class FixedHistory:
    """A ``History`` with a fixed output distribution per feature (and no workload)."""

    def __init__(self, stats: dict[str, OutputStats]) -> None:
        self.stats = stats
        self.asked: list[str] = []

    def output_tokens(self, feature: str) -> OutputStats | None:
        self.asked.append(feature)
        return self.stats.get(feature)

    def workload(self, last_days: int, *, now: datetime | None = None) -> WorkloadModel | None:
        return None


def levers(response: pb.EstimateResponse) -> dict[int, pb.LeverEstimate]:
    return {lever.lever: lever for lever in response.levers}


async def test_estimate_high_equals_the_bill_when_the_cap_is_reached(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig()
    text = "Write a long essay about the history of the French capital city."
    req = request(OPENAI, text, params=pb.GenerationParams(max_tokens=5, temperature=0.0))
    estimate = await rig.stub.Estimate(pb.EstimateRequest(request=req))

    assert (estimate.route.provider, estimate.route.model) == ("openai", "gpt-4o-mini")
    assert "pinned: openai/gpt-4o-mini" in estimate.route.route_reason
    assert estimate.input_tokens_exact and estimate.tokenizer == "o200k_base"
    assert estimate.predicted_cache_status == pb.CACHE_STATUS_MISS
    assert estimate.output_tokens.high == 5
    cost = estimate.cost
    assert cost.low_nanousd < cost.expected_nanousd < cost.high_nanousd

    response = await rig.stub.Complete(req)
    assert response.stop_reason == pb.STOP_REASON_MAX_TOKENS
    assert response.usage.output_tokens == 5
    assert response.usage.input_tokens == estimate.input_tokens
    # Output known exactly (the cap was reached): the high end is the bill, to the nano-USD.
    assert response.cost_nanousd == cost.high_nanousd
    assert response.cost_nanousd == hand_cost(response.usage, OPENAI)
    assert response.baseline_cost_nanousd == estimate.baseline_cost.high_nanousd


async def test_estimate_expected_equals_the_bill_when_history_knows_the_length(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig()
    req = request(OPENAI, "What is the capital of France?", request_id="r-1")
    actual = await rig.stub.Complete(req)
    assert actual.stop_reason == pb.STOP_REASON_END_TURN
    out = actual.usage.output_tokens
    assert 1 < out < 64

    # The answer is cached now: estimate a twin that is not (another temperature), with a
    # history whose median is the observed length.
    twin = request(
        OPENAI,
        "What is the capital of France?",
        params=pb.GenerationParams(max_tokens=64, temperature=0.5),
    )
    history = FixedHistory({"qa": OutputStats(calls=9, p50=out, p90=out + 3, max=out + 9)})
    rig.app.history = history
    estimate = await rig.stub.Estimate(pb.EstimateRequest(request=twin))
    assert history.asked == ["qa"]
    assert estimate.output_tokens.expected == out
    assert "history" in estimate.method
    billed = await rig.stub.Complete(twin)
    assert billed.usage.output_tokens == out
    assert billed.cost_nanousd == estimate.cost.expected_nanousd
    assert estimate.cost.low_nanousd <= billed.cost_nanousd <= estimate.cost.high_nanousd
    assert billed.baseline_cost_nanousd == estimate.baseline_cost.expected_nanousd


async def test_estimate_without_history_brackets_the_bill(start_rig: RigFactory) -> None:
    rig = await start_rig()
    req = request(OPENAI, "Name three rivers in Europe.", request_id="r-2")
    estimate = await rig.stub.Estimate(pb.EstimateRequest(request=req))
    assert estimate.output_tokens.expected == 32  # half of max_tokens 64: documented
    assert "no history" in estimate.method
    billed = await rig.stub.Complete(req)
    assert estimate.cost.low_nanousd <= billed.cost_nanousd <= estimate.cost.high_nanousd


async def test_estimate_predicts_a_hit_without_counting_it(start_rig: RigFactory) -> None:
    rig = await start_rig()
    req = request(OPENAI, "What is the capital of Italy?")
    before = await rig.stub.Estimate(pb.EstimateRequest(request=req))
    assert before.predicted_cache_status == pb.CACHE_STATUS_MISS
    first = await rig.stub.Complete(req)
    stats = rig.app.cache.stats()
    calls = len(rig.openai.requests)

    estimate = await rig.stub.Estimate(pb.EstimateRequest(request=req))
    assert estimate.predicted_cache_status == pb.CACHE_STATUS_EXACT
    assert (estimate.cost.low_nanousd, estimate.cost.high_nanousd) == (0, 0)
    cache_lever = levers(estimate)[pb.LEVER_RESPONSE_CACHE]
    assert cache_lever.applies
    assert cache_lever.without_lever.high_nanousd == before.cost.high_nanousd
    after = rig.app.cache.stats()
    assert (after.hits, after.misses) == (stats.hits, stats.misses)  # the dry run is invisible
    assert len(rig.openai.requests) == calls  # and no provider call

    hit = await rig.stub.Complete(req)
    assert hit.served_by.cache_status == pb.CACHE_STATUS_EXACT
    assert hit.cost_nanousd == 0
    assert hit.savings.response_cache_nanousd == first.cost_nanousd


async def test_estimate_levers(start_rig: RigFactory) -> None:
    rig = await start_rig()
    req = request(OPENAI, "Summarise the plot of Hamlet.")
    estimate = await rig.stub.Estimate(pb.EstimateRequest(request=req))
    by = levers(estimate)
    assert set(by) == {
        pb.LEVER_RESPONSE_CACHE,
        pb.LEVER_ROUTING,
        pb.LEVER_PROMPT_CACHING,
        pb.LEVER_BATCHING,
        pb.LEVER_LOCAL_TIER,
    }
    routing = by[pb.LEVER_ROUTING]
    assert routing.applies  # gpt-4o-mini instead of the baseline claude-opus-4-6
    assert routing.without_lever.expected_nanousd == estimate.baseline_cost.expected_nanousd
    assert routing.with_lever.expected_nanousd == estimate.cost.expected_nanousd
    batching = by[pb.LEVER_BATCHING]
    assert not batching.applies  # interactive
    assert batching.without_lever.expected_nanousd == estimate.cost.expected_nanousd
    # The 50% batch discount, rounded once from the exact figure (within a nano-USD).
    assert abs(2 * batching.with_lever.expected_nanousd - estimate.cost.expected_nanousd) <= 1
    caching = by[pb.LEVER_PROMPT_CACHING]
    assert not caching.applies  # a short prompt, below the 1024-token minimum
    assert caching.without_lever.expected_nanousd == estimate.cost.expected_nanousd


async def test_estimate_routes_a_tier_through_the_router(start_rig: RigFactory) -> None:
    rig = await start_rig()
    estimate = await rig.stub.Estimate(pb.EstimateRequest(request=request("mid")))
    assert estimate.route.tier == pb.TIER_MID
    assert "tier 'mid' requested" in estimate.route.route_reason
    assert (estimate.route.provider, estimate.route.model) == ("anthropic", "claude-sonnet-4-6")
    assert not estimate.input_tokens_exact  # Claude's tokenizer is not public: an upper bound
    assert estimate.tokenizer == "anthropic-estimate"


async def test_estimate_checks_budgets_without_reserving(start_rig: RigFactory) -> None:
    rig = await start_rig()
    for budget_id, limit in (("roomy", 10_000_000_000), ("tight", 1_000)):
        await rig.stub.SetBudget(
            pb.SetBudgetRequest(
                budget=pb.BudgetSpec(
                    id=budget_id,
                    scope="team:search",
                    window=pb.BUDGET_WINDOW_DAY,
                    limit_nanousd=limit,
                )
            )
        )
    req = request(OPENAI, "What is the capital of Spain?")
    estimate = await rig.stub.Estimate(pb.EstimateRequest(request=req))
    admitted = {b.budget_id: b for b in estimate.budgets}
    assert admitted["roomy"].admitted
    assert admitted["roomy"].remaining_nanousd == 10_000_000_000
    assert not admitted["tight"].admitted
    assert "nanousd limit" in admitted["tight"].reason
    assert estimate.cost.high_nanousd > 1_000
    for budget_id in ("roomy", "tight"):
        state = (await rig.stub.GetBudget(pb.GetBudgetRequest(id=budget_id))).state
        assert (state.reserved_nanousd, state.spent_nanousd, state.requests) == (0, 0, 0)


@pytest.mark.parametrize(
    "text",
    [
        "What is the capital of France?",
        "Prove that there are infinitely many primes, then write a Python function that lists "
        "the first n primes and analyse its complexity step by step.",
    ],
)
async def test_estimate_routes_auto_exactly_as_complete_does(
    start_rig: RigFactory, text: str
) -> None:
    """``auto`` goes through the classifier: Estimate must name the model Complete uses."""
    rig = await start_rig()
    req = request("auto", text, params=pb.GenerationParams(max_tokens=64, temperature=0.0))
    estimate = await rig.stub.Estimate(pb.EstimateRequest(request=req))
    response = await rig.stub.Complete(req)
    assert (estimate.route.provider, estimate.route.model, estimate.route.tier) == (
        response.served_by.provider,
        response.served_by.model,
        response.served_by.tier,
    )
    assert "classifier" in estimate.route.route_reason
    assert response.cost_nanousd <= estimate.cost.high_nanousd
