"""Accounting: the price table, provider-neutral usage, and exact integer nano-USD costs.

Money is an integer count of nano-USD everywhere; no float touches it. The flow for one call:
``usage = from_anthropic(resp.usage)`` (or ``from_openai`` / ``from_vllm`` /
``from_anthropic_stream``), ``price = table.lookup(provider, model, at)``, then
``cost_nanousd(usage, price, batch=...)`` and ``baseline_cost_nanousd(usage, baseline_price)``.
"""

from skinflint.accounting.cost import (
    TOKENS_PER_RATE_UNIT,
    ZERO_COST,
    Cost,
    baseline_cost_nanousd,
    cost_nanousd,
)
from skinflint.accounting.prices import (
    BASIS_POINTS,
    NANO_PER_USD,
    WILDCARD,
    ModelPrice,
    PriceNotEffective,
    PriceTable,
    PriceTableError,
    UnknownModel,
    default_price_table,
    load_price_table,
)
from skinflint.accounting.usage import (
    Usage,
    UsageError,
    from_anthropic,
    from_anthropic_stream,
    from_openai,
    from_vllm,
)

__all__ = [
    "BASIS_POINTS",
    "NANO_PER_USD",
    "TOKENS_PER_RATE_UNIT",
    "WILDCARD",
    "ZERO_COST",
    "Cost",
    "ModelPrice",
    "PriceNotEffective",
    "PriceTable",
    "PriceTableError",
    "UnknownModel",
    "Usage",
    "UsageError",
    "baseline_cost_nanousd",
    "cost_nanousd",
    "default_price_table",
    "from_anthropic",
    "from_anthropic_stream",
    "from_openai",
    "from_vllm",
    "load_price_table",
]
