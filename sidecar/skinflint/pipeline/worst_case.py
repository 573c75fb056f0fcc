"""The worst case of a call on each model it may run on: prompt tokens (counted by the native
core; an over-estimate where the tokenizer is approximate) at the model's highest input-side
rate for its prompt-cache plan, plus ``max_tokens`` of output.

One computation serves three readers that must agree to the nano-USD: what the budget guard
reserves, what ``policy.max_cost_nanousd`` is checked against, and Estimate's high figure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from skinflint import _native
from skinflint.accounting import ModelPrice
from skinflint.call import Call
from skinflint.config import Settings
from skinflint.errors import native_errors
from skinflint.pipeline.budgets import (
    IMAGE_TOKENS_BOUND,
    image_count,
    input_side_rate,
    prompt_pieces,
    worst_case_nanousd,
)
from skinflint.pipeline.routing import Candidate
from skinflint.providers.base import CachePlan


@dataclass(frozen=True, slots=True)
class WorstCase:
    """The reservation of one call: per-candidate worst cases and the amounts held."""

    prompt_tokens: int
    max_tokens: int
    by_candidate: Mapping[Candidate, int]

    @property
    def nanousd(self) -> int:
        return max(self.by_candidate.values(), default=0)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.max_tokens


def worst_case(
    call: Call,
    candidates: tuple[Candidate, ...],
    plans: Mapping[Candidate, CachePlan],
    *,
    settings: Settings,
    price_of: Callable[[Candidate], ModelPrice],
    counts: dict[str, int] | None = None,
) -> WorstCase:
    """The worst case of ``call`` on each of ``candidates`` (a candidate without a plan is
    priced at its highest input-side rate). ``counts``: prompt tokens by tokenizer encoding
    already known (most chains share one); filled in as a side effect."""
    max_tokens = call.params.max_tokens or settings.max_tokens_cap(call.attribution.feature)
    pieces = prompt_pieces(call)
    images = image_count(call) * IMAGE_TOKENS_BOUND
    counts = {} if counts is None else counts
    by_candidate: dict[Candidate, int] = {}
    prompt_max = 0
    for candidate in candidates:
        with native_errors("counting the prompt's tokens for the worst case"):
            encoding = _native.encoding_for_model(candidate.model)
            if encoding not in counts:
                counts[encoding] = _native.count_chat_tokens(candidate.model, pieces).count
        prompt = counts[encoding] + images
        prompt_max = max(prompt_max, prompt)
        price = price_of(candidate)
        kind = settings.providers[candidate.provider].kind
        rate = input_side_rate(price, plans.get(candidate), automatic_writes=kind != "anthropic")
        by_candidate[candidate] = worst_case_nanousd(prompt, max_tokens, price, rate)
    return WorstCase(prompt_max, max_tokens, by_candidate)
