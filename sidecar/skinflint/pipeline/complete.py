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
already covers in full. A cascade (``cascade``) reserves its cheap and its strong worst case
together, since both attempts may be billed; a budget that cannot hold both runs the cheap
route alone (said in the route reason).

The results are domain objects (``Completion``, ``Started`` and the provider deltas); the
transport turns them into wire messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from skinflint.accounting import ModelPrice, PriceTable, Usage
from skinflint.call import Call, Lane, ModelKind, Tier, ToolUsePart, thaw_json
from skinflint.config import Settings
from skinflint.errors import (
    CostCeilingExceeded,
    DeadlineExceeded,
    InternalError,
    NotImplementedYet,
    SkinflintError,
)
from skinflint.logs import get_logger
from skinflint.memo import IdentityMemo
from skinflint.pipeline.budget_guard import BudgetGuard, Hold, Touch, refusal_error
from skinflint.pipeline.budgets import (
    BudgetAction,
)
from skinflint.pipeline.cascade import VerifierCheck, combine, failed_check
from skinflint.pipeline.dispatch import BreakerState, Deadline, Dispatcher, Outcome, Prepare
from skinflint.pipeline.pricing import Bill, bill
from skinflint.pipeline.prompt_cache import PromptCachePlanner
from skinflint.pipeline.response_cache import (
    CacheDecision,
    CacheStatus,
    Entry,
    ResponseCacheLayer,
    hit_bill,
)
from skinflint.pipeline.router_model import RouterModel
from skinflint.pipeline.routing import Candidate, Route, resolve
from skinflint.pipeline.verifier import AnswerVerifier
from skinflint.pipeline.worst_case import WorstCase, worst_case
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
#: Exact-hit answers kept (one per hot request shape).
ANSWER_MEMO_ENTRIES = 1024


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
        router: RouterModel | None = None,
        verifier: AnswerVerifier | None = None,
    ) -> None:
        self._settings = settings
        self._router = router
        self._verifier = verifier
        self._prices = prices
        self._planner = planner
        self._dispatcher = dispatcher
        self._guard = guard
        self._cache = cache
        self._baseline = prices.lookup(None, settings.baseline)
        #: Performance (bench/cache.py): an exact hit's ``Served`` and bill, by the decision
        #: and entry they were made from (both come back as the same objects on a repeat).
        self._answered: IdentityMemo[tuple[Served, Bill]] = IdentityMemo(ANSWER_MEMO_ENTRIES)

    async def complete(self, call: Call, *, timeout_s: float | None) -> Completion:
        self._check_lane(call)
        decision = self._cache.decide(call)
        entry = self._cache.get(decision)
        if entry is not None:
            return await self._answer(call, decision, entry, CacheStatus.EXACT)
        deadline = Deadline(timeout_s)  # after the local lookup: a hit never waits on it
        entry = await self._cache.get_l2(decision)
        if entry is not None:
            return await self._answer(call, decision, entry, CacheStatus.EXACT, l2=True)
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
        l2 = False
        if entry is None:
            entry = await self._cache.get_l2(decision)
            l2 = entry is not None
        if entry is not None:
            async for item in self._replay(call, decision, entry, CacheStatus.EXACT, l2=l2):
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
        self,
        call: Call,
        decision: CacheDecision,
        entry: Entry,
        status: CacheStatus,
        *,
        l2: bool = False,
    ) -> Completion:
        """A hit or a coalesced answer: zero cost, recorded as one request on the budgets."""
        try:
            touches = await self._guard.record(call.attribution, nanousd=0, tokens=0)
        except Exception as exc:  # the answer is free: a ledger failure does not take it away
            _log.error(
                "budget_record_failed",
                request_id=call.request_id,
                error=f"{type(exc).__name__}: {exc}",
            )
            touches = ()
        # An exact hit of a repeated call meets the same decision and entry objects again.
        memo = status is CacheStatus.EXACT and not l2 and entry.shared
        answered = self._answered.get((decision, entry)) if memo else None
        if answered is None:
            answered = (self._hit_served(decision, entry, status, l2=l2), hit_bill(entry.bill))
            if memo:
                self._answered.put((decision, entry), answered)
        served, bill = answered
        return Completion(
            request_id=call.request_id,
            content=entry.content,
            stop_reason=entry.stop_reason,
            served=served,
            usage=entry.usage,
            bill=bill,
            budgets=touches,
        )

    @staticmethod
    def _hit_served(
        decision: CacheDecision, entry: Entry, status: CacheStatus, *, l2: bool
    ) -> Served:
        if status is CacheStatus.COALESCED:
            reason = (
                f"response cache coalesced: waited for an identical in-flight request "
                f"(key {decision.short}…)"
            )
        elif l2:
            reason = f"response cache hit from the fleet L2 (key {decision.short}…)"
        elif status is CacheStatus.SEMANTIC and decision.similar is not None:
            score, key = decision.similar
            reason = f"semantic cache hit (similarity {score:.3f}, key {key.hex()[:8]}…)"
        else:
            reason = f"response cache hit (key {decision.short}…)"
        return Served(
            provider=entry.provider,
            model=entry.model,
            tier=entry.tier,
            lane=Lane.INTERACTIVE,
            route_reason=reason,
            attempts=0,
            cache_status=status,
        )

    async def _replay(
        self,
        call: Call,
        decision: CacheDecision,
        entry: Entry,
        status: CacheStatus,
        *,
        l2: bool = False,
    ) -> AsyncIterator[StreamItem]:
        """A stored answer as a stream: started, one delta per content part, done."""
        completion = await self._answer(call, decision, entry, status, l2=l2)
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
        route = self.route_for(call, cascade=True)
        plans: dict[Candidate, CachePlan] = {}
        route = self._fit_ceiling(call, route, plans)
        if route.escalation is not None:
            cascaded = await self._admit_cascade(call, route, plans, timeout_s)
            if cascaded is not None:
                return await self._cascade(call, route, decision, deadline, plans, *cascaded)
            route = Route(
                route.candidates,
                route.tier,
                f"{route.reason}; cascade off: the budget cannot hold both attempts",
            )
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
        route = self.route_for(call, cascade=False)
        plans: dict[Candidate, CachePlan] = {}
        route = self._fit_ceiling(call, route, plans)
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

    # -- routing and cascades -------------------------------------------------------------

    def route_for(self, call: Call, *, cascade: bool) -> Route:
        """The route Complete takes for ``call`` (Estimate asks the same question)."""
        breakers = self._dispatcher.breakers
        return resolve(
            call,
            self._settings,
            self._prices,
            router=self._router,
            healthy=lambda name: breakers.state(name) is not BreakerState.OPEN,
            cascade=cascade,
        )

    def _fit_ceiling(self, call: Call, route: Route, plans: dict[Candidate, CachePlan]) -> Route:
        """Keep to ``policy.max_cost_nanousd``: drop the models whose worst case is above it
        (then a cheaper tier, unless the model is pinned), and the cascade's escalation when
        both attempts together could pass it. The worst case bounds the bill, so a call that
        starts can never cost more than the ceiling.

        Raises:
            CostCeilingExceeded: no model the request may run on fits under the ceiling.
        """
        ceiling = call.policy.max_cost_nanousd
        if ceiling is None:
            return route
        self._plan_primary(call, route, plans)
        worst = self.worst_case(call, route.candidates, plans)
        fitting = tuple(c for c in route.candidates if worst.by_candidate[c] <= ceiling)
        if not fitting:
            return self._cheaper_under_ceiling(call, route, plans, worst, ceiling)
        note = ""
        if len(fitting) < len(route.candidates):
            dropped = ", ".join(c.qualified for c in route.candidates if c not in fitting)
            note = f"; policy.max_cost_nanousd {ceiling}: skipped {dropped} (worst case above it)"
        escalation = route.escalation
        if escalation is not None:
            self._plan_primary(call, escalation, plans)
            second = self.worst_case(call, escalation.candidates, plans)
            first = max(worst.by_candidate[c] for c in fitting)
            if first + second.nanousd > ceiling:
                escalation = None
                note += (
                    f"; cascade off: both attempts could cost {first + second.nanousd} nano-USD, "
                    f"above policy.max_cost_nanousd {ceiling}"
                )
        if not note:
            return route
        return replace(
            route,
            candidates=fitting,
            reason=route.reason + note,
            escalation=escalation,
            checks=route.checks if escalation is not None else (),
        )

    def _cheaper_under_ceiling(
        self,
        call: Call,
        route: Route,
        plans: dict[Candidate, CachePlan],
        worst: WorstCase,
        ceiling: int,
    ) -> Route:
        cheapest = min(worst.by_candidate.values())
        fix = "raise policy.max_cost_nanousd, lower params.max_tokens, or shorten the prompt"
        if call.model.kind is ModelKind.PINNED or route.tier is None:
            raise CostCeilingExceeded(
                f"the worst case of the pinned model {route.candidates[0].qualified} is "
                f"{cheapest} nano-USD, above the ceiling of {ceiling}; {fix}"
            )
        floors = (call.policy.min_tier, self._settings.feature(call.attribution.feature).min_tier)
        floor = max((t.rank for t in floors if t is not None), default=-1)
        for tier, cheaper, lower in self._cheaper_routes(call, route.tier, plans, floor=floor):
            fitting = tuple(c for c in cheaper.candidates if lower.by_candidate[c] <= ceiling)
            if fitting:
                reason = (
                    f"{route.reason}; policy.max_cost_nanousd {ceiling}: tier "
                    f"{route.tier.value!r} could cost up to {cheapest} nano-USD, tier "
                    f"{tier.value!r} fits; primary {fitting[0].qualified}"
                )
                return Route(fitting, tier, reason)
        raise CostCeilingExceeded(
            f"every model of tier {route.tier.value!r} and of the cheaper tiers the policy "
            f"allows could cost "
            f"more than the ceiling of {ceiling} nano-USD (the cheapest of tier "
            f"{route.tier.value!r}: {cheapest}); {fix}"
        )

    def _verifier_check(self, call: Call) -> VerifierCheck | None:
        """The answer verifier with the threshold of the call's feature (None: not loaded)."""
        if self._verifier is None:
            return None
        feature = call.attribution.feature
        threshold = self._settings.feature(feature).cascade_verifier_threshold
        if threshold is None:
            return VerifierCheck(self._verifier, self._verifier.default_threshold)
        return VerifierCheck(
            self._verifier, threshold, f"features.{feature}.cascade_verifier_threshold"
        )

    async def _admit_cascade(
        self,
        call: Call,
        route: Route,
        plans: dict[Candidate, CachePlan],
        timeout_s: float | None,
    ) -> tuple[WorstCase, Hold] | None:
        """Reserve both attempts of a cascade at once (cheap worst case + strong worst case);
        None when a budget refuses (the caller then runs the cheap route alone)."""
        assert route.escalation is not None
        if not await self._guard.matching(call.attribution):
            return WorstCase(0, 0, {}), Hold(call.request_id, (), (), 0, 0)
        self._plan_primary(call, route, plans)
        self._plan_primary(call, route.escalation, plans)
        first = self.worst_case(call, route.candidates, plans)
        second = self.worst_case(call, route.escalation.candidates, plans)
        ttl_s = self._reservation_ttl(timeout_s)
        result = await self._guard.reserve(
            call.request_id,
            call.attribution,
            nanousd=first.nanousd + second.nanousd,
            tokens=first.tokens + second.tokens,
            ttl_s=ttl_s,
        )
        return (first, result) if isinstance(result, Hold) else None

    async def _cascade(
        self,
        call: Call,
        route: Route,
        decision: CacheDecision,
        deadline: Deadline,
        plans: dict[Candidate, CachePlan],
        worst: WorstCase,
        hold: Hold,
    ) -> Completion:
        """The cheap route, then the escalation route if its answer fails a check (see
        ``cascade``); the answer's cost, usage and route reason cover both attempts."""
        escalation = route.escalation
        assert escalation is not None
        prepare = self._preparer(call, plans)
        try:
            response, outcome = await self._dispatcher.complete(route.candidates, prepare, deadline)
        except BaseException:
            await self._guard.release(hold)
            raise
        try:
            first = self._completion(call, route, outcome, plans, response, decision)
        except BaseException:
            cost = worst.by_candidate.get(outcome.candidate, 0)
            await self._guard.commit(hold, nanousd=cost, tokens=worst.tokens)
            raise
        failure = failed_check(call, response, route.checks, self._verifier_check(call))
        if failure is None:
            reason = f"{first.served.route_reason}; cascade: the answer passed every check"
            completion = replace(first, served=replace(first.served, route_reason=reason))
            self._cache.put(decision, _entry(completion))
            return await self._commit(hold, completion)
        spent = first.usage.prompt_tokens + first.usage.output_tokens
        try:
            response, second_outcome = await self._dispatcher.complete(
                escalation.candidates, prepare, deadline
            )
            final = self._completion(call, escalation, second_outcome, plans, response, decision)
        except BaseException:
            # The first attempt was billed; the escalation failed (or could not be priced).
            await self._guard.commit(hold, nanousd=first.bill.cost_nanousd, tokens=spent)
            raise
        reason = (
            f"{route.reason}; cascade escalated: the answer of {outcome.candidate.qualified} "
            f"failed check {failure} (that attempt cost {first.bill.cost_nanousd} nano-USD, "
            f"included in the cost); {final.served.route_reason}"
        )
        served = replace(
            final.served, route_reason=reason, attempts=outcome.attempts + second_outcome.attempts
        )
        completion = replace(
            final,
            served=served,
            usage=_add_usage(first.usage, final.usage),
            bill=combine(first.bill, final.bill),
        )
        self._cache.put(decision, _entry(completion))
        return await self._commit(hold, completion)

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
        """The worst case of ``call`` on each candidate (``pipeline.worst_case``)."""
        return worst_case(call, candidates, plans, settings=self._settings, price_of=self._price)

    async def _admit(
        self,
        call: Call,
        route: Route,
        plans: dict[Candidate, CachePlan],
        timeout_s: float | None,
    ) -> tuple[Route, WorstCase, Hold]:
        """Reserve the worst case on every matching budget; on a refusal apply the refusing
        budget's action (reject, downgrade to a cheaper tier that fits, defer)."""
        ttl_s = self._reservation_ttl(timeout_s)
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
        for tier, cheaper, worst in self._cheaper_routes(call, route.tier, plans):
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

    def _cheaper_routes(
        self, call: Call, tier: Tier, plans: dict[Candidate, CachePlan], *, floor: int = -1
    ) -> Iterator[tuple[Tier, Route, WorstCase]]:
        """The configured tiers below ``tier`` and down to rank ``floor``, dearest first, each
        with its route and worst case (a budget downgrade and the cost ceiling walk the same
        way down). A tier with an unpriced model has no worst case: it is not a fit."""
        for lower in sorted(Tier, key=lambda t: t.rank, reverse=True):
            if lower.rank >= tier.rank or lower.rank < floor:
                continue
            if not self._settings.tiers.models(lower):
                continue
            cheaper = _tier_route(self._settings, lower)
            self._plan_primary(call, cheaper, plans)
            try:
                worst = self.worst_case(call, cheaper.candidates, plans)
            except SkinflintError:
                continue
            yield lower, cheaper, worst

    def _reservation_ttl(self, timeout_s: float | None) -> float:
        """How long a reservation outlives its call: the caller's deadline (or the default
        TTL) plus the margin, so a dead sidecar's holds expire."""
        cfg = self._settings.budgets
        base = timeout_s if timeout_s is not None else cfg.reservation_ttl_s
        return base + cfg.reservation_margin_s

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
        # The budget commit follows in the caller; the App records the span and the ledger.
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


def _add_usage(a: Usage, b: Usage) -> Usage:
    """Both attempts' tokens of a cascade (what was billed, and what budgets are charged)."""
    return Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cache_read_tokens=a.cache_read_tokens + b.cache_read_tokens,
        cache_write_5m_tokens=a.cache_write_5m_tokens + b.cache_write_5m_tokens,
        cache_write_1h_tokens=a.cache_write_1h_tokens + b.cache_write_1h_tokens,
        reasoning_tokens=a.reasoning_tokens + b.reasoning_tokens,
    )


def _tier_route(settings: Settings, tier: Tier) -> Route:
    """The candidates of ``tier`` from config (the caller checked that it has some)."""
    names = settings.tiers.models(tier)
    candidates = tuple(Candidate(*name.split("/", 1), tier) for name in names)
    return Route(candidates, tier, f"budget downgrade to tier {tier.value!r}")


__all__ = ["CompletePipeline", "Completion", "Served", "Started", "StreamItem", "WorstCase"]
