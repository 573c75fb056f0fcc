"""Budget stores: reserve+commit latency, and overspend under multi-process contention.

    python bench/budget.py [--ops 10000] [--procs 4] [--tasks 64]

For the local (LMDB, in the Rust core) and the Redis store (a `redis-server` started here on a
loopback port): p50/p99 of one reserve + commit charged on two windows, one at a time from one
event loop; then ``--procs`` processes x ``--tasks`` concurrent tasks racing reserve/commit
against one $-limit, reporting what was committed against the limit (overspend must be exactly
zero) and how many calls were admitted against how many fit. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable

from skinflint.budget_store.base import BudgetStore, Charge
from skinflint.budget_store.local import LocalBudgetStore
from skinflint.budget_store.redis_store import RedisBudgetStore

UNIT = 1_000_000  # $0.001 per call
LIMIT = 1000 * UNIT + UNIT // 2  # fits exactly 1000 calls; the half unit catches off-by-ones


def pct(sorted_ns: list[int], p: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * p))] / 1000


async def latency(store: BudgetStore, ops: int) -> tuple[float, float]:
    charges = [
        Charge("bench-total", 0, 2**53 - 1, 0, UNIT, 1000),
        Charge("bench-month", 1_700_000_000, 2**53 - 1, 0, UNIT, 1000, 4_000_000_000),
    ]
    now = int(time.time() * 1000)
    samples: list[int] = []
    for i in range(ops + 200):
        t = time.perf_counter_ns()
        assert await store.reserve(f"l{i}", charges, ttl_ms=60_000, now_ms=now) is None
        await store.commit(f"l{i}", nanousd=UNIT // 2, tokens=500, now_ms=now)
        if i >= 200:  # warm-up excluded
            samples.append(time.perf_counter_ns() - t)
    samples.sort()
    return pct(samples, 0.50), pct(samples, 0.99)


async def _race(make: Callable[[], BudgetStore], tasks: int, budget_id: str) -> int:
    store = make()
    admitted = 0

    async def one_task() -> None:
        nonlocal admitted
        while True:
            rid = uuid.uuid4().hex
            charge = Charge(budget_id, 0, LIMIT, 0, UNIT, 1)
            now = int(time.time() * 1000)
            if await store.reserve(rid, [charge], ttl_ms=60_000, now_ms=now) is not None:
                return  # the limit is reached: this task stops
            admitted += 1
            await asyncio.sleep(0)  # the "call"
            await store.commit(rid, nanousd=UNIT, tokens=1, now_ms=now)

    await asyncio.gather(*(one_task() for _ in range(tasks)))
    await store.aclose()
    return admitted


def _race_process(make: Callable[[], BudgetStore], tasks: int, budget_id: str) -> int:
    return asyncio.run(_race(make, tasks, budget_id))


async def overspend(make: Callable[[], BudgetStore], procs: int, tasks: int) -> str:
    budget_id = f"race-{uuid.uuid4().hex[:8]}"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(procs) as pool:
        admitted = sum(pool.starmap(_race_process, [(make, tasks, budget_id)] * procs))
    store = make()
    state = await store.state(budget_id, 0, now_ms=int(time.time() * 1000))
    await store.aclose()
    over = max(0, state.spent_nanousd - LIMIT)
    return (
        f"{procs} procs x {tasks} tasks: admitted {admitted} (fit {LIMIT // UNIT}), "
        f"committed {state.spent_nanousd} of limit {LIMIT} nano-USD, "
        f"reserved left {state.reserved_nanousd}, **overspend {over}**"
    )


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


class _Local:
    """Picklable factory: every process opens the same LMDB directory."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> BudgetStore:
        return LocalBudgetStore(self.path)


class _Redis:
    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix

    def __call__(self) -> BudgetStore:
        return RedisBudgetStore(self.url, prefix=self.prefix)


async def main_async(ops: int, procs: int, tasks: int) -> None:
    redis, url = start_redis()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            backends = {
                "local (LMDB)": _Local(os.path.join(tmp, "budgets")),
                "redis": _Redis(url, f"bench-{uuid.uuid4().hex[:6]}:"),
            }
            print("| store | reserve+commit p50 µs | p99 µs |\n|---|---|---|")
            for name, make in backends.items():
                store = make()
                p50, p99 = await latency(store, ops)
                await store.aclose()
                print(f"| {name} | {p50:.1f} | {p99:.1f} |")
            print()
            for name, make in backends.items():
                print(f"- {name}: {await overspend(make, procs, tasks)}")
    finally:
        redis.terminate()
        redis.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=64)
    opts = parser.parse_args()
    asyncio.run(main_async(opts.ops, opts.procs, opts.tasks))


if __name__ == "__main__":
    main()
