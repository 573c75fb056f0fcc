"""Project: a month-by-month cost projection of a workload, with what each lever saves.

The workload is the caller's (``WorkloadModel``: per feature, month-1 requests, average input
and output tokens, tier mix, response-cache hit rate, prompt-cache share, batchable share, and
one monthly growth rate) or the ledger's last N days (``History.workload``).

**Arithmetic.** Exact, in ``fractions.Fraction``: every rate given as a float is read as the
decimal it prints as (``Fraction(repr(x))``: 0.58 is 58/100, not its binary neighbour).
Month ``m`` has ``requests_m = round_half_up(requests_1 x (1 + growth)^(m-1))`` requests (an
integer: rounded once, from the exact power). Each figure below is summed exactly over
features and tiers (in units of 1e-15 USD, tokens x nano-USD per 1M) and rounded **once**,
half up, to integer nano-USD.

**Per feature, month and tier** ``t`` (share ``s_t``; its model is the tier's primary in
config, its rates ``in``, ``out``, ``read``, ``write`` (the 5-minute write) and ``keep`` = 1 -
batch discount), with ``N`` requests, ``I``/``O`` average input/output tokens, hit rate ``h``,
prompt-cache share ``p`` and batchable share ``b``, the levers are applied in this order (each
step's cost is the previous one with one more lever):

1. baseline ``A0`` = ``N s_t (I in_B + O out_B)`` on the baseline model;
2. local tier ``A1``: the local tier's share on its own model, the rest still on the baseline;
3. routing ``A2`` = ``N s_t (I in_t + O out_t)``: every tier on its model;
4. response cache ``A3``: only the ``misses = N s_t (1 - h)`` reach a provider;
5. prompt caching ``A4``: of each miss, ``I (1 - p)`` tokens are plain input and the prefix
   ``I p`` is a cache read, except for ``writes = min(misses, WRITES_PER_MONTH)`` requests that
   write it (at the write rate): one write per 5-minute TTL window per model, all month long,
   so the writes are a fixed monthly cost that the reads of a growing volume amortize. At low
   volume every miss writes (1.25x on Anthropic: caching *costs* money, shown as a negative
   saving); at high volume nearly every miss reads (0.1x). This is where cost grows
   sub-linearly with volume;
6. batching ``A5`` = ``A4 ((1 - b) + b keep_t)``: the batchable share on the async lane.

``cost`` = ``A5``; ``savings.<lever>`` = the rounded difference of the two steps around it, so
the savings sum to ``baseline - cost`` exactly; "cost without a lever" = ``cost`` + its saving
(the figure had that one lever been off, the others as applied before it). The response-cache
hit rate, prompt-cache share and batchable share are held constant across months (a
conservative choice: a growing workload usually repeats itself more, which this does not
assume); only the write amortization bends the curve.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from types import MappingProxyType
from typing import TYPE_CHECKING

from skinflint.accounting import ModelPrice, PriceTable
from skinflint.accounting.cost import TOKENS_PER_RATE_UNIT
from skinflint.accounting.prices import BASIS_POINTS
from skinflint.call import Tier
from skinflint.config import Settings
from skinflint.errors import ConfigError, ConfigIssue
from skinflint.pipeline.pricing import Savings

if TYPE_CHECKING:
    from skinflint.pipeline.history import History

DEFAULT_MONTHS = 6
MAX_MONTHS = 60


@dataclass(frozen=True, slots=True)
class FeatureWorkload:
    feature: str
    requests_per_month: int
    avg_input_tokens: int
    avg_output_tokens: int
    tier_mix: Mapping[Tier, float]
    cache_hit_rate: float = 0.0
    prompt_cache_share: float = 0.0
    batchable_share: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "tier_mix", MappingProxyType(dict(self.tier_mix)))


@dataclass(frozen=True, slots=True)
class WorkloadModel:
    """A workload described by the caller, feature by feature."""

    features: tuple[FeatureWorkload, ...]
    monthly_growth: float = 0.0


@dataclass(frozen=True, slots=True)
class LedgerHistory:
    """Derive the workload from the ledger's last ``last_days`` days."""

    last_days: int
    monthly_growth: float = 0.0


@dataclass(frozen=True, slots=True)
class ProjectionRequest:
    source: WorkloadModel | LedgerHistory
    months: int = DEFAULT_MONTHS


#: Prompt-cache writes a feature's prefix needs per model per month: one per 5-minute TTL
#: window over a 30-day month (traffic spread over the month keeps the entry warm otherwise).
WRITES_PER_MONTH = 30 * 24 * 60 // 5


@dataclass(frozen=True, slots=True)
class MonthProjection:
    month: int
    requests: int
    cost_nanousd: int
    baseline_cost_nanousd: int
    savings: Savings

    def without(self, lever: str) -> int:
        """The month's cost had ``lever`` been off (the others as applied before it)."""
        saved: int = getattr(self.savings, lever)
        return self.cost_nanousd + saved


@dataclass(frozen=True, slots=True)
class Projection:
    months: tuple[MonthProjection, ...]
    #: How the figures were derived: prices, models, assumptions.
    method: str
    #: The workload projected (the caller's, or the one derived from the ledger).
    workload: WorkloadModel


def ratio(value: float) -> Fraction:
    """A rate given as a float, read as the decimal it prints as (0.58 -> 58/100)."""
    return Fraction(repr(float(value)))


def round_half_up(value: Fraction) -> int:
    """The nearest integer, halves up (for values >= 0; a negative figure rounds toward +inf
    on a half, which keeps differences of rounded figures telescoping)."""
    return (2 * value.numerator + value.denominator) // (2 * value.denominator)


def month_requests(first: int, growth: Fraction, month: int) -> int:
    """Requests in ``month`` (1-based): ``first x (1 + growth)^(month-1)``, rounded half up."""
    return round_half_up(first * (1 + growth) ** (month - 1))


@dataclass(frozen=True, slots=True)
class _Rates:
    input: int
    output: int
    read: int
    write: int
    keep: Fraction

    @classmethod
    def of(cls, price: ModelPrice) -> _Rates:
        return cls(
            price.input,
            price.output,
            price.cache_read,
            price.cache_write_5m,
            Fraction(BASIS_POINTS - price.batch_discount_bp, BASIS_POINTS),
        )


def _steps(
    feature: FeatureWorkload,
    requests: int,
    rates: Mapping[Tier, _Rates],
    baseline: _Rates,
) -> list[Fraction]:
    """``A0..A5`` of one feature in one month, in 1e-15 USD (see the module docstring)."""
    i, o = feature.avg_input_tokens, feature.avg_output_tokens
    h, p, b = (
        ratio(feature.cache_hit_rate),
        ratio(feature.prompt_cache_share),
        ratio(feature.batchable_share),
    )
    steps = [Fraction(0)] * 6
    for tier, share_f in feature.tier_mix.items():
        share = ratio(share_f)
        if not share:
            continue
        r = rates[tier]
        n = requests * share
        base = n * (i * baseline.input + o * baseline.output)
        routed = n * (i * r.input + o * r.output)
        misses = n * (1 - h)
        writes = min(misses, Fraction(WRITES_PER_MONTH)) if p else Fraction(0)
        reads = misses - writes
        prompt = (
            misses * (i * (1 - p) * r.input + o * r.output)
            + writes * i * p * r.write
            + reads * i * p * r.read
        )
        steps[0] += base
        steps[1] += routed if tier is Tier.LOCAL else base
        steps[2] += routed
        steps[3] += misses * (i * r.input + o * r.output)
        steps[4] += prompt
        steps[5] += prompt * ((1 - b) + b * r.keep)
    return steps


def _tier_rates(
    workload: WorkloadModel, settings: Settings, prices: PriceTable, at: datetime
) -> tuple[dict[Tier, _Rates], dict[Tier, str]]:
    used = {t for f in workload.features for t, share in f.tier_mix.items() if share}
    rates: dict[Tier, _Rates] = {}
    names: dict[Tier, str] = {}
    for tier in sorted(used, key=lambda t: t.rank):
        models = settings.tiers.models(tier)
        if not models:
            raise ConfigError(
                [
                    ConfigIssue(
                        f"tiers.{tier.value}",
                        f"the workload sends requests to tier {tier.value!r}, which has no "
                        "models configured",
                        f"list provider/model entries under tiers.{tier.value}, or give the "
                        "tier a share of 0 in tier_mix",
                    )
                ]
            )
        provider, _, model = models[0].partition("/")
        rates[tier] = _Rates.of(prices.lookup(provider, model, at))
        names[tier] = models[0]
    return rates, names


def project_workload(
    workload: WorkloadModel,
    months: int,
    settings: Settings,
    prices: PriceTable,
    *,
    at: datetime | None = None,
) -> Projection:
    """The projection of ``workload`` over ``months`` months (see the module docstring)."""
    when = at or datetime.now(UTC)
    rates, names = _tier_rates(workload, settings, prices, when)
    baseline_price = prices.lookup(None, settings.baseline, when)
    baseline = _Rates.of(baseline_price)
    growth = ratio(workload.monthly_growth)
    out = []
    unit = TOKENS_PER_RATE_UNIT
    for month in range(1, months + 1):
        totals = [Fraction(0)] * 6
        volume = 0
        for feature in workload.features:
            n = month_requests(feature.requests_per_month, growth, month)
            volume += n
            for k, value in enumerate(_steps(feature, n, rates, baseline)):
                totals[k] += value
        a = [round_half_up(t / unit) for t in totals]
        out.append(
            MonthProjection(
                month=month,
                requests=volume,
                cost_nanousd=a[5],
                baseline_cost_nanousd=a[0],
                savings=Savings(
                    local_tier=a[0] - a[1],
                    routing=a[1] - a[2],
                    response_cache=a[2] - a[3],
                    prompt_caching=a[3] - a[4],
                    batching=a[4] - a[5],
                ),
            )
        )
    models = ", ".join(f"{t.value}={n}" for t, n in names.items())
    method = (
        f"price table {prices.version}; tier models {models}; baseline "
        f"{baseline_price.qualified_name}; growth {growth} a month, compounded, requests "
        f"rounded half up; hit rate, prompt-cache and batchable shares constant; prompt-cache "
        f"writes at most {WRITES_PER_MONTH} per model per month (one per 5-minute window), "
        "the rest of each prefix read; figures exact, rounded once to nano-USD"
    )
    return Projection(tuple(out), method, workload)


def project(
    request: ProjectionRequest,
    settings: Settings,
    prices: PriceTable,
    history: History | None,
    *,
    at: datetime | None = None,
) -> Projection:
    """``request`` projected; a ``LedgerHistory`` source reads ``history.workload``.

    Raises:
        ConfigError (FAILED_PRECONDITION): no history (no ledger) or no calls in the period,
            or a tier the workload uses has no models.
    """
    source = request.source
    if isinstance(source, LedgerHistory):
        if history is None:
            raise ConfigError(
                [
                    ConfigIssue(
                        "ledger",
                        "this sidecar has no spend ledger to project from",
                        "describe the workload instead (workload), or enable the ledger",
                    )
                ]
            )
        derived = history.workload(source.last_days, now=at)
        if derived is None or not derived.features:
            raise ConfigError(
                [
                    ConfigIssue(
                        "ledger.last_days",
                        f"the ledger holds no calls in the last {source.last_days} day(s)",
                        "choose a longer period, or describe the workload instead",
                    )
                ]
            )
        workload = WorkloadModel(derived.features, source.monthly_growth)
    else:
        workload = source
    return project_workload(workload, request.months, settings, prices, at=at)
