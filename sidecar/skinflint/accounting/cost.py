"""Exact cost of a call in integer nano-USD.

Arithmetic is integer only. ``tokens x rate`` (rate in nano-USD per 1M tokens) is exact in
units of 1e-15 USD; the batch discount is an exact integer factor ``(10_000 - bp) / 10_000``;
the sum over components is then divided **once**, rounding half up, to nano-USD.

Why one rounding per call: each call's total is then within 0.5 nano-USD of its exact value,
so a ledger summing N calls is within 0.5 x N nano-USD of the exact spend. Rounding each
component (or each token class) first lets the errors of up to four components pile up in
one call (up to 2 nano-USD), and that bias repeats on every call. Half up (rather than
banker's rounding) because the values are never negative and the rule is the one a person
checking the figure by hand expects.

The per-component breakdown is rounded component by component (each within 0.5 nano-USD of
its exact share), so it may differ from ``total`` by up to 2 nano-USD; ``total`` is the
figure to bill, budget and sum.

The batch discount applies to every component, cache reads and writes included: the
providers document caching multipliers as stacking with the batch discount.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal

from skinflint.accounting.prices import BASIS_POINTS, ModelPrice
from skinflint.accounting.usage import Usage

#: Tokens per price unit: rates are per 1M tokens.
TOKENS_PER_RATE_UNIT = 1_000_000


@dataclass(frozen=True, slots=True)
class Cost:
    """A call's cost in nano-USD: the billed ``total`` and what each token class contributed."""

    total: int
    input: int = 0
    output: int = 0
    cache_read: int = 0
    #: 5-minute and 1-hour cache writes together.
    cache_write: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Cost.{f.name} must be an int >= 0 nano-USD, got {value!r}")

    @property
    def usd(self) -> Decimal:
        """The total in USD, exactly (for display; never compute with it)."""
        return Decimal(self.total).scaleb(-9)

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )


ZERO_COST = Cost(total=0)


def cost_nanousd(usage: Usage, price: ModelPrice, *, batch: bool = False) -> Cost:
    """The cost of ``usage`` at ``price``; ``batch`` applies the provider's batch discount."""
    keep = BASIS_POINTS - price.batch_discount_bp if batch else BASIS_POINTS
    return _priced(
        input_=usage.input_tokens * price.input,
        output=usage.output_tokens * price.output,
        cache_read=usage.cache_read_tokens * price.cache_read,
        cache_write=usage.cache_write_5m_tokens * price.cache_write_5m
        + usage.cache_write_1h_tokens * price.cache_write_1h,
        keep_bp=keep,
    )


def baseline_cost_nanousd(usage: Usage, baseline_price: ModelPrice) -> Cost:
    """What the same request would cost on the baseline model with no caching and no batch.

    Every prompt token (uncached input, cache reads and cache writes alike) is billed at the
    baseline's input rate and output at its output rate: the naive call skinflint's savings
    are measured against.
    """
    return _priced(
        input_=usage.prompt_tokens * baseline_price.input,
        output=usage.output_tokens * baseline_price.output,
        cache_read=0,
        cache_write=0,
        keep_bp=BASIS_POINTS,
    )


def _priced(*, input_: int, output: int, cache_read: int, cache_write: int, keep_bp: int) -> Cost:
    """Components in 1e-15 USD -> ``Cost`` in nano-USD, scaled by ``keep_bp / 10_000``.

    ``total`` is rounded once from the exact sum; each component is rounded on its own.
    """
    divisor = TOKENS_PER_RATE_UNIT * BASIS_POINTS
    parts = (input_ * keep_bp, output * keep_bp, cache_read * keep_bp, cache_write * keep_bp)
    return Cost(
        total=_round_half_up(sum(parts), divisor),
        input=_round_half_up(parts[0], divisor),
        output=_round_half_up(parts[1], divisor),
        cache_read=_round_half_up(parts[2], divisor),
        cache_write=_round_half_up(parts[3], divisor),
    )


def _round_half_up(numerator: int, divisor: int) -> int:
    """``numerator / divisor`` rounded to the nearest int, halves up (both are >= 0)."""
    return (2 * numerator + divisor) // (2 * divisor)


__all__ = [
    "TOKENS_PER_RATE_UNIT",
    "ZERO_COST",
    "Cost",
    "baseline_cost_nanousd",
    "cost_nanousd",
]
