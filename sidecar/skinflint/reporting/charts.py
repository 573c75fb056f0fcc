"""The report's charts (matplotlib, headless): spend per day stacked by feature, and the
savings waterfall from the baseline down to what was actually spent, lever by lever.

Dollars are floats here only to place bars; every figure comes from the integer report.
"""

from __future__ import annotations

import io
from collections import defaultdict

from skinflint.errors import ConfigError, ConfigIssue
from skinflint.reporting.report import LEVERS, Report

_NANO = 1e9


def charts_png(report: Report) -> bytes:
    """Both charts side by side, as one PNG.

    Raises:
        ConfigError: matplotlib is not installed (names the extra to install).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(
            [
                ConfigIssue(
                    "--html/--png",
                    "charts need matplotlib, which is not installed",
                    "pip install 'skinflint[charts]' (or drop --html/--png)",
                )
            ]
        ) from None

    figure = Figure(figsize=(14, 5.5), layout="constrained")
    over_time, waterfall = figure.subplots(1, 2)
    _spend_over_time(report, over_time)
    _waterfall(report, waterfall)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _spend_over_time(report: Report, axes: object) -> None:
    days = sorted({day for day, _, _ in report.daily})
    by_feature: dict[str, dict[str, int]] = defaultdict(dict)
    for day, feature, cost in report.daily:
        by_feature[feature or "(none)"][day] = cost
    bottom = [0.0] * len(days)
    for feature in sorted(by_feature):
        heights = [by_feature[feature].get(day, 0) / _NANO for day in days]
        axes.bar(days, heights, bottom=bottom, label=feature)  # type: ignore[attr-defined]
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_title("Spend per day by feature (USD)")  # type: ignore[attr-defined]
    axes.set_ylabel("USD")  # type: ignore[attr-defined]
    if by_feature:
        axes.legend(fontsize="small")  # type: ignore[attr-defined]
    axes.tick_params(axis="x", labelrotation=45)  # type: ignore[attr-defined]


def waterfall_steps(report: Report) -> list[tuple[str, int, int]]:
    """(label, bar bottom, bar height) in nano-USD: the baseline, one step down per lever
    (up when a lever cost money), then the actual spend; the steps telescope exactly."""
    total = report.total
    steps = [("baseline", 0, total.baseline_nanousd)]
    level = total.baseline_nanousd
    for lever in LEVERS:
        saved = total.savings[lever]
        steps.append((lever.replace("_", " "), level - saved, saved))
        level -= saved
    steps.append(("actual spend", 0, level))
    return steps


def _waterfall(report: Report, axes: object) -> None:
    steps = waterfall_steps(report)
    labels = [label for label, _, _ in steps]
    colors = ["#4c72b0"] + ["#55a868" if h >= 0 else "#c44e52" for _, _, h in steps[1:-1]]
    colors.append("#dd8452")
    bottoms = [min(b, b + h) / _NANO for _, b, h in steps]
    heights = [abs(h) / _NANO for _, _, h in steps]
    axes.bar(labels, heights, bottom=bottoms, color=colors)  # type: ignore[attr-defined]
    axes.set_title("Savings waterfall: baseline to actual (USD)")  # type: ignore[attr-defined]
    axes.set_ylabel("USD")  # type: ignore[attr-defined]
    axes.tick_params(axis="x", labelrotation=30)  # type: ignore[attr-defined]
