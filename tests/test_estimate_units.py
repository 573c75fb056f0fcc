"""Estimate's parts without a server: the output-token range, the dry-run reads (response cache
peek, prefix tracker peek, budget would_admit) leaving no trace, and prompt-caching figures
for a prompt long enough to cache, priced by hand."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from test_response_cache_units import ENTRY, make_call

from skinflint import _native
from skinflint.accounting import default_price_table
from skinflint.app import App
from skinflint.budget_store.memory import MemoryBudgetStore
from skinflint.call import (
    Attribution,
    Call,
    GenerationParams,
    Lane,
    Message,
    ModelKind,
    ModelSpec,
    Policy,
    Role,
    SystemBlock,
    TextPart,
)
from skinflint.config import compile_rule_sets
from skinflint.pipeline.budget_guard import BudgetGuard, Hold
from skinflint.pipeline.budgets import BudgetSpec, BudgetWindow, parse_scope
from skinflint.pipeline.estimate import Lever, TokenRange, lever_map, output_range
from skinflint.pipeline.history import OutputStats
from skinflint.pipeline.projection import WorkloadModel
from skinflint.pipeline.prompt_cache import PrefixTracker
from skinflint.pipeline.response_cache import ResponseCacheLayer

# -- output tokens ---------------------------------------------------------------------------


def trio(value: TokenRange) -> tuple[int, int, int]:
    return value.low, value.expected, value.high


def test_output_range_without_history_is_half_of_max_tokens_rounded_up() -> None:
    assert trio(output_range(64, None)) == (1, 32, 64)
    assert trio(output_range(5, None)) == (1, 3, 5)
    assert trio(output_range(1, None)) == (1, 1, 1)
    assert "no history" in output_range(64, None).source


def test_output_range_with_history_uses_the_median_capped_at_max_tokens() -> None:
    stats = OutputStats(calls=40, p50=120, p90=300, max=900)
    assert trio(output_range(256, stats)) == (1, 120, 256)
    assert trio(output_range(100, stats)) == (1, 100, 100)
    assert "median of 40 call(s)" in output_range(256, stats).source
    # No calls is no history.
    assert trio(output_range(64, OutputStats(0, 0, 0, 0))) == (1, 32, 64)


# -- dry-run reads ---------------------------------------------------------------------------


@pytest.fixture
def layer(make_settings: Callable[..., Any], tmp_path: Path) -> ResponseCacheLayer:
    settings = make_settings()
    cache = _native.ResponseCache(str(tmp_path / "cache"), max_bytes=1 << 24)
    return ResponseCacheLayer(settings, cache, compile_rule_sets(settings))


def test_response_cache_peek_counts_nothing(layer: ResponseCacheLayer, tmp_path: Path) -> None:
    decision = layer.decide(make_call())
    assert layer.peek(decision) is None
    layer.put(decision, ENTRY)
    assert layer.peek(decision) == ENTRY
    stats = layer._cache.stats()
    assert (stats.hits, stats.misses) == (0, 0)
    assert layer.get(decision) == ENTRY  # the real lookup counts
    assert layer._cache.stats().hits == 1
    # A request that may not be looked up is never predicted to hit.
    blind = layer.decide(make_call(policy=Policy(no_lookup=True)))
    assert layer.peek(blind) is None


def test_native_peek_ignores_expired_entries(tmp_path: Path) -> None:
    cache = _native.ResponseCache(str(tmp_path / "c"), max_bytes=1 << 20)
    key = bytes(range(16))
    cache.put(key, b"v", ttl_seconds=0.001)
    time.sleep(0.01)
    assert cache.peek(key) is None
    assert (cache.stats().misses, cache.stats().expired) == (0, 0)
    assert cache.get(key) is None
    assert cache.stats().expired == 1


def test_prefix_tracker_peek_records_nothing() -> None:
    now = [100.0]
    tracker = PrefixTracker(8, clock=lambda: now[0])
    assert not tracker.peek("f").seen_before
    assert len(tracker) == 0
    tracker.observe("f")
    now[0] = 400.0
    reuse = tracker.peek("f")
    assert (reuse.seen_before, reuse.gap_s) == (True, 300.0)
    now[0] = 500.0
    assert tracker.peek("f").gap_s == 400.0  # the peek at 400 was not a sighting


async def test_would_admit_matches_reserve_and_holds_nothing() -> None:
    guard = BudgetGuard(MemoryBudgetStore())
    await guard.set_budget(
        BudgetSpec("money", parse_scope("team:search"), BudgetWindow.DAY, limit_nanousd=1_000)
    )
    await guard.set_budget(
        BudgetSpec("tokens", parse_scope("global"), BudgetWindow.DAY, limit_tokens=100)
    )
    who = Attribution(team="search")
    admissions = await guard.would_admit(who, nanousd=600, tokens=60)
    assert [(a.budget.spec.id, a.admitted) for a in admissions] == [
        ("money", True),
        ("tokens", True),
    ]
    for admission in admissions:
        assert admission.budget.state.reserved_nanousd == 0
    hold = await guard.reserve("r1", who, nanousd=600, tokens=60, ttl_s=60)
    assert isinstance(hold, Hold)
    # Now the same call fits neither: what reserve would answer, said without reserving.
    again = {a.budget.spec.id: a for a in await guard.would_admit(who, nanousd=600, tokens=60)}
    assert (again["money"].admitted, again["money"].limit_kind) == (False, "nanousd")
    assert (again["tokens"].admitted, again["tokens"].limit_kind) == (False, "tokens")
    assert not isinstance(await guard.reserve("r2", who, nanousd=600, tokens=60, ttl_s=60), Hold)
    state = (await guard.get_budget("money")).state
    assert state.reserved_nanousd == 600  # only r1's hold
    # Another team matches only the global budget.
    other = await guard.would_admit(Attribution(team="ads"), nanousd=1, tokens=1)
    assert [a.budget.spec.id for a in other] == ["tokens"]


# -- prompt caching, priced by hand ------------------------------------------------------------


def long_call() -> Call:
    system = " ".join(f"rule{i} applies to every answer." for i in range(600))
    return Call(
        model=ModelSpec(
            "anthropic/claude-sonnet-4-6", ModelKind.PINNED, None, "anthropic", "claude-sonnet-4-6"
        ),
        system=(SystemBlock(system),),
        messages=(Message(Role.USER, (TextPart("And the answer?"),)),),
        request_id="r",
        params=GenerationParams(max_tokens=100, temperature=0.0),
        attribution=Attribution(tenant="acme", feature="qa"),
    )


async def test_estimate_prices_prompt_caching_and_records_no_sighting(
    make_settings: Callable[..., Any],
) -> None:
    app = App.open(make_settings())
    try:
        call = long_call()
        first = await app.estimate(call)
        second = await app.estimate(call)
        assert len(app.prefix_tracker) == 0
        assert first == second  # nothing the first estimate did changed the second
        assert "first sighting" in first.route_reason
        assert first.primary.qualified == "anthropic/claude-sonnet-4-6"
        price = default_price_table().lookup(None, "anthropic/claude-sonnet-4-6")
        p, out = first.input_tokens, first.output_tokens
        assert p > price.min_cacheable_tokens and not first.input_tokens_exact

        def cost(tokens_x_rate: int) -> int:
            return (2 * tokens_x_rate + 1_000_000) // 2_000_000

        caching = lever_map(first)[Lever.PROMPT_CACHING]
        assert caching.applies
        assert first.cost.low == cost(p * price.cache_read + out.low * price.output)
        assert first.cost.expected == cost(p * price.input + out.expected * price.output)
        # High: the whole prompt written at the 5-minute rate, rounded up (the budget's worst).
        exact = p * price.cache_write_5m + out.high * price.output
        assert first.cost.high == -(-exact // 1_000_000)
        assert first.worst_case_nanousd == first.cost.high
        assert caching.without.high == -(-(p * price.input + out.high * price.output) // 10**6)
    finally:
        await app.aclose()


async def test_estimate_says_when_the_lane_is_not_interactive(
    make_settings: Callable[..., Any],
) -> None:
    app = App.open(make_settings())
    try:
        call = make_call(model="openai/gpt-4o-mini", policy=Policy(lane=Lane.ASYNC))
        estimate = await app.estimate(call)
        assert "policy.lane async" in estimate.route_reason
        batching = lever_map(estimate)[Lever.BATCHING]
        assert batching.with_.expected < estimate.cost.expected
        plain = await app.estimate(make_call(model="openai/gpt-4o-mini"))
        assert "policy.lane" not in plain.route_reason
    finally:
        await app.aclose()


class BrokenHistory:
    """A ``History`` whose store fails (a ledger on a full disk, say)."""

    def output_tokens(self, feature: str) -> OutputStats | None:
        raise OSError("disk I/O error")

    def workload(self, last_days: int, *, now: datetime | None = None) -> WorkloadModel | None:
        raise OSError("disk I/O error")


async def test_a_failing_history_is_no_history(make_settings: Callable[..., Any]) -> None:
    app = App.open(make_settings())
    try:
        app.history = BrokenHistory()
        with capture_logs() as logs:
            estimate = await app.estimate(make_call(model="openai/gpt-4o-mini"))
        assert "no history" in estimate.output_tokens.source
        assert trio(estimate.output_tokens) == (1, 32, 64)
        assert [e["event"] for e in logs] == ["estimate_history_failed"]
        assert "disk I/O error" in logs[0]["error"]
    finally:
        await app.aclose()
