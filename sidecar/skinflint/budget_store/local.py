"""The local budget store: ``base.BudgetStore`` on the Rust LMDB ledger (``_native.BudgetLedger``).

Every process and thread that opens the same directory shares the counters: each operation is
one LMDB write transaction and LMDB serializes writers across processes, so the rule of
``base`` holds for one pod's sidecars without a server. Operations take microseconds, so the
async methods call the ledger inline (it releases the GIL while it works) instead of hopping
to a thread; with ``durable=True`` every write is an fsync (milliseconds), so writes go to a
thread.

Durability: ``durable=False`` (the default) writes without fsync. A killed process (even
``kill -9``) loses nothing, because the OS already has the pages; an OS crash or power loss
may lose the last transactions. ``durable=True`` syncs every write to disk.

Errors: ``ValueError`` for a bad argument (a reused reservation id, an id with NUL, a counter
that would overflow: nothing is changed), ``BudgetLedgerError`` (an ``OSError``) when LMDB
fails or a stored value does not decode; a damaged ledger is never read as "no spend".
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skinflint._native import BudgetLedger
from skinflint.budget_store.base import Charge, Committed, Denial, WindowState

if TYPE_CHECKING:
    from skinflint.config import Settings

#: Where ``from_settings`` puts the ledger, under ``data_dir``.
LEDGER_DIR = "budgets"

_ChargeTuple = tuple[str, int, int, int, int, int, int]
_StateTuple = tuple[int, int, int, int, int]


def _charges(charges: Sequence[Charge]) -> list[_ChargeTuple]:
    return [
        (
            c.budget_id,
            c.window_start,
            c.limit_nanousd,
            c.limit_tokens,
            c.nanousd,
            c.tokens,
            c.window_end,
        )
        for c in charges
    ]


def _committed(rows: list[tuple[str, int, _StateTuple, _StateTuple]]) -> list[Committed]:
    return [
        Committed(b, ws, WindowState(*before), WindowState(*after)) for b, ws, before, after in rows
    ]


class LocalBudgetStore:
    """``BudgetStore`` on an LMDB directory (see the module docstring).

    The directory must be the ledger's own (not the response cache's). Picklable: a copy
    reopens the same directory (the multi-process checks rely on it).
    """

    def __init__(self, path: str | Path, *, durable: bool = False) -> None:
        self._path = Path(path)
        self._durable = durable
        self._ledger: BudgetLedger | None = BudgetLedger(str(self._path), durable=durable)

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalBudgetStore:
        """The ledger under ``data_dir/budgets`` (created if needed)."""
        return cls(Path(settings.data_dir) / LEDGER_DIR)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (self._path, self._durable))

    def __repr__(self) -> str:
        return f"LocalBudgetStore({str(self._path)!r}, durable={self._durable})"

    @property
    def path(self) -> Path:
        return self._path

    def _open(self) -> BudgetLedger:
        if self._ledger is None:
            raise RuntimeError(f"{self!r} is closed")
        return self._ledger

    # Each method calls the ledger inline (microseconds, GIL released), or on a thread when
    # every write is an fsync (durable). Written out per method: this is the hot path.

    async def reserve(
        self, reservation_id: str, charges: Sequence[Charge], *, ttl_ms: int, now_ms: int
    ) -> Denial | None:
        ledger, rows = self._open(), _charges(charges)
        if self._durable:
            d = await asyncio.to_thread(
                ledger.reserve, reservation_id, rows, ttl_ms=ttl_ms, now_ms=now_ms
            )
        else:
            d = ledger.reserve(reservation_id, rows, ttl_ms=ttl_ms, now_ms=now_ms)
        if d is None:
            return None
        budget_id, window_start, limit_n, limit_t, state, kind = d
        return Denial(budget_id, window_start, limit_n, limit_t, WindowState(*state), kind)

    async def commit(
        self, reservation_id: str, *, nanousd: int, tokens: int, now_ms: int
    ) -> list[Committed]:
        ledger = self._open()
        if self._durable:
            rows = await asyncio.to_thread(
                ledger.commit, reservation_id, nanousd=nanousd, tokens=tokens, now_ms=now_ms
            )
        else:
            rows = ledger.commit(reservation_id, nanousd=nanousd, tokens=tokens, now_ms=now_ms)
        return _committed(rows)

    async def release(self, reservation_id: str, *, now_ms: int) -> None:
        ledger = self._open()
        if self._durable:
            await asyncio.to_thread(ledger.release, reservation_id, now_ms=now_ms)
        else:
            ledger.release(reservation_id, now_ms=now_ms)

    async def record(
        self, charges: Sequence[Charge], *, nanousd: int, tokens: int, now_ms: int
    ) -> list[Committed]:
        ledger, rows = self._open(), _charges(charges)
        if self._durable:
            out = await asyncio.to_thread(
                ledger.record, rows, nanousd=nanousd, tokens=tokens, now_ms=now_ms
            )
        else:
            out = ledger.record(rows, nanousd=nanousd, tokens=tokens, now_ms=now_ms)
        return _committed(out)

    async def state(self, budget_id: str, window_start: int, *, now_ms: int) -> WindowState:
        ledger = self._open()
        if self._durable:
            t = await asyncio.to_thread(ledger.state, budget_id, window_start, now_ms=now_ms)
        else:
            t = ledger.state(budget_id, window_start, now_ms=now_ms)
        return WindowState(*t)

    async def purge_expired(self, *, now_ms: int) -> int:
        ledger = self._open()
        if self._durable:
            return await asyncio.to_thread(ledger.purge_expired, now_ms=now_ms)
        return ledger.purge_expired(now_ms=now_ms)

    async def put_spec(self, budget_id: str, spec_json: str) -> None:
        ledger = self._open()
        if self._durable:
            await asyncio.to_thread(ledger.put_spec, budget_id, spec_json)
        else:
            ledger.put_spec(budget_id, spec_json)

    async def get_spec(self, budget_id: str) -> str | None:
        return self._open().get_spec(budget_id)

    async def list_specs(self) -> list[tuple[str, str]]:
        return self._open().list_specs()

    async def delete_spec(self, budget_id: str) -> bool:
        ledger = self._open()
        if self._durable:
            return await asyncio.to_thread(ledger.delete_spec, budget_id)
        return ledger.delete_spec(budget_id)

    async def aclose(self) -> None:
        """Drop this handle (the environment closes with the process's last handle)."""
        self._ledger = None


def _reopen(path: Path, durable: bool) -> LocalBudgetStore:
    return LocalBudgetStore(path, durable=durable)


__all__ = ["LEDGER_DIR", "LocalBudgetStore"]
