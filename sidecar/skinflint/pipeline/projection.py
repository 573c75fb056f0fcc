"""Inputs of the monthly cost projection (the projection itself lands in a later issue)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from skinflint.call import Tier

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
