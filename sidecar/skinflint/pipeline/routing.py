"""Model resolution: what the caller asked for -> an ordered list of concrete models to try.

* ``provider/model`` (pinned): exactly that model, never silently rerouted; no fallback.
* a tier name: the tier's model list from config (the primary, then its fallbacks).
* ``auto``: the feature's policy decides between its ``default_tier`` (cheap) and its
  ``escalation_tier`` (strong), both kept within the feature's ``min_tier``/``max_tier`` and,
  inside those, the request's ``policy.min_tier``/``max_tier`` (a request narrows the
  feature's bounds, never widens them). With ``router: classifier`` (the default) the routing
  classifier (``router_model``) scores the last user turn plus its context and escalates when
  P(cheap tier not good enough) > the threshold; with ``cascade: true`` a request the
  classifier keeps cheap runs on the cheap tier first and escalates only when the answer fails
  a check (``cascade``; unary calls only).

Inside a tier the models run in config order unless ``tiers.order`` is ``cheapest_first``
(by list price, models whose circuit is open last). Every route carries a reason naming what
decided: the pin, the tier asked for, the policy (and which bound), the classifier score
against the threshold, or the cascade.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from skinflint.accounting import PriceTable
from skinflint.call import Call, ModelKind, Policy, Role, TextPart, Tier
from skinflint.config import FeatureConfig, Settings
from skinflint.errors import ConfigError, ConfigIssue, InvalidArgument, SkinflintError
from skinflint.pipeline.router_features import Context
from skinflint.pipeline.router_model import RouterModel

#: Whether a ``provider/model`` may be called now (the dispatcher's circuit breakers).
Healthy = Callable[[str], bool]


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
    #: Cascade mode: the route to run when this route's answer fails one of ``checks``.
    escalation: Route | None = None
    checks: tuple[str, ...] = ()


def resolve(
    call: Call,
    settings: Settings,
    prices: PriceTable,
    *,
    router: RouterModel | None = None,
    healthy: Healthy | None = None,
    cascade: bool = True,
) -> Route:
    """The models to try for ``call``, in order, and why.

    ``router`` is the classifier (None: ``auto`` runs the default tier, as with
    ``router: default_tier``); ``healthy`` orders a ``cheapest_first`` tier; ``cascade``
    False (streams) routes a cascade feature by the classifier alone.

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
        return _tier(spec.tier, settings, f"tier {spec.tier.value!r} requested", prices, healthy)
    feature = call.attribution.feature
    cfg = settings.feature(feature)
    label = repr(feature or "(none)")
    bounds = _Bounds.of(cfg, call.policy, feature or "(none)")
    cheap, cheap_note = bounds.clamp(cfg.default_tier)
    strong, strong_note = bounds.clamp(cfg.escalation_tier)
    notes = list(bounds.notes)

    def done(tier: Tier, why: str) -> Route:
        # Say how the bounds moved the tier that was picked (and only that one).
        moved = cheap_note if tier is cheap else strong_note
        parts = [why, *notes, *([moved] if moved else [])]
        return _tier(tier, settings, ", ".join(parts), prices, healthy)

    if cfg.router == "default_tier" or router is None:
        off = "router: default_tier" if cfg.router == "default_tier" else "no classifier loaded"
        return done(
            cheap,
            f"auto: policy decided ({off}): feature {label} defaults to tier "
            f"{cfg.default_tier.value!r}",
        )
    if cheap is strong:
        if strong_note:
            notes.append(f"escalation_tier {cfg.escalation_tier.value!r} {strong_note}")
        return done(
            cheap,
            f"auto: policy decided: the bounds of feature {label} leave one tier, "
            f"{cheap.value!r} (classifier not consulted)",
        )
    context = _context(call, cfg)
    score = router.score(last_user_text(call), context)
    threshold = cfg.router_threshold
    source = f"features.{feature}.router_threshold" if threshold is not None else "default"
    if threshold is None:
        threshold = router.default_threshold
    hint = f", task_type {context.task_type!r}" if context.task_type else ""
    verdict = (
        f"classifier P(cheap tier not good enough)={score.probability:.3f} "
        f"{'>' if score.probability > threshold else '<='} threshold {threshold:.3f} "
        f"({source}; feature {label}{hint})"
    )
    if score.probability > threshold:
        return done(strong, f"auto: {verdict}: escalate to tier {strong.value!r}")
    if not (cfg.cascade and cascade):
        extra = " (cascade off for streams)" if cfg.cascade else ""
        return done(cheap, f"auto: {verdict}: stay on tier {cheap.value!r}{extra}")
    checks = tuple(cfg.cascade_checks)
    escalation = _tier(
        strong,
        settings,
        f"cascade escalated to tier {strong.value!r}" + (f", {strong_note}" if strong_note else ""),
        prices,
        healthy,
    )
    first = done(
        cheap,
        f"auto: {verdict}: cascade, tier {cheap.value!r} first, tier {strong.value!r} if the "
        f"answer fails a check ({', '.join(checks) or 'none'})",
    )
    return Route(first.candidates, first.tier, first.reason, escalation, checks)


@dataclass(frozen=True, slots=True)
class _Bounds:
    """The effective tier bounds of one ``auto`` request: the feature's, narrowed by the
    request's (a request bound outside the feature's is clamped to it, and said so)."""

    low: Tier | None
    low_source: str
    high: Tier | None
    high_source: str
    notes: tuple[str, ...]

    @classmethod
    def of(cls, cfg: FeatureConfig, policy: Policy, feature: str) -> _Bounds:
        low, low_source = cfg.min_tier, f"features.{feature}.min_tier"
        high, high_source = cfg.max_tier, f"features.{feature}.max_tier"
        notes: list[str] = []
        asked_low, asked_high = policy.min_tier, policy.max_tier
        if asked_low is not None:
            if high is not None and asked_low.rank > high.rank:
                notes.append(
                    f"policy.min_tier {asked_low.value!r} ignored: above {high_source} "
                    f"{high.value!r}"
                )
            elif low is None or asked_low.rank > low.rank:
                low, low_source = asked_low, "policy.min_tier"
        if asked_high is not None:
            if low is not None and asked_high.rank < low.rank:
                notes.append(
                    f"policy.max_tier {asked_high.value!r} ignored: below {low_source} "
                    f"{low.value!r}"
                )
            elif high is None or asked_high.rank < high.rank:
                high, high_source = asked_high, "policy.max_tier"
        return cls(low, low_source, high, high_source, tuple(notes))

    def clamp(self, tier: Tier) -> tuple[Tier, str]:
        if self.low is not None and tier.rank < self.low.rank:
            return self.low, f"raised to {self.low_source} {self.low.value!r}"
        if self.high is not None and tier.rank > self.high.rank:
            return self.high, f"lowered to {self.high_source} {self.high.value!r}"
        return tier, ""


def last_user_text(call: Call) -> str:
    """What the classifier scores: the text of the last user turn (the question asked)."""
    for message in reversed(call.messages):
        if message.role is Role.USER:
            texts = [p.text for p in message.parts if isinstance(p, TextPart)]
            if texts:
                return "\n".join(texts)
    return ""


def _context(call: Call, cfg: FeatureConfig) -> Context:
    return Context(
        task_type=call.policy.task_type or cfg.task_type,
        max_tokens=call.params.max_tokens,
        tools=len(call.tools),
        turns=sum(1 for m in call.messages if m.role is Role.USER),
    )


def _tier(
    tier: Tier,
    settings: Settings,
    why: str,
    prices: PriceTable | None = None,
    healthy: Healthy | None = None,
) -> Route:
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
    if settings.tiers.order == "cheapest_first" and prices is not None:
        names = _cheapest_first(names, prices, healthy)
        why = f"{why}; cheapest healthy first"
    candidates = []
    for name in names:
        provider, _, model = name.partition("/")
        candidates.append(Candidate(provider, model, tier))
    return Route(tuple(candidates), tier, f"{why}; primary {names[0]}")


def _cheapest_first(
    names: tuple[str, ...], prices: PriceTable, healthy: Healthy | None
) -> tuple[str, ...]:
    """``names`` by (circuit open, input + output list price), ties in listed order; an
    unpriced model (a vLLM one) counts as free."""

    def key(item: tuple[int, str]) -> tuple[bool, int, int]:
        index, name = item
        provider, _, model = name.partition("/")
        try:
            price = prices.lookup(provider, model)
            rate = price.input + price.output
        except SkinflintError:
            rate = 0
        sick = healthy is not None and not healthy(name)
        return sick, rate, index

    return tuple(name for _, name in sorted(enumerate(names), key=key))


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


__all__ = ["Candidate", "Healthy", "Route", "last_user_text", "resolve"]
