"""One ledger record: a finished call, flattened to integers and short strings.

Money is integer nano-USD; tokens are the billed classes of ``accounting.Usage``; the savings
are ``pipeline.pricing.Savings`` lever by lever (their sum is ``baseline - cost``).

A ``NamedTuple``, not a dataclass: it is a table row, one is made per call (a response-cache
hit included) on the event loop, and the ledger hands it to the core's writer as it is. A
frozen slotted dataclass cost ~4 µs to build and ~30 µs to turn into a row with ``astuple``
(a deep copy); the tuple costs ~1 µs to build and nothing to turn into a row.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, NamedTuple

from skinflint.call import Call

if TYPE_CHECKING:
    from skinflint.pipeline.complete import Completion

#: Cache statuses of an answer that did not reach a provider.
CACHE_HITS = ("exact", "coalesced", "semantic")


class LedgerRecord(NamedTuple):
    ts_ms: int
    request_id: str
    tenant: str
    team: str
    feature: str
    provider: str
    model: str
    tier: str | None
    lane: str
    cache_status: str
    stream: bool
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    reasoning_tokens: int
    cost_nanousd: int
    baseline_nanousd: int
    saved_response_cache: int
    saved_routing: int
    saved_prompt_caching: int
    saved_batching: int
    saved_local_tier: int
    price_version: str

    @property
    def prompt_tokens(self) -> int:
        return (
            self.input_tokens
            + self.cache_read_tokens
            + self.cache_write_5m_tokens
            + self.cache_write_1h_tokens
        )


COLUMNS: tuple[str, ...] = LedgerRecord._fields


def record_of(
    call: Call, completion: Completion, *, stream: bool, now: float | None = None
) -> LedgerRecord:
    """The record of ``completion`` (the answer to ``call``), stamped ``now`` (unix seconds)."""
    served, usage, bill = completion.served, completion.usage, completion.bill
    who = call.attribution
    savings = bill.savings
    return LedgerRecord(
        ts_ms=int((time.time() if now is None else now) * 1000),
        request_id=call.request_id,
        tenant=who.tenant,
        team=who.team,
        feature=who.feature,
        provider=served.provider,
        model=served.model,
        tier=served.tier.value if served.tier is not None else None,
        lane=served.lane.value,
        cache_status=served.cache_status.value,
        stream=stream,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_5m_tokens=usage.cache_write_5m_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cost_nanousd=bill.cost_nanousd,
        baseline_nanousd=bill.baseline_cost_nanousd,
        saved_response_cache=savings.response_cache,
        saved_routing=savings.routing,
        saved_prompt_caching=savings.prompt_caching,
        saved_batching=savings.batching,
        saved_local_tier=savings.local_tier,
        price_version=bill.price_version,
    )
