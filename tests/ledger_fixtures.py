"""A ledger record factory shared by the ledger and report tests (and the kill -9 writer)."""

from __future__ import annotations

from datetime import UTC, datetime

from skinflint.ledger import LedgerRecord

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def rec(i: int = 0, **fields: object) -> LedgerRecord:
    base = LedgerRecord(
        ts_ms=NOW_MS - 1000 - i,
        request_id=f"r{i}",
        tenant="acme",
        team="search",
        feature="qa",
        provider="anthropic",
        model="claude-haiku-4-5",
        tier="small",
        lane="interactive",
        cache_status="miss",
        stream=False,
        input_tokens=100,
        output_tokens=10,
        cache_read_tokens=0,
        cache_write_5m_tokens=0,
        cache_write_1h_tokens=0,
        reasoning_tokens=0,
        cost_nanousd=1000,
        baseline_nanousd=5000,
        saved_response_cache=0,
        saved_routing=4000,
        saved_prompt_caching=0,
        saved_batching=0,
        saved_local_tier=0,
        price_version="test",
    )
    return base._replace(**fields)
