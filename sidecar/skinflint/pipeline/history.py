"""What the spend ledger knows about past calls, as Estimate and Project need it.

A ``Protocol`` so the stages that read history (``estimate``, ``projection``) do not depend on
how the ledger stores it; the ledger implements it. ``None`` from a method means "no history
yet": callers then fall back to what the request itself says (max_tokens, the caller's
workload model).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from skinflint.pipeline.projection import WorkloadModel


@dataclass(frozen=True, slots=True)
class OutputStats:
    """Observed output tokens of a feature's finished provider calls (cache hits excluded)."""

    calls: int
    p50: int
    p90: int
    max: int


class History(Protocol):
    def output_tokens(self, feature: str) -> OutputStats | None:
        """The feature's observed output-token distribution, or None with no calls yet."""
        ...

    def workload(self, last_days: int, *, now: datetime | None = None) -> WorkloadModel | None:
        """The last ``last_days`` days of calls as a monthly workload model, feature by
        feature (volume scaled to 30 days, average tokens, tier mix, response-cache hit
        rate, prompt-cache share, async-lane share), or None with no calls in the period."""
        ...
