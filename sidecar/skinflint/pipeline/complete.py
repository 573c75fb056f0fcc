"""The Complete path: one ``Call`` through the stages built so far, to a priced answer.

Order: lane check -> model resolution (``routing``) -> [budget guard: later issue] ->
prompt-cache plan per model (``prompt_cache``) -> dispatch with retries and fallback
(``dispatch``) -> pricing against the baseline (``pricing``). The response cache (before
routing), the classifier (inside ``routing.resolve``), budgets (around dispatch) and
telemetry (after pricing) slot in at the marked places without changing this shape.

The results are domain objects (``Completion``, ``Started`` and the provider deltas); the
transport turns them into wire messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from skinflint.accounting import ModelPrice, PriceTable, Usage
from skinflint.call import Call, Lane, Tier
from skinflint.config import Settings
from skinflint.errors import InternalError, NotImplementedYet
from skinflint.pipeline.dispatch import Deadline, Dispatcher, Outcome, Prepare
from skinflint.pipeline.pricing import Bill, bill
from skinflint.pipeline.prompt_cache import PromptCachePlanner
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


@dataclass(frozen=True, slots=True)
class Served:
    """Who answered and why (the wire's ``ServedBy`` minus the response-cache status)."""

    provider: str
    model: str
    tier: Tier | None
    lane: Lane
    route_reason: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Completion:
    request_id: str
    content: tuple[Content, ...]
    stop_reason: StopReason
    served: Served
    usage: Usage
    bill: Bill


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
    ) -> None:
        self._settings = settings
        self._prices = prices
        self._planner = planner
        self._dispatcher = dispatcher
        self._baseline = prices.lookup(None, settings.baseline)

    async def complete(self, call: Call, *, timeout_s: float | None) -> Completion:
        route = self._route(call)
        deadline = Deadline(timeout_s)
        plans: dict[Candidate, CachePlan] = {}
        response, outcome = await self._dispatcher.complete(
            route.candidates, self._preparer(call, plans), deadline
        )
        return self._completion(call, route, outcome, plans, response)

    async def stream(self, call: Call, *, timeout_s: float | None) -> AsyncIterator[StreamItem]:
        route = self._route(call)
        deadline = Deadline(timeout_s)
        plans: dict[Candidate, CachePlan] = {}
        events = self._dispatcher.stream(route.candidates, self._preparer(call, plans), deadline)
        outcome: Outcome | None = None
        async with contextlib.aclosing(events):
            async for event in events:
                if isinstance(event, Outcome):
                    outcome = event
                    yield Started(call.request_id, self._served(route, outcome, plans))
                elif isinstance(event, StreamEnd):
                    assert outcome is not None
                    yield self._completion(call, route, outcome, plans, event.response)
                    return
                else:
                    yield event
        raise InternalError("the provider stream ended without its final event")

    # -- stages ---------------------------------------------------------------------------

    def _route(self, call: Call) -> Route:
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
        # Response cache lookup goes here (later issue).
        return resolve(call, self._settings, self._prices)

    def _preparer(self, call: Call, plans: dict[Candidate, CachePlan]) -> Prepare:
        max_tokens = (
            call.params.max_tokens
            or self._settings.feature(call.attribution.feature).default_max_tokens
        )

        def prepare(candidate: Candidate, timeout_s: float | None) -> ProviderRequest:
            plan = plans.get(candidate)
            if plan is None:
                price = self._price(candidate)
                plan = self._planner.plan(
                    call,
                    provider_kind=self._settings.providers[candidate.provider].kind,
                    provider=candidate.provider,
                    model=candidate.model,
                    min_cacheable_tokens=price.min_cacheable_tokens,
                )
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
        self, route: Route, outcome: Outcome, plans: Mapping[Candidate, CachePlan]
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
        )

    def _completion(
        self,
        call: Call,
        route: Route,
        outcome: Outcome,
        plans: Mapping[Candidate, CachePlan],
        response: ProviderResponse,
    ) -> Completion:
        price = self._price(outcome.candidate)
        priced = bill(response.usage, price, self._baseline, price_version=self._prices.version)
        # Budget commit and telemetry go here (later issues).
        return Completion(
            request_id=call.request_id,
            content=response.content,
            stop_reason=response.stop_reason,
            served=self._served(route, outcome, plans),
            usage=response.usage,
            bill=priced,
        )


__all__ = ["CompletePipeline", "Completion", "Served", "Started", "StreamItem"]
