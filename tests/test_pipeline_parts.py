"""The Complete path's parts on their own: pricing, the prefix tracker and TTL choice, the
circuit breaker, model resolution and the boot-time checks of tiers and prices."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skinflint.accounting import Usage, default_price_table
from skinflint.call import CacheTtl, Tier
from skinflint.config import PromptCacheConfig
from skinflint.errors import ConfigError, InvalidArgument
from skinflint.pipeline.dispatch import BreakerState, CircuitBreakers
from skinflint.pipeline.pricing import bill
from skinflint.pipeline.prompt_cache import PrefixTracker, PromptCachePlanner
from skinflint.pipeline.routing import resolve
from skinflint.providers.base import BreakpointSite
from skinflint.transports.grpc.convert import to_call
from skinflint.v1 import skinflint_pb2 as pb

TABLE = default_price_table()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- pricing --------------------------------------------------------------------------------


counts = st.integers(min_value=0, max_value=5_000_000)


@given(counts, counts, counts, counts, counts)
def test_levers_sum_to_baseline_minus_cost_exactly(
    inp: int, out: int, read: int, w5: int, w1: int
) -> None:
    usage = Usage(inp, out, read, w5, w1)
    for model in ("anthropic/claude-haiku-4-5", "anthropic/claude-opus-4-1", "openai/gpt-4o"):
        priced = bill(
            usage,
            TABLE.lookup(None, model),
            TABLE.lookup(None, "anthropic/claude-opus-4-6"),
            price_version=TABLE.version,
        )
        savings = priced.savings
        assert savings.total == priced.baseline_cost_nanousd - priced.cost_nanousd
        assert savings.total == savings.routing + savings.prompt_caching
        if read == w5 == w1 == 0:
            assert savings.prompt_caching == 0  # nothing cached: nothing saved or lost


def test_cache_reads_save_and_writes_cost() -> None:
    price = TABLE.lookup(None, "anthropic/claude-sonnet-4-6")
    read = bill(Usage(10, 10, cache_read_tokens=2000), price, price, price_version="v")
    write = bill(Usage(10, 10, cache_write_1h_tokens=2000), price, price, price_version="v")
    assert read.savings.prompt_caching > 0
    assert write.savings.prompt_caching < 0
    assert read.savings.routing == write.savings.routing == 0  # baseline model itself


# -- prefix tracker and TTL choice -----------------------------------------------------------


def test_tracker_reports_gaps_and_stays_bounded() -> None:
    clock = Clock()
    tracker = PrefixTracker(2, clock)
    assert not tracker.observe("a").seen_before
    clock.now += 600
    assert tracker.observe("a").gap_s == 600
    tracker.observe("b")
    tracker.observe("c")  # evicts "a", the least recently seen
    assert len(tracker) == 2
    assert not tracker.observe("a").seen_before


def _call(system_words: int = 1500, **fields: Any) -> Any:
    request = pb.CompleteRequest(
        model="anthropic/claude-sonnet-4-6",
        system=[pb.SystemBlock(text=" ".join(["lorem"] * system_words))],
        messages=[
            pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=pb.TextPart(text="q"))])
        ],
        **fields,
    )
    return to_call(request)


@pytest.mark.parametrize(
    ("gap_s", "ttl"),
    [(30, CacheTtl.FIVE_MINUTES), (600, CacheTtl.ONE_HOUR), (7200, CacheTtl.FIVE_MINUTES)],
)
def test_ttl_follows_the_reuse_interval(gap_s: float, ttl: CacheTtl) -> None:
    clock = Clock()
    planner = PromptCachePlanner(PromptCacheConfig(), PrefixTracker(100, clock))
    plan_args: dict[str, Any] = {
        "provider_kind": "anthropic",
        "provider": "anthropic",
        "model": "claude-sonnet-4-6",
        "min_cacheable_tokens": 1024,
    }
    first = planner.plan(_call(), **plan_args)
    assert [(b.site, b.ttl) for b in first.breakpoints] == [
        (BreakpointSite.SYSTEM, CacheTtl.FIVE_MINUTES)
    ]
    clock.now += gap_s
    second = planner.plan(_call(), **plan_args)
    assert [b.ttl for b in second.breakpoints] == [ttl]
    assert f"system[0] {ttl.value}" in second.reason


def test_prefix_on_another_model_is_tracked_apart() -> None:
    clock = Clock()
    planner = PromptCachePlanner(PromptCacheConfig(), PrefixTracker(100, clock))
    args: dict[str, Any] = {"provider_kind": "anthropic", "provider": "anthropic"}
    planner.plan(_call(), model="claude-sonnet-4-6", min_cacheable_tokens=1024, **args)
    clock.now += 600
    other = planner.plan(_call(), model="claude-sonnet-4-5", min_cacheable_tokens=1024, **args)
    assert "first sighting" in other.reason


def test_disabled_planner_keeps_only_caller_breakpoints() -> None:
    planner = PromptCachePlanner(PromptCacheConfig(enabled=False), PrefixTracker(10))
    call = _call()
    plan = planner.plan(
        call,
        provider_kind="anthropic",
        provider="anthropic",
        model="claude-sonnet-4-6",
        min_cacheable_tokens=1024,
    )
    assert plan.breakpoints == ()
    assert "off" in plan.reason


# -- circuit breaker -------------------------------------------------------------------------


def test_breaker_opens_half_opens_and_closes() -> None:
    clock = Clock()
    breakers = CircuitBreakers(threshold=3, cooldown_s=30, clock=clock)
    name = "anthropic/claude-haiku-4-5"
    for _ in range(2):
        breakers.failure(name)
    assert breakers.state(name) is BreakerState.CLOSED
    breakers.failure(name)
    assert breakers.state(name) is BreakerState.OPEN
    assert not breakers.allow(name)
    clock.now += 30
    assert breakers.state(name) is BreakerState.HALF_OPEN
    assert breakers.allow(name)  # the one trial
    assert not breakers.allow(name)  # nobody else while it runs
    breakers.failure(name)  # the trial failed: open again for a full cooldown
    assert breakers.state(name) is BreakerState.OPEN
    clock.now += 30
    assert breakers.allow(name)
    breakers.success(name)
    assert breakers.state(name) is BreakerState.CLOSED


def test_success_resets_the_failure_count() -> None:
    breakers = CircuitBreakers(threshold=2, cooldown_s=30, clock=Clock())
    breakers.failure("m")
    breakers.success("m")
    breakers.failure("m")
    assert breakers.state("m") is BreakerState.CLOSED


# -- model resolution and boot checks --------------------------------------------------------


def test_resolution_of_pins_tiers_and_auto(make_settings: Any) -> None:
    settings = make_settings()
    pinned = resolve(_call(), settings, TABLE)
    assert [c.qualified for c in pinned.candidates] == ["anthropic/claude-sonnet-4-6"]
    assert pinned.tier is Tier.MID
    frontier = resolve(
        to_call(pb.CompleteRequest(model="frontier", messages=_call_messages())), settings, TABLE
    )
    assert [c.qualified for c in frontier.candidates] == [
        "anthropic/claude-opus-4-6",
        "openai/gpt-5",
    ]
    auto = resolve(
        to_call(pb.CompleteRequest(model="auto", messages=_call_messages())), settings, TABLE
    )
    assert auto.tier is Tier.SMALL
    with pytest.raises(ConfigError, match=r"tiers\.local"):
        resolve(
            to_call(pb.CompleteRequest(model="local", messages=_call_messages())), settings, TABLE
        )
    with pytest.raises(InvalidArgument, match="unknown model"):
        resolve(
            to_call(pb.CompleteRequest(model="openai/gpt-99", messages=_call_messages())),
            settings,
            TABLE,
        )


def _call_messages() -> list[pb.Message]:
    return [pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=pb.TextPart(text="q"))])]


def test_defaults_baseline_is_the_frontier_primary(make_settings: Any) -> None:
    settings = make_settings()
    assert settings.baseline == "anthropic/claude-opus-4-6"
    assert make_settings("baseline_model: openai/gpt-5\n").baseline == "openai/gpt-5"


@pytest.mark.parametrize(
    ("yaml_text", "key", "problem"),
    [
        ("tiers:\n  small: [mistral/large]\n", "tiers.small[0]", "not configured"),
        ("tiers:\n  mid: [anthropic/claude-sonnet-9]\n", "tiers.mid[0]", "unknown model"),
        ("tiers:\n  mid: [sonnet]\n", "tiers.mid[0]", "is not provider/model"),
        ("baseline_model: openai/gpt-zz\n", "baseline_model", "unknown model"),
        (
            "prices:\n  models:\n    - {provider: openai, model: gpt-4o, input: 1}\n",
            "prices.models[0]",
            "required",
        ),
    ],
)
def test_bad_models_fail_at_boot_naming_the_key(
    make_settings: Any, yaml_text: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings(yaml_text)
    assert any(i.key.startswith(key) and problem in i.problem for i in info.value.issues), str(
        info.value
    )


def test_price_override_prices_a_new_model_and_vllm_needs_no_price(make_settings: Any) -> None:
    settings = make_settings(
        "tiers:\n  local: [vllm/my-model]\n  small: [openai/gpt-4o-mini-2099]\n"
        "prices:\n  models:\n"
        "    - {provider: openai, model: gpt-4o-mini-2099, effective_from: 2026-01-01,"
        " input: '0.1', output: '0.2', batch_discount: 50}\n"
    )
    assert settings.tiers.small == ("openai/gpt-4o-mini-2099",)


def test_provider_entries_merge_over_the_built_in_ones(make_settings: Any) -> None:
    settings = make_settings("providers:\n  anthropic: {base_url: 'http://127.0.0.1:9'}\n")
    assert settings.providers["anthropic"].kind == "anthropic"
    assert settings.providers["anthropic"].base_url == "http://127.0.0.1:9"
    assert set(settings.providers) == {"anthropic", "openai", "vllm"}


def test_provider_base_url_from_the_environment(make_settings: Any) -> None:
    settings = make_settings(
        env={"SKINFLINT__PROVIDERS__OPENAI__BASE_URL": "http://127.0.0.1:9/v1"}
    )
    assert settings.providers["openai"].base_url == "http://127.0.0.1:9/v1"
    assert settings.providers["openai"].kind == "openai"
