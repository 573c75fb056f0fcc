"""The interface both budget stores implement, and the types that cross it.

A store knows nothing about prices, scopes or calls: it keeps integer counters per
``(budget_id, window_start)`` and applies one rule atomically, across processes (local) or
across a fleet (Redis): a reservation is admitted on **all** of its charges or on none, and only
if, for every charge, ``spent + reserved + charge <= limit`` (for each non-zero limit). After
the call the reservation is committed (its reserved amounts are released and the actual spend
added) or released (nothing spent). Reservations carry an expiry so a crashed sidecar cannot
pin a budget: an expired reservation is released by the next operation that touches its
window, and by ``purge_expired``. Money is integer nano-USD; tokens are integers.

The guarantee both stores must keep (the conformance suite in ``tests/budget_conformance.py``
checks it under several processes): committed spend never exceeds a limit, provided every
commit is at most what was reserved (the guard reserves the worst case, so it is).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Charge:
    """What one reservation asks of one budget window."""

    budget_id: str
    #: Start of the UTC-aligned window, in unix seconds (0 for a TOTAL window).
    window_start: int
    #: Limits at the time of the call (0 = no limit of that kind).
    limit_nanousd: int
    limit_tokens: int
    #: Worst-case amounts to hold.
    nanousd: int
    tokens: int
    #: When the window's counters may be dropped (unix seconds; 0 = never). Redis sets the key
    #: expiry from it; the local store purges windows past it.
    window_end: int = 0


@dataclass(frozen=True, slots=True)
class WindowState:
    spent_nanousd: int = 0
    reserved_nanousd: int = 0
    spent_tokens: int = 0
    reserved_tokens: int = 0
    #: Committed calls (cache hits included, at zero cost).
    requests: int = 0


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a reservation was refused: the first charge that did not fit, with its state."""

    budget_id: str
    window_start: int
    limit_nanousd: int
    limit_tokens: int
    state: WindowState
    #: "nanousd" or "tokens": which limit would be crossed.
    limit_kind: str


@dataclass(frozen=True, slots=True)
class Committed:
    """The state of each charged window right after a commit (for soft thresholds)."""

    budget_id: str
    window_start: int
    before: WindowState
    after: WindowState


@runtime_checkable
class BudgetStore(Protocol):
    """Atomic reserve / commit / release over budget windows, plus the budget specs."""

    async def reserve(
        self, reservation_id: str, charges: Sequence[Charge], *, ttl_ms: int, now_ms: int
    ) -> Denial | None:
        """Hold every charge, or none. None = admitted. Reserving an id twice is an error."""
        ...

    async def commit(
        self, reservation_id: str, *, nanousd: int, tokens: int, now_ms: int
    ) -> list[Committed]:
        """Release the reservation's holds and add the actual spend to each charged window
        (the same actual amounts on every budget the call was charged against). Committing an
        unknown or expired reservation still records the spend (the money was spent) but
        releases nothing; returns the windows touched."""
        ...

    async def release(self, reservation_id: str, *, now_ms: int) -> None:
        """Drop the reservation's holds (the call failed or spent nothing). Idempotent."""
        ...

    async def record(
        self, charges: Sequence[Charge], *, nanousd: int, tokens: int, now_ms: int
    ) -> list[Committed]:
        """Add spend without a reservation (a cache hit: zero cost, one request)."""
        ...

    async def state(self, budget_id: str, window_start: int, *, now_ms: int) -> WindowState:
        """Counters of one window (expired reservations already released)."""
        ...

    async def purge_expired(self, *, now_ms: int) -> int:
        """Release every expired reservation; returns how many."""
        ...

    # -- specs: opaque JSON documents keyed by budget id ----------------------------------

    async def put_spec(self, budget_id: str, spec_json: str) -> None: ...
    async def get_spec(self, budget_id: str) -> str | None: ...
    async def list_specs(self) -> list[tuple[str, str]]: ...
    async def delete_spec(self, budget_id: str) -> bool:
        """Delete the spec and every window of that budget."""
        ...

    async def aclose(self) -> None: ...
