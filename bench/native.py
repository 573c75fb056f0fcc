"""Benchmark the Rust core against a straightforward pure-Python equivalent.

Measures, per operation, median and p99 latency as seen from Python:
- canonicalize + key of a chat request whose prompt is 1 KB / 4 KB / 32 KB
  (native `cache_key` vs unicodedata + re + json + xxhash over the same length-prefixed encoding);
- LMDB get (hit, miss) and put of a 2 KB value (native `ResponseCache` vs the `lmdb` package
  with the same header: expiry + checksum).

Run: `python bench/native.py` (needs the dev extras: `pip install '.[dev]'`).
Figures are printed, never asserted; copy them into bench/RESULTS.md with the machine and date.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import struct
import tempfile
import time
import unicodedata
from collections.abc import Callable
from typing import Any

import lmdb
import xxhash

from skinflint._native import ResponseCache, RuleSet, cache_key

WORDS = [
    "the",
    "order",
    "shipped",
    "invoice",
    "customer",
    "refund",
    "café",
    "naïve",
    "résumé",
    "please",
    "summarise",
    "account",
    "balance",
    "transfer",
    "card",
    "declined",
    "statement",
    "payment",
    "pending",
    "support",
    "ticket",
]


def prompt(size: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        sep = rng.choice([" ", " ", " ", "  ", "\n", "\t "])
        out.append(word + sep)
        length += len(word) + len(sep)
    return "".join(out)[:size]


def request(text: str) -> dict[str, Any]:
    return {
        "namespace": "tenant:acme",
        "model": "anthropic/claude-haiku-4-5",
        "params": {"temperature": 0.0, "max_tokens": 512},
        "tools": [],
        "system": ["You are a helpful support agent."],
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
    }


# --- pure-Python equivalent of the native key ------------------------------------------------

_WS = re.compile(r"\s+")


def py_canon(text: str) -> str:
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def py_key(req: dict[str, Any]) -> bytes:
    h = xxhash.xxh3_128()

    def field(tag: bytes, data: bytes) -> None:
        h.update(tag + struct.pack("<Q", len(data)) + data)

    field(b"n", req["namespace"].encode())
    field(b"m", req["model"].encode())
    field(b"p", json.dumps(req["params"], sort_keys=True, separators=(",", ":")).encode())
    h.update(b"T" + struct.pack("<Q", len(req["tools"])))
    for tool in req["tools"]:
        field(b"t", json.dumps(tool, sort_keys=True, separators=(",", ":")).encode())
    h.update(b"S" + struct.pack("<Q", len(req["system"])))
    for block in req["system"]:
        field(b"s", py_canon(block).encode())
    h.update(b"M" + struct.pack("<Q", len(req["messages"])))
    for msg in req["messages"]:
        field(b"r", msg["role"].encode())
        h.update(b"C" + struct.pack("<Q", len(msg["content"])))
        for part in msg["content"]:
            field(b"x", py_canon(part["text"]).encode())
    return h.digest()


class PyCache:
    """The lmdb package with the same value header as the native cache (expiry + checksum)."""

    HEADER = struct.Struct("<IQQ")

    def __init__(self, path: str) -> None:
        self.env = lmdb.open(path, map_size=1 << 30, max_dbs=4, sync=False)
        self.db = self.env.open_db(b"entries")

    def get(self, key: bytes) -> bytes | None:
        with self.env.begin(db=self.db, buffers=True) as txn:
            raw = txn.get(key)
            if raw is None or len(raw) < self.HEADER.size:
                return None
            magic, expires, check = self.HEADER.unpack_from(raw)
            payload = bytes(raw[self.HEADER.size :])
        if magic != 0x534B4631 or expires < time.time_ns() // 1_000_000:
            return None
        return payload if xxhash.xxh3_64_intdigest(payload) == check else None

    def put(self, key: bytes, value: bytes, ttl_seconds: float) -> None:
        expires = time.time_ns() // 1_000_000 + int(ttl_seconds * 1000)
        header = self.HEADER.pack(0x534B4631, expires, xxhash.xxh3_64_intdigest(value))
        with self.env.begin(db=self.db, write=True) as txn:
            txn.put(key, header + value)


# --- timing ----------------------------------------------------------------------------------


def measure(fn: Callable[[], object], n: int) -> tuple[float, float]:
    for _ in range(min(1000, n)):
        fn()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    samples.sort()
    return statistics.median(samples) / 1000, samples[int(len(samples) * 0.99)] / 1000


def row(name: str, native: tuple[float, float], python: tuple[float, float]) -> str:
    speedup = python[0] / native[0] if native[0] else float("inf")
    return (
        f"| {name} | {native[0]:.2f} | {native[1]:.2f} | {python[0]:.2f} | {python[1]:.2f} "
        f"| {speedup:.1f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="iterations per measurement")
    opts = parser.parse_args()
    rules = RuleSet.named("conservative")
    lines = [
        "| operation | native p50 µs | native p99 µs | python p50 µs | python p99 µs | speedup |",
        "|---|---|---|---|---|---|",
    ]
    for size in (1024, 4096, 32768):
        req = request(prompt(size))
        nat = measure(lambda req=req: cache_key(req, rules), opts.n)
        py = measure(lambda req=req: py_key(req), opts.n)
        lines.append(row(f"canonicalize+key {size // 1024} KB", nat, py))

    value = bytes(random.Random(1).getrandbits(8) for _ in range(2048))
    with tempfile.TemporaryDirectory() as tmp:
        native = ResponseCache(f"{tmp}/native")
        python = PyCache(f"{tmp}/python")
        keys = [i.to_bytes(16, "big") for i in range(10_000)]
        for key in keys:
            native.put(key, value, ttl_seconds=3600)
            python.put(key, value, 3600)
        hit, miss = keys[1234], (10**9).to_bytes(16, "big")
        assert native.get(hit) == value and python.get(hit) == value
        lines.append(
            row(
                "LMDB get hit (2 KB)",
                measure(lambda: native.get(hit), opts.n),
                measure(lambda: python.get(hit), opts.n),
            )
        )
        lines.append(
            row(
                "LMDB get miss",
                measure(lambda: native.get(miss), opts.n),
                measure(lambda: python.get(miss), opts.n),
            )
        )
        counter = iter(range(10**9))
        lines.append(
            row(
                "LMDB put (2 KB)",
                measure(
                    lambda: native.put(next(counter).to_bytes(16, "big"), value, ttl_seconds=3600),
                    opts.n // 4,
                ),
                measure(
                    lambda: python.put(next(counter).to_bytes(16, "big"), value, 3600), opts.n // 4
                ),
            )
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
