"""Estimate latency: ``App.estimate`` in-process, and the Estimate RPC through a real gRPC hop.

    python bench/estimate.py [--ops 3000]

Scenarios (all on a fresh data dir, default configuration, no provider called):

* ``miss``: a pinned OpenAI model, a short prompt, nothing cached, no budgets;
* ``hit``: the same request with its answer in the response cache (a peek, not a hit);
* ``budgets``: the miss with two matching budgets on the local (LMDB) store;
* ``openai (~1k tok)``: a ~1,000-token system prompt on gpt-4o-mini;
* ``long-anthropic``: a ~9,000-token system prompt on Claude Sonnet (prompt-cache plan, the
  Anthropic token estimate);
* ``auto+history``: model ``auto`` routed by policy, with an in-memory History;
* ``grpc``: the ``miss`` request through ``Skinflint/Estimate`` on a loopback server.

Prints p50 / p99 in microseconds per scenario; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import datetime

from skinflint.accounting import Usage
from skinflint.app import App
from skinflint.call import (
    Attribution,
    Call,
    GenerationParams,
    Lane,
    Message,
    ModelKind,
    ModelSpec,
    Role,
    SystemBlock,
    TextPart,
)
from skinflint.config import load_settings
from skinflint.pipeline.budgets import BudgetSpec, BudgetWindow, parse_scope
from skinflint.pipeline.complete import (
    Completion,
    Served,
    _entry,  # the stored form of an answer
)
from skinflint.pipeline.history import OutputStats
from skinflint.pipeline.pricing import Bill, Savings
from skinflint.pipeline.projection import WorkloadModel
from skinflint.providers.base import StopReason


class StaticHistory:
    def output_tokens(self, feature: str) -> OutputStats | None:
        return OutputStats(calls=100, p50=180, p90=400, max=1000)

    def workload(self, last_days: int, *, now: datetime | None = None) -> WorkloadModel | None:
        return None


def call(model: str, *, system: str = "", feature: str = "qa", team: str = "search") -> Call:
    if "/" in model:
        spec = ModelSpec(model, ModelKind.PINNED, None, *model.split("/", 1))
    else:
        spec = ModelSpec(model, ModelKind.AUTO)
    return Call(
        model=spec,
        system=(SystemBlock(system),) if system else (),
        messages=(Message(Role.USER, (TextPart("What is the capital of France?"),)),),
        request_id="bench",
        params=GenerationParams(max_tokens=256, temperature=0.0),
        attribution=Attribution(tenant="acme", team=team, feature=feature),
    )


def pct(samples: list[int], p: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * p))] / 1000


async def measure(app: App, c: Call, ops: int) -> tuple[float, float]:
    for _ in range(100):  # warm-up
        await app.estimate(c)
    samples = []
    for _ in range(ops):
        t = time.perf_counter_ns()
        await app.estimate(c)
        samples.append(time.perf_counter_ns() - t)
    samples.sort()
    return pct(samples, 0.5), pct(samples, 0.99)


async def measure_grpc(app: App, ops: int) -> tuple[float, float]:
    import grpc

    from skinflint.server import create_server
    from skinflint.v1 import skinflint_pb2 as pb
    from skinflint.v1 import skinflint_pb2_grpc as pb_grpc

    server, port = await create_server(app)
    await server.start()
    request = pb.EstimateRequest(
        request=pb.CompleteRequest(
            model="openai/gpt-4o-mini",
            messages=[
                pb.Message(
                    role=pb.ROLE_USER,
                    content=[pb.ContentPart(text=pb.TextPart(text="What is the capital?"))],
                )
            ],
            params=pb.GenerationParams(max_tokens=256, temperature=0.0),
            attribution=pb.Attribution(tenant="acme", team="other", feature="qa"),
        )
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.SkinflintStub(channel)
            for _ in range(100):
                await stub.Estimate(request)
            samples = []
            for _ in range(ops):
                t = time.perf_counter_ns()
                await stub.Estimate(request)
                samples.append(time.perf_counter_ns() - t)
    finally:
        await server.stop(None)
    samples.sort()
    return pct(samples, 0.5), pct(samples, 0.99)


async def main(ops: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(None, env={"SKINFLINT_DATA_DIR": tmp, "SKINFLINT_PORT": "0"})
        app = App.open(settings)
        try:
            rows: list[tuple[str, float, float]] = []
            miss = call("openai/gpt-4o-mini", team="other")
            rows.append(("miss", *await measure(app, miss, ops)))

            # Put an answer under the request's key (what Complete stores after a call).
            hit = call("openai/gpt-4o-mini", team="other", feature="cached")
            estimate = await app.estimate(hit)
            layer = app._estimator._cache  # the same key Complete would use
            completion = Completion(
                request_id="x",
                content=(TextPart("Paris."),),
                stop_reason=StopReason.END_TURN,
                served=Served("openai", "gpt-4o-mini", None, Lane.INTERACTIVE, "", 1),
                usage=Usage(input_tokens=estimate.input_tokens, output_tokens=3),
                bill=Bill(100, 1000, Savings(routing=900), "bench"),
            )
            layer.put(layer.decide(hit), _entry(completion))
            assert (await app.estimate(hit)).cost.high == 0
            rows.append(("hit", *await measure(app, hit, ops)))

            for budget_id, scope in (("b-team", "team:search"), ("b-global", "global")):
                await app.set_budget(
                    BudgetSpec(
                        budget_id,
                        parse_scope(scope),
                        BudgetWindow.DAY,
                        limit_nanousd=10**12,
                    )
                )
            rows.append(
                ("budgets (2, local)", *await measure(app, call("openai/gpt-4o-mini"), ops))
            )
            for budget_id in ("b-team", "b-global"):
                await app.delete_budget(budget_id)

            system = " ".join(f"Rule {i}: answer briefly and cite sources." for i in range(80))
            mid = call("openai/gpt-4o-mini", system=system, team="other")
            tokens = (await app.estimate(mid)).input_tokens
            rows.append((f"openai (~{tokens} tok)", *await measure(app, mid, ops)))

            system = " ".join(f"Rule {i}: answer briefly and cite sources." for i in range(700))
            long = call("anthropic/claude-sonnet-4-6", system=system, team="other")
            tokens = (await app.estimate(long)).input_tokens
            rows.append((f"long-anthropic (~{tokens} tok)", *await measure(app, long, ops)))

            app.history = StaticHistory()
            rows.append(("auto+history", *await measure(app, call("auto", team="other"), ops)))
            app.history = None
            rows.append(("grpc (miss, loopback)", *await measure_grpc(app, ops)))
        finally:
            await app.aclose()
    load = os.getloadavg()
    print(f"Estimate latency, {ops} calls per scenario; load average {load[0]:.2f}")
    print(f"{'scenario':34} {'p50 us':>9} {'p99 us':>9}")
    for name, p50, p99 in rows:
        print(f"{name:34} {p50:9.1f} {p99:9.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000)
    asyncio.run(main(parser.parse_args().ops))
