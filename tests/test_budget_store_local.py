"""The local (LMDB) budget store: the shared conformance suite (which includes 4 processes x
64 concurrent reserve/commit against one limit, and a SIGKILL mid-loop), plus what only the
local store has (pickling, durable handles, fork, the native ledger's argument checks)."""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from budget_conformance import ALL_CHECKS, StoreFactory, charge, now_ms, opened, rid

from skinflint._native import BudgetLedger, BudgetLedgerError, NativeError
from skinflint.budget_store import open_budget_store
from skinflint.budget_store.base import BudgetStore, Charge, WindowState
from skinflint.budget_store.local import LEDGER_DIR, LocalBudgetStore
from skinflint.config import Settings

TTL = 10_000
U64_MAX = 2**64 - 1


@pytest.fixture
def ledger_dir(tmp_path: Path) -> Path:
    return tmp_path / "ledger"


@pytest.fixture
def make_store(ledger_dir: Path) -> StoreFactory:
    # A partial of the class: picklable and importable in the spawned / killed children.
    return functools.partial(LocalBudgetStore, ledger_dir)


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_conformance(
    check: Callable[[StoreFactory], Awaitable[None]], make_store: StoreFactory
) -> None:
    await check(make_store)


async def test_is_a_budget_store(ledger_dir: Path) -> None:
    store = LocalBudgetStore(ledger_dir)
    assert isinstance(store, BudgetStore)
    assert store.path == ledger_dir
    assert "durable=False" in repr(store)
    await store.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await store.state("a", 0, now_ms=now_ms())


async def test_from_settings_uses_the_data_dir(tmp_path: Path) -> None:
    settings = Settings.model_validate({"data_dir": tmp_path, "budgets": {"backend": "local"}})
    store = open_budget_store(settings)
    assert isinstance(store, LocalBudgetStore)
    assert store.path == tmp_path / LEDGER_DIR
    await store.put_spec("a", "{}")
    async with opened(functools.partial(LocalBudgetStore, tmp_path / LEDGER_DIR)) as other:
        assert await other.get_spec("a") == "{}"
    await store.aclose()


async def test_pickled_store_reopens_the_same_ledger(ledger_dir: Path) -> None:
    async with opened(functools.partial(LocalBudgetStore, ledger_dir, durable=True)) as store:
        await store.record([charge("p")], nanousd=5, tokens=1, now_ms=now_ms())
        copy = pickle.loads(pickle.dumps(store))
        assert isinstance(copy, LocalBudgetStore)
        assert "durable=True" in repr(copy)
        assert await copy.state("p", 0, now_ms=now_ms()) == WindowState(5, 0, 1, 0, 1)
        await copy.aclose()


async def test_durable_and_fast_handles_share_the_counters(ledger_dir: Path) -> None:
    fast = LocalBudgetStore(ledger_dir)
    durable = LocalBudgetStore(ledger_dir, durable=True)
    t0 = now_ms()
    assert (
        await durable.reserve("r", [charge("d", n=60, limit_n=100)], ttl_ms=TTL, now_ms=t0) is None
    )
    denial = await fast.reserve(rid(), [charge("d", n=41, limit_n=100)], ttl_ms=TTL, now_ms=t0)
    assert denial is not None and denial.state == WindowState(reserved_nanousd=60)
    await fast.commit("r", nanousd=10, tokens=2, now_ms=t0)
    assert await durable.state("d", 0, now_ms=t0) == WindowState(10, 0, 2, 0, 1)
    await fast.aclose()
    await durable.aclose()


async def test_overflow_is_refused_and_changes_nothing(ledger_dir: Path) -> None:
    async with opened(functools.partial(LocalBudgetStore, ledger_dir)) as s:
        t0 = now_ms()
        await s.record([charge("o")], nanousd=U64_MAX - 1, tokens=0, now_ms=t0)
        with pytest.raises(ValueError, match="overflow"):
            await s.record([charge("o"), charge("other")], nanousd=2, tokens=0, now_ms=t0)
        assert await s.state("o", 0, now_ms=t0) == WindowState(U64_MAX - 1, 0, 0, 0, 1)
        assert await s.state("other", 0, now_ms=t0) == WindowState()
        assert await s.reserve(rid(), [charge("h", n=U64_MAX)], ttl_ms=TTL, now_ms=t0) is None
        with pytest.raises(ValueError, match="overflow"):
            await s.reserve(rid(), [charge("other"), charge("h", n=1)], ttl_ms=TTL, now_ms=t0)
        assert await s.state("h", 0, now_ms=t0) == WindowState(reserved_nanousd=U64_MAX)
        assert await s.state("other", 0, now_ms=t0) == WindowState()
        # Against a limit, a sum past 2**64 is simply over it.
        d = await s.reserve(rid(), [charge("o", n=2, limit_n=U64_MAX)], ttl_ms=TTL, now_ms=t0)
        assert d is not None and d.limit_kind == "nanousd"


async def test_bad_arguments(ledger_dir: Path) -> None:
    async with opened(functools.partial(LocalBudgetStore, ledger_dir)) as s:
        t0 = now_ms()
        with pytest.raises(ValueError, match="NUL"):
            await s.reserve(rid(), [charge("a\0b", n=1)], ttl_ms=TTL, now_ms=t0)
        with pytest.raises(ValueError, match="reservation id"):
            await s.reserve("", [charge("a", n=1)], ttl_ms=TTL, now_ms=t0)
        with pytest.raises(ValueError, match="ttl_ms"):
            await s.reserve(rid(), [charge("a", n=1)], ttl_ms=0, now_ms=t0)
        with pytest.raises(OverflowError):  # negative amounts never reach the ledger
            await s.reserve(rid(), [charge("a", n=-1)], ttl_ms=TTL, now_ms=t0)
        assert await s.state("a", 0, now_ms=t0) == WindowState()


async def test_same_window_twice_in_one_reservation(ledger_dir: Path) -> None:
    async with opened(functools.partial(LocalBudgetStore, ledger_dir)) as s:
        t0 = now_ms()
        twice = [charge("w", n=60, limit_n=100), charge("w", n=60, limit_n=100)]
        assert await s.reserve(rid(), twice, ttl_ms=TTL, now_ms=t0) is not None
        assert await s.state("w", 0, now_ms=t0) == WindowState()
        r = rid()
        assert await s.reserve(r, twice[:1] * 2, ttl_ms=TTL, now_ms=t0) is not None
        half = [charge("w", n=50, limit_n=100)] * 2
        assert await s.reserve(r, half, ttl_ms=TTL, now_ms=t0) is None
        out = await s.commit(r, nanousd=1, tokens=0, now_ms=t0)
        assert [c.after for c in out] == [WindowState(1, 50, 0, 0, 1), WindowState(2, 0, 0, 0, 2)]


def test_native_ledger_tuples(ledger_dir: Path) -> None:
    ledger = BudgetLedger(ledger_dir)
    assert ledger.path == str(ledger_dir) and ledger.durable is False
    t0 = now_ms()
    c = ("b", 60, 100, 0, 80, 3, 0)
    assert ledger.reserve("r1", [c], ttl_ms=TTL, now_ms=t0) is None
    assert ledger.reserve("r2", [c], ttl_ms=TTL, now_ms=t0) == (
        "b",
        60,
        100,
        0,
        (0, 80, 0, 3, 0),
        "nanousd",
    )
    assert ledger.commit("r1", nanousd=7, tokens=1, now_ms=t0) == [
        ("b", 60, (0, 80, 0, 3, 0), (7, 0, 1, 0, 1))
    ]
    assert ledger.commit("r1", nanousd=7, tokens=1, now_ms=t0) == []
    assert ledger.state("b", 60, now_ms=t0) == (7, 0, 1, 0, 1)
    ledger.put_spec("b", '{"x": 1}')
    assert ledger.list_specs() == [("b", '{"x": 1}')]
    assert ledger.delete_spec("b") is True
    assert ledger.state("b", 60, now_ms=t0) == (0, 0, 0, 0, 0)
    assert "BudgetLedger(" in repr(ledger)


def test_ledger_error_class(tmp_path: Path) -> None:
    assert issubclass(BudgetLedgerError, NativeError)
    assert issubclass(BudgetLedgerError, OSError)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(BudgetLedgerError, match="budget ledger at"):
        BudgetLedger(not_a_dir)


def test_handle_refuses_after_fork_and_child_reopens(ledger_dir: Path) -> None:
    ledger = BudgetLedger(ledger_dir)
    ledger.record([("f", 0, 0, 0, 1, 0, 0)], nanousd=1, tokens=0, now_ms=now_ms())
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            try:
                ledger.state("f", 0, now_ms=now_ms())
            except BudgetLedgerError:
                fresh = BudgetLedger(ledger_dir)
                fresh.record([("f", 0, 0, 0, 1, 0, 0)], nanousd=1, tokens=0, now_ms=now_ms())
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ledger.state("f", 0, now_ms=now_ms()) == (2, 0, 0, 0, 2)


def test_charge_tuple_order_matches_the_dataclass() -> None:
    from skinflint.budget_store.local import _charges

    c = Charge("id", 1, 2, 3, 4, 5, 6)
    assert _charges([c]) == [("id", 1, 2, 3, 4, 5, 6)]
