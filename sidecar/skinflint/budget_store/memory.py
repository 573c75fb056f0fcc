"""An in-process budget store: ``base.BudgetStore`` over dicts behind one ``asyncio.Lock``.

Same semantics as the local (LMDB) and Redis stores, for one process only and nothing kept
across a restart: use it for tests and single-process trials. Every operation first releases
the reservations that have expired, so an abandoned reservation never pins a budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace

from skinflint.budget_store.base import Charge, Committed, Denial, WindowState

#: How long the charges of an expired reservation are remembered, so a late commit still
#: lands on the windows it was reserved on (ms).
_EXPIRED_MEMORY_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class _Reservation:
    charges: tuple[Charge, ...]
    expires_ms: int


class MemoryBudgetStore:
    """``BudgetStore`` in memory (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._windows: dict[tuple[str, int], WindowState] = {}
        self._window_ends: dict[tuple[str, int], int] = {}
        self._reservations: dict[str, _Reservation] = {}
        #: Expired reservations' charges (released, kept for a late commit) -> when expired.
        self._expired: dict[str, tuple[_Reservation, int]] = {}
        self._specs: dict[str, str] = {}

    # -- helpers (lock held) --------------------------------------------------------------

    def _purge(self, now_ms: int) -> int:
        expired = [rid for rid, r in self._reservations.items() if r.expires_ms <= now_ms]
        for rid in expired:
            reservation = self._reservations.pop(rid)
            self._unhold(reservation)
            self._expired[rid] = (reservation, now_ms)
        for rid in [r for r, (_, at) in self._expired.items() if now_ms - at > _EXPIRED_MEMORY_MS]:
            del self._expired[rid]
        now_s = now_ms // 1000
        for key in [k for k, end in self._window_ends.items() if end and end <= now_s]:
            state = self._windows.get(key)
            if state is None or (state.reserved_nanousd == 0 and state.reserved_tokens == 0):
                self._windows.pop(key, None)
                del self._window_ends[key]
        return len(expired)

    def _unhold(self, reservation: _Reservation) -> None:
        for charge in reservation.charges:
            key = (charge.budget_id, charge.window_start)
            state = self._windows.get(key, WindowState())
            self._windows[key] = replace(
                state,
                reserved_nanousd=max(0, state.reserved_nanousd - charge.nanousd),
                reserved_tokens=max(0, state.reserved_tokens - charge.tokens),
            )

    def _spend(
        self,
        charges: Sequence[Charge],
        nanousd: int,
        tokens: int,
        befores: dict[tuple[str, int], WindowState] | None = None,
    ) -> list[Committed]:
        """Add the spend; ``befores`` are the states to report as before (holds included)."""
        touched: list[Committed] = []
        for charge in charges:
            key = (charge.budget_id, charge.window_start)
            current = self._windows.get(key, WindowState())
            before = (befores or {}).get(key, current)
            after = replace(
                current,
                spent_nanousd=current.spent_nanousd + nanousd,
                spent_tokens=current.spent_tokens + tokens,
                requests=current.requests + 1,
            )
            self._windows[key] = after
            self._window_ends.setdefault(key, charge.window_end)
            touched.append(Committed(charge.budget_id, charge.window_start, before, after))
        return touched

    # -- BudgetStore ----------------------------------------------------------------------

    async def reserve(
        self, reservation_id: str, charges: Sequence[Charge], *, ttl_ms: int, now_ms: int
    ) -> Denial | None:
        async with self._lock:
            self._purge(now_ms)
            if reservation_id in self._reservations or reservation_id in self._expired:
                raise ValueError(f"reservation {reservation_id!r} already exists")
            pending: dict[tuple[str, int], WindowState] = {}
            for charge in charges:
                key = (charge.budget_id, charge.window_start)
                state = pending.get(key) or self._windows.get(key, WindowState())
                kind = _crossed(charge, state)
                if kind is not None:
                    return Denial(
                        charge.budget_id,
                        charge.window_start,
                        charge.limit_nanousd,
                        charge.limit_tokens,
                        state,
                        kind,
                    )
                pending[key] = replace(
                    state,
                    reserved_nanousd=state.reserved_nanousd + charge.nanousd,
                    reserved_tokens=state.reserved_tokens + charge.tokens,
                )
            for charge in charges:
                self._window_ends.setdefault(
                    (charge.budget_id, charge.window_start), charge.window_end
                )
            self._windows.update(pending)
            self._reservations[reservation_id] = _Reservation(tuple(charges), now_ms + ttl_ms)
            return None

    async def commit(
        self, reservation_id: str, *, nanousd: int, tokens: int, now_ms: int
    ) -> list[Committed]:
        async with self._lock:
            self._purge(now_ms)
            reservation = self._reservations.pop(reservation_id, None)
            befores: dict[tuple[str, int], WindowState] = {}
            if reservation is not None:
                for charge in reservation.charges:
                    key = (charge.budget_id, charge.window_start)
                    befores[key] = self._windows.get(key, WindowState())
                self._unhold(reservation)
            else:
                late = self._expired.pop(reservation_id, None)
                if late is None:
                    return []
                reservation = late[0]
            return self._spend(reservation.charges, nanousd, tokens, befores)

    async def release(self, reservation_id: str, *, now_ms: int) -> None:
        async with self._lock:
            self._purge(now_ms)
            reservation = self._reservations.pop(reservation_id, None)
            if reservation is not None:
                self._unhold(reservation)
            self._expired.pop(reservation_id, None)

    async def record(
        self, charges: Sequence[Charge], *, nanousd: int, tokens: int, now_ms: int
    ) -> list[Committed]:
        async with self._lock:
            self._purge(now_ms)
            return self._spend(charges, nanousd, tokens)

    async def state(self, budget_id: str, window_start: int, *, now_ms: int) -> WindowState:
        async with self._lock:
            self._purge(now_ms)
            return self._windows.get((budget_id, window_start), WindowState())

    async def purge_expired(self, *, now_ms: int) -> int:
        async with self._lock:
            return self._purge(now_ms)

    async def put_spec(self, budget_id: str, spec_json: str) -> None:
        async with self._lock:
            self._specs[budget_id] = spec_json

    async def get_spec(self, budget_id: str) -> str | None:
        async with self._lock:
            return self._specs.get(budget_id)

    async def list_specs(self) -> list[tuple[str, str]]:
        async with self._lock:
            return sorted(self._specs.items())

    async def delete_spec(self, budget_id: str) -> bool:
        async with self._lock:
            existed = self._specs.pop(budget_id, None) is not None
            for key in [k for k in self._windows if k[0] == budget_id]:
                del self._windows[key]
                self._window_ends.pop(key, None)
            return existed

    async def aclose(self) -> None:
        return None


def _crossed(charge: Charge, state: WindowState) -> str | None:
    """Which limit the charge would cross on ``state`` ("nanousd"/"tokens"), or None."""
    if charge.limit_nanousd and (
        state.spent_nanousd + state.reserved_nanousd + charge.nanousd > charge.limit_nanousd
    ):
        return "nanousd"
    if charge.limit_tokens and (
        state.spent_tokens + state.reserved_tokens + charge.tokens > charge.limit_tokens
    ):
        return "tokens"
    return None


__all__ = ["MemoryBudgetStore"]
