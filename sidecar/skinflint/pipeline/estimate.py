"""Estimate: everything the Complete path would decide for a ``Call``, except the provider call.

Nothing here changes state: the response cache is read with ``peek`` (no hit or miss counted,
no single flight joined), the prompt-cache plan is made against a read-only view of the prefix
tracker (no sighting recorded), and budgets are checked with ``BudgetGuard.would_admit`` (no
reservation made).

**Route**: ``routing.resolve`` (the same seam Complete uses); the primary candidate is priced.

**Prompt tokens** ``P``: ``_native.count_chat_tokens`` of ``budgets.prompt_pieces`` on the
primary (images at ``IMAGE_TOKENS_BOUND`` each), the count the budget worst case uses. It is
*exact* when the model has a public tokenizer (OpenAI's o200k/cl100k) and the prompt maps one
piece to one provider message (no tools, no images, at most one system block, one part per
message); otherwise it is an upper bound (each piece framed; Claude's count is an estimate).

**Output tokens** (``max_tokens`` ``M``: the request's, else the feature's cap):

* high = ``M`` (a provider never bills more);
* expected = the feature's observed median (``History.output_tokens(...).p50``, at most ``M``)
  once there is history, else ``M`` x ``EXPECTED_OUTPUT_FRACTION`` (a half: no information puts
  the expectation in the middle of the possible range), rounded up;
* low = ``OUTPUT_FLOOR`` (one token): the cheapest answer there can be. It bounds, it does not
  predict.

**Cost** (integer nano-USD, ``accounting.cost_nanousd``, one rounding per figure):

* low = ``P`` at the cheapest input-side rate the plan allows (cache reads when provider prompt
  caching applies, else plain input) + low output;
* expected = ``P`` as plain input (whether the provider still holds the prefix is not known to
  the sidecar) + expected output;
* high = the budget worst case: ``P`` at the highest input-side rate the plan can incur (a cache
  write) + ``M`` output, rounded up; what Complete reserves on the budgets.

A predicted response-cache hit costs 0 (all three figures). **Baseline**: ``P`` and the same
output at the baseline model's input and output rates.

**Levers** (``LeverEstimate``; ``without`` = this lever switched off, ``with_`` = switched on,
all other levers as they are): response cache (with = 0 when the request may be looked up),
routing (without = the baseline model), prompt caching (without = every prompt token as plain
input), batching (the async lane: the provider's batch discount, 50% for the big providers;
never applied to this interactive request), local tier (not estimated: applies only to a
request routed to the local tier, reported as it is).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from skinflint import _native
from skinflint.accounting import ModelPrice, PriceTable, Usage, cost_nanousd
from skinflint.accounting.cost import baseline_cost_nanousd
from skinflint.call import Call, Lane
from skinflint.config import Settings
from skinflint.errors import native_errors
from skinflint.logs import get_logger
from skinflint.pipeline.budget_guard import Admission, BudgetGuard
from skinflint.pipeline.budgets import (
    IMAGE_TOKENS_BOUND,
    image_count,
    input_side_rate,
    prompt_pieces,
    worst_case_nanousd,
)
from skinflint.pipeline.history import History, OutputStats
from skinflint.pipeline.prompt_cache import PrefixTracker, PromptCachePlanner, Reuse
from skinflint.pipeline.response_cache import CacheStatus, ResponseCacheLayer
from skinflint.pipeline.routing import Candidate, Route, resolve
from skinflint.pipeline.worst_case import worst_case
from skinflint.providers.base import CachePlan

_log = get_logger("estimate")

#: The least output a call can bill: the "low" end of the range.
OUTPUT_FLOOR = 1
#: Share of ``max_tokens`` expected as output when the feature has no history (num, den).
EXPECTED_OUTPUT_FRACTION = (1, 2)


class Lever(StrEnum):
    RESPONSE_CACHE = "response_cache"
    ROUTING = "routing"
    PROMPT_CACHING = "prompt_caching"
    BATCHING = "batching"
    LOCAL_TIER = "local_tier"


@dataclass(frozen=True, slots=True)
class CostRange:
    low: int
    expected: int
    high: int


@dataclass(frozen=True, slots=True)
class TokenRange:
    low: int
    expected: int
    high: int
    #: Where ``expected`` comes from (history or the documented fraction of max_tokens).
    source: str


@dataclass(frozen=True, slots=True)
class LeverEstimate:
    lever: Lever
    applies: bool
    without: CostRange
    with_: CostRange
    reason: str


@dataclass(frozen=True, slots=True)
class Estimate:
    route: Route
    primary: Candidate
    route_reason: str
    input_tokens: int
    input_tokens_exact: bool
    tokenizer: str
    output_tokens: TokenRange
    cost: CostRange
    baseline: CostRange
    levers: tuple[LeverEstimate, ...]
    cache_status: CacheStatus
    #: The budgets that match the call and whether each would admit its worst case.
    budgets: tuple[Admission, ...]
    #: What the reservation would hold (the high end over the fallback chain).
    worst_case_nanousd: int
    worst_case_tokens: int


class _ReadOnlyTracker(PrefixTracker):
    """The prefix tracker as the planner sees it, recording no sighting."""

    def __init__(self, tracker: PrefixTracker) -> None:  # no super().__init__: no own state
        self._real = tracker

    def observe(self, fingerprint: str) -> Reuse:
        return self._real.peek(fingerprint)


class Estimator:
    """Builds ``Estimate``s from the App's own parts (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        prices: PriceTable,
        cache: ResponseCacheLayer,
        tracker: PrefixTracker,
        guard: BudgetGuard,
        route_for: Callable[[Call], Route] | None = None,
    ) -> None:
        #: Complete's own routing (classifier, tier health), so the estimate's route is the
        #: one Complete would take; None: the policy-only ``resolve`` (unit tests).
        self._route_for = route_for
        self._settings = settings
        self._prices = prices
        self._cache = cache
        self._planner = PromptCachePlanner(settings.prompt_cache, _ReadOnlyTracker(tracker))
        self._guard = guard
        self._baseline_name = settings.baseline

    async def estimate(self, call: Call, history: History | None) -> Estimate:
        now = datetime.now(UTC)
        if self._route_for is not None:
            route = self._route_for(call)
        else:
            route = resolve(call, self._settings, self._prices)
        primary = route.candidates[0]
        price = self._prices.lookup(primary.provider, primary.model, now)
        baseline = self._prices.lookup(None, self._baseline_name, now)
        kind = self._settings.providers[primary.provider].kind
        plan = self._plan(call, primary, kind, price)

        pieces = prompt_pieces(call)
        images = image_count(call)
        with native_errors("counting the prompt's tokens for the estimate"):
            counted_encoding = _native.encoding_for_model(primary.model)
            counted = _native.count_chat_tokens(primary.model, pieces)
        prompt = counted.count + images * IMAGE_TOKENS_BOUND
        exact = counted.exact and images == 0 and _one_piece_per_message(call)

        max_tokens = call.params.max_tokens or self._settings.max_tokens_cap(
            call.attribution.feature
        )
        output = output_range(max_tokens, _output_stats(history, call.attribution.feature))

        caching = _caching_applies(plan, kind, prompt, price)
        miss = _cost_range(prompt, output, price, plan, kind, caching=caching)
        plain = _cost_range(prompt, output, price, plan, kind, caching=False)
        base = _baseline_range(prompt, output, baseline)

        decision = self._cache.decide(call)
        hit = self._cache.peek(decision) is not None
        status = CacheStatus.EXACT if hit else decision.miss_status
        zero = CostRange(0, 0, 0)
        cost = zero if hit else miss

        worst = worst_case(
            call,
            route.candidates,
            {primary: plan},
            settings=self._settings,
            price_of=lambda c: self._prices.lookup(c.provider, c.model, now),
            counts={counted_encoding: counted.count},
        )
        worst_nanousd, worst_tokens = worst.nanousd, worst.tokens
        if hit:
            admissions = await self._guard.would_admit(call.attribution, nanousd=0, tokens=0)
        else:
            admissions = await self._guard.would_admit(
                call.attribution, nanousd=worst_nanousd, tokens=worst_tokens
            )

        levers = (
            _response_cache_lever(hit, decision.lookup and decision.key is not None, miss),
            LeverEstimate(
                Lever.ROUTING,
                applies=primary.qualified != baseline.qualified_name,
                without=zero if hit else _cost_range(prompt, output, baseline, None, "", False),
                with_=cost,
                reason=f"{route.reason}; baseline {baseline.qualified_name}",
            ),
            LeverEstimate(
                Lever.PROMPT_CACHING,
                applies=caching,
                without=zero if hit else plain,
                with_=cost,
                reason=plan.reason or "prompt cache: nothing planned",
            ),
            _batching_lever(prompt, output, price, plan, kind, caching, cost, hit),
            LeverEstimate(
                Lever.LOCAL_TIER,
                applies=kind == "vllm",
                without=cost,
                with_=cost,
                reason="the local tier serves this request"
                if kind == "vllm"
                else "not estimated: send model 'local' (or a local tier) to price it",
            ),
        )
        reasons = [route.reason]
        if plan.reason:
            reasons.append(plan.reason)
        if hit:
            assert decision.key is not None
            reasons.append(f"response cache hit (key {decision.short}…): would cost 0")
        if call.policy.lane is not None and call.policy.lane is not Lane.INTERACTIVE:
            reasons.append(
                f"policy.lane {call.policy.lane.value}: not served by Complete in this build; "
                "figures are for the interactive lane (batching lever: the async-lane price)"
            )
        return Estimate(
            route=route,
            primary=primary,
            route_reason="; ".join(reasons),
            input_tokens=prompt,
            input_tokens_exact=exact,
            tokenizer=counted.method,
            output_tokens=output,
            cost=cost,
            baseline=base,
            levers=levers,
            cache_status=status,
            budgets=admissions,
            worst_case_nanousd=worst_nanousd,
            worst_case_tokens=worst_tokens,
        )

    def _plan(self, call: Call, candidate: Candidate, kind: str, price: ModelPrice) -> CachePlan:
        return self._planner.plan(
            call,
            provider_kind=kind,
            provider=candidate.provider,
            model=candidate.model,
            min_cacheable_tokens=price.min_cacheable_tokens,
        )


def output_range(max_tokens: int, stats: OutputStats | None) -> TokenRange:
    """Output tokens low / expected / high (see the module docstring)."""
    low = min(OUTPUT_FLOOR, max_tokens)
    if stats is not None and stats.calls > 0:
        expected = min(stats.p50, max_tokens)
        source = f"history: median of {stats.calls} call(s) of the feature ({stats.p50} tokens)"
    else:
        num, den = EXPECTED_OUTPUT_FRACTION
        expected = -(-max_tokens * num // den)
        source = f"no history: {num}/{den} of max_tokens {max_tokens}"
    return TokenRange(low, max(low, expected), max_tokens, source)


def _output_stats(history: History | None, feature: str) -> OutputStats | None:
    """The feature's history; a ledger that fails to answer is no history (logged), never a
    failed estimate."""
    if history is None:
        return None
    try:
        return history.output_tokens(feature)
    except Exception as exc:
        _log.error("estimate_history_failed", error=f"{type(exc).__name__}: {exc}")
        return None


def _one_piece_per_message(call: Call) -> bool:
    """The prompt is sent as exactly the pieces counted (so the framing count is exact)."""
    return (
        not call.tools
        and len(call.system) <= 1
        and all(len(message.parts) == 1 for message in call.messages)
    )


def _caching_applies(plan: CachePlan, kind: str, prompt: int, price: ModelPrice) -> bool:
    """Provider prompt caching can bill part of this prompt as cache reads."""
    if plan.breakpoints:
        return True
    if kind == "anthropic":
        return False
    minimum = price.min_cacheable_tokens
    return minimum is not None and prompt >= minimum and price.cache_read < price.input


def _cost_range(
    prompt: int,
    output: TokenRange,
    price: ModelPrice,
    plan: CachePlan | None,
    kind: str,
    caching: bool,
    *,
    batch: bool = False,
) -> CostRange:
    low_prompt = Usage(cache_read_tokens=prompt) if caching else Usage(input_tokens=prompt)
    low = cost_nanousd(
        Usage(
            input_tokens=low_prompt.input_tokens,
            cache_read_tokens=low_prompt.cache_read_tokens,
            output_tokens=output.low,
        ),
        price,
        batch=batch,
    ).total
    expected = cost_nanousd(
        Usage(input_tokens=prompt, output_tokens=output.expected), price, batch=batch
    ).total
    if caching:
        rate = input_side_rate(price, plan, automatic_writes=kind != "anthropic")
    else:
        rate = price.input
    high = worst_case_nanousd(prompt, output.high, price, rate)
    if batch:
        keep = 10_000 - price.batch_discount_bp
        high = -(-high * keep // 10_000)
    return CostRange(low, expected, high)


def _baseline_range(prompt: int, output: TokenRange, baseline: ModelPrice) -> CostRange:
    def at(tokens: int) -> int:
        usage = Usage(input_tokens=prompt, output_tokens=tokens)
        return baseline_cost_nanousd(usage, baseline).total

    return CostRange(at(output.low), at(output.expected), at(output.high))


def _response_cache_lever(hit: bool, looked_up: bool, miss: CostRange) -> LeverEstimate:
    zero = CostRange(0, 0, 0)
    if hit:
        reason = "response cache hit: a stored answer is served at no cost"
    elif looked_up:
        reason = "response cache miss: no stored answer for this request's key yet"
    else:
        reason = "response cache bypassed for this request (feature or policy)"
    return LeverEstimate(
        Lever.RESPONSE_CACHE,
        applies=hit,
        without=miss,
        with_=zero if looked_up else miss,
        reason=reason,
    )


def _batching_lever(
    prompt: int,
    output: TokenRange,
    price: ModelPrice,
    plan: CachePlan,
    kind: str,
    caching: bool,
    cost: CostRange,
    hit: bool,
) -> LeverEstimate:
    if hit or not price.batch_discount_bp:
        reason = (
            "a response-cache hit costs nothing to batch"
            if hit
            else f"{price.qualified_name} has no batch discount"
        )
        return LeverEstimate(Lever.BATCHING, False, cost, cost, reason)
    batched = _cost_range(prompt, output, price, plan, kind, caching, batch=True)
    return LeverEstimate(
        Lever.BATCHING,
        applies=False,
        without=cost,
        with_=batched,
        reason=(
            f"interactive lane; on the async lane (Submit) the provider's batch discount "
            f"({price.batch_discount_bp / 100:g}%) applies"
        ),
    )


def lever_map(estimate: Estimate) -> Mapping[Lever, LeverEstimate]:
    return {lever.lever: lever for lever in estimate.levers}


__all__ = [
    "EXPECTED_OUTPUT_FRACTION",
    "OUTPUT_FLOOR",
    "CostRange",
    "Estimate",
    "Estimator",
    "Lever",
    "LeverEstimate",
    "TokenRange",
    "lever_map",
    "output_range",
]
