"""Model resolution: what the caller asked for -> an ordered list of concrete models to try.

* ``provider/model`` (pinned): exactly that model, never silently rerouted; no fallback.
* a tier name: the tier's model list from config (the primary, then its fallbacks).
* ``auto``: the feature's ``default_tier`` (config; ``small`` by default), kept within the
  request's ``policy.min_tier``/``max_tier``. The routing classifier lands in a later issue;
  until then the route reason says that the policy decided. The classifier will plug in here
  (``resolve`` is the seam): it picks the tier, the rest stays as is.
"""

from __future__ import annotations

from dataclasses import dataclass

from skinflint.accounting import PriceTable
from skinflint.call import Call, ModelKind, Tier
from skinflint.config import Settings
from skinflint.errors import ConfigError, ConfigIssue, InvalidArgument


@dataclass(frozen=True, slots=True)
class Candidate:
    """One concrete model the dispatcher may try."""

    provider: str
    model: str
    #: The tier this model was chosen from (or, when pinned, the tier config lists it in).
    tier: Tier | None

    @property
    def qualified(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True, slots=True)
class Route:
    candidates: tuple[Candidate, ...]
    tier: Tier | None
    reason: str


def resolve(call: Call, settings: Settings, prices: PriceTable) -> Route:
    """The models to try for ``call``, in order, and why.

    Raises:
        InvalidArgument: a pinned model names an unconfigured provider or an unpriced model.
        ConfigError: the tier asked for has no models configured (FAILED_PRECONDITION).
    """
    spec = call.model
    if spec.kind is ModelKind.PINNED:
        assert spec.provider is not None and spec.name is not None
        return _pinned(spec.provider, spec.name, settings, prices)
    if spec.kind is ModelKind.TIER:
        assert spec.tier is not None
        return _tier(spec.tier, settings, f"tier {spec.tier.value!r} requested")
    feature = call.attribution.feature
    tier = settings.feature(feature).default_tier
    why = (
        f"auto: the routing classifier is not built yet, so policy decided: feature "
        f"{feature or '(none)'!r} defaults to tier {tier.value!r}"
    )
    low, high = call.policy.min_tier, call.policy.max_tier
    if low is not None and tier.rank < low.rank:
        tier, why = low, f"{why}, raised to policy.min_tier {low.value!r}"
    if high is not None and tier.rank > high.rank:
        tier, why = high, f"{why}, lowered to policy.max_tier {high.value!r}"
    return _tier(tier, settings, why)


def _tier(tier: Tier, settings: Settings, why: str) -> Route:
    names = settings.tiers.models(tier)
    if not names:
        raise ConfigError(
            [
                ConfigIssue(
                    f"tiers.{tier.value}",
                    f"tier {tier.value!r} has no models configured",
                    f"list provider/model entries under tiers.{tier.value} in the sidecar config",
                )
            ]
        )
    candidates = []
    for name in names:
        provider, _, model = name.partition("/")
        candidates.append(Candidate(provider, model, tier))
    return Route(tuple(candidates), tier, f"{why}; primary {names[0]}")


def _pinned(provider: str, model: str, settings: Settings, prices: PriceTable) -> Route:
    name = f"{provider}/{model}"
    if provider not in settings.providers:
        configured = ", ".join(sorted(settings.providers))
        raise InvalidArgument(
            "model",
            f"provider {provider!r} is not configured on this sidecar (configured: "
            f"{configured}); use one of them or add providers.{provider} to its config",
        )
    if settings.providers[provider].kind != "vllm":
        prices.lookup(provider, model)  # UnknownModel (INVALID_ARGUMENT on "model") if unpriced
    tier = next((t for t in Tier if name in settings.tiers.models(t)), None)
    return Route((Candidate(provider, model, tier),), tier, f"pinned: {name} as requested")


__all__ = ["Candidate", "Route", "resolve"]
