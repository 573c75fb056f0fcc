"""Routing end to end: gRPC -> pipeline -> official SDKs -> emulators, for model ``auto`` with
the classifier and for cascade mode (each check that escalates, both attempts billed and
reserved). The emulator misbehaves on cue: ``Fault(reply="refusal" | "empty" |
"invalid_json")`` answers the next call badly (the cheap attempt); the escalation is normal."""

from __future__ import annotations

import json

import pytest
from complete_fixtures import RigFactory, hand_cost, request, uncached

from skinflint.emulators import Fault
from skinflint.v1 import skinflint_pb2 as pb

CASCADE = "features:\n  qa: {cascade: true, router_threshold: 1.0}\n"
HAIKU, OPUS = "anthropic/claude-haiku-4-5", "anthropic/claude-opus-4-6"


def usage_of(input_tokens: int, output_tokens: int) -> pb.Usage:
    return pb.Usage(input_tokens=input_tokens, output_tokens=output_tokens)


async def test_auto_follows_the_classifier_threshold(start_rig: RigFactory) -> None:
    rig = await start_rig("features:\n  qa: {router_threshold: 0.0}\n  cheap: {}\n")
    up = await rig.stub.Complete(request("auto"))
    assert up.served_by.tier == pb.TIER_FRONTIER
    assert up.served_by.model == "claude-opus-4-6"
    assert "> threshold 0.000 (features.qa.router_threshold" in up.served_by.route_reason
    stay = await rig.stub.Complete(
        request("auto", attribution=pb.Attribution(tenant="acme", feature="cheap"))
    )
    assert stay.served_by.tier == pb.TIER_SMALL
    assert "<= threshold" in stay.served_by.route_reason
    assert "(default; feature 'cheap')" in stay.served_by.route_reason


async def test_cascade_keeps_a_good_cheap_answer(start_rig: RigFactory) -> None:
    rig = await start_rig(CASCADE)
    response = await rig.stub.Complete(uncached(request("auto")))
    served = response.served_by
    assert (served.model, served.tier, served.attempts) == ("claude-haiku-4-5", pb.TIER_SMALL, 1)
    assert "cascade, tier 'small' first" in served.route_reason
    assert "cascade: the answer passed every check" in served.route_reason
    assert response.cost_nanousd == hand_cost(response.usage, HAIKU)
    assert len(rig.anthropic.requests) == 1


@pytest.mark.parametrize(
    ("kind", "check", "cheap_output"),
    [("refusal", "refusal (stop reason refusal)", 6), ("empty", "empty (no text", 1)],
)
async def test_cascade_escalates_and_bills_both_attempts(
    start_rig: RigFactory, kind: str, check: str, cheap_output: int
) -> None:
    rig = await start_rig(CASCADE)
    await rig.stub.SetBudget(
        pb.SetBudgetRequest(
            budget=pb.BudgetSpec(
                id="acme",
                scope="tenant:acme",
                window=pb.BUDGET_WINDOW_MONTH,
                limit_nanousd=10**9,
            )
        )
    )
    rig.anthropic.faults.add(Fault(reply=kind))  # type: ignore[arg-type]
    response = await rig.stub.Complete(uncached(request("auto")))
    served = response.served_by
    assert (served.model, served.tier, served.attempts) == ("claude-opus-4-6", pb.TIER_FRONTIER, 2)
    assert f"failed check {check}" in served.route_reason
    assert "cascade escalated to tier 'frontier'" in served.route_reason
    assert [e.body["model"] for e in rig.anthropic.requests] == [
        "claude-haiku-4-5",
        "claude-opus-4-6",
    ]
    # The strong answer alone, priced by hand (the same request pinned to opus) ...
    alone = await rig.stub.Complete(uncached(request(OPUS)))
    strong_cost = hand_cost(alone.usage, OPUS)
    # ... plus the cheap attempt: the same prompt, the emulator's scripted output tokens.
    cheap_usage = usage_of(alone.usage.input_tokens, cheap_output)
    cheap_cost = hand_cost(cheap_usage, HAIKU)
    assert response.cost_nanousd == strong_cost + cheap_cost
    assert response.usage.input_tokens == 2 * alone.usage.input_tokens
    assert response.usage.output_tokens == alone.usage.output_tokens + cheap_output
    assert f"that attempt cost {cheap_cost} nano-USD" in served.route_reason
    s = response.savings
    assert s.total_nanousd == response.baseline_cost_nanousd - response.cost_nanousd
    assert s.routing_nanousd + s.prompt_caching_nanousd == s.total_nanousd
    state = (await rig.stub.GetBudget(pb.GetBudgetRequest(id="acme"))).state
    assert state.reserved_nanousd == 0
    assert state.spent_nanousd == response.cost_nanousd + alone.cost_nanousd


async def test_cascade_escalates_a_truncated_answer(start_rig: RigFactory) -> None:
    rig = await start_rig(CASCADE)
    req = uncached(request("auto", "Tell me a long story about the sea and the ships on it."))
    req.params.max_tokens = 3
    response = await rig.stub.Complete(req)
    assert response.served_by.model == "claude-opus-4-6"
    assert "failed check truncated (stopped at max_tokens)" in response.served_by.route_reason
    # The escalation's answer is returned as it is (it is cut at max_tokens too).
    assert response.stop_reason == pb.STOP_REASON_MAX_TOKENS


async def test_cascade_escalates_an_answer_that_breaks_the_json_schema(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig(CASCADE)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    req = uncached(request("auto"))
    req.params.max_tokens = 200
    req.params.response_format.CopyFrom(
        pb.ResponseFormat(
            type=pb.ResponseFormat.TYPE_JSON_SCHEMA, name="answer", schema_json=json.dumps(schema)
        )
    )
    rig.anthropic.faults.add(Fault(reply="invalid_json"))
    response = await rig.stub.Complete(req)
    assert response.served_by.model == "claude-opus-4-6"
    assert "failed check schema (the answer is not JSON" in response.served_by.route_reason
    assert set(json.loads(response.content[0].text.text)) == {"city"}


async def test_cascade_reserves_both_attempts_or_runs_the_cheap_tier_alone(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig(CASCADE)
    # Room for the haiku worst case (~0.35 mUSD at 64 output tokens) but not haiku + opus.
    await rig.stub.SetBudget(
        pb.SetBudgetRequest(
            budget=pb.BudgetSpec(
                id="tight",
                scope="tenant:acme",
                window=pb.BUDGET_WINDOW_MONTH,
                limit_nanousd=1_000_000,
            )
        )
    )
    rig.anthropic.faults.add(Fault(reply="refusal"))
    response = await rig.stub.Complete(uncached(request("auto")))
    served = response.served_by
    assert served.model == "claude-haiku-4-5"
    assert "cascade off: the budget cannot hold both attempts" in served.route_reason
    assert response.stop_reason == pb.STOP_REASON_REFUSAL  # no escalation without the money
    state = (await rig.stub.GetBudget(pb.GetBudgetRequest(id="tight"))).state
    assert (state.spent_nanousd, state.reserved_nanousd) == (response.cost_nanousd, 0)


async def test_streams_on_a_cascade_feature_route_by_the_classifier(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig(CASCADE)
    items = [item async for item in rig.stub.CompleteStream(uncached(request("auto")))]
    started = items[0].started
    assert started.served_by.model == "claude-haiku-4-5"
    assert "cascade off for streams" in started.served_by.route_reason
