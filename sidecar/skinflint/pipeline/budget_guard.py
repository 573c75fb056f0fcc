"""The budget guard: reserve the worst case before a call, commit the actual cost after it.

The interface every lane uses (interactive now; the response cache and the async lane later)
is four calls on ``BudgetGuard``:

* ``reserve(reservation_id, attribution, nanousd=, tokens=, ttl_s=)`` holds the amounts on
  **every** budget whose scope matches the call, atomically (all or none; the store decides).
  It returns a ``Hold`` (admitted) or a ``Refusal`` (the first budget that did not fit, with
  its state and action). The caller decides what a refusal means (``refusal_error`` builds
  the RESOURCE_EXHAUSTED for reject and defer; downgrade is the router's business).
* ``commit(hold, nanousd=, tokens=)`` releases the hold and adds the actual spend (at most
  what was reserved: that is what makes overspend impossible), returning the ``Touch`` of each
  charged budget (what remains) for the response.
* ``release(hold)``: nothing was billed (the call failed before a provider billed it).
* ``record(attribution, nanousd=, tokens=)``: spend without a reservation (a cache hit: zero
  cost, counted as one request).

Reservations expire ``ttl_s`` after they are made (the call's deadline plus
``budgets.reservation_margin_s``), so a crashed sidecar cannot pin a budget.

**When the store fails.** A reservation that cannot be made fails the call closed: UNAVAILABLE
(retryable), never an unguarded call. A commit or release that fails after the provider answered
does not take the answer away from the caller: it is logged (``budget_commit_failed`` with the
amounts) and the hold expires on its own; the response then lists no budgets.

**Soft thresholds.** After each commit the guard compares each window's spend before and after
(``Committed.before/after``); a percentage of a limit crossed by this commit is reported once:
a structured log line ``budget_soft_threshold``, a ``skinflint.budget.soft_threshold`` event on
the current OpenTelemetry span, one increment of the ``skinflint.budget.soft_threshold_crossings``
counter, and every hook in ``threshold_hooks``. Spend only grows within a window, so a threshold
is crossed at most once per window.

**Specs.** Budget specs live in the store (so a fleet shares them); the guard keeps a copy for
matching, refreshed every ``SPEC_REFRESH_S`` seconds and at once after a local set or delete.
Specs seeded from config (``budgets.seed``) are upserted before the first operation.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from opentelemetry import metrics, trace

from skinflint.budget_store.base import BudgetStore, Charge, Committed, WindowState
from skinflint.call import Attribution
from skinflint.config import BudgetSeed
from skinflint.errors import (
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SkinflintError,
    Unavailable,
)
from skinflint.logs import get_logger
from skinflint.pipeline.budgets import (
    BUDGET_ID_PATTERN,
    BudgetAction,
    BudgetListQuery,
    BudgetSpec,
    BudgetWindow,
    parse_scope,
    scope_matches,
    spec_from_json,
    spec_to_json,
    window_bounds,
)

_log = get_logger("budgets")

#: How long a guard trusts its copy of the specs before reading the store again (seconds).
SPEC_REFRESH_S = 5.0


@dataclass(frozen=True, slots=True)
class Budget:
    """A spec with the state of its current window (what the budget RPCs return)."""

    spec: BudgetSpec
    state: WindowState
    window_start: int
    #: Unix seconds the window resets at; None for a TOTAL window.
    resets_at: int | None

    @property
    def remaining_nanousd(self) -> int:
        return _remaining(
            self.spec.limit_nanousd, self.state.spent_nanousd, self.state.reserved_nanousd
        )

    @property
    def remaining_tokens(self) -> int:
        return _remaining(
            self.spec.limit_tokens, self.state.spent_tokens, self.state.reserved_tokens
        )


def _remaining(limit: int, spent: int, reserved: int) -> int:
    """What is left of a limit (0 when the limit is 0, i.e. there is no limit of that kind)."""
    return max(0, limit - spent - reserved) if limit else 0


@dataclass(frozen=True, slots=True)
class Touch:
    """A budget a call was charged against, and what remains after the call."""

    budget_id: str
    scope: str
    remaining_nanousd: int
    remaining_tokens: int
    resets_at: int | None


@dataclass(frozen=True, slots=True)
class Hold:
    """An admitted reservation (``charges`` may be empty: no budget matched)."""

    reservation_id: str
    specs: tuple[BudgetSpec, ...]
    charges: tuple[Charge, ...]
    nanousd: int
    tokens: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a reservation was refused: the budget that did not fit and its window."""

    spec: BudgetSpec
    state: WindowState
    limit_kind: str
    window_start: int
    resets_at: int | None
    #: What the call asked for.
    nanousd: int
    tokens: int


@dataclass(frozen=True, slots=True)
class ThresholdCrossed:
    """A soft threshold crossed by one commit (the payload of the telemetry seam)."""

    budget_id: str
    scope: str
    percent: int
    #: "nanousd" or "tokens".
    kind: str
    spent: int
    limit: int
    window_start: int


ThresholdHook = Callable[[ThresholdCrossed], None]


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether one budget would admit a call now (``BudgetGuard.would_admit``)."""

    budget: Budget
    admitted: bool
    #: "nanousd" or "tokens": the limit the call would cross; "" when admitted.
    limit_kind: str = ""


@dataclass
class _SpecCache:
    specs: dict[str, BudgetSpec] = field(default_factory=dict)
    loaded_at: float | None = None


class BudgetGuard:
    """Reserve / commit / release against the matching budgets (see the module docstring)."""

    def __init__(
        self,
        store: BudgetStore,
        *,
        seed: Sequence[BudgetSeed] = (),
        clock: Callable[[], float] = time.time,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.store = store
        self._seed = tuple(seed_to_spec(s) for s in seed)
        self._seeded = not self._seed
        self._clock = clock
        self._cache = _SpecCache()
        self._lock = asyncio.Lock()
        #: Extra listeners called for every soft threshold crossed (after the log line, the
        #: span event and the metric).
        self.threshold_hooks: list[ThresholdHook] = []
        # The OpenTelemetry API is a no-op until an SDK provider is configured, so this costs
        # nothing when telemetry is off.
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("skinflint")
        self._threshold_counter = meter.create_counter(
            "skinflint.budget.soft_threshold_crossings",
            unit="{crossing}",
            description="Soft budget thresholds crossed (once per threshold per window)",
        )

    # -- specs ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Upsert the seeded specs (idempotent; every operation calls it first)."""
        if self._seeded:
            return
        async with self._lock:
            if self._seeded:
                return
            for spec in self._seed:
                await self.store.put_spec(spec.id, spec_to_json(spec))
            self._seeded = True
            self._cache.loaded_at = None
            _log.info("budgets_seeded", budgets=[s.id for s in self._seed])

    def _fresh_specs(self) -> dict[str, BudgetSpec] | None:
        """The specs as last loaded while they are fresh; None when they must be (re)loaded."""
        loaded = self._cache.loaded_at
        if self._seeded and loaded is not None and time.monotonic() - loaded < SPEC_REFRESH_S:
            return self._cache.specs
        return None

    async def _specs(self) -> dict[str, BudgetSpec]:
        fresh = self._fresh_specs()
        if fresh is not None:
            return fresh
        await self.start()
        now = time.monotonic()
        loaded = self._cache.loaded_at
        if loaded is None or now - loaded >= SPEC_REFRESH_S:
            specs: dict[str, BudgetSpec] = {}
            try:
                stored = await self.store.list_specs()
            except Exception as exc:
                _log.error("budget_specs_unreadable", error=f"{type(exc).__name__}: {exc}")
                raise Unavailable(
                    "the budget store could not be reached to read the budgets "
                    f"({type(exc).__name__}: {exc}); no call is made unguarded, retry it"
                ) from exc
            for budget_id, text in stored:
                try:
                    specs[budget_id] = spec_from_json(text)
                except (ValueError, KeyError, TypeError) as exc:
                    _log.error("budget_spec_unreadable", budget_id=budget_id, error=str(exc))
            self._cache = _SpecCache(specs, now)
        return self._cache.specs

    async def set_budget(self, spec: BudgetSpec) -> Budget:
        await self.start()
        await self.store.put_spec(spec.id, spec_to_json(spec))
        self._cache.loaded_at = None
        return await self._view(spec)

    async def get_budget(self, budget_id: str) -> Budget:
        await self.start()
        text = await self.store.get_spec(budget_id)
        if text is None:
            raise NotFound("id", f"no budget {budget_id!r}; ListBudgets shows the ones set")
        return await self._view(spec_from_json(text))

    async def list_budgets(self, query: BudgetListQuery) -> tuple[list[Budget], str]:
        """One page of budgets sorted by id, and the next page token ("" on the last page)."""
        if query.page_token and not BUDGET_ID_PATTERN.fullmatch(query.page_token):
            raise InvalidArgument(
                "page_token", "not a token ListBudgets returned; send it back unchanged"
            )
        specs = sorted((await self._specs_fresh()).values(), key=lambda s: s.id)
        chosen = [
            s
            for s in specs
            if str(s.scope).startswith(query.scope_prefix) and s.id > query.page_token
        ]
        page = chosen[: query.page_size]
        token = page[-1].id if len(chosen) > len(page) else ""
        return [await self._view(s) for s in page], token

    async def delete_budget(self, budget_id: str) -> bool:
        await self.start()
        deleted = await self.store.delete_spec(budget_id)
        self._cache.loaded_at = None
        return deleted

    async def _specs_fresh(self) -> dict[str, BudgetSpec]:
        self._cache.loaded_at = None
        return await self._specs()

    async def _view(self, spec: BudgetSpec) -> Budget:
        now = self._clock()
        start, end = window_bounds(spec.window, _utc(now))
        state = await self.store.state(spec.id, start, now_ms=_ms(now))
        return Budget(spec, state, start, end or None)

    # -- reserve / commit / release -------------------------------------------------------

    async def matching(self, attribution: Attribution) -> list[BudgetSpec]:
        specs = await self._specs()
        return [
            s
            for s in sorted(specs.values(), key=lambda s: s.id)
            if scope_matches(s.scope, attribution)
        ]

    async def reserve(
        self,
        request_id: str,
        attribution: Attribution,
        *,
        nanousd: int,
        tokens: int,
        ttl_s: float,
    ) -> Hold | Refusal:
        """Hold ``nanousd``/``tokens`` on every matching budget, or refuse (nothing held)."""
        specs = await self.matching(attribution)
        reservation_id = f"{request_id}:{uuid.uuid4().hex[:12]}"
        if not specs:
            return Hold(reservation_id, (), (), nanousd, tokens)
        now = self._clock()
        at = _utc(now)
        charges = []
        for spec in specs:
            start, end = window_bounds(spec.window, at)
            charges.append(
                Charge(
                    budget_id=spec.id,
                    window_start=start,
                    limit_nanousd=spec.limit_nanousd,
                    limit_tokens=spec.limit_tokens,
                    nanousd=nanousd,
                    tokens=tokens,
                    window_end=end,
                )
            )
        try:
            denial = await self.store.reserve(
                reservation_id, charges, ttl_ms=max(1, round(ttl_s * 1000)), now_ms=_ms(now)
            )
        except SkinflintError:
            raise
        except Exception as exc:
            _log.error("budget_reserve_failed", error=f"{type(exc).__name__}: {exc}")
            raise Unavailable(
                "the budget store could not reserve this call's worst case "
                f"({type(exc).__name__}: {exc}); the call was not made, retry it"
            ) from exc
        if denial is None:
            return Hold(reservation_id, tuple(specs), tuple(charges), nanousd, tokens)
        spec = next(s for s in specs if s.id == denial.budget_id)
        end = next(c.window_end for c in charges if c.budget_id == denial.budget_id)
        return Refusal(
            spec, denial.state, denial.limit_kind, denial.window_start, end or None, nanousd, tokens
        )

    async def would_admit(
        self, attribution: Attribution, *, nanousd: int, tokens: int
    ) -> tuple[Admission, ...]:
        """Read-only ``reserve``: whether each matching budget would hold these amounts now
        (``spent + reserved + amount <= limit``). Nothing is held, so a concurrent call may
        change the answer; ``reserve`` admits only when every budget here does."""
        admissions = []
        for spec in await self.matching(attribution):
            view = await self._view(spec)
            state, kind = view.state, ""
            used = state.spent_nanousd + state.reserved_nanousd
            if spec.limit_nanousd and used + nanousd > spec.limit_nanousd:
                kind = "nanousd"
            elif spec.limit_tokens and (
                state.spent_tokens + state.reserved_tokens + tokens > spec.limit_tokens
            ):
                kind = "tokens"
            admissions.append(Admission(view, not kind, kind))
        return tuple(admissions)

    async def commit(self, hold: Hold, *, nanousd: int, tokens: int) -> tuple[Touch, ...]:
        """Replace the hold by the actual spend; what remains of each charged budget."""
        if not hold.charges:
            return ()
        if nanousd > hold.nanousd or tokens > hold.tokens:
            # Never silently: the worst case was not one. The spend is recorded all the same.
            _log.error(
                "budget_commit_above_reservation",
                reservation=hold.reservation_id,
                reserved_nanousd=hold.nanousd,
                committed_nanousd=nanousd,
                reserved_tokens=hold.tokens,
                committed_tokens=tokens,
            )
        try:
            committed = await self.store.commit(
                hold.reservation_id, nanousd=nanousd, tokens=tokens, now_ms=_ms(self._clock())
            )
        except Exception as exc:
            _log.error(
                "budget_commit_failed",
                reservation=hold.reservation_id,
                budgets=[s.id for s in hold.specs],
                nanousd=nanousd,
                tokens=tokens,
                error=f"{type(exc).__name__}: {exc}",
            )
            return ()
        return self._after(hold.specs, hold.charges, committed)

    async def release(self, hold: Hold) -> None:
        if not hold.charges:
            return
        try:
            await self.store.release(hold.reservation_id, now_ms=_ms(self._clock()))
        except Exception as exc:  # the hold expires on its own
            _log.error(
                "budget_release_failed",
                reservation=hold.reservation_id,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def record(
        self, attribution: Attribution, *, nanousd: int = 0, tokens: int = 0
    ) -> tuple[Touch, ...]:
        """Spend without a reservation (a response-cache hit: zero cost, one request)."""
        if self._fresh_specs() == {}:  # no budget is set (a hit's usual case): nothing to count
            return ()
        specs = await self.matching(attribution)
        if not specs:
            return ()
        now = self._clock()
        charges = []
        for spec in specs:
            start, end = window_bounds(spec.window, _utc(now))
            charges.append(Charge(spec.id, start, spec.limit_nanousd, spec.limit_tokens, 0, 0, end))
        committed = await self.store.record(
            charges, nanousd=nanousd, tokens=tokens, now_ms=_ms(now)
        )
        return self._after(tuple(specs), tuple(charges), committed)

    def _after(
        self,
        specs: Sequence[BudgetSpec],
        charges: Sequence[Charge],
        committed: Sequence[Committed],
    ) -> tuple[Touch, ...]:
        by_id = {s.id: s for s in specs}
        ends = {c.budget_id: c.window_end for c in charges}
        touches = []
        for item in committed:
            spec = by_id.get(item.budget_id)
            if spec is None:
                continue
            self._thresholds(spec, item)
            after = item.after
            touches.append(
                Touch(
                    budget_id=spec.id,
                    scope=str(spec.scope),
                    remaining_nanousd=_remaining(
                        spec.limit_nanousd, after.spent_nanousd, after.reserved_nanousd
                    ),
                    remaining_tokens=_remaining(
                        spec.limit_tokens, after.spent_tokens, after.reserved_tokens
                    ),
                    resets_at=ends.get(spec.id) or None,
                )
            )
        return tuple(touches)

    def _thresholds(self, spec: BudgetSpec, item: Committed) -> None:
        limits = (
            ("nanousd", spec.limit_nanousd, item.before.spent_nanousd, item.after.spent_nanousd),
            ("tokens", spec.limit_tokens, item.before.spent_tokens, item.after.spent_tokens),
        )
        for kind, limit, before, after in limits:
            if not limit:
                continue
            for percent in spec.soft_thresholds_percent:
                # Crossed by this commit: below the mark before, at or above it after.
                if before * 100 < percent * limit <= after * 100:
                    event = ThresholdCrossed(
                        spec.id, str(spec.scope), percent, kind, after, limit, item.window_start
                    )
                    _log.warning(
                        "budget_soft_threshold",
                        budget_id=spec.id,
                        scope=str(spec.scope),
                        percent=percent,
                        kind=kind,
                        spent=after,
                        limit=limit,
                        window_start=item.window_start,
                    )
                    attributes = {
                        "skinflint.budget.id": spec.id,
                        "skinflint.budget.scope": str(spec.scope),
                        "skinflint.budget.threshold_percent": percent,
                        "skinflint.budget.limit_kind": kind,
                    }
                    trace.get_current_span().add_event(
                        "skinflint.budget.soft_threshold",
                        {
                            **attributes,
                            "skinflint.budget.spent": after,
                            "skinflint.budget.limit": limit,
                            "skinflint.budget.window_start": item.window_start,
                        },
                    )
                    self._threshold_counter.add(1, attributes)
                    for hook in self.threshold_hooks:
                        try:
                            hook(event)
                        except Exception:
                            _log.exception("budget_threshold_hook_failed", budget_id=spec.id)


def refusal_error(refusal: Refusal, *, now: float, note: str = "") -> ResourceExhausted:
    """RESOURCE_EXHAUSTED for a refused reservation: budget, limit, spent, reset time."""
    spec, state = refusal.spec, refusal.state
    if refusal.limit_kind == "tokens":
        limit, spent, reserved, asked = (
            f"{spec.limit_tokens} tokens",
            f"{state.spent_tokens} tokens",
            f"{state.reserved_tokens} tokens",
            f"{refusal.tokens} tokens",
        )
    else:
        limit, spent, reserved, asked = (
            f"{spec.limit_nanousd} nano-USD",
            f"{state.spent_nanousd} nano-USD",
            f"{state.reserved_nanousd} nano-USD",
            f"{refusal.nanousd} nano-USD",
        )
    if refusal.resets_at is None:
        resets, retry = "never (a total budget)", None
    else:
        resets = _utc(refusal.resets_at).isoformat().replace("+00:00", "Z")
        retry = max(0.0, refusal.resets_at - now)
    window = spec.window.value
    reason = (
        f"{window} limit {limit} on scope {spec.scope}: spent {spent}, reserved {reserved}, "
        f"this call needs up to {asked}; the window resets at {resets}"
    )
    if spec.action is BudgetAction.DEFER:
        reason += (
            "; action defer: the async lane is not available in this build yet, so retry "
            "after the reset"
        )
    if note:
        reason += f"; {note}"
    return ResourceExhausted(
        spec.id,
        reason,
        scope=str(spec.scope),
        resets_at=refusal.resets_at,
        retry_after_seconds=retry,
    )


def seed_to_spec(seed: BudgetSeed) -> BudgetSpec:
    return BudgetSpec(
        id=seed.id,
        scope=parse_scope(seed.scope),
        window=BudgetWindow(seed.window),
        limit_nanousd=seed.limit_nanousd,
        limit_tokens=seed.limit_tokens,
        soft_thresholds_percent=tuple(sorted(seed.soft_thresholds_percent)),
        action=BudgetAction(seed.action),
    )


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


__all__ = [
    "Admission",
    "Budget",
    "BudgetGuard",
    "Hold",
    "Refusal",
    "ThresholdCrossed",
    "ThresholdHook",
    "Touch",
    "refusal_error",
    "seed_to_spec",
]
