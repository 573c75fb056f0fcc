"""proto -> ``Call`` conversion, ``Call.key_material()`` and the native cache key over it."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from conftest import complete_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skinflint import _native
from skinflint.call import (
    CacheTtl,
    Call,
    ImagePart,
    ModelKind,
    Role,
    Tier,
    ToolChoiceMode,
    ToolUsePart,
)
from skinflint.errors import InvalidArgument
from skinflint.transports.grpc import convert
from skinflint.v1 import skinflint_pb2 as pb

CONSERVATIVE = _native.RuleSet.named("conservative")


def rich_request() -> pb.CompleteRequest:
    """A request using every part kind, tools, params, policy and caller breakpoints."""
    return pb.CompleteRequest(
        model="anthropic/claude-haiku-4-5",
        system=[
            pb.SystemBlock(
                text="You are a support agent.",
                cache_breakpoint=pb.CacheBreakpoint(ttl=pb.CacheBreakpoint.TTL_1H),
            )
        ],
        messages=[
            pb.Message(
                role=pb.ROLE_USER,
                content=[
                    pb.ContentPart(text=pb.TextPart(text="Where is order 42?")),
                    pb.ContentPart(image=pb.ImagePart(media_type="image/png", data=b"\x89PNG")),
                ],
            ),
            pb.Message(
                role=pb.ROLE_ASSISTANT,
                content=[
                    pb.ContentPart(
                        tool_use=pb.ToolUsePart(
                            id="t1", name="lookup", input_json='{"id": "42", "deep": {"n": 1}}'
                        )
                    )
                ],
            ),
            pb.Message(
                role=pb.ROLE_USER,
                content=[
                    pb.ContentPart(
                        tool_result=pb.ToolResultPart(tool_use_id="t1", content="shipped"),
                        cache_breakpoint=pb.CacheBreakpoint(ttl=pb.CacheBreakpoint.TTL_5M),
                    )
                ],
            ),
        ],
        tools=[
            pb.Tool(
                name="lookup",
                description="Look up an order",
                input_schema_json='{"type": "object", "properties": {"id": {"type": "string"}}}',
            )
        ],
        tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_TOOL, name="lookup"),
        params=pb.GenerationParams(
            max_tokens=256,
            temperature=0.0,
            stop_sequences=["END"],
            response_format=pb.ResponseFormat(type=pb.ResponseFormat.TYPE_JSON_OBJECT),
            provider_params_json='{"service_tier": "auto", "extra": null}',
        ),
        attribution=pb.Attribution(tenant="acme", team="support", feature="orders", user="u1"),
        policy=pb.Policy(no_store=True, min_tier=pb.TIER_SMALL, max_tier=pb.TIER_MID),
        request_id="req-1",
        labels={"env": "test"},
    )


def test_conversion_builds_the_domain_call() -> None:
    call = convert.to_call(rich_request())
    assert call.model.kind is ModelKind.PINNED
    assert (call.model.provider, call.model.name) == ("anthropic", "claude-haiku-4-5")
    assert [m.role for m in call.messages] == [Role.USER, Role.ASSISTANT, Role.USER]
    image = call.messages[0].parts[1]
    assert isinstance(image, ImagePart) and image.data == b"\x89PNG"
    tool_use = call.messages[1].parts[0]
    assert isinstance(tool_use, ToolUsePart)
    assert tool_use.input["deep"]["n"] == 1  # type: ignore[index]
    assert call.tool_choice is not None and call.tool_choice.mode is ToolChoiceMode.TOOL
    assert call.policy.no_store and call.policy.min_tier is Tier.SMALL
    assert call.policy.cache_ttl_seconds is None  # 0 on the wire means "the feature's TTL"
    assert call.caller_cache_ttls() == (CacheTtl.ONE_HOUR, CacheTtl.FIVE_MINUTES)
    assert call.request_id == "req-1" and dict(call.labels) == {"env": "test"}
    assert call.namespace == "tenant:acme"


def test_call_is_deeply_immutable() -> None:
    call = convert.to_call(rich_request())
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.request_id = "other"  # type: ignore[misc]
    tool_use = call.messages[1].parts[0]
    assert isinstance(tool_use, ToolUsePart)
    with pytest.raises(TypeError):
        tool_use.input["id"] = "43"  # type: ignore[index]
    with pytest.raises(TypeError):
        tool_use.input["deep"]["n"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        call.labels["x"] = "y"  # type: ignore[index]


def test_key_material_has_the_documented_shape() -> None:
    material = convert.to_call(rich_request()).key_material()
    assert material == {
        "namespace": "tenant:acme",
        "model": "anthropic/claude-haiku-4-5",
        "params": {
            "max_tokens": 256,
            "temperature": 0.0,
            "stop_sequences": ["END"],
            "response_format": {"type": "json_object", "strict": False},
            "provider_params": {"service_tier": "auto", "extra": None},
            "tool_choice": {"mode": "tool", "name": "lookup"},
        },
        "tools": [
            {
                "name": "lookup",
                "description": "Look up an order",
                "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}},
            }
        ],
        "system": ["You are a support agent."],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Where is order 42?"},
                    {"type": "image", "media_type": "image/png", "data": "iVBORw=="},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "t1",
                        "name": "lookup",
                        "input": {"id": "42", "deep": {"n": 1}},
                    }
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
                    }
                ],
            },
        ],
    }
    json.dumps(material)  # plain JSON types only


def test_default_tenant_and_generated_request_id() -> None:
    call = convert.to_call(complete_request(attribution=pb.Attribution(), request_id=""))
    assert call.namespace == "tenant:default"
    assert len(call.request_id) == 36
    assert convert.to_call(complete_request(request_id="")).request_id != call.request_id


def _key(request: pb.CompleteRequest) -> _native.CacheKey:
    return _native.cache_key(convert.to_call(request).key_material(), CONSERVATIVE)


def test_native_core_accepts_the_key_material() -> None:
    key = _key(rich_request())
    assert len(key.hex) == 32


def test_equal_protos_give_equal_keys() -> None:
    assert _key(rich_request()) == _key(rich_request())
    # Serialized and parsed again: still the same key.
    again = pb.CompleteRequest.FromString(rich_request().SerializeToString())
    assert _key(again) == _key(rich_request())


def test_what_does_not_change_the_answer_does_not_change_the_key() -> None:
    base = rich_request()
    other = pb.CompleteRequest()
    other.CopyFrom(base)
    other.request_id = "req-2"
    other.labels["env"] = "prod"
    other.attribution.team = "other-team"
    other.policy.no_store = False
    other.system[0].ClearField("cache_breakpoint")
    other.messages[0].content[0].text.text = "  Where is   order 42?\n"
    assert _key(other) == _key(base)


@pytest.mark.parametrize(
    "change",
    [
        lambda r: setattr(r.params, "temperature", 0.7),
        lambda r: setattr(r.params, "max_tokens", 257),
        lambda r: setattr(r.attribution, "tenant", "globex"),
        lambda r: setattr(r, "model", "anthropic/claude-sonnet-4-5"),
        lambda r: r.tool_choice.CopyFrom(pb.ToolChoice(mode=pb.ToolChoice.MODE_AUTO)),
        lambda r: r.tool_choice.CopyFrom(pb.ToolChoice(mode=pb.ToolChoice.MODE_ANY)),
        lambda r: setattr(r.params, "provider_params_json", '{"service_tier": "flex"}'),
        lambda r: setattr(r.messages[2].content[0].tool_result, "is_error", True),
        lambda r: r.params.stop_sequences.append("STOP"),
    ],
    ids=[
        "temperature",
        "max_tokens",
        "tenant",
        "model",
        "tool_choice_auto",
        "tool_choice_any",
        "provider_params",
        "tool_error",
        "stop_sequences",
    ],
)
def test_output_affecting_changes_change_the_key(change: Any) -> None:
    changed = rich_request()
    change(changed)
    assert _key(changed) != _key(rich_request())


def test_different_temperature_gives_a_different_key() -> None:
    cold = complete_request(params=pb.GenerationParams(max_tokens=64, temperature=0.0))
    warm = complete_request(params=pb.GenerationParams(max_tokens=64, temperature=0.2))
    unset = complete_request(params=pb.GenerationParams(max_tokens=64))
    assert len({_key(cold), _key(warm), _key(unset)}) == 3


def test_plain_text_format_equals_no_format() -> None:
    text = complete_request(
        params=pb.GenerationParams(
            max_tokens=64, response_format=pb.ResponseFormat(type=pb.ResponseFormat.TYPE_TEXT)
        )
    )
    assert _key(text) == _key(complete_request(params=pb.GenerationParams(max_tokens=64)))


def test_model_forms() -> None:
    assert convert.to_call(complete_request(model="auto")).model.kind is ModelKind.AUTO
    tier = convert.to_call(complete_request(model="frontier")).model
    assert tier.kind is ModelKind.TIER and tier.tier is Tier.FRONTIER
    pinned = convert.to_call(complete_request(model="openai/gpt-4o-mini")).model
    assert (pinned.provider, pinned.name) == ("openai", "gpt-4o-mini")


# ---------------------------------------------------------------------------------------------
# Robustness: any wire input converts or fails with InvalidArgument, never anything else
# ---------------------------------------------------------------------------------------------

_json_texts = st.one_of(
    st.just(""),
    st.just("{}"),
    st.just('{"type": "object"}'),
    st.just("[1]"),
    st.just("{bad"),
    st.just('{"a": NaN}'),
    st.text(max_size=20),
)
_parts = st.one_of(
    st.builds(lambda t: pb.ContentPart(text=pb.TextPart(text=t)), st.text(max_size=20)),
    st.builds(
        lambda m, d: pb.ContentPart(image=pb.ImagePart(media_type=m, data=d)),
        st.sampled_from(["image/png", "image/tiff", ""]),
        st.binary(max_size=8),
    ),
    st.builds(
        lambda i, n, j: pb.ContentPart(tool_use=pb.ToolUsePart(id=i, name=n, input_json=j)),
        st.sampled_from(["", "t1", "t2"]),
        st.sampled_from(["", "lookup", "bad name"]),
        _json_texts,
    ),
    st.builds(
        lambda i: pb.ContentPart(tool_result=pb.ToolResultPart(tool_use_id=i, content="r")),
        st.sampled_from(["", "t1", "t2"]),
    ),
    st.just(pb.ContentPart()),
)
_messages = st.lists(
    st.builds(
        lambda role, parts: pb.Message(role=role, content=parts),
        st.integers(min_value=-1, max_value=4),
        st.lists(_parts, max_size=3),
    ),
    max_size=4,
)
_params = st.builds(
    lambda mt, t, p, fmt: pb.GenerationParams(
        max_tokens=mt,
        temperature=t,
        top_p=p,
        response_format=pb.ResponseFormat(type=fmt, schema_json='{"type": "object"}'),
    ),
    st.integers(min_value=-2, max_value=2_000_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1, max_value=2),
    st.integers(min_value=0, max_value=5),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=st.sampled_from(["", "auto", "small", "openai/gpt-4o", "x", "A/b", "a/"]),
    messages=_messages,
    tools=st.lists(
        st.builds(
            lambda n, s: pb.Tool(name=n, input_schema_json=s),
            st.sampled_from(["lookup", "search", ""]),
            _json_texts,
        ),
        max_size=2,
    ),
    params=_params,
    request_id=st.text(max_size=140),
)
def test_any_request_converts_or_is_invalid_argument(
    model: str,
    messages: list[pb.Message],
    tools: list[pb.Tool],
    params: pb.GenerationParams,
    request_id: str,
) -> None:
    request = pb.CompleteRequest(
        model=model, messages=messages, tools=tools, params=params, request_id=request_id
    )
    try:
        call = convert.to_call(request)
    except InvalidArgument as exc:
        assert exc.field and exc.reason
        assert str(exc) == f"{exc.field}: {exc.reason}"
        return
    assert isinstance(call, Call)
    assert call.messages and call.messages[0].role is Role.USER
    _native.cache_key(call.key_material(), CONSERVATIVE)
