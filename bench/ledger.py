"""What the spend ledger and telemetry add per call, and how fast the ledger commits.

Prints, for N calls' worth of records:

* ``record_of + append`` on the caller's thread (what the event loop pays per call);
* ``Telemetry.observe`` with exporter none (the default) and with an SDK provider and a
  batch exporter that drops spans (the span and metric bookkeeping, not the network);
* the writer's sustained commit rate (records/s), the lag from ``append`` to committed for
  a single record left to the writer (the crash window of an answered call), and the same
  when the caller flushes.

Usage: python bench/ledger.py [-n 20000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from skinflint.accounting import Usage
from skinflint.call import (
    Attribution,
    Call,
    Lane,
    Message,
    ModelKind,
    ModelSpec,
    Role,
    TextPart,
    Tier,
)
from skinflint.ledger import Ledger, record_of
from skinflint.pipeline.complete import Completion, Served
from skinflint.pipeline.pricing import Bill, Savings
from skinflint.pipeline.response_cache import CacheStatus
from skinflint.providers.base import StopReason
from skinflint.telemetry import Telemetry


class _Drop(SpanExporter):
    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _call(i: int) -> Call:
    return Call(
        model=ModelSpec("small", ModelKind.TIER, Tier.SMALL),
        messages=(Message(Role.USER, (TextPart("hello"),)),),
        request_id=f"req-{i}",
        attribution=Attribution(tenant="acme", team="search", feature="qa"),
    )


COMPLETION = Completion(
    request_id="x",
    content=(TextPart("Paris."),),
    stop_reason=StopReason.END_TURN,
    served=Served(
        "anthropic",
        "claude-haiku-4-5",
        Tier.SMALL,
        Lane.INTERACTIVE,
        "tier small",
        1,
        CacheStatus.MISS,
    ),
    usage=Usage(input_tokens=120, output_tokens=8),
    bill=Bill(1000, 9000, Savings(routing=8000), "bench"),
)


def _pcts(samples: list[float]) -> str:
    samples.sort()
    p50 = statistics.median(samples) * 1e6
    p99 = samples[int(len(samples) * 0.99) - 1] * 1e6
    return f"p50 {p50:7.2f} µs   p99 {p99:7.2f} µs"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20000)
    n = parser.parse_args().n
    calls = [_call(i) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(Path(tmp) / "ledger.sqlite3", retention_days=90)
        samples = []
        started = time.perf_counter()
        for call in calls:
            t = time.perf_counter()
            ledger.append(record_of(call, COMPLETION, stream=False))
            samples.append(time.perf_counter() - t)
        ledger.flush()
        elapsed = time.perf_counter() - started
        print(f"record_of + append (caller thread)      {_pcts(samples)}")
        print(
            f"writer: {n} records appended and committed in {elapsed:.3f} s "
            f"= {n / elapsed:,.0f} records/s"
        )
        lags, flushed = [], []
        for i in range(40):  # no flush: the writer's own linger decides (the crash window)
            target = ledger.processed + 1
            t = time.perf_counter()
            ledger.append(record_of(calls[i], COMPLETION, stream=False))
            while ledger.processed < target:
                time.sleep(0.0001)
            lags.append(time.perf_counter() - t)
        for i in range(200):  # a flush cuts the linger short
            t = time.perf_counter()
            ledger.append(record_of(calls[i], COMPLETION, stream=False))
            ledger.flush()
            flushed.append(time.perf_counter() - t)
        print(f"append -> committed, one record alone   {_pcts(lags)}")
        print(f"append + flush -> committed             {_pcts(flushed)}")
        ledger.close()

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_Drop()))
    sdk = Telemetry(tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()]))
    for label, telemetry in (("none (default)", Telemetry.disabled()), ("sdk, batch", sdk)):
        samples = []
        for call in calls:
            t = time.perf_counter()
            with telemetry.observe("skinflint.complete", call) as observation:
                observation.completion = COMPLETION
            samples.append(time.perf_counter() - t)
        print(f"telemetry span+metrics, {label:15s} {_pcts(samples)}")
    tracer_provider.shutdown()


if __name__ == "__main__":
    main()
