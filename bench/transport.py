"""Benchmark the OpenAI adapter's HTTP transport: CPU per provider call, httpx2 vs aiohttp.

``OpenAICompatProvider.complete`` against the OpenAI emulator (its own process, no simulated
latency), sequentially from one uvloop event loop, with the SDK client built two ways: the
SDK's default httpx2 transport, and ``openai.DefaultAioHttpClient`` (what the adapter uses).
Reported per call: this process's CPU time (``time.process_time``) and wall time. The two
variants alternate ``--rounds`` times so drift from other work hits both.

Run: ``python bench/transport.py`` (needs the dev extras). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import openai

sys.path.insert(0, str(Path(__file__).parent))
import overhead  # bench/overhead.py: the emulator helpers this benchmark shares

from skinflint.call import Call, GenerationParams, Message, ModelKind, ModelSpec, Role, TextPart
from skinflint.providers.base import CachePlan, ProviderRequest
from skinflint.providers.openai_compat import OpenAICompatProvider
from skinflint.providers.settings import ProviderSettings

KEY_ENV = "SKINFLINT_BENCH_TRANSPORT_KEY"


def provider_request() -> ProviderRequest:
    model = ModelSpec(
        requested=f"openai/{overhead.MODEL}",
        kind=ModelKind.PINNED,
        provider="openai",
        name=overhead.MODEL,
    )
    call = Call(
        model=model,
        messages=(Message(Role.USER, (TextPart(overhead.QUESTION),)),),
        request_id="bench-transport",
        params=GenerationParams(temperature=0.0),
    )
    return ProviderRequest(
        call=call,
        model=overhead.MODEL,
        max_tokens=overhead.MAX_TOKENS,
        cache_plan=CachePlan(),
        timeout_s=30.0,
    )


async def measure(url: str, transport: str, count: int, warmup: int) -> tuple[float, float]:
    """CPU and wall milliseconds per call."""
    settings = ProviderSettings(kind="openai", base_url=f"{url}/v1", api_key_env=KEY_ENV)
    provider = OpenAICompatProvider("openai", settings)
    provider._get_client()  # the adapter's own client (aiohttp transport)
    if transport == "httpx2":
        await provider.aclose()
        provider._client = openai.AsyncOpenAI(
            api_key=overhead.API_KEY,
            base_url=f"{url}/v1",
            max_retries=0,
            timeout=httpx2.Timeout(600.0, connect=settings.connect_timeout_s),
        )
    request = provider_request()
    try:
        for _ in range(warmup):
            await provider.complete(request)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(count):
            await provider.complete(request)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await provider.aclose()
    return 1000 * cpu / count, 1000 * wall / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1500, help="measured calls per round")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured calls first")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the variants")
    opts = parser.parse_args()
    os.environ[KEY_ENV] = overhead.API_KEY
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    print("## OpenAI adapter transport (bench/transport.py)\n")
    print("| round | transport | CPU ms/call | wall ms/call | load avg (1 min) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="skinflint-bench-") as tmp:
        emulator, url = overhead.start_emulator(Path(tmp))
        try:
            for index in range(opts.rounds):
                for transport in ("httpx2", "aiohttp"):
                    cpu, wall = run(measure(url, transport, opts.n, opts.warmup))
                    load = os.getloadavg()[0]
                    print(f"| {index + 1} | {transport} | {cpu:.3f} | {wall:.3f} | {load:.1f} |")
                    sys.stdout.flush()
        finally:
            overhead.stop_process(emulator)


if __name__ == "__main__":
    main()
