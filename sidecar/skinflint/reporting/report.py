"""``skinflint report``'s figures: spend, requests, baseline and savings by lever, grouped by
one dimension, with the top spenders and spend per day and feature, from the ledger.

Aggregated in SQL (integer sums: exact), so a long retention stays cheap to report on. Every
figure is integer nano-USD; only the renderers turn them into dollars for people.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from skinflint.ledger.record import CACHE_HITS

LEVERS = ("response_cache", "routing", "prompt_caching", "batching", "local_tier")
TOP_SPENDERS = 5
_HITS = f"({', '.join(repr(s) for s in CACHE_HITS)})"
_DAY_MS = 86_400_000


class GroupBy(StrEnum):
    FEATURE = "feature"
    TEAM = "team"
    TENANT = "tenant"
    MODEL = "model"
    TIER = "tier"
    LANE = "lane"

    @property
    def sql(self) -> str:
        if self is GroupBy.MODEL:
            return "provider || '/' || model"
        if self is GroupBy.TIER:
            return "COALESCE(tier, '(pinned)')"
        return self.value


@dataclass(frozen=True, slots=True)
class Figures:
    """Sums over a set of calls (all integers; money in nano-USD)."""

    requests: int
    cache_hits: int
    cost_nanousd: int
    baseline_nanousd: int
    savings: dict[str, int]
    input_tokens: int
    output_tokens: int

    @property
    def saved_nanousd(self) -> int:
        return sum(self.savings.values())


@dataclass(frozen=True, slots=True)
class Group:
    key: str
    figures: Figures


@dataclass(frozen=True, slots=True)
class Spender:
    tenant: str
    team: str
    feature: str
    requests: int
    cost_nanousd: int


@dataclass(frozen=True, slots=True)
class Report:
    since: datetime
    until: datetime
    by: GroupBy
    total: Figures
    groups: tuple[Group, ...]  # by spend, highest first
    top_spenders: tuple[Spender, ...]
    #: Spend per UTC day and feature: (day "YYYY-MM-DD", feature, nano-USD), by day.
    daily: tuple[tuple[str, str, int], ...]


_FIGURES = (
    "COUNT(*), "
    f"COALESCE(SUM(cache_status IN {_HITS}), 0), "
    "COALESCE(SUM(cost_nanousd), 0), COALESCE(SUM(baseline_nanousd), 0), "
    + ", ".join(f"COALESCE(SUM(saved_{lever}), 0)" for lever in LEVERS)
    + ", COALESCE(SUM(input_tokens + cache_read_tokens + cache_write_5m_tokens"
    " + cache_write_1h_tokens), 0), COALESCE(SUM(output_tokens), 0)"
)


def _figures(row: tuple[int, ...]) -> Figures:
    n = len(LEVERS)
    return Figures(
        requests=row[0],
        cache_hits=row[1],
        cost_nanousd=row[2],
        baseline_nanousd=row[3],
        savings=dict(zip(LEVERS, row[4 : 4 + n], strict=True)),
        input_tokens=row[4 + n],
        output_tokens=row[5 + n],
    )


def build_report(
    conn: sqlite3.Connection, *, since: datetime, until: datetime, by: GroupBy
) -> Report:
    window = (_ms(since), _ms(until))
    where = "WHERE ts_ms >= ? AND ts_ms < ?"
    total = _figures(conn.execute(f"SELECT {_FIGURES} FROM calls {where}", window).fetchone())
    rows = conn.execute(
        f"SELECT {by.sql} AS k, {_FIGURES} FROM calls {where} GROUP BY k", window
    ).fetchall()
    groups = sorted(
        (Group(str(row[0]), _figures(row[1:])) for row in rows),
        key=lambda g: (-g.figures.cost_nanousd, g.key),
    )
    spenders = conn.execute(
        f"SELECT tenant, team, feature, COUNT(*), SUM(cost_nanousd) FROM calls {where} "
        "GROUP BY tenant, team, feature ORDER BY SUM(cost_nanousd) DESC, COUNT(*) DESC, "
        "tenant, team, feature LIMIT ?",
        (*window, TOP_SPENDERS),
    ).fetchall()
    daily = conn.execute(
        f"SELECT ts_ms / {_DAY_MS} AS d, feature, SUM(cost_nanousd) FROM calls {where} "
        "GROUP BY d, feature ORDER BY d, feature",
        window,
    ).fetchall()
    return Report(
        since=since,
        until=until,
        by=by,
        total=total,
        groups=tuple(groups),
        top_spenders=tuple(Spender(*row) for row in spenders),
        daily=tuple(
            (datetime.fromtimestamp(d * 86_400, UTC).date().isoformat(), f, cost)
            for d, f, cost in daily
        ),
    )


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


_RELATIVE = re.compile(r"(\d+)([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime) -> datetime:
    """``7d``, ``24h``, ``30m``, ``2w`` before ``now``, or an ISO date/time (UTC if naive).

    Raises:
        ValueError: neither form; the message says what is accepted.
    """
    match = _RELATIVE.fullmatch(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r}: use a duration (30m, 24h, 7d, 2w) or an ISO date such as "
            "2026-11-01 or 2026-11-01T12:00"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def usd(nanousd: int) -> str:
    """Exact dollars from nano-USD, as text (no float): 1234567 -> "0.001234567"."""
    sign = "-" if nanousd < 0 else ""
    whole, frac = divmod(abs(nanousd), 1_000_000_000)
    return f"{sign}{whole}.{frac:09d}"


def usd_short(nanousd: int) -> str:
    """Dollars for a table cell: cents above $1, otherwise six decimals (display only)."""
    sign = "-" if nanousd < 0 else ""
    amount = abs(nanousd)
    if amount >= 1_000_000_000:
        cents = (amount + 5_000_000) // 10_000_000
        return f"{sign}${cents // 100:,}.{cents % 100:02d}"
    micro = (amount + 500) // 1000
    return f"{sign}${micro // 1_000_000}.{micro % 1_000_000:06d}"


def figures_json(figures: Figures) -> dict[str, object]:
    return {
        "requests": figures.requests,
        "cache_hits": figures.cache_hits,
        "cost_nanousd": figures.cost_nanousd,
        "cost_usd": usd(figures.cost_nanousd),
        "baseline_nanousd": figures.baseline_nanousd,
        "baseline_usd": usd(figures.baseline_nanousd),
        "saved_nanousd": figures.saved_nanousd,
        "saved_usd": usd(figures.saved_nanousd),
        "savings_nanousd": dict(figures.savings),
        "input_tokens": figures.input_tokens,
        "output_tokens": figures.output_tokens,
    }


def report_json(report: Report) -> dict[str, object]:
    return {
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "by": report.by.value,
        "total": figures_json(report.total),
        "groups": [{"key": g.key, **figures_json(g.figures)} for g in report.groups],
        "top_spenders": [
            {
                "tenant": s.tenant,
                "team": s.team,
                "feature": s.feature,
                "requests": s.requests,
                "cost_nanousd": s.cost_nanousd,
                "cost_usd": usd(s.cost_nanousd),
            }
            for s in report.top_spenders
        ],
        "daily": [
            {"day": day, "feature": feature, "cost_nanousd": cost}
            for day, feature, cost in report.daily
        ],
    }
