"""The fleet L2: what a hit from the shared Redis costs next to a hit from the local LMDB tier.

    python bench/cache_l2.py [-n 1000]

Starts a ``redis-server`` on a loopback port and the OpenAI emulator, then two sidecars in this
process (own data dirs, one shared Redis: ``cache.l2.backend: redis``), each a grpc.aio server
reached through a real channel. Sidecar A answers ``n`` distinct prompts (misses, written
behind to Redis). Sidecar B then asks each twice in a row: the first is a local miss answered
from L2 (one Redis round trip plus the local write of the entry), the second a local hit. Also
the tier alone: ``RedisL2.get`` against ``ResponseCache.get`` for the same entries. One
request at a time; client and servers share one event loop, so absolute figures include the
client's own work. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import redis

from skinflint.app import App
from skinflint.config import load_settings
from skinflint.emulators import OpenAIEmulator
from skinflint.server import create_server
from skinflint.transports.grpc.convert import to_call
from skinflint.v1 import skinflint_pb2 as pb
from skinflint.v1 import skinflint_pb2_grpc as pb_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    client.close()
    return proc, url


def request(i: int) -> pb.CompleteRequest:
    # About 2 KB of answer-independent prompt, so the stored values are not trivially small.
    text = f"Question {i}: summarise the following notes. " + "lorem ipsum dolor sit " * 80
    return pb.CompleteRequest(
        model="openai/gpt-4o-mini",
        messages=[
            pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=pb.TextPart(text=text))])
        ],
        params=pb.GenerationParams(max_tokens=256, temperature=0.0),
        attribution=pb.Attribution(tenant="bench", team="bench", feature="bench"),
    )


def pct(samples: list[int], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] / 1e6


async def timed(n: int, one: Callable[[int], Awaitable[Any]]) -> list[int]:
    samples = []
    for i in range(n):
        t = time.perf_counter_ns()
        await one(i)
        samples.append(time.perf_counter_ns() - t)
    return samples


async def main(n: int) -> None:
    os.environ["BENCH_OPENAI_KEY"] = "bench"  # the emulator takes any key
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis(tmp)
        try:
            async with OpenAIEmulator() as emulator:
                await run(n, tmp, url, emulator.base_url)
        finally:
            proc.terminate()
            proc.wait()


async def run(n: int, tmp: str, url: str, emulator_url: str) -> None:
    yaml_text = (
        f"providers:\n  openai: {{base_url: '{emulator_url}/v1', api_key_env: BENCH_OPENAI_KEY}}\n"
        f"cache:\n  l2: {{backend: redis, redis_url: '{url}', timeout_ms: 1000}}\n"
        "logging: {level: warning}\n"
    )
    config = Path(tmp) / "skinflint.yaml"
    config.write_text(yaml_text)
    stubs: list[pb_grpc.SkinflintStub] = []
    apps: list[App] = []
    closers: list[Callable[[], Awaitable[Any]]] = []
    for name in ("a", "b"):
        env = {"SKINFLINT_DATA_DIR": f"{tmp}/data-{name}"}
        app = App.open(load_settings(config, env=env, flags={"port": 0}))
        server, port = await create_server(app)
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stubs.append(pb_grpc.SkinflintStub(channel))
        apps.append(app)
        closers += [channel.close, lambda s=server: s.stop(None), app.aclose]
    a, b = stubs
    try:
        for i in range(50):  # warm-up: connections, code paths
            await a.Complete(request(-1 - i))
            await a.Complete(request(-1 - i))
        await timed(n, lambda i: a.Complete(request(i)))
        l2 = apps[0].cache_l2
        assert l2 is not None and await l2.flush(60)
        # Interleaved (each prompt: first from L2, then locally), so drift hits both alike.
        l2_hits: list[int] = []
        local_hits: list[int] = []
        for i in range(n):
            for samples in (l2_hits, local_hits):
                t = time.perf_counter_ns()
                await b.Complete(request(i))
                samples.append(time.perf_counter_ns() - t)
        stats = apps[1].cache_l2.stats if apps[1].cache_l2 else None
        print(f"n={n}; sidecar B L2 stats: {stats}")
        print("| hit through gRPC | p50 ms | p99 ms |")
        print("|---|---|---|")
        for label, samples in (("local (LMDB)", local_hits), ("fleet L2 (Redis)", l2_hits)):
            print(f"| {label} | {pct(samples, 0.5):.3f} | {pct(samples, 0.99):.3f} |")

        # The tiers alone, on the entries B now holds locally and Redis holds for everyone.
        layer = apps[1]._complete._cache  # a bench may look inside
        keys = [layer.decide(_call(apps[1], request(i))).key for i in range(n)]
        native = apps[1].cache
        remote = apps[1].cache_l2
        assert remote is not None

        async def local_get(i: int) -> None:
            assert native.get(keys[i].bytes) is not None

        async def remote_get(i: int) -> None:
            assert await remote.get(keys[i].bytes) is not None

        local_tier = await timed(n, local_get)
        remote_tier = await timed(n, remote_get)
        print("| tier alone | p50 ms | p99 ms |")
        print("|---|---|---|")
        for label, samples in (
            ("ResponseCache.get", local_tier),
            ("RedisL2.get (GET+PTTL, unseal)", remote_tier),
        ):
            print(f"| {label} | {pct(samples, 0.5):.3f} | {pct(samples, 0.99):.3f} |")
    finally:
        for close in reversed(closers):
            await close()


def _call(app: App, req: pb.CompleteRequest) -> Any:
    return to_call(req)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="distinct prompts (default 1000)")
    asyncio.run(main(parser.parse_args().n))
