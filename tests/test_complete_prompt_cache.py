"""Automatic provider prompt caching end to end: Anthropic breakpoints on the stable prefix with
a TTL chosen from the observed reuse, caller breakpoints honoured within the limit of 4, and
OpenAI's prompt_cache_key."""

from __future__ import annotations

from typing import Any

from complete_fixtures import RigFactory, hand_baseline, hand_cost, request

from skinflint.v1 import skinflint_pb2 as pb

SONNET = "anthropic/claude-sonnet-4-6"  # minimum cacheable prefix: 1024 tokens


def words(n: int, word: str = "lorem") -> str:
    return " ".join([word] * n)


def long_system(n: int = 1500, **kwargs: Any) -> list[pb.SystemBlock]:
    return [pb.SystemBlock(text=words(n), **kwargs)]


def marks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every cache_control in an Anthropic request body, in prompt order."""
    found = [t["cache_control"] for t in body.get("tools", []) if "cache_control" in t]
    system = body.get("system", [])
    if isinstance(system, list):
        found += [b["cache_control"] for b in system if "cache_control" in b]
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, list):
            found += [b["cache_control"] for b in content if "cache_control" in b]
    return found


async def test_long_repeated_system_prompt_is_cached_automatically(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig()
    first = await rig.stub.Complete(request(SONNET, system=long_system()))
    # no_lookup: the identical request would otherwise be a response-cache hit.
    second = await rig.stub.Complete(
        request(SONNET, system=long_system(), policy=pb.Policy(no_lookup=True))
    )

    bodies = [e.body for e in rig.anthropic.requests]
    assert [marks(b) for b in bodies] == [[{"type": "ephemeral", "ttl": "5m"}]] * 2
    assert "cache_control" in bodies[0]["system"][0]
    # The first call writes the prefix (and pays the write premium: a real, negative saving).
    assert first.usage.cache_write_5m_tokens == 1500
    assert first.savings.prompt_caching_nanousd < 0
    assert "system[0] 5m (first sighting of this prefix" in first.served_by.route_reason
    # The second reads it.
    assert second.usage.cache_read_tokens == 1500
    assert second.usage.cache_write_5m_tokens == 0
    assert second.savings.prompt_caching_nanousd > 0
    assert "system[0] 5m (reused after" in second.served_by.route_reason
    assert "within 5m" in second.served_by.route_reason
    for response in (first, second):
        assert response.cost_nanousd == hand_cost(response.usage, SONNET)
        assert response.baseline_cost_nanousd == hand_baseline(response.usage)
        savings = response.savings
        assert savings.total_nanousd == savings.routing_nanousd + savings.prompt_caching_nanousd
        assert savings.total_nanousd == response.baseline_cost_nanousd - response.cost_nanousd


async def test_reuse_gap_in_the_one_hour_window_chooses_the_1h_ttl(start_rig: RigFactory) -> None:
    # Any reuse gap counts as "between 5 and 60 minutes" here, so the second sighting is 1h.
    rig = await start_rig("prompt_cache:\n  one_hour_min_gap_s: 0.0\n")
    await rig.stub.Complete(request(SONNET, system=long_system()))
    # no_lookup: the identical request would otherwise be a response-cache hit.
    second = await rig.stub.Complete(
        request(SONNET, system=long_system(), policy=pb.Policy(no_lookup=True))
    )
    assert marks(rig.anthropic.requests.last.body) == [{"type": "ephemeral", "ttl": "1h"}]
    reason = second.served_by.route_reason
    assert "system[0] 1h (reused after 0s, between 0s and 60m" in reason


async def test_short_prefix_gets_no_breakpoint(start_rig: RigFactory) -> None:
    rig = await start_rig()
    response = await rig.stub.Complete(request(SONNET, system=long_system(200)))
    assert marks(rig.anthropic.requests.last.body) == []
    assert "below claude-sonnet-4-6's minimum of 1024" in response.served_by.route_reason


def _tool(name: str, ttl: int = 0) -> pb.Tool:
    tool = pb.Tool(name=name, description="d", input_schema_json='{"type": "object"}')
    if ttl:
        tool.cache_breakpoint.ttl = ttl
    return tool


def _conversation() -> list[pb.Message]:
    def text(role: int, body: str) -> pb.Message:
        return pb.Message(role=role, content=[pb.ContentPart(text=pb.TextPart(text=body))])

    return [
        text(pb.ROLE_USER, words(300, "alpha")),
        text(pb.ROLE_ASSISTANT, words(300, "beta")),
        text(pb.ROLE_USER, "and now?"),
    ]


async def test_caller_breakpoints_are_honoured_and_the_total_never_exceeds_four(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig()
    one_hour = pb.CacheBreakpoint.TTL_1H
    tools = [_tool("a", one_hour), _tool("b", one_hour), _tool("c", one_hour)]
    response = await rig.stub.Complete(
        request(SONNET, tools=tools, system=long_system(), messages=_conversation())
    )
    body = rig.anthropic.requests.last.body
    placed = marks(body)
    assert len(placed) == 4
    # The caller's three stay where they were, with their TTL; skinflint adds the fourth on
    # the latest qualifying earlier turn (5m after 1h ones is allowed: longer TTLs come first).
    assert [t.get("cache_control") for t in body["tools"]] == [
        {"type": "ephemeral", "ttl": "1h"}
    ] * 3
    assert body["messages"][1]["content"][-1]["cache_control"]["ttl"] == "5m"
    assert "3 caller breakpoint(s) honoured" in response.served_by.route_reason
    assert "messages[1]" in response.served_by.route_reason

    four = [*tools, _tool("d", one_hour)]
    response = await rig.stub.Complete(
        request(SONNET, tools=four, system=long_system(), messages=_conversation())
    )
    assert len(marks(rig.anthropic.requests.last.body)) == 4
    assert "the caller used all 4" in response.served_by.route_reason


async def test_openai_gets_a_prompt_cache_key_from_feature_and_prefix(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig()
    await rig.stub.Complete(request("openai/gpt-4o-mini", system=long_system()))
    await rig.stub.Complete(request("openai/gpt-4o-mini", system=long_system(), text="Other?"))
    await rig.stub.Complete(request("openai/gpt-4o-mini", system=long_system(1400)))
    keys = [e.body.get("prompt_cache_key") for e in rig.openai.requests]
    assert keys[0] is not None and keys[0].startswith("sf:qa:")
    assert keys[0] == keys[1]  # same feature, same stable prefix
    assert keys[2] != keys[0]  # another system prompt
