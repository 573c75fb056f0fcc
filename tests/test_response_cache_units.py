"""The response cache's pure parts: the stored format, the hit bill, the storage decision and
the key's scoping (real native core and config, no mocks)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skinflint import _native
from skinflint.accounting import Usage
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
    ToolUsePart,
)
from skinflint.config import compile_rule_sets
from skinflint.pipeline.pricing import Bill, Savings
from skinflint.pipeline.response_cache import (
    DECODED_MAX_VALUE_BYTES,
    FORMAT_VERSION,
    CacheStatus,
    Entry,
    ResponseCacheLayer,
    decode,
    encode,
    hit_bill,
    is_deterministic,
)
from skinflint.providers.base import StopReason

BILL = Bill(
    cost_nanousd=1_000,
    baseline_cost_nanousd=5_000,
    savings=Savings(routing=3_500, prompt_caching=500),
    price_version="test-1",
)
ENTRY = Entry(
    content=(
        TextPart("Paris."),
        ToolUsePart("toolu_1", "lookup", {"city": "Paris", "n": [1, 2.5, None]}),
    ),
    stop_reason=StopReason.TOOL_USE,
    usage=Usage(input_tokens=10, output_tokens=5, cache_read_tokens=2, reasoning_tokens=1),
    provider="anthropic",
    model="claude-haiku-4-5",
    tier=Tier.SMALL,
    bill=BILL,
)


def test_an_entry_round_trips() -> None:
    assert decode(encode(ENTRY)) == ENTRY
    document = json.loads(encode(ENTRY))
    assert document["v"] == FORMAT_VERSION
    # Nothing request- or tenant-specific is stored.
    assert not {"request_id", "tenant", "attribution", "budgets"} & set(document)


@pytest.mark.parametrize(
    "value",
    [b"", b"not json", b"[]", json.dumps({"v": FORMAT_VERSION + 1}).encode(), b'{"v": 1}'],
)
def test_a_value_of_another_version_or_shape_is_a_miss(value: bytes) -> None:
    assert decode(value) is None


def test_a_hit_costs_nothing_and_saves_the_original_cost() -> None:
    hit = hit_bill(BILL)
    assert hit.cost_nanousd == 0
    assert hit.baseline_cost_nanousd == BILL.baseline_cost_nanousd
    assert hit.savings.response_cache == BILL.cost_nanousd
    assert hit.savings.routing == BILL.savings.routing
    assert hit.savings.total == hit.baseline_cost_nanousd - hit.cost_nanousd


@pytest.mark.parametrize(("temperature", "expected"), [(0.0, True), (0.2, False), (None, False)])
def test_only_temperature_zero_is_deterministic(temperature: float | None, expected: bool) -> None:
    assert is_deterministic(make_call(temperature=temperature)) is expected


def make_call(
    *,
    model: str = "anthropic/claude-haiku-4-5",
    tenant: str = "acme",
    feature: str = "qa",
    temperature: float | None = 0.0,
    policy: Policy | None = None,
) -> Call:
    if "/" in model:
        spec = ModelSpec(model, ModelKind.PINNED, None, *model.split("/", 1))
    else:
        spec = ModelSpec(model, ModelKind.AUTO)
    return Call(
        model=spec,
        messages=(Message(Role.USER, (TextPart("What is Lyon?"),)),),
        request_id="r",
        params=GenerationParams(max_tokens=64, temperature=temperature),
        attribution=Attribution(tenant=tenant, feature=feature),
        policy=policy or Policy(),
    )


@pytest.fixture
def layer(make_settings: Callable[..., Any], tmp_path: Path) -> ResponseCacheLayer:
    settings = make_settings(
        "features:\n  agg:\n    rule_set: aggressive\n"
        "  loose:\n    cache_nondeterministic: true\n    cache_ttl_seconds: 60\n"
        "  nocache:\n    cache: false\n"
    )
    cache = _native.ResponseCache(str(tmp_path / "cache"), max_bytes=1 << 24)
    return ResponseCacheLayer(settings, cache, compile_rule_sets(settings))


def test_tenant_and_feature_scope_the_key(layer: ResponseCacheLayer) -> None:
    base = layer.decide(make_call()).key
    assert base is not None
    assert layer.decide(make_call()).key == base
    assert layer.decide(make_call(tenant="globex")).key != base
    assert layer.decide(make_call(feature="agg")).key != base


def test_routing_bounds_scope_a_routed_model_only(layer: ResponseCacheLayer) -> None:
    bounded = Policy(max_tier=Tier.SMALL)
    auto = layer.decide(make_call(model="auto")).key
    assert layer.decide(make_call(model="auto", policy=bounded)).key != auto
    pinned = layer.decide(make_call()).key
    assert layer.decide(make_call(policy=bounded)).key == pinned


def test_the_storage_decision(layer: ResponseCacheLayer) -> None:
    plain = layer.decide(make_call())
    assert (plain.lookup, plain.store, plain.ttl_s, plain.coalesce) == (True, True, 86_400, True)
    assert plain.miss_status is CacheStatus.MISS
    warm = layer.decide(make_call(temperature=0.7))
    assert (warm.lookup, warm.store, warm.coalesce) == (True, False, False)
    loose = layer.decide(make_call(feature="loose", temperature=None))
    assert (loose.store, loose.ttl_s) == (True, 60)
    custom = layer.decide(make_call(policy=Policy(cache_ttl_seconds=5, no_store=True)))
    assert (custom.store, custom.ttl_s) == (False, 5)
    blind = layer.decide(make_call(policy=Policy(no_lookup=True)))
    assert (blind.lookup, blind.store, blind.miss_status) == (False, True, CacheStatus.BYPASS)
    off = layer.decide(make_call(feature="nocache"))
    assert (off.key, off.lookup, off.store, off.miss_status) == (
        None,
        False,
        False,
        CacheStatus.BYPASS,
    )


def test_put_then_get(layer: ResponseCacheLayer) -> None:
    decision = layer.decide(make_call())
    assert layer.get(decision) is None
    layer.put(decision, ENTRY)
    assert layer.get(decision) == ENTRY
    assert layer.get(layer.decide(make_call(tenant="globex"))) is None


def test_a_repeated_call_gets_its_kept_decision(layer: ResponseCacheLayer) -> None:
    call = make_call()
    decision = layer.decide(call)
    assert layer.decide(call.with_request_id("another")) is decision  # same parts: kept
    rebuilt = layer.decide(make_call())  # equal parts, other objects: decided afresh
    assert rebuilt is not decision and rebuilt == decision
    changed = layer.decide(make_call(temperature=0.5))
    assert changed.key != decision.key and not changed.store
    # ``replace`` of any part starts with nothing derived: never the old call's decision.
    warm = dataclasses.replace(call, params=GenerationParams(max_tokens=64, temperature=0.5))
    assert not warm.derived and layer.decide(warm) == changed


def test_hits_of_a_small_value_share_one_decoded_entry(layer: ResponseCacheLayer) -> None:
    decision = layer.decide(make_call())
    layer.put(decision, ENTRY)
    first, again = layer.get(decision), layer.get(decision)
    assert first is again and first is not None and first.shared
    assert first == ENTRY and not ENTRY.shared  # ``shared`` is not part of the value
    big = dataclasses.replace(ENTRY, content=(TextPart("x" * (DECODED_MAX_VALUE_BYTES + 1)),))
    other = layer.decide(make_call(tenant="globex"))
    layer.put(other, big)
    one, two = layer.get(other), layer.get(other)
    assert one == two == big and one is not two and one is not None and not one.shared
