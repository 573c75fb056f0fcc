"""Read-side SQL of the ledger: records, the History answers (output-token distribution,
workload model). Pure functions of a connection, so the CLI can run them on its own."""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict

from skinflint.call import Tier
from skinflint.ledger.record import CACHE_HITS, COLUMNS, LedgerRecord
from skinflint.pipeline.history import OutputStats
from skinflint.pipeline.projection import FeatureWorkload, WorkloadModel

DAY_MS = 86_400_000
#: ``output_tokens`` reads at most this many of the feature's latest provider calls.
STATS_WINDOW = 10_000
_HITS = f"({', '.join(repr(s) for s in CACHE_HITS)})"


def records(
    conn: sqlite3.Connection, since_ms: int = 0, until_ms: int | None = None
) -> list[LedgerRecord]:
    sql = f"SELECT {', '.join(COLUMNS)} FROM calls WHERE ts_ms >= ?"
    args: list[int] = [since_ms]
    if until_ms is not None:
        sql += " AND ts_ms < ?"
        args.append(until_ms)
    rows = conn.execute(sql + " ORDER BY ts_ms, id", args).fetchall()
    return [_record(row) for row in rows]


def _record(row: tuple[object, ...]) -> LedgerRecord:
    values = dict(zip(COLUMNS, row, strict=True))
    values["stream"] = bool(values["stream"])
    return LedgerRecord(**values)  # type: ignore[arg-type]


def nearest_rank(sorted_values: list[int], percent: int) -> int:
    """The ``percent``-th percentile by nearest rank (a value that was observed)."""
    rank = max(1, math.ceil(percent * len(sorted_values) / 100))
    return sorted_values[rank - 1]


def output_stats(conn: sqlite3.Connection, feature: str) -> OutputStats | None:
    """Output tokens of the feature's latest provider calls (response-cache hits excluded:
    they replay another call's output)."""
    rows = conn.execute(
        f"SELECT output_tokens FROM calls WHERE feature = ? AND cache_status NOT IN {_HITS} "
        "ORDER BY ts_ms DESC LIMIT ?",
        (feature, STATS_WINDOW),
    ).fetchall()
    if not rows:
        return None
    values = sorted(int(r[0]) for r in rows)
    return OutputStats(
        calls=len(values),
        p50=nearest_rank(values, 50),
        p90=nearest_rank(values, 90),
        max=values[-1],
    )


def workload(conn: sqlite3.Connection, last_days: int, now_ms: int) -> WorkloadModel | None:
    """The last ``last_days`` days as a monthly workload, feature by feature.

    * ``requests_per_month``: calls in the period x 30 / ``last_days`` (rounded half up);
    * ``avg_input_tokens`` / ``avg_output_tokens``: over provider calls (hits replay one);
      prompt tokens include cache reads and writes;
    * ``tier_mix``: share of provider calls per tier (calls on a pinned model outside any
      tier are left out, the shares of the rest sum to 1);
    * ``cache_hit_rate``: response-cache hits / all calls;
    * ``prompt_cache_share``: prompt tokens read from or written to the provider's prompt
      cache / all prompt tokens of provider calls;
    * ``batchable_share``: share of calls that ran on the async lane.
    """
    if last_days < 1:
        raise ValueError("last_days must be at least 1")
    since = now_ms - last_days * DAY_MS
    rows = conn.execute(
        "SELECT feature, tier, lane, cache_status, input_tokens, output_tokens, "
        "cache_read_tokens, cache_write_5m_tokens + cache_write_1h_tokens "
        "FROM calls WHERE ts_ms >= ? AND ts_ms < ? ORDER BY feature",
        (since, now_ms),
    ).fetchall()
    if not rows:
        return None
    by_feature: dict[str, list[tuple[object, ...]]] = defaultdict(list)
    for row in rows:
        by_feature[str(row[0])].append(row)
    features = []
    for feature, calls in sorted(by_feature.items()):
        provider_calls = [c for c in calls if c[3] not in CACHE_HITS]
        n = len(provider_calls)
        prompt = sum(int(c[4]) + int(c[6]) + int(c[7]) for c in provider_calls)  # type: ignore[call-overload]
        cached = sum(int(c[6]) + int(c[7]) for c in provider_calls)  # type: ignore[call-overload]
        output = sum(int(c[5]) for c in provider_calls)  # type: ignore[call-overload]
        tiers: dict[Tier, int] = defaultdict(int)
        for c in provider_calls:
            if c[1] is not None:
                tiers[Tier(str(c[1]))] += 1
        tiered = sum(tiers.values())
        features.append(
            FeatureWorkload(
                feature=feature,
                requests_per_month=(2 * len(calls) * 30 + last_days) // (2 * last_days),
                avg_input_tokens=round(prompt / n) if n else 0,
                avg_output_tokens=round(output / n) if n else 0,
                tier_mix={t: count / tiered for t, count in sorted(tiers.items())},
                cache_hit_rate=(len(calls) - n) / len(calls),
                prompt_cache_share=cached / prompt if prompt else 0.0,
                batchable_share=sum(1 for c in calls if c[2] == "async") / len(calls),
            )
        )
    return WorkloadModel(features=tuple(features))
