"""Project: the arithmetic against figures computed by hand from the shipped price table, growth
compounding, each lever's effect, the history path, and the RPC's validation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import grpc
import pytest
from conftest import SidecarFactory, bad_request

from skinflint.accounting import default_price_table
from skinflint.call import Tier
from skinflint.config import Settings
from skinflint.errors import ConfigError
from skinflint.pipeline.history import OutputStats
from skinflint.pipeline.projection import (
    WRITES_PER_MONTH,
    FeatureWorkload,
    LedgerHistory,
    ProjectionRequest,
    WorkloadModel,
    month_requests,
    project,
    project_workload,
    ratio,
)
from skinflint.v1 import skinflint_pb2 as pb

# Per-token rates in nano-USD (the table's per-1M rates / 1e6), written out by hand.
HAIKU_IN, HAIKU_OUT, HAIKU_READ, HAIKU_WRITE = 1000, 5000, 100, 1250  # small primary
OPUS_IN, OPUS_OUT = 5000, 25000  # frontier primary: the baseline


def feature(**fields: Any) -> FeatureWorkload:
    base: dict[str, Any] = {
        "feature": "qa",
        "requests_per_month": 1000,
        "avg_input_tokens": 1000,
        "avg_output_tokens": 200,
        "tier_mix": {Tier.SMALL: 1.0},
    }
    return FeatureWorkload(**{**base, **fields})


def one_month(settings: Settings, *features: FeatureWorkload, growth: float = 0.0) -> Any:
    workload = WorkloadModel(tuple(features), growth)
    return project_workload(workload, 1, settings, default_price_table()).months[0]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


def test_rates_written_out_match_the_table() -> None:
    table = default_price_table()
    haiku = table.lookup(None, "anthropic/claude-haiku-4-5")
    opus = table.lookup(None, "anthropic/claude-opus-4-6")
    per_token = (
        haiku.input,
        haiku.output,
        haiku.cache_read,
        haiku.cache_write_5m,
        opus.input,
        opus.output,
    )
    assert tuple(r // 1_000_000 for r in per_token) == (
        HAIKU_IN,
        HAIKU_OUT,
        HAIKU_READ,
        HAIKU_WRITE,
        OPUS_IN,
        OPUS_OUT,
    )


def test_routing_only(settings: Settings) -> None:
    month = one_month(settings, feature())
    cost = 1000 * (1000 * HAIKU_IN + 200 * HAIKU_OUT)
    baseline = 1000 * (1000 * OPUS_IN + 200 * OPUS_OUT)
    assert (month.requests, month.cost_nanousd) == (1000, cost)
    assert month.baseline_cost_nanousd == baseline
    assert month.savings.routing == baseline - cost
    assert month.savings.total == baseline - cost
    assert month.without("routing") == baseline


def test_response_cache_and_batching(settings: Settings) -> None:
    month = one_month(settings, feature(cache_hit_rate=0.25, batchable_share=0.5))
    per_request = 1000 * HAIKU_IN + 200 * HAIKU_OUT
    after_cache = 750 * per_request
    # Half the misses on the async lane at the 50% batch discount: 0.5 + 0.5 x 0.5 = 0.75.
    cost = after_cache * 3 // 4
    assert month.cost_nanousd == cost
    assert month.savings.response_cache == 1000 * per_request - after_cache
    assert month.savings.batching == after_cache - cost
    assert month.savings.prompt_caching == 0
    assert month.savings.total == month.baseline_cost_nanousd - cost


def test_prompt_caching_costs_money_at_low_volume(settings: Settings) -> None:
    # 1000 misses < WRITES_PER_MONTH: every one writes its 500-token prefix at 1.25x input.
    month = one_month(settings, feature(prompt_cache_share=0.5))
    per_request = 500 * HAIKU_IN + 500 * HAIKU_WRITE + 200 * HAIKU_OUT
    assert month.cost_nanousd == 1000 * per_request
    assert month.savings.prompt_caching == 1000 * (1000 * HAIKU_IN + 200 * HAIKU_OUT) - (
        1000 * per_request
    )
    assert month.savings.prompt_caching < 0


def test_prompt_caching_pays_at_high_volume(settings: Settings) -> None:
    month = one_month(settings, feature(requests_per_month=100_000, prompt_cache_share=0.5))
    writes, reads = WRITES_PER_MONTH, 100_000 - WRITES_PER_MONTH
    cost = (
        100_000 * (500 * HAIKU_IN + 200 * HAIKU_OUT)
        + writes * 500 * HAIKU_WRITE
        + reads * 500 * HAIKU_READ
    )
    assert WRITES_PER_MONTH == 8640
    assert month.cost_nanousd == cost == 159_968_000_000
    assert month.savings.prompt_caching == 100_000 * 2_000_000 - cost


def test_rounding_is_half_up_once(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings("tiers:\n  small: ['openai/gpt-4o-mini']\n")
    # gpt-4o-mini: 150 nano-USD per input token; 3 tokens = 450, at 0.75 batching = 337.5.
    month = one_month(
        settings,
        feature(requests_per_month=1, avg_input_tokens=3, avg_output_tokens=0, batchable_share=0.5),
    )
    assert month.cost_nanousd == 338
    assert month.savings.batching == 450 - 338
    assert month.savings.total == month.baseline_cost_nanousd - 338


def test_local_tier_lever(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings("tiers:\n  local: ['vllm/llama-3-8b']\n")
    month = one_month(settings, feature(tier_mix={Tier.LOCAL: 0.5, Tier.SMALL: 0.5}))
    baseline = 1000 * (1000 * OPUS_IN + 200 * OPUS_OUT)
    small = 500 * (1000 * HAIKU_IN + 200 * HAIKU_OUT)
    assert month.cost_nanousd == small  # the local tier's tokens are free at the provider
    assert month.savings.local_tier == baseline // 2
    assert month.savings.routing == baseline // 2 - small


def test_several_features_add_up(settings: Settings) -> None:
    a = feature()
    b = feature(feature="chat", requests_per_month=10, avg_input_tokens=10, avg_output_tokens=1)
    both = one_month(settings, a, b)
    assert both.requests == 1010
    assert both.cost_nanousd == one_month(settings, a).cost_nanousd + 10 * (
        10 * HAIKU_IN + HAIKU_OUT
    )


def test_growth_compounds(settings: Settings) -> None:
    # 1000 x 1.58^(m-1), by hand: 1580, 2496.4, 3944.312, 6232.01296, 9846.5804768.
    expected = [1000, 1580, 2496, 3944, 6232, 9847]
    assert [month_requests(1000, ratio(0.58), m) for m in range(1, 7)] == expected
    workload = WorkloadModel((feature(),), 0.58)
    months = project_workload(workload, 6, settings, default_price_table()).months
    assert [m.month for m in months] == [1, 2, 3, 4, 5, 6]
    assert [m.requests for m in months] == expected
    per_request = 1000 * HAIKU_IN + 200 * HAIKU_OUT
    assert [m.cost_nanousd for m in months] == [n * per_request for n in expected]


def test_negative_growth_shrinks(settings: Settings) -> None:
    # 1000 x 0.9^(m-1): 1000, 900, 810, 729.
    workload = WorkloadModel((feature(),), -0.1)
    months = project_workload(workload, 4, settings, default_price_table()).months
    assert [m.requests for m in months] == [1000, 900, 810, 729]


def test_cost_grows_sub_linearly_with_prompt_caching(settings: Settings) -> None:
    workload = WorkloadModel((feature(prompt_cache_share=0.8, requests_per_month=5000),), 0.58)
    months = project_workload(workload, 6, settings, default_price_table()).months
    first, last = months[0], months[-1]
    assert last.requests >= 9 * first.requests  # ~10x scale by month 6
    # Cost per request falls as the fixed monthly prompt-cache writes are amortized ...
    assert last.cost_nanousd * first.requests < first.cost_nanousd * last.requests
    # ... while without the lever it would have grown exactly with volume.
    plain = WorkloadModel((feature(requests_per_month=5000),), 0.58)
    flat = project_workload(plain, 6, settings, default_price_table()).months
    assert flat[-1].cost_nanousd * flat[0].requests == flat[0].cost_nanousd * flat[-1].requests


def test_savings_always_sum_to_baseline_minus_cost(settings: Settings) -> None:
    workload = WorkloadModel(
        (
            feature(
                tier_mix={Tier.SMALL: 0.6, Tier.MID: 0.3, Tier.FRONTIER: 0.1},
                cache_hit_rate=0.17,
                prompt_cache_share=0.33,
                batchable_share=0.21,
                requests_per_month=12_345,
            ),
        ),
        0.07,
    )
    for month in project_workload(workload, 12, settings, default_price_table()).months:
        assert month.savings.total == month.baseline_cost_nanousd - month.cost_nanousd
        assert 0 < month.cost_nanousd < month.baseline_cost_nanousd


def test_a_tier_without_models_is_a_failed_precondition(settings: Settings) -> None:
    with pytest.raises(ConfigError) as info:
        one_month(settings, feature(tier_mix={Tier.LOCAL: 1.0}))
    assert "tiers.local" in str(info.value)


class LedgerLike:
    """A ``History`` whose workload is fixed (as the ledger would derive it)."""

    def __init__(self, workload: WorkloadModel | None) -> None:
        self._workload = workload
        self.asked: list[int] = []

    def output_tokens(self, feature: str) -> OutputStats | None:
        return None

    def workload(self, last_days: int, *, now: datetime | None = None) -> WorkloadModel | None:
        self.asked.append(last_days)
        return self._workload


def test_from_history_uses_the_ledger_workload_and_the_requested_growth(
    settings: Settings,
) -> None:
    history = LedgerLike(WorkloadModel((feature(),), monthly_growth=0.0))
    request = ProjectionRequest(LedgerHistory(last_days=14, monthly_growth=0.5), months=3)
    projection = project(request, settings, default_price_table(), history)
    assert history.asked == [14]
    assert [m.requests for m in projection.months] == [1000, 1500, 2250]


def test_from_history_without_history_or_calls(settings: Settings) -> None:
    request = ProjectionRequest(LedgerHistory(last_days=7))
    with pytest.raises(ConfigError) as info:
        project(request, settings, default_price_table(), None)
    assert "no spend ledger" in str(info.value)
    with pytest.raises(ConfigError) as info:
        project(request, settings, default_price_table(), LedgerLike(None))
    assert "ledger.last_days" in str(info.value)


# -- through gRPC ---------------------------------------------------------------------------


def wire_workload(**fields: Any) -> pb.FeatureWorkload:
    base: dict[str, Any] = {
        "feature": "qa",
        "requests_per_month": 1000,
        "avg_input_tokens": 1000,
        "avg_output_tokens": 200,
        "tier_mix": {"small": 1.0},
    }
    return pb.FeatureWorkload(**{**base, **fields})


async def test_project_rpc(start_sidecar: SidecarFactory) -> None:
    side = await start_sidecar()
    answer = await side.stub.Project(
        pb.ProjectRequest(
            workload=pb.WorkloadModel(
                features=[wire_workload(cache_hit_rate=0.25)], monthly_growth=0.58
            )
        )
    )
    assert [m.month for m in answer.months] == [1, 2, 3, 4, 5, 6]  # 0 months = 6
    assert answer.months[5].requests == 9847
    first = answer.months[0]
    assert first.cost_nanousd == 750 * (1000 * HAIKU_IN + 200 * HAIKU_OUT)
    s = first.savings
    assert s.total_nanousd == first.baseline_cost_nanousd - first.cost_nanousd
    assert s.response_cache_nanousd == 250 * (1000 * HAIKU_IN + 200 * HAIKU_OUT)
    assert "price table" in answer.method


async def test_project_rpc_from_ledger(start_sidecar: SidecarFactory) -> None:
    side = await start_sidecar()
    request = pb.ProjectRequest(ledger=pb.LedgerHistory(last_days=30), months=2)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await side.stub.Project(request)  # the sidecar's own ledger, still empty
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "holds no calls in the last 30 day(s)" in info.value.details()
    side.app.history = None  # as with ledger.enabled: false
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await side.stub.Project(request)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no spend ledger" in info.value.details()
    side.app.history = LedgerLike(WorkloadModel((feature(requests_per_month=40),)))
    answer = await side.stub.Project(request)
    assert [m.requests for m in answer.months] == [40, 40]


INVALID: dict[str, tuple[pb.ProjectRequest, str, str]] = {
    "negative volume": (
        pb.ProjectRequest(
            workload=pb.WorkloadModel(features=[wire_workload(requests_per_month=-5)])
        ),
        "workload.features[0].requests_per_month",
        "must not be negative",
    ),
    "batchable share above 1": (
        pb.ProjectRequest(workload=pb.WorkloadModel(features=[wire_workload(batchable_share=1.5)])),
        "workload.features[0].batchable_share",
        "[0, 1]",
    ),
    "growth out of range": (
        pb.ProjectRequest(
            workload=pb.WorkloadModel(features=[wire_workload()], monthly_growth=-1.0)
        ),
        "workload.monthly_growth",
        "(-1, 10]",
    ),
    "duplicate feature": (
        pb.ProjectRequest(workload=pb.WorkloadModel(features=[wire_workload()] * 2)),
        "workload.features[1].feature",
        "also workload.features[0]",
    ),
    "no features": (
        pb.ProjectRequest(workload=pb.WorkloadModel(monthly_growth=0.1)),
        "workload.features",
        "required",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
async def test_project_rpc_validation(start_sidecar: SidecarFactory, case: str) -> None:
    side = await start_sidecar()
    request, field, phrase = INVALID[case]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await side.stub.Project(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(f"{field}: ")
    assert phrase in info.value.details()
    assert bad_request(info.value).field_violations[0].field == field
