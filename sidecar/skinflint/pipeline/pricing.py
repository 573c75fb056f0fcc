"""What a call cost, what it would have cost naively, and which lever saved the difference.

All figures are integer nano-USD from ``skinflint.accounting``. For one call with billed
``usage`` on the chosen model (price ``P``) and the configured baseline model (price ``B``):

* ``cost``      = ``usage`` at ``P``, cache reads and writes at their own rates (the bill);
* ``baseline``  = every prompt token at ``B``'s input rate plus output at ``B``'s output rate
  (the same request on the default frontier model, no caching, interactive lane);
* ``uncached``  = the same usage at ``P`` with every prompt token billed as plain input.

Savings by lever:

* ``routing``        = ``baseline - uncached``: what choosing this model instead of the
  baseline saved on the same tokens;
* ``prompt_caching`` = ``uncached - cost``: what provider prompt caching saved;
* ``response_cache`` is 0 on a call that reached a provider; a response-cache hit (or an
  answer coalesced onto an identical in-flight call) costs 0 and reports the original call's
  cost here, keeping the original baseline and other levers
  (``pipeline.response_cache.hit_bill``), so ``total`` is still ``baseline - cost``;
* the batching and local-tier levers are 0 until their stages exist;
* ``total``          = ``baseline - cost`` = the sum of the levers, exactly (each figure is
  rounded once from exact integer arithmetic, and the two differences telescope).

A lever is negative only when it really cost money, and then it is reported as negative
rather than hidden: a pinned model dearer than the baseline makes ``routing`` negative, and a
call that *writes* the prompt cache pays the write premium (1.25x or 2x input) before any read
pays it back, so its ``prompt_caching`` is negative; the calls that read the prefix later show
the positive side.
"""

from __future__ import annotations

from dataclasses import dataclass

from skinflint.accounting import (
    ModelPrice,
    Usage,
    baseline_cost_nanousd,
    cost_nanousd,
)


@dataclass(frozen=True, slots=True)
class Savings:
    """Nano-USD saved against the baseline, by lever; ``total`` is their sum."""

    response_cache: int = 0
    routing: int = 0
    prompt_caching: int = 0
    batching: int = 0
    local_tier: int = 0

    @property
    def total(self) -> int:
        levers = (self.response_cache, self.routing, self.prompt_caching, self.batching)
        return sum(levers) + self.local_tier


@dataclass(frozen=True, slots=True)
class Bill:
    """The priced outcome of one call."""

    cost_nanousd: int
    baseline_cost_nanousd: int
    savings: Savings
    #: The price table version the figures come from (recorded with the cost).
    price_version: str


def bill(usage: Usage, price: ModelPrice, baseline: ModelPrice, *, price_version: str) -> Bill:
    """Price ``usage`` on the chosen model against the baseline (see the module docstring)."""
    cost = cost_nanousd(usage, price).total
    uncached_usage = Usage(input_tokens=usage.prompt_tokens, output_tokens=usage.output_tokens)
    uncached = cost_nanousd(uncached_usage, price).total
    base = baseline_cost_nanousd(usage, baseline).total
    savings = Savings(routing=base - uncached, prompt_caching=uncached - cost)
    return Bill(
        cost_nanousd=cost,
        baseline_cost_nanousd=base,
        savings=savings,
        price_version=price_version,
    )


__all__ = ["Bill", "Savings", "bill"]
