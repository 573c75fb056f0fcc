"""The budget guard's parts without a sidecar: window alignment, scope matching, the worst
case as a true upper bound (property test against the pricing function), the in-memory store
against the store conformance checks, all-or-none and soft thresholds through a real guard."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from budget_conformance import ALL_CHECKS, check_multiprocess_never_overspend
from budget_conformance import check_sigkill_loses_no_spend as _sigkill
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from skinflint import _native
from skinflint.accounting import Usage, cost_nanousd, default_price_table
from skinflint.budget_store.memory import MemoryBudgetStore
from skinflint.call import (
    Attribution,
    CacheTtl,
    Call,
    Message,
    ModelKind,
    ModelSpec,
    Role,
    TextPart,
)
from skinflint.pipeline.budget_guard import BudgetGuard, Hold, Refusal, refusal_error
from skinflint.pipeline.budgets import (
    BudgetAction,
    BudgetSpec,
    BudgetWindow,
    input_side_rate,
    parse_scope,
    prompt_pieces,
    scope_matches,
    window_bounds,
    worst_case_nanousd,
)
from skinflint.providers.base import Breakpoint, BreakpointSite, CachePlan


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- window alignment -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "when", "start", "end"),
    [
        (
            "minute",
            "2026-03-05T10:17:42.5+00:00",
            "2026-03-05T10:17:00+00:00",
            "2026-03-05T10:18:00+00:00",
        ),
        (
            "minute",
            "2026-03-05T10:17:00+00:00",
            "2026-03-05T10:17:00+00:00",
            "2026-03-05T10:18:00+00:00",
        ),
        (
            "minute",
            "2026-12-31T23:59:59+00:00",
            "2026-12-31T23:59:00+00:00",
            "2027-01-01T00:00:00+00:00",
        ),
        (
            "hour",
            "2026-03-05T10:59:59+00:00",
            "2026-03-05T10:00:00+00:00",
            "2026-03-05T11:00:00+00:00",
        ),
        (
            "day",
            "2026-03-05T23:59:59+00:00",
            "2026-03-05T00:00:00+00:00",
            "2026-03-06T00:00:00+00:00",
        ),
        # A non-UTC offset is converted first: 01:30 at +02:00 is 23:30 UTC the day before.
        (
            "day",
            "2026-03-06T01:30:00+02:00",
            "2026-03-05T00:00:00+00:00",
            "2026-03-06T00:00:00+00:00",
        ),
        (
            "month",
            "2026-01-31T23:59:59+00:00",
            "2026-01-01T00:00:00+00:00",
            "2026-02-01T00:00:00+00:00",
        ),
        (
            "month",
            "2026-02-14T12:00:00+00:00",
            "2026-02-01T00:00:00+00:00",
            "2026-03-01T00:00:00+00:00",
        ),
        # Leap year: February 2028 has 29 days.
        (
            "month",
            "2028-02-29T23:59:59+00:00",
            "2028-02-01T00:00:00+00:00",
            "2028-03-01T00:00:00+00:00",
        ),
        (
            "month",
            "2026-12-31T23:59:59+00:00",
            "2026-12-01T00:00:00+00:00",
            "2027-01-01T00:00:00+00:00",
        ),
        (
            "month",
            "2027-01-01T00:00:00+00:00",
            "2027-01-01T00:00:00+00:00",
            "2027-02-01T00:00:00+00:00",
        ),
        (
            "month",
            "2026-04-30T08:00:00+00:00",
            "2026-04-01T00:00:00+00:00",
            "2026-05-01T00:00:00+00:00",
        ),
    ],
)
def test_window_bounds_by_hand(window: str, when: str, start: str, end: str) -> None:
    assert window_bounds(BudgetWindow(window), at(when)) == (ts(start), ts(end))


def test_month_window_lengths_include_leap_years() -> None:
    def days(when: str) -> int:
        start, end = window_bounds(BudgetWindow.MONTH, at(when))
        return (end - start) // 86_400

    assert days("2028-02-10T00:00:00+00:00") == 29
    assert days("2026-02-10T00:00:00+00:00") == 28
    assert days("2100-02-10T00:00:00+00:00") == 28  # divisible by 100, not by 400
    assert days("2000-02-10T00:00:00+00:00") == 29  # divisible by 400
    assert days("2026-07-10T00:00:00+00:00") == 31


def test_total_window_never_resets_and_naive_times_are_refused() -> None:
    assert window_bounds(BudgetWindow.TOTAL, at("2026-03-05T10:17:42+00:00")) == (0, 0)
    with pytest.raises(ValueError, match="timezone"):
        window_bounds(BudgetWindow.DAY, datetime(2026, 3, 5))


# -- scope matching -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "matches"),
    [
        ("global", True),
        ("tenant:acme", True),
        ("team:search+tenant:acme", True),
        ("tenant:acme+team:search+feature:qa+user:u1", True),
        ("tenant:other", False),
        ("team:search+feature:autocomplete", False),
        ("user:u2", False),
    ],
)
def test_scope_matches_when_every_part_equals_the_attribution(scope: str, matches: bool) -> None:
    attribution = Attribution(tenant="acme", team="search", feature="qa", user="u1")
    assert scope_matches(parse_scope(scope), attribution) is matches


# -- worst case is an upper bound -------------------------------------------------------------

WORDS = st.sampled_from(
    ["the", "budget", "guard", "reserves", "cost", "émigré", "数据", "🙂", "x" * 40, "1234567"]
)
PLANS = {
    "none": CachePlan(),
    "5m": CachePlan(breakpoints=(Breakpoint(BreakpointSite.MESSAGE, 0, 0, CacheTtl.FIVE_MINUTES),)),
    "1h": CachePlan(
        breakpoints=(
            Breakpoint(BreakpointSite.SYSTEM, 0, 0, CacheTtl.ONE_HOUR),
            Breakpoint(BreakpointSite.MESSAGE, 0, 0, CacheTtl.FIVE_MINUTES),
        )
    ),
}


def _call(system: str, turns: list[str]) -> Call:
    return Call(
        model=ModelSpec("auto", ModelKind.AUTO),
        messages=tuple(
            Message(Role.USER if i % 2 == 0 else Role.ASSISTANT, (TextPart(text),))
            for i, text in enumerate(turns)
        ),
        request_id="r",
        system=(),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    turns=st.lists(st.lists(WORDS, max_size=300).map(" ".join), min_size=1, max_size=5),
    max_tokens=st.integers(min_value=1, max_value=200_000),
    output_share=st.floats(min_value=0, max_value=1),
    split=st.tuples(*(st.floats(min_value=0, max_value=1) for _ in range(3))),
    model=st.sampled_from(
        ["anthropic/claude-haiku-4-5", "anthropic/claude-opus-4-6", "openai/gpt-4o-mini"]
    ),
    plan_name=st.sampled_from(sorted(PLANS)),
)
def test_worst_case_is_never_below_the_bill(
    turns: list[str],
    max_tokens: int,
    output_share: float,
    split: tuple[float, float, float],
    model: str,
    plan_name: str,
) -> None:
    """Any usage the call can be billed for costs at most the reserved worst case: every prompt
    token (the tokenizer's count of the texts, what providers bill) in whichever class the plan
    allows, and up to max_tokens of output."""
    price = default_price_table().lookup(None, model)
    plan = PLANS[plan_name]
    provider, _, name = model.partition("/")
    if provider == "openai":
        plan = CachePlan(openai_cache_key="k")
    call = _call("", turns)
    counted = _native.count_chat_tokens(name, prompt_pieces(call)).count
    billed_prompt = sum(_native.count_tokens(name, t).count for t in turns)
    assert counted >= billed_prompt
    rate = input_side_rate(price, plan, automatic_writes=provider != "anthropic")
    worst = worst_case_nanousd(counted, max_tokens, price, rate)

    ttls = {bp.ttl for bp in plan.breakpoints}
    can_5m = bool(ttls) or provider != "anthropic"
    can_1h = CacheTtl.ONE_HOUR in ttls
    read = int(billed_prompt * split[0])
    w5 = int((billed_prompt - read) * split[1]) if can_5m else 0
    w1 = int((billed_prompt - read - w5) * split[2]) if can_1h else 0
    usage = Usage(
        input_tokens=billed_prompt - read - w5 - w1,
        output_tokens=int(max_tokens * output_share),
        cache_read_tokens=read,
        cache_write_5m_tokens=w5,
        cache_write_1h_tokens=w1,
    )
    assert cost_nanousd(usage, price).total <= worst
    # And the all-output, all-top-rate extreme.
    top = Usage(output_tokens=max_tokens, cache_write_1h_tokens=billed_prompt if can_1h else 0)
    top = top if can_1h else Usage(output_tokens=max_tokens, input_tokens=billed_prompt)
    assert cost_nanousd(top, price).total <= worst


def test_input_side_rate_follows_the_plan() -> None:
    price = default_price_table().lookup(None, "anthropic/claude-haiku-4-5")
    assert input_side_rate(price, PLANS["none"], automatic_writes=False) == price.input
    assert input_side_rate(price, PLANS["5m"], automatic_writes=False) == price.cache_write_5m
    assert input_side_rate(price, PLANS["1h"], automatic_writes=False) == price.cache_write_1h
    assert input_side_rate(price, None, automatic_writes=False) == price.cache_write_1h
    # 1 token of output at $5/M is 5000 nano-USD; a fraction of a nano-USD rounds up.
    assert worst_case_nanousd(0, 1, price, price.input) == 5000
    assert worst_case_nanousd(1, 0, price, 1) == 1  # 1e-6 nano-USD -> 1
    assert worst_case_nanousd(3, 0, price, 1_500_000) == 5  # 4.5 -> 5


# -- the in-memory store passes the store conformance checks --------------------------------

IN_PROCESS = [c for c in ALL_CHECKS if c not in (check_multiprocess_never_overspend, _sigkill)]


@pytest.mark.parametrize("check", IN_PROCESS, ids=lambda c: c.__name__)
async def test_memory_store_conformance(check) -> None:  # type: ignore[no-untyped-def]
    store = MemoryBudgetStore()
    await check(lambda: store)


# -- the guard over a real store ------------------------------------------------------------


class Clock:
    def __init__(self, when: str) -> None:
        self.now = float(ts(when))

    def __call__(self) -> float:
        return self.now


def spec(budget_id: str, scope: str, window: str = "day", **fields: object) -> BudgetSpec:
    return BudgetSpec(id=budget_id, scope=parse_scope(scope), window=BudgetWindow(window), **fields)  # type: ignore[arg-type]


ACME = Attribution(tenant="acme", team="search", feature="qa")


async def test_reservation_is_all_or_none_across_matching_budgets() -> None:
    store = MemoryBudgetStore()
    guard = BudgetGuard(store, clock=Clock("2026-03-05T10:00:00+00:00"))
    await guard.set_budget(spec("roomy", "tenant:acme", limit_nanousd=1_000))
    await guard.set_budget(spec("tight", "team:search", limit_nanousd=100))
    await guard.set_budget(spec("other", "tenant:zeta", limit_nanousd=1))
    refused = await guard.reserve("r1", ACME, nanousd=150, tokens=10, ttl_s=60)
    assert isinstance(refused, Refusal) and refused.spec.id == "tight"
    for budget_id in ("roomy", "tight"):
        budget = await guard.get_budget(budget_id)
        assert budget.state.reserved_nanousd == 0, budget_id  # nothing held anywhere
    held = await guard.reserve("r2", ACME, nanousd=90, tokens=10, ttl_s=60)
    assert isinstance(held, Hold) and {s.id for s in held.specs} == {"roomy", "tight"}
    assert (await guard.get_budget("roomy")).state.reserved_nanousd == 90
    touches = await guard.commit(held, nanousd=40, tokens=7)
    assert [(t.budget_id, t.remaining_nanousd) for t in touches] == [("roomy", 960), ("tight", 60)]
    tight = await guard.get_budget("tight")
    assert (tight.state.spent_nanousd, tight.state.reserved_nanousd, tight.state.requests) == (
        40,
        0,
        1,
    )


async def test_refusal_names_budget_limit_spent_and_reset() -> None:
    clock = Clock("2026-03-05T10:17:30+00:00")
    guard = BudgetGuard(MemoryBudgetStore(), clock=clock)
    await guard.set_budget(spec("rate", "global", "minute", limit_nanousd=1000))
    held = await guard.reserve("a", ACME, nanousd=900, tokens=1, ttl_s=60)
    assert isinstance(held, Hold)
    await guard.commit(held, nanousd=700, tokens=1)
    refused = await guard.reserve("b", ACME, nanousd=400, tokens=1, ttl_s=60)
    assert isinstance(refused, Refusal)
    error = refusal_error(refused, now=clock.now)
    assert error.budget_id == "rate"
    assert "minute limit 1000 nano-USD" in error.message
    assert "spent 700 nano-USD" in error.message
    assert "resets at 2026-03-05T10:18:00Z" in error.message
    assert error.retry_after_seconds == 30
    # The next minute is a new window.
    clock.now += 30
    assert isinstance(await guard.reserve("c", ACME, nanousd=400, tokens=1, ttl_s=60), Hold)


async def test_token_limit_refuses_independently_of_money() -> None:
    guard = BudgetGuard(MemoryBudgetStore(), clock=Clock("2026-03-05T10:00:00+00:00"))
    await guard.set_budget(spec("tokens", "feature:qa", "hour", limit_tokens=1000))
    assert isinstance(await guard.reserve("a", ACME, nanousd=10**12, tokens=1000, ttl_s=5), Hold)
    refused = await guard.reserve("b", ACME, nanousd=0, tokens=1, ttl_s=5)
    assert isinstance(refused, Refusal) and refused.limit_kind == "tokens"
    assert "hour limit 1000 tokens" in refusal_error(refused, now=0).message


async def test_expired_reservation_does_not_pin_the_budget() -> None:
    clock = Clock("2026-03-05T10:00:00+00:00")
    guard = BudgetGuard(MemoryBudgetStore(), clock=clock)
    await guard.set_budget(spec("d", "global", limit_nanousd=100))
    assert isinstance(await guard.reserve("a", ACME, nanousd=100, tokens=0, ttl_s=30), Hold)
    assert isinstance(await guard.reserve("b", ACME, nanousd=1, tokens=0, ttl_s=30), Refusal)
    clock.now += 31  # the sidecar that held "a" died
    assert isinstance(await guard.reserve("c", ACME, nanousd=100, tokens=0, ttl_s=30), Hold)


async def test_soft_thresholds_log_once_per_crossing_and_again_next_window() -> None:
    clock = Clock("2026-03-05T10:00:00+00:00")
    guard = BudgetGuard(MemoryBudgetStore(), clock=clock)
    seen = []
    guard.threshold_hooks.append(seen.append)
    await guard.set_budget(
        spec("d", "tenant:acme", "day", limit_nanousd=1000, soft_thresholds_percent=(50, 80, 100))
    )

    async def spend(amount: int) -> list[dict[str, object]]:
        with capture_logs() as logs:
            held = await guard.reserve(f"r{amount}", ACME, nanousd=amount, tokens=0, ttl_s=60)
            assert isinstance(held, Hold)
            await guard.commit(held, nanousd=amount, tokens=0)
        return [e for e in logs if e["event"] == "budget_soft_threshold"]

    assert await spend(400) == []
    crossed = await spend(100)  # 500 = exactly 50 %
    assert [(e["percent"], e["spent"], e["limit"], e["budget_id"]) for e in crossed] == [
        (50, 500, 1000, "d")
    ]
    assert crossed[0]["log_level"] == "warning"
    assert await spend(100) == []  # 60 %: nothing new
    assert [e["percent"] for e in await spend(400)] == [80, 100]  # one commit, two crossings
    assert [(e.percent, e.kind) for e in seen] == [
        (50, "nanousd"),
        (80, "nanousd"),
        (100, "nanousd"),
    ]
    clock.now += 86_400  # a new day: the same crossings are reported again
    assert [e["percent"] for e in await spend(600)] == [50]


async def test_record_counts_a_request_at_zero_cost() -> None:
    guard = BudgetGuard(MemoryBudgetStore(), clock=Clock("2026-03-05T10:00:00+00:00"))
    await guard.set_budget(spec("d", "global", limit_nanousd=1000))
    touches = await guard.record(ACME)
    assert [(t.budget_id, t.remaining_nanousd) for t in touches] == [("d", 1000)]
    state = (await guard.get_budget("d")).state
    assert (state.requests, state.spent_nanousd) == (1, 0)


def test_refusal_for_defer_and_total_windows() -> None:
    from skinflint.budget_store.base import WindowState

    refused = Refusal(
        spec("all-time", "global", "total", limit_nanousd=5, action=BudgetAction.DEFER),
        WindowState(spent_nanousd=5),
        "nanousd",
        0,
        None,
        3,
        0,
    )
    error = refusal_error(refused, now=0)
    assert "resets at never" in error.message
    assert "action defer" in error.message
    assert error.retry_after_seconds is None


def test_scope_in_a_call_default_tenant() -> None:
    assert scope_matches(parse_scope("tenant:default"), Attribution())
    assert datetime.now(UTC).tzinfo is UTC
