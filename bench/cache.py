"""Benchmark an exact response-cache hit through gRPC against a bare grpc.aio echo hop.

Two paths, same load generator, same request message, same run:

- ``hit``: the gRPC stub's ``Complete`` to a ``skinflint serve`` process, for a request whose
  answer is already in the response cache (deterministic: ``temperature`` 0, lookup and store
  allowed). The cache is filled by one call before the measurement; then the OpenAI emulator
  behind the sidecar is **stopped**, so every measured call that touched the network would
  fail (UNAVAILABLE): a hit that completes did not leave the process.
- ``echo``: a bare grpc.aio echo server (generic handler, no servicer code) answering the same
  serialized CompleteRequest with the sidecar's real hit response, byte for byte: the cost of
  the gRPC hop itself with the same message sizes.

The load generator is ``--clients`` spawned processes (asyncio + grpc.aio), each keeping its
share of the in-flight calls busy and timing every call with ``perf_counter_ns`` (warm-up
excluded). Levels: sequential (1 in flight) and 64 in flight by default; the two paths
alternate ``--rounds`` times per level so drift from other work on the machine hits both.
Reported: p50/p99 per path, hit/echo ratios, calls per second (throughput at the highest
level), and the CPU each server process used per call.

Then the semantic lookup (``--semantic-sizes``, default 10k and 100k entries; ``0`` skips
it): what an exact miss of a feature with the semantic cache on adds before it would call the
provider, measured in this process on the sidecar's own code path: ``SemanticCache.probe``
(the context key in the core, then the embedding of the last user turn in a worker thread,
as the event loop runs it) and ``SemanticCache.search`` (top 4 above the threshold) on an
index holding one real answered question and N - 1 other rows in the same context namespace.
The queries are paraphrases of the stored question; each must find it (checked).

Run: ``python bench/cache.py`` (needs the dev extras); about a minute with the defaults.
Only loopback addresses are used. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).parent))
import overhead  # bench/overhead.py: the rig helpers this benchmark shares
import semantic as semantic_bench  # bench/semantic.py: random unit vectors, percentiles

from skinflint import _native
from skinflint.config import Settings, compile_rule_sets
from skinflint.pipeline.semantic_cache import DIM, INSTALL_HINT, SemanticCache, default_model_dir
from skinflint.transports.grpc.convert import to_call
from skinflint.v1 import skinflint_pb2 as pb
from skinflint.v1 import skinflint_pb2_grpc as pb_grpc

PATHS = ("hit", "echo")
CALL_TIMEOUT_S = 30.0


def hit_request() -> pb.CompleteRequest:
    """The overhead benchmark's request with the response cache allowed (lookup + store)."""
    request = overhead.complete_request()
    request.ClearField("policy")
    return request


# --- load generator ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    sidecar: str
    echo: str


def client_main(conn: Connection, targets: Targets) -> None:
    """A load-generator process: ``run`` (warm-up), then ``go`` commands from the parent."""

    async def run() -> None:
        request = hit_request()
        sidecar = pb_grpc.SkinflintStub(grpc.aio.insecure_channel(targets.sidecar))
        echo = grpc.aio.insecure_channel(targets.echo).unary_unary(
            overhead.ECHO_METHOD,
            request_serializer=pb.CompleteRequest.SerializeToString,
            response_deserializer=pb.CompleteResponse.FromString,
        )

        async def hit() -> object:
            return await sidecar.Complete(request, timeout=CALL_TIMEOUT_S)

        async def bare() -> object:
            return await echo(request, timeout=CALL_TIMEOUT_S)

        calls = {"hit": hit, "echo": bare}
        # Every warm-up answer of the sidecar must be an exact hit (checked outside the timing).
        first = await hit()
        assert isinstance(first, pb.CompleteResponse)
        if first.served_by.cache_status != pb.CACHE_STATUS_EXACT:
            raise RuntimeError(f"not a cache hit: {first.served_by.cache_status}")
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command[0] == "stop":
                return
            _, path, inflight, warmup, count = command
            await overhead.drive(calls[path], inflight, warmup)
            conn.send("warm")
            await loop.run_in_executor(None, conn.recv)  # "go": every client is warm
            cpu0, wall0 = time.process_time(), time.perf_counter()
            latencies = await overhead.drive(calls[path], inflight, count)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            conn.send((latencies.tobytes(), cpu, wall))

    asyncio.run(run())


class LoadGenerator(overhead.LoadGenerator):
    """``overhead.LoadGenerator`` with this benchmark's client processes."""

    def __init__(self, clients: int, targets: Targets, servers: dict[str, int]) -> None:
        ctx = mp.get_context("spawn")
        self.servers = servers
        self.conns: list[Connection] = []
        self.procs: list[mp.process.BaseProcess] = []
        for _ in range(clients):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=client_main, args=(child, targets), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)


# --- rig ---------------------------------------------------------------------------------------


async def fill_cache(sidecar: str) -> bytes:
    """A miss (stored), then a hit; the hit's serialized response (the echo answers it)."""
    async with grpc.aio.insecure_channel(sidecar) as channel:
        stub = pb_grpc.SkinflintStub(channel)
        miss = await stub.Complete(hit_request(), timeout=CALL_TIMEOUT_S)
        hit = await stub.Complete(hit_request(), timeout=CALL_TIMEOUT_S)
    if miss.served_by.cache_status != pb.CACHE_STATUS_MISS:
        raise RuntimeError(f"the first call was not a miss: {miss.served_by.cache_status}")
    if hit.served_by.cache_status != pb.CACHE_STATUS_EXACT or hit.content != miss.content:
        raise RuntimeError("the second call was not an exact hit of the first")
    return hit.SerializeToString()


@contextlib.contextmanager
def rig(tmp: Path, workers: int) -> Iterator[tuple[Targets, dict[str, int], int]]:
    """Emulator + sidecar, cache filled, emulator stopped; then the echo server."""
    started: list[subprocess.Popen[Any] | mp.process.BaseProcess] = []
    try:
        emulator, emulator_url = overhead.start_emulator(tmp)
        started.append(emulator)
        sidecar, sidecar_port = overhead.start_sidecar(tmp, emulator_url, None, workers)
        started.append(sidecar)
        sidecar_target = f"{overhead.HOST}:{sidecar_port}"
        response = asyncio.run(fill_cache(sidecar_target))
        overhead.stop_process(emulator)  # from here on, the network is not there to touch
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        echo = ctx.Process(target=overhead.echo_server_main, args=(child, response), daemon=True)
        echo.start()
        started.append(echo)
        if not parent.poll(30):
            raise RuntimeError("the echo server did not start")
        targets = Targets(sidecar_target, f"{overhead.HOST}:{parent.recv()}")
        assert echo.pid is not None
        yield targets, {"sidecar": sidecar.pid, "echo": echo.pid}, len(response)
    finally:
        for proc in reversed(started):
            overhead.stop_process(proc)


# --- semantic lookup -------------------------------------------------------------------------

STORED = "How do I reset my password?"
PARAPHRASES = (
    "How can I reset my password?",
    "how do i reset my password",
    "How do I reset my password ?",
    "How do I reset my account password?",
)


def semantic_request(text: str) -> pb.CompleteRequest:
    request = hit_request()
    request.messages[0].content[0].text.text = text
    return request


async def semantic_lookup(size: int, lookups: int) -> tuple[list[float], list[float], list[float]]:
    """Lookup, embed and search times (ms) in an index of ``size`` rows (see the docstring)."""
    model_dir = default_model_dir()
    if model_dir is None:
        raise SystemExit(f"the semantic lookup needs the model: {INSTALL_HINT}")
    settings = Settings.model_validate({"features": {overhead.FEATURE: {"semantic": {}}}})
    rules = compile_rule_sets(settings)[settings.rule_set_name(overhead.FEATURE)]
    threshold = settings.feature(overhead.FEATURE).semantic.threshold
    embedder = _native.Embedder(str(model_dir))
    embedder.load()
    with tempfile.TemporaryDirectory(prefix="skinflint-semantic-") as tmp:
        index = _native.SemanticIndex(str(Path(tmp) / "ix"), dim=DIM, max_entries=2 * size)
        cache = SemanticCache(embedder, index)
        material = to_call(semantic_request(STORED)).key_material()
        stored = await cache.probe(material, rules, threshold)
        assert stored is not None
        cache.add(stored, b"the-answer", 3600)
        rng = random.Random(7)
        pool = [semantic_bench.unit(rng) for _ in range(256)]
        for i in range(size - 1):
            # Perturbed copies of a small pool of random directions: cheap, distinct, and far
            # from the stored question (a random direction scores ~0 against it).
            vector = [x + 1e-4 * (i % 7) for x in pool[i % len(pool)]]
            index.add(stored.namespace, i.to_bytes(8, "big"), vector, ttl_seconds=3600)
        materials = [to_call(semantic_request(t)).key_material() for t in PARAPHRASES]
        total, embed, search = [], [], []
        for i in range(lookups + 10):
            start = time.perf_counter()
            probe = await cache.probe(materials[i % len(materials)], rules, threshold)
            probed = time.perf_counter()
            assert probe is not None and probe.namespace == stored.namespace
            found = cache.search(probe)
            done = time.perf_counter()
            if not found or found[0].key != b"the-answer":
                raise RuntimeError(f"{PARAPHRASES[i % len(PARAPHRASES)]!r} missed the stored one")
            if i >= 10:  # warm-up excluded
                total.append((done - start) * 1e3)
                embed.append((probed - start) * 1e3)
                search.append((done - probed) * 1e3)
    return total, embed, search


# --- report ------------------------------------------------------------------------------------


def ratio_row(concurrency: int, by_path: dict[str, overhead.Result]) -> str:
    h, e = by_path["hit"], by_path["echo"]
    return (
        f"| {concurrency} | {h.pct(0.5):.2f} / {h.pct(0.99):.2f} | "
        f"{e.pct(0.5):.2f} / {e.pct(0.99):.2f} | {h.pct(0.5) / e.pct(0.5):.2f}x | "
        f"{h.pct(0.99) / e.pct(0.99):.2f}x | {h.rate:.0f} / {e.rate:.0f} | "
        f"{100 * h.rate / e.rate:.0f}% |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000, help="measured calls per path and level")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured calls first")
    parser.add_argument(
        "-c", "--concurrency", type=int, nargs="+", default=[1, 64], help="in-flight levels"
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=2,
        help="load-generator processes (a level below this uses fewer)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="path alternations per level")
    parser.add_argument(
        "--workers", type=int, default=1, help="the sidecar's server.workers (processes)"
    )
    parser.add_argument(
        "--semantic-sizes",
        type=int,
        nargs="+",
        default=[10_000, 100_000],
        help="semantic index sizes to time a lookup in (0: skip)",
    )
    parser.add_argument("--semantic-n", type=int, default=300, help="semantic lookups per size")
    opts = parser.parse_args()

    load_start = os.getloadavg()
    began = time.perf_counter()
    results: dict[int, dict[str, overhead.Result]] = {}
    with tempfile.TemporaryDirectory(prefix="skinflint-bench-") as tmp:
        with rig(Path(tmp), opts.workers) as (targets, servers, response_bytes):
            load = LoadGenerator(opts.clients, targets, servers)
            try:
                for concurrency in opts.concurrency:
                    rounds = [
                        {path: load.run(path, concurrency, share, opts.warmup) for path in PATHS}
                        for share in overhead.split(opts.n, opts.rounds)
                    ]
                    results[concurrency] = {
                        path: overhead.merge([r[path] for r in rounds]) for path in PATHS
                    }
            finally:
                load.close()
        elapsed = time.perf_counter() - began

    print("## response-cache hit latency (bench/cache.py)\n")
    print("\n".join(overhead.machine_facts(load_start)))
    print(
        f"- request {len(hit_request().SerializeToString())} B, response {response_bytes} B; "
        f"emulator stopped before measuring (a hit cannot reach the network); "
        f"sidecar server.workers {opts.workers}; {opts.clients} client processes; "
        f"{opts.n} measured + {opts.warmup} warm-up calls per path and level, "
        f"{opts.rounds} alternating rounds; run took {elapsed:.0f} s\n"
    )
    print(
        "| in flight | hit p50 / p99 ms | echo p50 / p99 ms | p50 hit/echo | p99 hit/echo "
        "| calls/s hit / echo | hit throughput vs echo |"
    )
    print("|---|---|---|---|---|---|---|")
    for concurrency, by_path in results.items():
        print(ratio_row(concurrency, by_path))
    print(
        "\n| in flight | path | requests | p50 ms | p99 ms | req/s | client CPU (per process) "
        "| server CPU (share of one core, CPU per request) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for by_path in results.values():
        for result in by_path.values():
            print(overhead.path_row(result))
    sizes = [size for size in opts.semantic_sizes if size > 0]
    if sizes:
        print("\n## semantic lookup (exact miss -> probe + search), in process\n")
        load = os.getloadavg()[0]
        print(f"- load average at start {load:.2f}; {opts.semantic_n} lookups per size")
        print("\n| entries | lookup p50 / p99 ms | embed p50 / p99 ms | search p50 / p99 ms |")
        print("|---|---|---|---|")
        for size in sizes:
            times = asyncio.run(semantic_lookup(size, opts.semantic_n))
            at = semantic_bench.percentile
            cells = [f"{at(ms, 0.5):.2f} / {at(ms, 0.99):.2f}" for ms in times]
            print(f"| {size:,} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
