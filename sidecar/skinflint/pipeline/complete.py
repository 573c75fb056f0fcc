"""The Complete path: one ``Call`` through the stages built so far, to a priced answer.

Order: lane check -> response cache (``response_cache``: a hit or a coalesced answer returns
here, recorded on the budgets as one request at zero cost) -> model resolution (``routing``) ->
budget admission (``budget_guard``: reserve the worst case, or reject / downgrade / defer) ->
prompt-cache plan per model (``prompt_cache``) -> dispatch with retries and fallback
(``dispatch``) -> pricing against the baseline (``pricing``) -> response-cache store (a
storable answer, and a stream only once its ``done`` is assembled) -> budget commit. The
classifier (inside ``routing.resolve``) and telemetry (after pricing) slot in at the marked
places without changing this shape.

**Budgets.** One reservation per call, for the **maximum worst case over the fallback chain**
(so a fallback to a dearer model is already covered and never needs a second round-trip to the
store, at the price of holding a little more while the call runs). A candidate's worst case is
``count_chat_tokens`` of the prompt (each piece framed, images bounded; an over-estimate) at the
highest input-side rate its prompt-cache plan can incur, plus ``max_tokens`` (the caller's, or
the feature's / global default cap) at the output rate, rounded up. The primary's plan is made
before the reservation (it is the one dispatch uses); fallbacks, not planned yet, are priced at
their highest input-side rate. After the call the billed cost is committed and the rest released;
a call that fails releases everything (failed attempts are not billed by providers). A stream
commits its ``done`` usage; a stream cut after content was sent commits the worst case of the
model that was streaming (the provider billed something, the amount is unknown: never zero). A
stream cannot pass a hard limit: the provider stops at ``max_tokens``, which the reservation
already covers in full.

The results are domain objects (``Completion``, ``Started`` and the provider deltas); the
transport turns them into wire messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from skinflint import _native
from skinflint.accounting import ModelPrice, PriceTable, Usage
from skinflint.call import Call, Lane, ModelKind, Tier, ToolUsePart, thaw_json
from skinflint.config import Settings
from skinflint.errors import (
    DeadlineExceeded,
    InternalError,
    NotImplementedYet,
    SkinflintError,
    native_errors,
)
from skinflint.logs import get_logger
from skinflint.pipeline.budget_guard import BudgetGuard, Hold, Touch, refusal_error
from skinflint.pipeline.budgets import (
    IMAGE_TOKENS_BOUND,
    BudgetAction,
    image_count,
    input_side_rate,
    prompt_pieces,
    worst_case_nanousd,
)
from skinflint.pipeline.dispatch import Deadline, Dispatcher, Outcome, Prepare
from skinflint.pipeline.pricing import Bill, bill
from skinflint.pipeline.prompt_cache import PromptCachePlanner
from skinflint.pipeline.response_cache import (
    CacheDecision,
    CacheStatus,
    Entry,
    ResponseCacheLayer,
    hit_bill,
)
from skinflint.pipeline.routing import Candidate, Route, resolve
from skinflint.providers.base import (
    CachePlan,
    Content,
    ProviderRequest,
    ProviderResponse,
    StopReason,
    StreamEnd,
    TextDelta,
    ToolUseDelta,
)

_log = get_logger("complete")

#: How many times a follower waits for a leader that failed before it calls on its own.
MAX_COALESCE_WAITS = 3


@dataclass(frozen=True, slots=True)
class Served:
    """Who answered and why (the wire's ``ServedBy``)."""

    provider: str
    model: str
    tier: Tier | None
    lane: Lane
    route_reason: str
    attempts: int
    cache_status: CacheStatus = CacheStatus.BYPASS


@dataclass(frozen=True, slots=True)
class Completion:
    request_id: str
    content: tuple[Content, ...]
    stop_reason: StopReason
    served: Served
    usage: Usage
    bill: Bill
    #: The budgets the call was charged against, with what remains of each.
    budgets: tuple[Touch, ...] = ()


@dataclass(frozen=True, slots=True)
class WorstCase:
    """The reservation of one call: per-candidate worst cases and the amounts held."""

    prompt_tokens: int
    max_tokens: int
    by_candidate: Mapping[Candidate, int]

    @property
    def nanousd(self) -> int:
        return max(self.by_candidate.values(), default=0)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.max_tokens


@dataclass(frozen=True, slots=True)
class Started:
    """The first event of a stream: the model is committed and content follows."""

    request_id: str
    served: Served


StreamItem = Started | TextDelta | ToolUseDelta | Completion


class CompletePipeline:
    """Runs ``Call``s on the interactive lane (unary and streaming)."""

    def __init__(
        self,
        settings: Settings,
        prices: PriceTable,
        planner: PromptCachePlanner,
        dispatcher: Dispatcher,
        guard: BudgetGuard,
        cache: ResponseCacheLayer,
    ) -> None:
        self._settings = settings
        self._prices = prices
        self._planner = planner
        self._dispatcher = dispatcher
        self._guard = guard
        self._cache = cache
        self._baseline = prices.lookup(None, settings.baseline)

    async def complete(self, call: Call, *, timeout_s: float | None) -> Completion:
        self._check_lane(call)
        deadline = Deadline(timeout_s)
        decision = self._cache.decide(call)
        entry = self._cache.get(decision)
        if entry is not None:
            return await self._answer(call, decision, entry, CacheStatus.EXACT)
        decision, entry = await self._cache.semantic(call, decision)
        if entry is not None:
            return await self._answer(call, decision, entry, CacheStatus.SEMANTIC)
        if decision.coalesce:
            for _ in range(MAX_COALESCE_WAITS):
                future, leading = self._cache.join(decision)
                if leading:
                    stored: Entry | None = None
                    try:
                        completion = await self._complete_miss(call, decision, deadline)
                        stored = _entry(completion)
                        return completion
                    finally:
                        self._cache.settle(decision, future, stored)
                entry = await self._follow(future, deadline)
                if entry is not None:
                    return await self._answer(call, decision, entry, CacheStatus.COALESCED)
                # The leader failed: nothing of it is used; look up again, then lead or wait.
                entry = self._cache.get(decision)
                if entry is not None:
                    return await self._answer(call, decision, entry, CacheStatus.EXACT)
        return await self._complete_miss(call, decision, deadline)

    async def stream(self, call: Call, *, timeout_s: float | None) -> AsyncIterator[StreamItem]:
        self._check_lane(call)
        deadline = Deadline(timeout_s)
        decision = self._cache.decide(call)
        entry = self._cache.get(decision)
        if entry is not None:
            async for item in self._replay(call, decision, entry, CacheStatus.EXACT):
                yield item
            return
        decision, entry = await self._cache.semantic(call, decision)
        if entry is not None:
            async for item in self._replay(call, decision, entry, CacheStatus.SEMANTIC):
                yield item
            return
        if decision.coalesce:
            for _ in range(MAX_COALESCE_WAITS):
                future, leading = self._cache.join(decision)
                if leading:
                    stored: Entry | None = None
                    try:
                        events = self._stream_miss(call, decision, deadline)
                        async with contextlib.aclosing(events):
                            async for item in events:
                                if isinstance(item, Completion):
                                    stored = _entry(item)
                                yield item
                        return
                    finally:
                        self._cache.settle(decision, future, stored)
                entry = await self._follow(future, deadline)
                if entry is None:
                    entry = self._cache.get(decision)
                    status = CacheStatus.EXACT
                else:
                    status = CacheStatus.COALESCED
                if entry is not None:
                    async for item in self._replay(call, decision, entry, status):
                        yield item
                    return
        events = self._stream_miss(call, decision, deadline)
        async with contextlib.aclosing(events):
            async for item in events:
                yield item

    # -- response cache -------------------------------------------------------------------

    async def _follow(
        self, future: asyncio.Future[Entry | None], deadline: Deadline
    ) -> Entry | None:
        """Wait for the leader's answer (None: it failed), within the caller's deadline."""
        try:
            async with asyncio.timeout(deadline.remaining()):
                return await asyncio.shield(future)
        except TimeoutError:
            raise DeadlineExceeded(
                "the deadline ran out while waiting for an identical in-flight request "
                "(single flight) to answer"
            ) from None

    async def _answer(
        self, call: Call, decision: CacheDecision, entry: Entry, status: CacheStatus
    ) -> Completion:
        """A hit or a coalesced answer: zero cost, recorded as one request on the budgets."""
        if status is CacheStatus.COALESCED:
            reason = (
                f"response cache coalesced: waited for an identical in-flight request "
                f"(key {decision.short}…)"
            )
        elif status is CacheStatus.SEMANTIC and decision.similar is not None:
            score, key = decision.similar
            reason = f"semantic cache hit (similarity {score:.3f}, key {key.hex()[:8]}…)"
        else:
            reason = f"response cache hit (key {decision.short}…)"
        served = Served(
            provider=entry.provider,
            model=entry.model,
            tier=entry.tier,
            lane=Lane.INTERACTIVE,
            route_reason=reason,
            attempts=0,
            cache_status=status,
        )
        try:
            touches = await self._guard.record(call.attribution, nanousd=0, tokens=0)
        except Exception as exc:  # the answer is free: a ledger failure does not take it away
            _log.error(
                "budget_record_failed",
                request_id=call.request_id,
                error=f"{type(exc).__name__}: {exc}",
            )
            touches = ()
        return Completion(
            request_id=call.request_id,
            content=entry.content,
            stop_reason=entry.stop_reason,
            served=served,
            usage=entry.usage,
            bill=hit_bill(entry.bill),
            budgets=touches,
        )

    async def _replay(
        self, call: Call, decision: CacheDecision, entry: Entry, status: CacheStatus
    ) -> AsyncIterator[StreamItem]:
        """A stored answer as a stream: started, one delta per content part, done."""
        completion = await self._answer(call, decision, entry, status)
        yield Started(call.request_id, completion.served)
        for index, part in enumerate(completion.content):
            if isinstance(part, ToolUsePart):
                arguments = json.dumps(thaw_json(part.input), separators=(",", ":"))
                yield ToolUseDelta(index, arguments, id=part.id, name=part.name)
            else:
                yield TextDelta(index, part.text)
        yield completion

    # -- a miss: route, admit, dispatch, price, store, commit -----------------------------

    async def _complete_miss(
        self, call: Call, decision: CacheDecision, deadline: Deadline
    ) -> Completion:
        timeout_s = deadline.remaining()
        route = resolve(call, self._settings, self._prices)
        plans: dict[Candidate, CachePlan] = {}
        route, worst, hold = await self._admit(call, route, plans, timeout_s)
        try:
            response, outcome = await self._dispatcher.complete(
                route.candidates, self._preparer(call, plans), deadline
            )
        except BaseException:
            await self._guard.release(hold)
            raise
        try:
            completion = self._completion(call, route, outcome, plans, response, decision)
        except BaseException:
            # Billed but not priced (a bug or a price gap): hold the worst case, never zero.
            await self._guard.commit(
                hold,
                nanousd=worst.by_candidate.get(outcome.candidate, 0),
                tokens=worst.tokens,
            )
            raise
        self._cache.put(decision, _entry(completion))
        return await self._commit(hold, completion)

    async def _stream_miss(
        self, call: Call, decision: CacheDecision, deadline: Deadline
    ) -> AsyncIterator[StreamItem]:
        timeout_s = deadline.remaining()
        route = resolve(call, self._settings, self._prices)
        plans: dict[Candidate, CachePlan] = {}
        route, worst, hold = await self._admit(call, route, plans, timeout_s)
        outcome: Outcome | None = None
        settled = False
        try:
            events = self._dispatcher.stream(
                route.candidates, self._preparer(call, plans), deadline
            )
            async with contextlib.aclosing(events):
                async for event in events:
                    if isinstance(event, Outcome):
                        outcome = event
                        served = self._served(route, outcome, plans, decision)
                        yield Started(call.request_id, served)
                    elif isinstance(event, StreamEnd):
                        assert outcome is not None
                        completion = self._completion(
                            call, route, outcome, plans, event.response, decision
                        )
                        settled = True
                        # Stored only now, complete; a cut stream never gets here.
                        self._cache.put(decision, _entry(completion))
                        yield await self._commit(hold, completion)
                        return
                    else:
                        yield event
            raise InternalError("the provider stream ended without its final event")
        finally:
            if not settled:
                if outcome is None:
                    await self._guard.release(hold)
                else:
                    # Content was produced, so the provider billed an amount we cannot know.
                    await self._guard.commit(
                        hold,
                        nanousd=worst.by_candidate.get(outcome.candidate, 0),
                        tokens=worst.tokens,
                    )

    # -- budgets --------------------------------------------------------------------------

    async def _commit(self, hold: Hold, completion: Completion) -> Completion:
        usage = completion.usage
        touches = await self._guard.commit(
            hold,
            nanousd=completion.bill.cost_nanousd,
            tokens=usage.prompt_tokens + usage.output_tokens,
        )
        return replace(completion, budgets=touches)

    def worst_case(
        self, call: Call, candidates: tuple[Candidate, ...], plans: Mapping[Candidate, CachePlan]
    ) -> WorstCase:
        """The worst case of ``call`` on each candidate (see the module docstring)."""
        max_tokens = call.params.max_tokens or self._settings.max_tokens_cap(
            call.attribution.feature
        )
        pieces = prompt_pieces(call)
        images = image_count(call) * IMAGE_TOKENS_BOUND
        by_candidate: dict[Candidate, int] = {}
        prompt_max = 0
        counts: dict[str, int] = {}  # by tokenizer encoding: most chains share one
        for candidate in candidates:
            with native_errors("counting the prompt's tokens for the budget reservation"):
                encoding = _native.encoding_for_model(candidate.model)
                if encoding not in counts:
                    counts[encoding] = _native.count_chat_tokens(candidate.model, pieces).count
            prompt = counts[encoding] + images
            prompt_max = max(prompt_max, prompt)
            price = self._price(candidate)
            kind = self._settings.providers[candidate.provider].kind
            rate = input_side_rate(
                price, plans.get(candidate), automatic_writes=kind != "anthropic"
            )
            by_candidate[candidate] = worst_case_nanousd(prompt, max_tokens, price, rate)
        return WorstCase(prompt_max, max_tokens, by_candidate)

    async def _admit(
        self,
        call: Call,
        route: Route,
        plans: dict[Candidate, CachePlan],
        timeout_s: float | None,
    ) -> tuple[Route, WorstCase, Hold]:
        """Reserve the worst case on every matching budget; on a refusal apply the refusing
        budget's action (reject, downgrade to a cheaper tier that fits, defer)."""
        cfg = self._settings.budgets
        ttl_s = (timeout_s if timeout_s is not None else cfg.reservation_ttl_s) + (
            cfg.reservation_margin_s
        )
        if not await self._guard.matching(call.attribution):
            # No budget to charge: skip the token count (nothing is held or committed).
            return route, WorstCase(0, 0, {}), Hold(call.request_id, (), (), 0, 0)
        self._plan_primary(call, route, plans)
        worst = self.worst_case(call, route.candidates, plans)
        result = await self._guard.reserve(
            call.request_id,
            call.attribution,
            nanousd=worst.nanousd,
            tokens=worst.tokens,
            ttl_s=ttl_s,
        )
        if isinstance(result, Hold):
            return route, worst, result
        refusal = result
        if refusal.spec.action is not BudgetAction.DOWNGRADE:
            raise refusal_error(refusal, now=time.time())
        if call.model.kind is ModelKind.PINNED or route.tier is None:
            raise refusal_error(
                refusal,
                now=time.time(),
                note="action downgrade: a pinned model is never rerouted, so the call is rejected",
            )
        for tier in sorted(Tier, key=lambda t: t.rank, reverse=True):
            if tier.rank >= route.tier.rank or not self._settings.tiers.models(tier):
                continue
            cheaper = _tier_route(self._settings, tier)
            self._plan_primary(call, cheaper, plans)
            try:
                worst = self.worst_case(call, cheaper.candidates, plans)
            except SkinflintError:
                continue  # a model without a price cannot be reserved for: not a fit
            result = await self._guard.reserve(
                call.request_id,
                call.attribution,
                nanousd=worst.nanousd,
                tokens=worst.tokens,
                ttl_s=ttl_s,
            )
            if isinstance(result, Hold):
                reason = (
                    f"{route.reason}; budget downgrade: budget {refusal.spec.id!r} "
                    f"({refusal.spec.scope}) cannot hold tier {route.tier.value!r}, "
                    f"tier {tier.value!r} fits; primary {cheaper.candidates[0].qualified}"
                )
                return Route(cheaper.candidates, tier, reason), worst, result
            if result.spec.id != refusal.spec.id and result.spec.action is not (
                BudgetAction.DOWNGRADE
            ):
                raise refusal_error(result, now=time.time())
        raise refusal_error(
            refusal, now=time.time(), note="action downgrade: no cheaper tier fits either"
        )

    def _plan_primary(self, call: Call, route: Route, plans: dict[Candidate, CachePlan]) -> None:
        """Make the primary's prompt-cache plan now (dispatch reuses it): its worst case
        depends on the breakpoints it places."""
        primary = route.candidates[0]
        if primary not in plans:
            plans[primary] = self._plan(call, primary)

    def _plan(self, call: Call, candidate: Candidate) -> CachePlan:
        price = self._price(candidate)
        return self._planner.plan(
            call,
            provider_kind=self._settings.providers[candidate.provider].kind,
            provider=candidate.provider,
            model=candidate.model,
            min_cacheable_tokens=price.min_cacheable_tokens,
        )

    # -- stages ---------------------------------------------------------------------------

    def _check_lane(self, call: Call) -> None:
        lane = call.policy.lane
        if lane is Lane.ASYNC:
            raise NotImplementedYet(
                "policy.lane",
                "the async lane is not available in this build yet (it lands with the lanes "
                "issue, through Submit); send LANE_INTERACTIVE or leave it unspecified",
            )
        if lane is Lane.LOCAL:
            raise NotImplementedYet(
                "policy.lane",
                "the local lane (vLLM spill-over) is not available in this build yet; send "
                'model "local" to run on the local tier interactively',
            )

    def _preparer(self, call: Call, plans: dict[Candidate, CachePlan]) -> Prepare:
        max_tokens = call.params.max_tokens or self._settings.max_tokens_cap(
            call.attribution.feature
        )

        def prepare(candidate: Candidate, timeout_s: float | None) -> ProviderRequest:
            plan = plans.get(candidate)
            if plan is None:
                plan = self._plan(call, candidate)
                plans[candidate] = plan
            return ProviderRequest(
                call=call,
                model=candidate.model,
                max_tokens=max_tokens,
                cache_plan=plan,
                timeout_s=timeout_s,
            )

        return prepare

    def _price(self, candidate: Candidate) -> ModelPrice:
        return self._prices.lookup(candidate.provider, candidate.model, datetime.now(UTC))

    def _served(
        self,
        route: Route,
        outcome: Outcome,
        plans: Mapping[Candidate, CachePlan],
        decision: CacheDecision,
    ) -> Served:
        candidate = outcome.candidate
        reasons = [route.reason]
        dispatch_reason = outcome.reason(route.candidates[0])
        if dispatch_reason:
            reasons.append(dispatch_reason)
        plan = plans.get(candidate)
        if plan is not None and plan.reason:
            reasons.append(plan.reason)
        return Served(
            provider=candidate.provider,
            model=candidate.model,
            tier=candidate.tier,
            lane=Lane.INTERACTIVE,
            route_reason="; ".join(reasons),
            attempts=outcome.attempts,
            cache_status=decision.miss_status,
        )

    def _completion(
        self,
        call: Call,
        route: Route,
        outcome: Outcome,
        plans: Mapping[Candidate, CachePlan],
        response: ProviderResponse,
        decision: CacheDecision,
    ) -> Completion:
        price = self._price(outcome.candidate)
        priced = bill(response.usage, price, self._baseline, price_version=self._prices.version)
        # Telemetry goes here (later issue); the budget commit follows in the caller.
        return Completion(
            request_id=call.request_id,
            content=response.content,
            stop_reason=response.stop_reason,
            served=self._served(route, outcome, plans, decision),
            usage=response.usage,
            bill=priced,
        )


def _entry(completion: Completion) -> Entry:
    """What the response cache stores of an answer (nothing request- or tenant-specific)."""
    served = completion.served
    return Entry(
        content=completion.content,
        stop_reason=completion.stop_reason,
        usage=completion.usage,
        provider=served.provider,
        model=served.model,
        tier=served.tier,
        bill=completion.bill,
    )


def _tier_route(settings: Settings, tier: Tier) -> Route:
    """The candidates of ``tier`` from config (the caller checked that it has some)."""
    names = settings.tiers.models(tier)
    candidates = tuple(Candidate(*name.split("/", 1), tier) for name in names)
    return Route(candidates, tier, f"budget downgrade to tier {tier.value!r}")


__all__ = ["CompletePipeline", "Completion", "Served", "Started", "StreamItem", "WorstCase"]
