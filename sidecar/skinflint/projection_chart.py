"""The projection as a PNG chart (``skinflint project --png``).

matplotlib is the optional ``charts`` extra: imported only here, only when a chart is drawn,
so ``skinflint serve`` never needs it; without it the command fails saying what to install.
"""

from __future__ import annotations

from pathlib import Path

from skinflint.errors import ConfigError, ConfigIssue
from skinflint.pipeline.projection import Projection

#: The levers drawn as "cost without this lever" lines, in the projection's order.
LEVERS = ("local_tier", "routing", "response_cache", "prompt_caching", "batching")


def render_png(projection: Projection, path: Path) -> None:
    """Baseline, cost, and the cost without each lever, month by month, in USD.

    Raises:
        ConfigError: matplotlib is not installed (names the extra to install).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: render to a file
        from matplotlib import pyplot
    except ImportError:
        raise ConfigError(
            [
                ConfigIssue(
                    "--png",
                    "charts need matplotlib, which is not installed",
                    "pip install 'skinflint[charts]' (or drop --png)",
                )
            ]
        ) from None
    months = [m.month for m in projection.months]

    def usd(values: list[int]) -> list[float]:
        return [v / 1e9 for v in values]  # display only: the figures themselves stay integers

    figure, axes = pyplot.subplots(figsize=(9, 5), dpi=100)
    try:
        axes.plot(
            months,
            usd([m.baseline_cost_nanousd for m in projection.months]),
            label="baseline (no levers)",
            color="black",
            linewidth=2,
        )
        for lever in LEVERS:
            if any(getattr(m.savings, lever) for m in projection.months):
                axes.plot(
                    months,
                    usd([m.without(lever) for m in projection.months]),
                    label=f"without {lever.replace('_', ' ')}",
                    linestyle="--",
                )
        axes.plot(
            months,
            usd([m.cost_nanousd for m in projection.months]),
            label="projected cost",
            color="tab:green",
            linewidth=2.5,
        )
        axes.set_xlabel("month")
        axes.set_ylabel("USD per month")
        axes.set_xticks(months)
        axes.set_title("skinflint cost projection")
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left", fontsize="small")
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        pyplot.close(figure)


__all__ = ["LEVERS", "render_png"]
