"""The Redis budget store against a real ``redis-server``: the shared conformance suite, plus
what only Redis has (key expiry, the exactness bound, script reloading, commit retries)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import pytest
import redis.asyncio as aioredis
from budget_conformance import (
    ALL_CHECKS,
    StoreFactory,
    charge,
    check_concurrent_tasks_never_overspend,
    check_multiprocess_never_overspend,
    opened,
    rid,
)
from redis_fixtures import RedisStoreFactory, redis_store_factory, redis_url

from skinflint.budget_store.base import BudgetStore, WindowState
from skinflint.budget_store.redis_store import MAX_EXACT, RedisBudgetStore

# The fixtures are imported, not registered with pytest_plugins, so only this module sees them.
__all__ = ["redis_store_factory", "redis_url"]


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_conformance(
    check: Callable[[StoreFactory], Awaitable[None]], redis_store_factory: RedisStoreFactory
) -> None:
    await check(redis_store_factory)


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_is_a_budget_store(redis_store_factory: RedisStoreFactory) -> None:
    async with opened(redis_store_factory) as s:
        assert isinstance(s, BudgetStore)


async def test_window_keys_expire_after_window_end(redis_store_factory: RedisStoreFactory) -> None:
    f = redis_store_factory
    t0 = now_ms()
    end = t0 // 1000 + 3600
    async with opened(f) as s, aioredis.Redis.from_url(f.url) as raw:
        r = rid()
        c = charge("w", n=5, limit_n=10, window_start=100, window_end=end)
        assert await s.reserve(r, [c], ttl_ms=60_000, now_ms=t0) is None
        margin = 86_400
        for kind in ("w", "z"):
            at = await raw.expiretime(f"{f.prefix}{kind}:w:100")
            assert at == end + margin, (kind, at)
        # The reservation hash outlives the hold by the grace, so late commits find it.
        pttl = await raw.pttl(f"{f.prefix}r:{r}")
        assert 60_000 < pttl <= 60_000 + 3_600_000
        # TOTAL windows (window_end 0) never expire.
        await s.record([charge("total")], nanousd=1, tokens=0, now_ms=t0)
        assert await raw.ttl(f"{f.prefix}w:total:0") == -1


async def test_rejects_amounts_lua_cannot_compare_exactly(
    redis_store_factory: RedisStoreFactory,
) -> None:
    async with opened(redis_store_factory) as s:
        t0 = now_ms()
        with pytest.raises(ValueError, match="2\\*\\*53"):
            await s.reserve(rid(), [charge("p", n=MAX_EXACT + 1)], ttl_ms=1000, now_ms=t0)
        with pytest.raises(ValueError, match="2\\*\\*53"):
            await s.reserve(rid(), [charge("p", limit_n=2**60)], ttl_ms=1000, now_ms=t0)
        with pytest.raises(ValueError):
            await s.commit(rid(), nanousd=-1, tokens=0, now_ms=t0)
        with pytest.raises(ValueError, match="two charges on one window"):
            await s.reserve(rid(), [charge("p"), charge("p")], ttl_ms=1000, now_ms=t0)
        # At the bound everything is exact, and counters beyond 2**53 still deny correctly.
        top = charge("p", n=MAX_EXACT, limit_n=MAX_EXACT)
        assert await s.reserve(rid(), [top], ttl_ms=1000, now_ms=t0) is None
        d = await s.reserve(rid(), [charge("p", n=1, limit_n=MAX_EXACT)], ttl_ms=1000, now_ms=t0)
        assert d is not None and d.state.reserved_nanousd == MAX_EXACT
        for _ in range(3):
            await s.record([charge("big")], nanousd=MAX_EXACT, tokens=0, now_ms=t0)
        assert (await s.state("big", 0, now_ms=t0)).spent_nanousd == 3 * MAX_EXACT  # exact
        d = await s.reserve(rid(), [charge("big", limit_n=MAX_EXACT)], ttl_ms=1000, now_ms=t0)
        assert d is not None and d.limit_kind == "nanousd"


async def test_commit_retry_is_not_double_spend(redis_store_factory: RedisStoreFactory) -> None:
    async with opened(redis_store_factory) as s:
        t0 = now_ms()
        r = rid()
        assert await s.reserve(r, [charge("c", n=10, limit_n=100)], ttl_ms=1000, now_ms=t0) is None
        assert len(await s.commit(r, nanousd=8, tokens=1, now_ms=t0)) == 1
        assert await s.commit(r, nanousd=8, tokens=1, now_ms=t0) == []
        await s.release(r, now_ms=t0)
        assert await s.state("c", 0, now_ms=t0) == WindowState(8, 0, 1, 0, 1)
        # A commit after a release still records the spend (the money was spent).
        r2 = rid()
        assert await s.reserve(r2, [charge("c", n=10, limit_n=100)], ttl_ms=1000, now_ms=t0) is None
        await s.release(r2, now_ms=t0)
        await s.commit(r2, nanousd=5, tokens=0, now_ms=t0)
        assert await s.state("c", 0, now_ms=t0) == WindowState(13, 0, 1, 0, 2)
        # A commit whose reservation hash is gone entirely cannot be attributed.
        assert await s.commit("unknown", nanousd=5, tokens=0, now_ms=t0) == []


async def test_survives_script_flush(redis_store_factory: RedisStoreFactory) -> None:
    """EVALSHA falls back to EVAL after Redis forgets the scripts (restart, SCRIPT FLUSH)."""
    f = redis_store_factory
    async with opened(f) as s, aioredis.Redis.from_url(f.url) as raw:
        t0 = now_ms()
        assert await s.reserve(rid(), [charge("f", n=1)], ttl_ms=1000, now_ms=t0) is None
        await raw.script_flush()
        assert await s.reserve(rid(), [charge("f", n=1)], ttl_ms=1000, now_ms=t0) is None
        assert (await s.state("f", 0, now_ms=t0)).reserved_nanousd == 2


async def test_prefixes_isolate_stores(redis_url: str) -> None:
    a = RedisBudgetStore(redis_url, prefix="iso-a:")
    b = RedisBudgetStore(redis_url, prefix="iso-b:")
    try:
        await a.record([charge("same")], nanousd=3, tokens=0, now_ms=now_ms())
        assert await b.state("same", 0, now_ms=now_ms()) == WindowState()
        await a.delete_spec("same")
    finally:
        await a.aclose()
        await b.aclose()


class _CheckThenHold(RedisBudgetStore):
    """A deliberately broken store: checks, yields, then holds without checking again (the
    classic check-then-act race). The concurrency check must catch it."""

    async def reserve(self, reservation_id, charges, *, ttl_ms, now_ms):  # type: ignore[no-untyped-def]
        for c in charges:
            st = await self.state(c.budget_id, c.window_start, now_ms=now_ms)
            if c.limit_nanousd and (
                st.spent_nanousd + st.reserved_nanousd + c.nanousd > c.limit_nanousd
            ):
                return await super().reserve(reservation_id, charges, ttl_ms=ttl_ms, now_ms=now_ms)
        unchecked = [replace(c, limit_nanousd=0, limit_tokens=0) for c in charges]
        return await super().reserve(reservation_id, unchecked, ttl_ms=ttl_ms, now_ms=now_ms)


@dataclass(frozen=True)
class _RacyFactory:
    """Picklable, so the multi-process check can run the broken store in its children."""

    url: str
    prefix: str

    def __call__(self) -> _CheckThenHold:
        return _CheckThenHold(self.url, prefix=self.prefix)


async def test_concurrency_checks_catch_a_racy_store(redis_url: str) -> None:
    """The suite has teeth: both concurrency checks fail on a check-then-act store."""
    with pytest.raises(AssertionError):
        await check_concurrent_tasks_never_overspend(_RacyFactory(redis_url, f"racy-{rid()}:"))
    with pytest.raises(AssertionError):
        await check_multiprocess_never_overspend(_RacyFactory(redis_url, f"racy-{rid()}:"))
