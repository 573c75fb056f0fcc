"""Routing decisions (``routing.resolve``): pins, tier names, feature policy bounds narrowed by
request hints, the classifier against its threshold, cascades and price-aware tier order.

Threshold direction: the router escalates when P(cheap tier not good enough) > threshold, so a
higher threshold never sends more requests to the strong tier (it may send more to the cheap
tier); ``test_higher_threshold_never_sends_more_to_strong`` checks exactly that.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skinflint.call import (
    Attribution,
    Call,
    GenerationParams,
    Message,
    ModelKind,
    ModelSpec,
    Policy,
    Role,
    TextPart,
    Tier,
)
from skinflint.config import Settings, TaskType, compile_price_table
from skinflint.errors import ConfigError, InvalidArgument
from skinflint.pipeline.router_features import Context
from skinflint.pipeline.router_model import RouterModel
from skinflint.pipeline.routing import resolve
from skinflint.transports.grpc.convert import TASK_TYPES

MODEL = RouterModel.load()
HARD = (
    "Carla is downloading a 200 GB file. Normally she can download 2 GB/minute, but 40% of "
    "the way through the download, Windows forces a restart to install updates, which takes "
    "20 minutes. Then Carla has to restart the download from the beginning. How long does it "
    "take to download the file?"
)
EASY = "What is the capital of France?"


def call(
    model: str = "auto",
    text: str = EASY,
    *,
    feature: str = "qa",
    policy: Policy | None = None,
    max_tokens: int | None = 256,
) -> Call:
    if model == "auto":
        spec = ModelSpec(model, ModelKind.AUTO)
    elif "/" in model:
        provider, _, name = model.partition("/")
        spec = ModelSpec(model, ModelKind.PINNED, provider=provider, name=name)
    else:
        spec = ModelSpec(model, ModelKind.TIER, tier=Tier(model))
    return Call(
        model=spec,
        messages=(Message(Role.USER, (TextPart(text),)),),
        request_id="r",
        params=GenerationParams(max_tokens=max_tokens),
        attribution=Attribution(feature=feature),
        policy=policy or Policy(),
    )


@pytest.fixture
def routed(make_settings: Callable[..., Settings]) -> Callable[..., Any]:
    def run(yaml_text: str | None, c: Call, **kwargs: Any) -> Any:
        s = make_settings(yaml_text)
        return resolve(c, s, compile_price_table(s), router=MODEL, **kwargs)

    return run


def test_pinned_is_honoured_whatever_the_feature_policy(routed: Callable[..., Any]) -> None:
    yaml_text = "features:\n  qa: {max_tier: small, router_threshold: 0.0}\n"
    route = routed(yaml_text, call("anthropic/claude-opus-4-6", HARD))
    assert [c.qualified for c in route.candidates] == ["anthropic/claude-opus-4-6"]
    assert route.reason == "pinned: anthropic/claude-opus-4-6 as requested"
    assert route.escalation is None
    with pytest.raises(InvalidArgument):
        routed(None, call("nosuch/model"))


def test_tier_name_runs_that_tier(routed: Callable[..., Any]) -> None:
    route = routed("features:\n  qa: {max_tier: small}\n", call("mid", HARD))
    assert route.tier is Tier.MID  # a tier name is not "auto": feature bounds do not apply
    assert route.reason.startswith("tier 'mid' requested")


def test_classifier_escalates_above_the_threshold(routed: Callable[..., Any]) -> None:
    score = MODEL.score(HARD).probability
    low = routed(f"features:\n  qa: {{router_threshold: {score / 2:.6f}}}\n", call(text=HARD))
    assert low.tier is Tier.FRONTIER
    assert "escalate to tier 'frontier'" in low.reason
    assert "> threshold" in low.reason and "features.qa.router_threshold" in low.reason
    high = routed(f"features:\n  qa: {{router_threshold: {min(1.0, score * 2):.6f}}}\n", call())
    assert high.tier is Tier.SMALL
    assert "<= threshold" in high.reason and "stay on tier 'small'" in high.reason


def test_default_threshold_is_the_shipped_one(routed: Callable[..., Any]) -> None:
    route = routed(None, call(text=HARD))
    assert f"threshold {MODEL.default_threshold:.3f} (default;" in route.reason


def test_router_default_tier_skips_the_classifier(routed: Callable[..., Any]) -> None:
    yaml_text = "features:\n  qa: {router: default_tier, default_tier: mid, router_threshold: 0}\n"
    route = routed(yaml_text, call(text=HARD))
    assert route.tier is Tier.MID
    assert "policy decided (router: default_tier)" in route.reason
    assert "classifier" not in route.reason.replace("router: default_tier", "")


def test_feature_bounds_clamp_the_classifier(routed: Callable[..., Any]) -> None:
    yaml_text = "features:\n  qa: {max_tier: mid, router_threshold: 0.0}\n"
    route = routed(yaml_text, call(text=HARD))
    assert route.tier is Tier.MID
    assert "lowered to features.qa.max_tier 'mid'" in route.reason
    yaml_text = "features:\n  qa: {min_tier: mid, router_threshold: 1.0}\n"
    route = routed(yaml_text, call())
    assert route.tier is Tier.MID
    assert "raised to features.qa.min_tier 'mid'" in route.reason


def test_request_hints_narrow_but_never_widen_the_feature_bounds(
    routed: Callable[..., Any],
) -> None:
    yaml_text = "features:\n  qa: {max_tier: mid, router_threshold: 1.0}\n"
    narrowed = routed(yaml_text, call(policy=Policy(min_tier=Tier.MID)))
    assert narrowed.tier is Tier.MID
    assert "raised to policy.min_tier 'mid'" in narrowed.reason
    widened = routed(yaml_text, call(policy=Policy(min_tier=Tier.FRONTIER)))
    assert widened.tier is Tier.SMALL
    assert "policy.min_tier 'frontier' ignored: above features.qa.max_tier 'mid'" in (
        widened.reason
    )
    capped = routed("features:\n  qa: {router_threshold: 0.0}\n", call(text=HARD))
    assert capped.tier is Tier.FRONTIER
    capped = routed(
        "features:\n  qa: {router_threshold: 0.0}\n",
        call(text=HARD, policy=Policy(max_tier=Tier.SMALL)),
    )
    assert capped.tier is Tier.SMALL
    assert "lowered to policy.max_tier 'small'" in capped.reason


def test_bounds_leaving_one_tier_do_not_consult_the_classifier(
    routed: Callable[..., Any],
) -> None:
    yaml_text = "features:\n  qa: {min_tier: mid, max_tier: mid}\n"
    route = routed(yaml_text, call(text=HARD))
    assert route.tier is Tier.MID
    assert "classifier not consulted" in route.reason


def test_task_type_hint_moves_the_score(routed: Callable[..., Any]) -> None:
    plain = MODEL.score(EASY).probability
    hinted = routed(None, call(policy=Policy(task_type="reasoning")))
    assert "task_type 'reasoning'" in hinted.reason
    assert MODEL.score(EASY, Context(task_type="reasoning")).probability > plain
    assert MODEL.score(EASY, Context(task_type="classification")).probability < plain


def test_cascade_route_carries_the_escalation(routed: Callable[..., Any]) -> None:
    yaml_text = "features:\n  qa: {cascade: true, router_threshold: 1.0}\n"
    route = routed(yaml_text, call())
    assert route.tier is Tier.SMALL
    assert route.escalation is not None and route.escalation.tier is Tier.FRONTIER
    assert route.checks == ("schema", "refusal", "empty", "truncated")
    assert "cascade, tier 'small' first, tier 'frontier' if the answer fails a check" in (
        route.reason
    )
    stream = routed(yaml_text, call(), cascade=False)
    assert stream.escalation is None and "cascade off for streams" in stream.reason
    # A classifier verdict above the threshold goes straight to the strong tier.
    direct = routed("features:\n  qa: {cascade: true, router_threshold: 0.0}\n", call())
    assert direct.escalation is None and direct.tier is Tier.FRONTIER


def test_cheapest_first_orders_by_price_and_health(routed: Callable[..., Any]) -> None:
    listed = routed(None, call("small"))
    assert [c.model for c in listed.candidates] == ["claude-haiku-4-5", "gpt-4o-mini"]
    cheap = routed("tiers:\n  order: cheapest_first\n", call("small"))
    assert [c.model for c in cheap.candidates] == ["gpt-4o-mini", "claude-haiku-4-5"]
    assert "cheapest healthy first" in cheap.reason
    sick = routed(
        "tiers:\n  order: cheapest_first\n",
        call("small"),
        healthy=lambda name: name != "openai/gpt-4o-mini",
    )
    assert [c.model for c in sick.candidates] == ["claude-haiku-4-5", "gpt-4o-mini"]


def test_inverted_feature_bounds_are_a_config_error(make_settings: Callable[..., Any]) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings("features:\n  qa: {min_tier: frontier, max_tier: small}\n")
    assert "features.qa.min_tier" in str(info.value)
    with pytest.raises(ConfigError) as info:
        make_settings("features:\n  qa: {default_tier: mid, escalation_tier: small}\n")
    assert "features.qa.escalation_tier" in str(info.value)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prompts=st.lists(st.text(min_size=0, max_size=200), min_size=1, max_size=8),
    low=st.floats(0.0, 1.0),
    high=st.floats(0.0, 1.0),
)
def test_higher_threshold_never_sends_more_to_strong(
    make_settings: Callable[..., Settings], prompts: list[str], low: float, high: float
) -> None:
    low, high = sorted((low, high))
    counts = []
    for threshold in (low, high):
        s = make_settings(f"features:\n  qa: {{router_threshold: {threshold!r}}}\n")
        prices = compile_price_table(s)
        routes = [resolve(call(text=p), s, prices, router=MODEL) for p in [*prompts, HARD, EASY]]
        counts.append(sum(r.tier is Tier.FRONTIER for r in routes))
        for r in routes:  # every auto route is one of the two tiers, and says why
            assert r.tier in (Tier.SMALL, Tier.FRONTIER)
            assert "classifier P(cheap tier not good enough)=" in r.reason
    assert counts[1] <= counts[0]


def test_task_types_agree_across_wire_config_and_model() -> None:
    meta = json.loads((resources.files("skinflint") / "data" / "router_model.json").read_text())
    assert set(typing.get_args(TaskType)) == set(TASK_TYPES) == set(meta["priors"]["task_type"])
