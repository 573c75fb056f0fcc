"""Cache keys: equal requests hash equal; anything output-affecting changes the key."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skinflint._native import (
    CacheKey,
    KeyInputError,
    RuleSet,
    cache_key,
    cache_key_json,
    prefix_fingerprints,
)

CONSERVATIVE = RuleSet.named("conservative")
EXACT = RuleSet.named("exact")


def request(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "namespace": "tenant:acme",
        "model": "anthropic/claude-haiku-4-5",
        "params": {"temperature": 0.0, "max_tokens": 256},
        "tools": [
            {
                "name": "lookup",
                "description": "Look up an order",
                "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}},
            }
        ],
        "system": ["You are a helpful support agent."],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Where is my order 42?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"id": "42"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": "shipped",
                        "is_error": False,
                    },
                ],
            },
        ],
    }
    base.update(overrides)
    return base


def key(req: dict[str, Any], rules: RuleSet = CONSERVATIVE) -> str:
    return cache_key(req, rules).hex


def test_key_shape() -> None:
    k = cache_key(request(), CONSERVATIVE)
    assert isinstance(k, CacheKey)
    assert len(k.hex) == 32 and int(k.hex, 16) >= 0
    assert len(k.bytes) == 16
    assert k.bytes.hex() == k.hex
    assert k == cache_key(request(), CONSERVATIVE)
    assert hash(k) == hash(cache_key(request(), CONSERVATIVE))


def test_dict_and_json_entry_points_agree() -> None:
    req = request()
    assert cache_key_json(json.dumps(req), CONSERVATIVE) == cache_key(req, CONSERVATIVE)
    assert cache_key_json(json.dumps(req).encode(), CONSERVATIVE) == cache_key(req, CONSERVATIVE)


def test_whitespace_and_key_order_do_not_matter() -> None:
    a = request()
    b = copy.deepcopy(a)
    b["messages"][0]["content"][0]["text"] = "  Where   is my\norder 42?  "
    b["system"] = ["You are a helpful\tsupport agent. "]
    b["params"] = {"max_tokens": 256, "temperature": 0.0}
    b["tools"][0] = dict(reversed(list(b["tools"][0].items())))
    assert key(a) == key(b)
    assert key(a, EXACT) != key(b, EXACT)


def test_volatile_fields_only_with_the_rule() -> None:
    a = request(system=["Today is 2024-05-01T10:00:00Z. Be brief."])
    b = request(system=["Today is 2024-06-02T11:11:11Z. Be brief."])
    assert key(a) != key(b)
    assert key(a, RuleSet.named("volatile")) == key(b, RuleSet.named("volatile"))


MUTATIONS: dict[str, Any] = {
    "namespace": lambda r: r.update(namespace="tenant:other"),
    "model": lambda r: r.update(model="anthropic/claude-sonnet-4-5"),
    "temperature": lambda r: r["params"].update(temperature=0.7),
    "max_tokens": lambda r: r["params"].update(max_tokens=257),
    "new_param": lambda r: r["params"].update(top_p=0.9),
    "provider_param": lambda r: r["params"].update(provider={"service_tier": "auto"}),
    "response_format": lambda r: r["params"].update(response_format={"type": "json_object"}),
    "tool_schema": lambda r: r["tools"][0]["input_schema"]["properties"].update(x={}),
    "tool_removed": lambda r: r.update(tools=[]),
    "system": lambda r: r.update(system=["You are a terse support agent."]),
    "system_split": lambda r: r.update(system=["You are a helpful", "support agent."]),
    "role": lambda r: r["messages"][1].update(role="user"),
    "text": lambda r: r["messages"][0]["content"][0].update(text="Where is my order 43?"),
    "tool_input": lambda r: r["messages"][1]["content"][0]["input"].update(id="43"),
    "tool_error": lambda r: r["messages"][2]["content"][0].update(is_error=True),
    "turn_dropped": lambda r: r["messages"].pop(),
    "image": lambda r: r["messages"][0]["content"].append(
        {"type": "image", "media_type": "image/png", "data": "aGVsbG8="}
    ),
}


@pytest.mark.parametrize("field", sorted(MUTATIONS))
def test_every_output_affecting_change_changes_the_key(field: str) -> None:
    changed = copy.deepcopy(request())
    MUTATIONS[field](changed)
    assert key(changed) != key(request())


def test_no_collision_by_concatenation() -> None:
    def texts(*parts: str) -> dict[str, Any]:
        return request(
            system=[],
            tools=[],
            messages=[{"role": "user", "content": [{"type": "text", "text": p} for p in parts]}],
        )

    assert key(texts("ab", "c")) != key(texts("a", "bc"))
    assert key(texts("abc")) != key(texts("ab", "c"))
    one_turn = request(
        system=[], messages=[{"role": "user", "content": [{"type": "text", "text": "x"}]}]
    )
    sys_and_turn = request(
        system=["x"], messages=[{"role": "user", "content": [{"type": "text", "text": "x"}]}]
    )
    assert key(one_turn) != key(sys_and_turn)
    assert key(request(namespace="tenant:a", model="bc")) != key(
        request(namespace="tenant:ab", model="c")
    )


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda r: r.pop("namespace"), "namespace"),
        (lambda r: r.update(namespace=""), "namespace"),
        (lambda r: r.update(model=""), "model"),
        (lambda r: r.update(surprise=1), "surprise"),
        (lambda r: r["messages"][0].update(role="sytem"), "role"),
        (lambda r: r["messages"][0]["content"][0].update(type="imgae"), "imgae"),
        (lambda r: r.update(messages="hi"), "messages"),
        (lambda r: r.update(params=[1]), "params"),
    ],
)
def test_malformed_requests_name_the_problem(mutate: Any, needle: str) -> None:
    bad = request()
    mutate(bad)
    with pytest.raises(KeyInputError) as err:
        cache_key(bad, CONSERVATIVE)
    assert needle in str(err.value)


def test_malformed_json_is_a_key_input_error() -> None:
    with pytest.raises(KeyInputError):
        cache_key_json("{", CONSERVATIVE)


TEXT = st.text(max_size=40)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    turns = draw(
        st.lists(st.tuples(st.sampled_from(["user", "assistant"]), TEXT), min_size=1, max_size=4)
    )
    return request(
        namespace="tenant:" + draw(st.text(min_size=1, max_size=8)),
        model=draw(st.sampled_from(["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", "auto"])),
        params={
            "temperature": draw(st.sampled_from([0.0, 0.5, 1.0])),
            "max_tokens": draw(st.integers(1, 4096)),
        },
        system=draw(st.lists(TEXT, max_size=2)),
        messages=[{"role": r, "content": [{"type": "text", "text": t}]} for r, t in turns],
    )


@settings(max_examples=200, deadline=None)
@given(req=requests())
def test_equal_inputs_give_equal_keys(req: dict[str, Any]) -> None:
    assert key(req) == key(copy.deepcopy(req))
    assert cache_key_json(json.dumps(req), CONSERVATIVE).hex == key(req)


@settings(max_examples=200, deadline=None)
@given(req=requests(), suffix=st.text(min_size=1, max_size=5).filter(lambda s: s.strip() != ""))
def test_appending_visible_text_changes_the_key(req: dict[str, Any], suffix: str) -> None:
    changed = copy.deepcopy(req)
    changed["messages"][-1]["content"][0]["text"] += " " + suffix
    if CONSERVATIVE.canonicalize_text(changed["messages"][-1]["content"][0]["text"]) == (
        CONSERVATIVE.canonicalize_text(req["messages"][-1]["content"][0]["text"])
    ):
        return  # the suffix canonicalized away: the key may not change
    assert key(changed) != key(req)


@settings(max_examples=200, deadline=None)
@given(
    junk=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
        ),
        max_leaves=15,
    )
)
def test_arbitrary_structures_never_crash(junk: Any) -> None:
    with contextlib.suppress(KeyInputError):
        cache_key(junk if isinstance(junk, dict) else {"namespace": junk}, CONSERVATIVE)


def test_prefix_fingerprints_follow_prompt_order() -> None:
    fps = prefix_fingerprints(request(), EXACT)
    assert [(f.kind, f.index) for f in fps] == [
        ("tools", 0),
        ("system", 0),
        ("message", 0),
        ("message", 1),
        ("message", 2),
    ]
    chars = [f.cumulative_chars for f in fps]
    assert chars == sorted(chars) and chars[-1] > chars[0]
    assert len({f.hex for f in fps}) == len(fps)


def test_prefix_fingerprints_are_shared_across_tenants_and_track_the_prefix() -> None:
    a = prefix_fingerprints(request(), EXACT)
    b = prefix_fingerprints(request(namespace="tenant:other"), EXACT)
    assert [f.hex for f in a] == [f.hex for f in b]
    later = request()
    later["messages"][2]["content"][0]["content"] = "delivered"
    c = prefix_fingerprints(later, EXACT)
    assert [f.hex for f in c[:-1]] == [f.hex for f in a[:-1]]
    assert c[-1].hex != a[-1].hex
    other_model = prefix_fingerprints(request(model="openai/gpt-4o"), EXACT)
    assert other_model[0].hex != a[0].hex
