"""The response cache end to end, through the gRPC stubs against the emulators: hits and misses
by key, per-feature rule sets, tenant isolation, storage policy, TTLs, single flight, streaming
replay and budgets."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from complete_fixtures import RigFactory, request

from skinflint.emulators import Fault
from skinflint.v1 import skinflint_pb2 as pb

HAIKU = "anthropic/claude-haiku-4-5"
GPT_MINI = "openai/gpt-4o-mini"

FEATURES = (
    "features:\n"
    "  vol:\n    rule_set: volatile\n"
    "  agg:\n    rule_set: aggressive\n"
    "  loose:\n    cache_nondeterministic: true\n"
    "  nocache:\n    cache: false\n"
    "  brief:\n    cache_ttl_seconds: 1\n"
)


def feature(name: str, tenant: str = "acme") -> pb.Attribution:
    return pb.Attribution(tenant=tenant, team="search", feature=name)


def text_of(response: pb.CompleteResponse) -> str:
    return "".join(part.text.text for part in response.content)


async def collect(call: Any) -> list[pb.CompleteStreamEvent]:
    return [event async for event in call]


# -- hit after miss --------------------------------------------------------------------------


async def test_second_identical_request_is_an_exact_hit_at_zero_cost(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig()
    first = await rig.stub.Complete(request(HAIKU, request_id="r-1"))
    second = await rig.stub.Complete(request(HAIKU, request_id="r-2"))

    assert first.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert first.cost_nanousd > 0
    assert len(rig.anthropic.requests) == 1  # the emulator saw one request

    assert second.request_id == "r-2"
    served = second.served_by
    assert served.cache_status == pb.CACHE_STATUS_EXACT
    assert (served.provider, served.model, served.tier) == ("anthropic", "claude-haiku-4-5", 2)
    assert served.attempts == 0
    assert re.fullmatch(r"response cache hit \(key [0-9a-f]{8}\u2026\)", served.route_reason)
    assert second.content == first.content
    assert second.stop_reason == first.stop_reason
    assert second.usage == first.usage
    assert second.cost_nanousd == 0
    assert second.baseline_cost_nanousd == first.baseline_cost_nanousd
    assert second.savings.response_cache_nanousd == first.cost_nanousd
    assert second.savings.routing_nanousd == first.savings.routing_nanousd
    assert second.savings.total_nanousd == second.baseline_cost_nanousd


async def test_whitespace_variant_hits(start_rig: RigFactory) -> None:
    rig = await start_rig()
    await rig.stub.Complete(request(HAIKU, text="What is the capital of France?"))
    variant = await rig.stub.Complete(request(HAIKU, text="  What   is the\ncapital of France? "))
    assert variant.served_by.cache_status == pb.CACHE_STATUS_EXACT
    assert len(rig.anthropic.requests) == 1


@pytest.mark.parametrize(("feature_name", "hits"), [("qa", False), ("vol", True), ("agg", True)])
async def test_volatile_timestamp_variant_hits_only_where_the_rules_strip_it(
    start_rig: RigFactory, feature_name: str, hits: bool
) -> None:
    rig = await start_rig(FEATURES)
    attribution = feature(feature_name)
    texts = (
        "Summarise the log at 2026-11-23T10:00:00Z",
        "Summarise the log at 2026-11-24T09:12:55Z",
    )
    await rig.stub.Complete(request(HAIKU, text=texts[0], attribution=attribution))
    second = await rig.stub.Complete(request(HAIKU, text=texts[1], attribution=attribution))
    expected = pb.CACHE_STATUS_EXACT if hits else pb.CACHE_STATUS_MISS
    assert second.served_by.cache_status == expected
    assert len(rig.anthropic.requests) == (1 if hits else 2)


@pytest.mark.parametrize(("feature_name", "hits"), [("qa", False), ("vol", False), ("agg", True)])
async def test_case_variant_hits_only_with_aggressive_rules(
    start_rig: RigFactory, feature_name: str, hits: bool
) -> None:
    rig = await start_rig(FEATURES)
    attribution = feature(feature_name)
    await rig.stub.Complete(request(HAIKU, text="What is Lyon?", attribution=attribution))
    second = await rig.stub.Complete(request(HAIKU, text="WHAT IS LYON?", attribution=attribution))
    expected = pb.CACHE_STATUS_EXACT if hits else pb.CACHE_STATUS_MISS
    assert second.served_by.cache_status == expected
    assert len(rig.anthropic.requests) == (1 if hits else 2)


def _tool() -> pb.Tool:
    return pb.Tool(
        name="lookup", description="Look a city up", input_schema_json='{"type": "object"}'
    )


CHANGES: dict[str, Callable[[pb.CompleteRequest], None]] = {
    "model": lambda r: setattr(r, "model", HAIKU),
    "temperature": lambda r: setattr(r.params, "temperature", 0.5),
    "max_tokens": lambda r: setattr(r.params, "max_tokens", 65),
    "tools": lambda r: r.tools.append(_tool()),
    "response_format": lambda r: r.params.response_format.CopyFrom(
        pb.ResponseFormat(type=pb.ResponseFormat.TYPE_JSON_OBJECT)
    ),
    "provider_params": lambda r: setattr(
        r.params, "provider_params_json", json.dumps({"user": "someone"})
    ),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_a_change_that_can_change_the_answer_misses(
    start_rig: RigFactory, change: str
) -> None:
    rig = await start_rig()
    base = request(GPT_MINI, text="Reply in JSON: what is the capital of France?")
    first = await rig.stub.Complete(base)
    assert first.served_by.cache_status == pb.CACHE_STATUS_MISS
    changed = pb.CompleteRequest()
    changed.CopyFrom(base)
    CHANGES[change](changed)
    second = await rig.stub.Complete(changed)
    assert second.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert second.cost_nanousd > 0
    assert len(rig.openai.requests) + len(rig.anthropic.requests) == 2
    # and the original is still a hit
    again = await rig.stub.Complete(base)
    assert again.served_by.cache_status == pb.CACHE_STATUS_EXACT


async def test_no_request_is_answered_from_another_tenants_entry(start_rig: RigFactory) -> None:
    rig = await start_rig()
    await rig.stub.Complete(request(HAIKU, attribution=feature("qa", tenant="acme")))
    other = await rig.stub.Complete(request(HAIKU, attribution=feature("qa", tenant="globex")))
    assert other.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert other.cost_nanousd > 0
    assert len(rig.anthropic.requests) == 2
    again = await rig.stub.Complete(request(HAIKU, attribution=feature("qa", tenant="globex")))
    assert again.served_by.cache_status == pb.CACHE_STATUS_EXACT


# -- storage policy --------------------------------------------------------------------------


def _temperature(value: float | None) -> pb.GenerationParams:
    params = pb.GenerationParams(max_tokens=64)
    if value is not None:
        params.temperature = value
    return params


@pytest.mark.parametrize("temperature", [0.7, None])
async def test_nondeterministic_requests_are_not_stored(
    start_rig: RigFactory, temperature: float | None
) -> None:
    rig = await start_rig(FEATURES)
    for _ in range(2):
        response = await rig.stub.Complete(request(HAIKU, params=_temperature(temperature)))
        assert response.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert len(rig.anthropic.requests) == 2


@pytest.mark.parametrize("temperature", [0.7, None])
async def test_a_feature_can_opt_in_to_storing_nondeterministic_answers(
    start_rig: RigFactory, temperature: float | None
) -> None:
    rig = await start_rig(FEATURES)
    req = request(HAIKU, params=_temperature(temperature), attribution=feature("loose"))
    await rig.stub.Complete(req)
    second = await rig.stub.Complete(req)
    assert second.served_by.cache_status == pb.CACHE_STATUS_EXACT
    assert len(rig.anthropic.requests) == 1


async def test_no_store_is_not_stored(start_rig: RigFactory) -> None:
    rig = await start_rig()
    first = await rig.stub.Complete(request(HAIKU, policy=pb.Policy(no_store=True)))
    assert first.served_by.cache_status == pb.CACHE_STATUS_MISS  # it was looked up
    second = await rig.stub.Complete(request(HAIKU))
    assert second.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert len(rig.anthropic.requests) == 2
    third = await rig.stub.Complete(request(HAIKU))
    assert third.served_by.cache_status == pb.CACHE_STATUS_EXACT


async def test_no_lookup_bypasses_but_stores(start_rig: RigFactory) -> None:
    rig = await start_rig()
    await rig.stub.Complete(request(HAIKU))
    bypassed = await rig.stub.Complete(request(HAIKU, policy=pb.Policy(no_lookup=True)))
    assert bypassed.served_by.cache_status == pb.CACHE_STATUS_BYPASS
    assert bypassed.cost_nanousd > 0
    assert len(rig.anthropic.requests) == 2


async def test_a_feature_can_turn_caching_off(start_rig: RigFactory) -> None:
    rig = await start_rig(FEATURES)
    for _ in range(2):
        response = await rig.stub.Complete(request(HAIKU, attribution=feature("nocache")))
        assert response.served_by.cache_status == pb.CACHE_STATUS_BYPASS
    assert len(rig.anthropic.requests) == 2


@pytest.mark.parametrize("where", ["request", "feature"])
async def test_entries_expire_after_their_ttl(start_rig: RigFactory, where: str) -> None:
    rig = await start_rig(FEATURES)
    if where == "request":
        req = request(HAIKU, policy=pb.Policy(cache_ttl_seconds=1))
    else:
        req = request(HAIKU, attribution=feature("brief"))
    await rig.stub.Complete(req)
    hit = await rig.stub.Complete(req)
    assert hit.served_by.cache_status == pb.CACHE_STATUS_EXACT
    await asyncio.sleep(1.3)
    expired = await rig.stub.Complete(req)
    assert expired.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert len(rig.anthropic.requests) == 2


# -- single flight ---------------------------------------------------------------------------


async def test_concurrent_identical_misses_make_one_provider_call(start_rig: RigFactory) -> None:
    rig = await start_rig(anthropic={"latency": 0.5})
    n = 5
    responses = await asyncio.gather(
        *(rig.stub.Complete(request(HAIKU, request_id=f"sf-{i}")) for i in range(n))
    )
    assert len(rig.anthropic.requests) == 1
    statuses = sorted(r.served_by.cache_status for r in responses)
    assert statuses == [pb.CACHE_STATUS_MISS] + [pb.CACHE_STATUS_COALESCED] * (n - 1)
    assert [r.request_id for r in responses] == [f"sf-{i}" for i in range(n)]
    leader = next(r for r in responses if r.served_by.cache_status == pb.CACHE_STATUS_MISS)
    for response in responses:
        assert response.content == leader.content
        if response is not leader:
            assert response.cost_nanousd == 0
            assert response.savings.response_cache_nanousd == leader.cost_nanousd
            assert "coalesced" in response.served_by.route_reason


async def test_a_failed_leader_does_not_poison_its_followers(start_rig: RigFactory) -> None:
    rig = await start_rig()
    rig.anthropic.faults.add(Fault(status=500, times=1000, latency=0.2))
    rig.openai.faults.add(Fault(status=500, times=1000, latency=0.2))
    n = 4
    results = await asyncio.gather(
        *(rig.stub.Complete(request("small")) for _ in range(n)), return_exceptions=True
    )
    for result in results:
        # Every caller gets the error (the followers retried as their own calls), never a
        # half answer.
        assert isinstance(result, grpc.aio.AioRpcError), result
        assert result.code() == grpc.StatusCode.UNAVAILABLE
    assert rig.app.cache.stats().entries == 0  # nothing was stored


async def test_followers_of_a_failed_leader_can_still_be_answered(start_rig: RigFactory) -> None:
    rig = await start_rig(anthropic={"latency": 0.3})
    rig.anthropic.faults.add(Fault(status=400, times=1))  # the leader's call is rejected
    results = await asyncio.gather(
        *(rig.stub.Complete(request(HAIKU)) for _ in range(3)), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    answers = [r for r in results if not isinstance(r, BaseException)]
    assert len(errors) == 1  # the leader
    assert len(answers) == 2
    statuses = sorted(r.served_by.cache_status for r in answers)
    assert statuses == [pb.CACHE_STATUS_MISS, pb.CACHE_STATUS_COALESCED]
    assert all(text_of(r) for r in answers)


# -- streaming -------------------------------------------------------------------------------


async def test_a_streamed_request_hits_and_replays_the_original(start_rig: RigFactory) -> None:
    rig = await start_rig()
    first = await collect(rig.stub.CompleteStream(request(HAIKU, request_id="s-1")))
    assert first[-1].done.served_by.cache_status == pb.CACHE_STATUS_MISS
    original = "".join(e.delta.text for e in first[1:-1])

    events = await collect(rig.stub.CompleteStream(request(HAIKU, request_id="s-2")))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"delta"}
    assert events[0].started.request_id == "s-2"
    assert events[0].started.served_by.cache_status == pb.CACHE_STATUS_EXACT
    assert "".join(e.delta.text for e in events[1:-1]) == original
    done = events[-1].done
    assert done.served_by.cache_status == pb.CACHE_STATUS_EXACT
    assert done.cost_nanousd == 0
    assert done.savings.response_cache_nanousd == first[-1].done.cost_nanousd
    assert text_of(done) == original
    assert len(rig.anthropic.requests) == 1
    # A unary request is answered from the streamed entry too.
    unary = await rig.stub.Complete(request(HAIKU))
    assert unary.served_by.cache_status == pb.CACHE_STATUS_EXACT
    assert text_of(unary) == original


async def test_a_tool_use_answer_replays_as_a_stream(start_rig: RigFactory) -> None:
    rig = await start_rig()
    choice = pb.ToolChoice(mode=pb.ToolChoice.MODE_TOOL, name="lookup")
    req = request(HAIKU, tools=[_tool()], tool_choice=choice)
    first = await rig.stub.Complete(req)
    assert first.stop_reason == pb.STOP_REASON_TOOL_USE
    events = await collect(rig.stub.CompleteStream(req))
    deltas = [e.delta for e in events[1:-1]]
    tool_uses = [d.tool_use for d in deltas if d.WhichOneof("delta") == "tool_use"]
    original = next(p.tool_use for p in first.content if p.WhichOneof("part") == "tool_use")
    assert [(t.id, t.name) for t in tool_uses] == [(original.id, original.name)]
    assert json.loads(tool_uses[0].partial_json) == json.loads(original.input_json)
    done = events[-1].done
    assert done.served_by.cache_status == pb.CACHE_STATUS_EXACT
    assert list(done.content) == list(first.content)
    assert len(rig.anthropic.requests) == 1


async def test_concurrent_identical_streams_coalesce(start_rig: RigFactory) -> None:
    rig = await start_rig(anthropic={"latency": 0.5})
    streams = await asyncio.gather(
        *(collect(rig.stub.CompleteStream(request(HAIKU, request_id=f"st-{i}"))) for i in range(3))
    )
    assert len(rig.anthropic.requests) == 1
    statuses = sorted(events[-1].done.served_by.cache_status for events in streams)
    assert statuses == [pb.CACHE_STATUS_MISS] + [pb.CACHE_STATUS_COALESCED] * 2
    texts = {"".join(e.delta.text for e in events[1:-1]) for events in streams}
    assert len(texts) == 1 and texts != {""}
    assert [events[0].started.request_id for events in streams] == ["st-0", "st-1", "st-2"]


async def test_a_cut_streamed_miss_is_not_stored(start_rig: RigFactory) -> None:
    rig = await start_rig()
    rig.anthropic.faults.add(Fault(stream_cut_after=5))
    with pytest.raises(grpc.aio.AioRpcError):
        await collect(rig.stub.CompleteStream(request(HAIKU)))
    response = await rig.stub.Complete(request(HAIKU))
    assert response.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert len(rig.anthropic.requests) == 2


# -- budgets ---------------------------------------------------------------------------------


async def test_a_hit_counts_a_request_with_zero_spend(start_rig: RigFactory) -> None:
    rig = await start_rig()
    spec = pb.BudgetSpec(
        id="acme", scope="tenant:acme", window=pb.BUDGET_WINDOW_MONTH, limit_nanousd=10**9
    )
    await rig.stub.SetBudget(pb.SetBudgetRequest(budget=spec))
    first = await rig.stub.Complete(request(HAIKU))
    second = await rig.stub.Complete(request(HAIKU))
    assert second.served_by.cache_status == pb.CACHE_STATUS_EXACT
    assert [b.budget_id for b in second.budgets] == ["acme"]
    state = (await rig.stub.GetBudget(pb.GetBudgetRequest(id="acme"))).state
    assert state.requests == 2
    assert state.spent_nanousd == first.cost_nanousd
    assert state.reserved_nanousd == 0


# -- repeated hits (the hit path's memos) ----------------------------------------------------


async def test_repeated_hits_each_get_their_own_id_budgets_and_ledger_record(
    start_rig: RigFactory,
) -> None:
    """A hot request is answered from kept parts (decision, answer, wire response): each hit
    still carries its own id (sent or fresh), the budgets as they are at that moment, and
    its own ledger record."""
    rig = await start_rig()
    miss = await rig.stub.Complete(request(HAIKU))
    hits = [await rig.stub.Complete(request(HAIKU)) for _ in range(3)]
    hits.append(await rig.stub.Complete(request(HAIKU, request_id="mine-1")))
    spec = pb.BudgetSpec(
        id="acme", scope="tenant:acme", window=pb.BUDGET_WINDOW_MONTH, limit_nanousd=10**9
    )
    await rig.stub.SetBudget(pb.SetBudgetRequest(budget=spec))
    hits.append(await rig.stub.Complete(request(HAIKU)))
    await rig.stub.DeleteBudget(pb.DeleteBudgetRequest(id="acme"))
    hits.append(await rig.stub.Complete(request(HAIKU)))

    assert len(rig.anthropic.requests) == 1
    ids = [h.request_id for h in hits]
    assert ids[3] == "mine-1"
    assert len({*ids, miss.request_id}) == len(hits) + 1
    for fresh in ids[:3] + ids[4:]:
        assert re.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", fresh
        )
    assert [[b.budget_id for b in h.budgets] for h in hits] == [[], [], [], [], ["acme"], []]
    assert hits[4].budgets[0].remaining_nanousd == 10**9  # set after the miss: a hit spends 0
    for hit in hits:
        assert hit.served_by.cache_status == pb.CACHE_STATUS_EXACT
        same = pb.CompleteResponse()
        same.CopyFrom(hit)
        same.request_id = hits[0].request_id
        del same.budgets[:]
        assert same == hits[0]  # everything but the id and the budgets is the same answer
    assert rig.app.ledger is not None and rig.app.ledger.flush(timeout_s=30)
    recorded = {r.request_id: r for r in rig.app.ledger.records()}
    assert set(recorded) == set(ids) | {miss.request_id}
    assert all(recorded[i].cache_status == "exact" and recorded[i].cost_nanousd == 0 for i in ids)
    assert all(recorded[i].saved_response_cache == miss.cost_nanousd for i in ids)
