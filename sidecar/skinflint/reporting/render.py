"""The report for people: rich tables in the terminal, and a self-contained HTML page."""

from __future__ import annotations

import base64
import html

from rich.console import Console
from rich.table import Table

from skinflint.reporting.report import LEVERS, Figures, Report, usd_short

_LEVER_TITLES = {
    "response_cache": "resp. cache",
    "routing": "routing",
    "prompt_caching": "prompt cache",
    "batching": "batching",
    "local_tier": "local tier",
}


def _share(part: int, whole: int) -> str:
    if whole <= 0:
        return "-"
    tenths = (part * 1000 + whole // 2) // whole
    return f"{tenths // 10}.{tenths % 10}%"


def _cells(figures: Figures, total_cost: int) -> list[str]:
    return [
        f"{figures.requests:,}",
        f"{figures.cache_hits:,}",
        usd_short(figures.cost_nanousd),
        _share(figures.cost_nanousd, total_cost),
        usd_short(figures.baseline_nanousd),
        usd_short(figures.saved_nanousd),
        *(usd_short(figures.savings[lever]) for lever in LEVERS),
    ]


def _headers(by: str) -> list[str]:
    return [
        by,
        "requests",
        "cache hits",
        "spend",
        "share",
        "baseline",
        "saved",
        *(f"saved: {_LEVER_TITLES[lever]}" for lever in LEVERS),
    ]


def print_report(report: Report, console: Console) -> None:
    title = (
        f"spend by {report.by.value}, {report.since:%Y-%m-%d %H:%M} to "
        f"{report.until:%Y-%m-%d %H:%M} UTC"
    )
    table = Table(title=title)
    for i, header in enumerate(_headers(report.by.value)):
        table.add_column(header, justify="left" if i == 0 else "right")
    total_cost = report.total.cost_nanousd
    for group in report.groups:
        table.add_row(group.key or "(none)", *_cells(group.figures, total_cost))
    table.add_section()
    table.add_row("total", *_cells(report.total, total_cost), style="bold")
    console.print(table)
    spenders = Table(title=f"top {len(report.top_spenders)} spenders (tenant / team / feature)")
    for header in ("tenant", "team", "feature", "requests", "spend", "share"):
        spenders.add_column(
            header, justify="right" if header in {"requests", "spend", "share"} else "left"
        )
    for s in report.top_spenders:
        spenders.add_row(
            s.tenant,
            s.team or "-",
            s.feature or "-",
            f"{s.requests:,}",
            usd_short(s.cost_nanousd),
            _share(s.cost_nanousd, total_cost),
        )
    console.print(spenders)


def report_html(report: Report, charts_png: bytes | None) -> str:
    """One self-contained page: both tables and the charts (embedded PNG)."""
    total_cost = report.total.cost_nanousd

    def row(cells: list[str], tag: str = "td") -> str:
        return "<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>"

    groups = [row(_headers(report.by.value), "th")]
    groups += [row([g.key or "(none)", *_cells(g.figures, total_cost)]) for g in report.groups]
    groups.append(row(["total", *_cells(report.total, total_cost)], "th"))
    spenders = [row(["tenant", "team", "feature", "requests", "spend", "share"], "th")]
    spenders += [
        row(
            [
                s.tenant,
                s.team or "-",
                s.feature or "-",
                f"{s.requests:,}",
                usd_short(s.cost_nanousd),
                _share(s.cost_nanousd, total_cost),
            ]
        )
        for s in report.top_spenders
    ]
    image = ""
    if charts_png is not None:
        encoded = base64.b64encode(charts_png).decode("ascii")
        alt = "spend per day by feature and the savings waterfall"
        image = f'<img alt="{alt}" src="data:image/png;base64,{encoded}">'
    title = html.escape(
        f"skinflint spend by {report.by.value}, {report.since:%Y-%m-%d %H:%M} to "
        f"{report.until:%Y-%m-%d %H:%M} UTC"
    )
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
        f"</style></head><body><h1>{title}</h1>"
        f"<table>{''.join(groups)}</table><h2>Top spenders</h2>"
        f"<table>{''.join(spenders)}</table>{image}</body></html>\n"
    )
