"""The gRPC service end to end: a real server on 127.0.0.1 (port 0), a real aio channel.

No RPC's feature is built yet, so a valid request must answer UNIMPLEMENTED naming what is
missing, and an invalid one INVALID_ARGUMENT naming the field (message and BadRequest), and
invalid must win over unimplemented.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from conftest import Sidecar, SidecarFactory, bad_request, complete_request, rich_status
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from skinflint.v1 import skinflint_pb2 as pb

SERVICE = "skinflint.v1.Skinflint"


async def test_health_is_serving(sidecar: Sidecar) -> None:
    for service in ("", SERVICE):
        answer = await sidecar.health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_of_unknown_service_is_not_found(sidecar: Sidecar) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await sidecar.health.Check(health_pb2.HealthCheckRequest(service="nope.v1.Nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_service(sidecar: Sidecar) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(sidecar.channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = set()
    async for answer in call:
        names |= {service.name for service in answer.list_services_response.service}
    assert SERVICE in names
    assert "grpc.health.v1.Health" in names


async def test_reflection_serves_the_file_descriptor(sidecar: Sidecar) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(sidecar.channel)
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)
    answers = [answer async for answer in stub.ServerReflectionInfo(iter([request]))]
    assert answers[0].file_descriptor_response.file_descriptor_proto


# ---------------------------------------------------------------------------------------------
# Valid input -> UNIMPLEMENTED, naming what is missing
# ---------------------------------------------------------------------------------------------

VALID_BUDGET = pb.BudgetSpec(
    id="search-daily",
    scope="team:search+feature:autocomplete",
    window=pb.BUDGET_WINDOW_DAY,
    limit_nanousd=5_000_000_000,
    soft_thresholds_percent=[50, 80, 100],
)
VALID_WORKLOAD = pb.WorkloadModel(
    features=[
        pb.FeatureWorkload(
            feature="qa",
            requests_per_month=100_000,
            avg_input_tokens=800,
            avg_output_tokens=200,
            tier_mix={"small": 0.7, "mid": 0.3},
            cache_hit_rate=0.2,
        )
    ],
    monthly_growth=0.58,
)

VALID: dict[str, tuple[Any, str]] = {
    # Complete is built: without a provider key it answers FAILED_PRECONDITION (below).
    "Complete": (complete_request(), ""),
    "Estimate": (
        pb.EstimateRequest(request=complete_request()),
        "cost estimation is not available in this build yet",
    ),
    "Submit": (
        pb.SubmitRequest(request=complete_request(), idempotency_key="k-1"),
        "the async lane is not available in this build yet",
    ),
    "GetJob": (pb.GetJobRequest(job_id="job-1"), "the async lane is not available"),
    "CancelJob": (pb.CancelJobRequest(job_id="job-1"), "the async lane is not available"),
    "GetBudget": (pb.GetBudgetRequest(id="search-daily"), "budgets are not available"),
    "SetBudget": (pb.SetBudgetRequest(budget=VALID_BUDGET), "budgets are not available"),
    "ListBudgets": (pb.ListBudgetsRequest(page_size=10), "budgets are not available"),
    "DeleteBudget": (pb.DeleteBudgetRequest(id="search-daily"), "budgets are not available"),
    "Project": (
        pb.ProjectRequest(workload=VALID_WORKLOAD, months=12),
        "cost projection is not available in this build yet",
    ),
}


def test_every_rpc_is_covered() -> None:
    methods = pb.DESCRIPTOR.services_by_name["Skinflint"].methods_by_name
    assert set(methods) == set(VALID) | {"CompleteStream"}


#: RPCs that are built (their end-to-end tests live with them: test_complete_*, test_budget_rpc).
BUILT = {"Complete", "Estimate", "GetBudget", "SetBudget", "ListBudgets", "DeleteBudget", "Project"}


@pytest.mark.parametrize("rpc", sorted(set(VALID) - BUILT))
async def test_valid_request_is_unimplemented_naming_the_feature(
    sidecar: Sidecar, rpc: str
) -> None:
    request, missing = VALID[rpc]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await getattr(sidecar.stub, rpc)(request)
    error = info.value
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.details().startswith(f"{rpc}: ")
    assert missing in error.details()
    assert "the request was valid" in error.details()
    assert rich_status(error).code == grpc.StatusCode.UNIMPLEMENTED.value[0]


@pytest.fixture
def no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_provider_keys")
async def test_valid_request_without_provider_key_names_the_variable(sidecar: Sidecar) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await sidecar.stub.Complete(complete_request())
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "ANTHROPIC_API_KEY" in info.value.details()


@pytest.mark.usefixtures("no_provider_keys")
async def test_valid_stream_without_provider_key_sends_no_event(sidecar: Sidecar) -> None:
    call = sidecar.stub.CompleteStream(complete_request())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _event in call:
            pytest.fail("no event may be sent before a provider answered")
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "ANTHROPIC_API_KEY" in info.value.details()


# ---------------------------------------------------------------------------------------------
# Invalid input -> INVALID_ARGUMENT naming the field
# ---------------------------------------------------------------------------------------------


def _user(*parts: pb.ContentPart) -> pb.Message:
    return pb.Message(role=pb.ROLE_USER, content=list(parts))


def _text(text: str, **kwargs: Any) -> pb.ContentPart:
    return pb.ContentPart(text=pb.TextPart(text=text), **kwargs)


def _tool(name: str, schema: str = '{"type": "object"}', **kwargs: Any) -> pb.Tool:
    return pb.Tool(name=name, description="d", input_schema_json=schema, **kwargs)


def _call_turns(input_json: str) -> list[pb.Message]:
    return [
        _user(_text("look it up")),
        pb.Message(
            role=pb.ROLE_ASSISTANT,
            content=[
                pb.ContentPart(
                    tool_use=pb.ToolUsePart(id="t1", name="lookup", input_json=input_json)
                )
            ],
        ),
    ]


_5M = pb.CacheBreakpoint(ttl=pb.CacheBreakpoint.TTL_5M)

#: name -> (request, field path in the message and the BadRequest, a phrase of the reason)
INVALID_COMPLETE: dict[str, tuple[pb.CompleteRequest, str, str]] = {
    "model missing": (complete_request(model=""), "model", "required"),
    "model unknown form": (complete_request(model="gpt-4o"), "model", "provider/model"),
    "model bad provider": (complete_request(model="Open AI/gpt-4o"), "model", "provider"),
    "model no name": (complete_request(model="openai/"), "model", "model name"),
    "messages empty": (complete_request(messages=[]), "messages", "at least one message"),
    "role unspecified": (
        complete_request(messages=[pb.Message(role=pb.ROLE_UNSPECIFIED, content=[_text("hi")])]),
        "messages[0].role",
        "ROLE_UNSPECIFIED",
    ),
    "role unknown": (
        complete_request(messages=[_user(_text("hi")), pb.Message(role=7, content=[_text("x")])]),
        "messages[1].role",
        "unknown value 7",
    ),
    "first turn assistant": (
        complete_request(messages=[pb.Message(role=pb.ROLE_ASSISTANT, content=[_text("hi")])]),
        "messages[0].role",
        "first message must be a user turn",
    ),
    "message without parts": (
        complete_request(messages=[_user()]),
        "messages[0].content",
        "at least one content part",
    ),
    "part without oneof": (
        complete_request(messages=[_user(pb.ContentPart())]),
        "messages[0].content[0]",
        "no part set",
    ),
    "empty text": (
        complete_request(messages=[_user(_text("   "))]),
        "messages[0].content[0].text.text",
        "empty",
    ),
    "image media type": (
        complete_request(
            messages=[_user(pb.ContentPart(image=pb.ImagePart(media_type="image/bmp", data=b"x")))]
        ),
        "messages[0].content[0].image.media_type",
        "image/png",
    ),
    "image without source": (
        complete_request(
            messages=[_user(pb.ContentPart(image=pb.ImagePart(media_type="image/png")))]
        ),
        "messages[0].content[0].image",
        "no source",
    ),
    "image plain http": (
        complete_request(
            messages=[
                _user(
                    pb.ContentPart(
                        image=pb.ImagePart(media_type="image/png", url="http://example.com/a.png")
                    )
                )
            ]
        ),
        "messages[0].content[0].image.url",
        "https://",
    ),
    "tool input not an object": (
        complete_request(messages=_call_turns("[1, 2]")),
        "messages[1].content[0].tool_use.input_json",
        "not a JSON object (got a list); send the arguments as a JSON object",
    ),
    "tool input not JSON": (
        complete_request(messages=_call_turns("{id: 42}")),
        "messages[1].content[0].tool_use.input_json",
        "not valid JSON",
    ),
    "tool use in a user turn": (
        complete_request(
            messages=[
                _user(
                    pb.ContentPart(tool_use=pb.ToolUsePart(id="t1", name="lookup", input_json="{}"))
                )
            ]
        ),
        "messages[0].content[0].tool_use",
        "assistant turns",
    ),
    "tool result for no call": (
        complete_request(
            messages=[
                _user(
                    pb.ContentPart(tool_result=pb.ToolResultPart(tool_use_id="nope", content="42"))
                )
            ]
        ),
        "messages[0].content[0].tool_result.tool_use_id",
        "not the id of any earlier tool_use",
    ),
    "tool schema not an object": (
        complete_request(tools=[_tool("lookup", '"string"')]),
        "tools[0].input_schema_json",
        "not a JSON object (got a string)",
    ),
    "tool schema type array": (
        complete_request(tools=[_tool("lookup", '{"type": "array"}')]),
        "tools[0].input_schema_json",
        '"type": "object"',
    ),
    "duplicate tool names": (
        complete_request(tools=[_tool("lookup"), _tool("lookup")]),
        "tools[1].name",
        "duplicate tool name",
    ),
    "tool name with spaces": (
        complete_request(tools=[_tool("look up")]),
        "tools[0].name",
        "letters, digits",
    ),
    "tool choice names an unknown tool": (
        complete_request(
            tools=[_tool("lookup")],
            tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_TOOL, name="search"),
        ),
        "tool_choice.name",
        '"search" is not one of the request\'s tools (lookup)',
    ),
    "tool choice any without tools": (
        complete_request(tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_ANY)),
        "tool_choice.mode",
        "needs at least one tool",
    ),
    "max_tokens zero": (
        complete_request(params=pb.GenerationParams(max_tokens=0)),
        "params.max_tokens",
        "must be between 1 and",
    ),
    "max_tokens negative": (
        complete_request(params=pb.GenerationParams(max_tokens=-5)),
        "params.max_tokens",
        "(got -5)",
    ),
    "temperature above 2": (
        complete_request(params=pb.GenerationParams(temperature=2.5)),
        "params.temperature",
        "[0, 2]",
    ),
    "temperature NaN": (
        complete_request(params=pb.GenerationParams(temperature=float("nan"))),
        "params.temperature",
        "nan",
    ),
    "top_p zero": (
        complete_request(params=pb.GenerationParams(top_p=0.0)),
        "params.top_p",
        "(0, 1]",
    ),
    "json schema missing": (
        complete_request(
            params=pb.GenerationParams(
                response_format=pb.ResponseFormat(type=pb.ResponseFormat.TYPE_JSON_SCHEMA)
            )
        ),
        "params.response_format.schema_json",
        "required",
    ),
    "provider params not an object": (
        complete_request(params=pb.GenerationParams(provider_params_json="3")),
        "params.provider_params_json",
        "not a JSON object (got a number)",
    ),
    "provider params duplicate key": (
        complete_request(params=pb.GenerationParams(provider_params_json='{"a": 1, "a": 2}')),
        "params.provider_params_json",
        "duplicate key",
    ),
    "reasoning effort unknown": (
        complete_request(params=pb.GenerationParams(reasoning_effort="max")),
        "params.reasoning_effort",
        "minimal, low, medium, high",
    ),
    "thinking budget above max_tokens": (
        complete_request(params=pb.GenerationParams(max_tokens=100, thinking_budget_tokens=100)),
        "params.thinking_budget_tokens",
        "less than params.max_tokens",
    ),
    "request id too long": (complete_request(request_id="r" * 129), "request_id", "at most 128"),
    "too many labels": (
        complete_request(labels={f"k{i}": "v" for i in range(33)}),
        "labels",
        "at most 32 labels",
    ),
    "five caller breakpoints": (
        complete_request(
            system=[pb.SystemBlock(text=f"block {i}", cache_breakpoint=_5M) for i in range(5)]
        ),
        "system[4].cache_breakpoint",
        "at most 4 caller cache breakpoints",
    ),
    "breakpoint ttl unknown": (
        complete_request(
            system=[pb.SystemBlock(text="s", cache_breakpoint=pb.CacheBreakpoint(ttl=9))]
        ),
        "system[0].cache_breakpoint.ttl",
        "unknown value 9",
    ),
    "empty system block": (
        complete_request(system=[pb.SystemBlock(text="")]),
        "system[0].text",
        "empty",
    ),
    "tenant with a colon": (
        complete_request(attribution=pb.Attribution(tenant="acme:eu")),
        "attribution.tenant",
        "letters, digits",
    ),
    "min tier above max tier": (
        complete_request(policy=pb.Policy(min_tier=pb.TIER_FRONTIER, max_tier=pb.TIER_SMALL)),
        "policy.min_tier",
        "TIER_FRONTIER is above policy.max_tier TIER_SMALL",
    ),
    "unknown task type": (
        complete_request(policy=pb.Policy(task_type="poetry")),
        "policy.task_type",
        "classification",
    ),
    "negative cost ceiling": (
        complete_request(policy=pb.Policy(max_cost_nanousd=-1)),
        "policy.max_cost_nanousd",
        "negative",
    ),
}


async def _invalid(call: Callable[[], Any], field: str, phrase: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call()
    error = info.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details().startswith(f"{field}: "), error.details()
    assert phrase in error.details()
    violations = bad_request(error).field_violations
    assert [v.field for v in violations] == [field]
    assert error.details() == f"{field}: {violations[0].description}"


@pytest.mark.parametrize("case", sorted(INVALID_COMPLETE))
async def test_invalid_complete(sidecar: Sidecar, case: str) -> None:
    request, field, phrase = INVALID_COMPLETE[case]
    await _invalid(lambda: sidecar.stub.Complete(request), field, phrase)


@pytest.mark.parametrize("case", ["messages empty", "max_tokens negative", "role unknown"])
async def test_invalid_nested_requests_name_the_nested_path(sidecar: Sidecar, case: str) -> None:
    request, field, phrase = INVALID_COMPLETE[case]
    await _invalid(
        lambda: sidecar.stub.Estimate(pb.EstimateRequest(request=request)),
        f"request.{field}",
        phrase,
    )
    await _invalid(
        lambda: sidecar.stub.Submit(pb.SubmitRequest(request=request)), f"request.{field}", phrase
    )


async def test_invalid_stream_gets_invalid_argument_before_any_event(sidecar: Sidecar) -> None:
    request, field, phrase = INVALID_COMPLETE["role unspecified"]

    async def read_all() -> None:
        async for _event in sidecar.stub.CompleteStream(request):
            pytest.fail("no event for an invalid request")

    await _invalid(read_all, field, phrase)


def _spec(**fields: Any) -> pb.BudgetSpec:
    spec = pb.BudgetSpec()
    spec.CopyFrom(VALID_BUDGET)
    for name, value in fields.items():
        spec.ClearField(name)
        if isinstance(value, list):
            getattr(spec, name).extend(value)
        else:
            setattr(spec, name, value)
    return spec


def _workload(**fields: Any) -> pb.ProjectRequest:
    feature = pb.FeatureWorkload()
    feature.CopyFrom(VALID_WORKLOAD.features[0])
    for name, value in fields.items():
        feature.ClearField(name)
        if isinstance(value, dict):
            getattr(feature, name).update(value)
        else:
            setattr(feature, name, value)
    return pb.ProjectRequest(workload=pb.WorkloadModel(features=[feature]))


#: name -> (rpc, request, field, phrase)
INVALID_OTHER: dict[str, tuple[str, Any, str, str]] = {
    "estimate without request": ("Estimate", pb.EstimateRequest(), "request", "required"),
    "submit without request": ("Submit", pb.SubmitRequest(), "request", "required"),
    "submit on the interactive lane": (
        "Submit",
        pb.SubmitRequest(request=complete_request(policy=pb.Policy(lane=pb.LANE_INTERACTIVE))),
        "request.policy.lane",
        "async lane",
    ),
    "get job without id": ("GetJob", pb.GetJobRequest(), "job_id", "required"),
    "cancel job without id": ("CancelJob", pb.CancelJobRequest(), "job_id", "required"),
    "job id with spaces": ("GetJob", pb.GetJobRequest(job_id="job 1"), "job_id", "visible ASCII"),
    "get budget without id": ("GetBudget", pb.GetBudgetRequest(), "id", "required"),
    "budget id uppercase": ("DeleteBudget", pb.DeleteBudgetRequest(id="Daily"), "id", "lowercase"),
    "set budget without spec": ("SetBudget", pb.SetBudgetRequest(), "budget", "required"),
    "budget scope unknown kind": (
        "SetBudget",
        pb.SetBudgetRequest(budget=_spec(scope="org:acme")),
        "budget.scope",
        'unknown kind "org"',
    ),
    "budget scope empty value": (
        "SetBudget",
        pb.SetBudgetRequest(budget=_spec(scope="team:")),
        "budget.scope",
        "needs a value",
    ),
    "budget scope repeated kind": (
        "SetBudget",
        pb.SetBudgetRequest(budget=_spec(scope="team:a+team:b")),
        "budget.scope",
        "appears twice",
    ),
    "budget without window": (
        "SetBudget",
        pb.SetBudgetRequest(budget=_spec(window=pb.BUDGET_WINDOW_UNSPECIFIED)),
        "budget.window",
        "BUDGET_WINDOW_MINUTE",
    ),
    "budget without limits": (
        "SetBudget",
        pb.SetBudgetRequest(budget=_spec(limit_nanousd=0)),
        "budget.limit_nanousd",
        "at least one limit",
    ),
    "budget threshold zero": (
        "SetBudget",
        pb.SetBudgetRequest(budget=_spec(soft_thresholds_percent=[50, 0])),
        "budget.soft_thresholds_percent[1]",
        "between 1 and 100",
    ),
    "budget threshold above 100": (
        "SetBudget",
        pb.SetBudgetRequest(budget=_spec(soft_thresholds_percent=[101])),
        "budget.soft_thresholds_percent[0]",
        "(got 101)",
    ),
    "list page too large": (
        "ListBudgets",
        pb.ListBudgetsRequest(page_size=1001),
        "page_size",
        "at most 1000",
    ),
    "project without source": ("Project", pb.ProjectRequest(), "source", "required"),
    "project too many months": (
        "Project",
        pb.ProjectRequest(ledger=pb.LedgerHistory(last_days=30), months=61),
        "months",
        "between 1 and 60",
    ),
    "project hit rate above 1": (
        "Project",
        _workload(cache_hit_rate=1.5),
        "workload.features[0].cache_hit_rate",
        "[0, 1]",
    ),
    "project tier mix not summing to 1": (
        "Project",
        _workload(tier_mix={"small": 0.5, "mid": 0.3}),
        "workload.features[0].tier_mix",
        "sum to 1",
    ),
    "project unknown tier": (
        "Project",
        _workload(tier_mix={"huge": 1.0}),
        "workload.features[0].tier_mix['huge']",
        "unknown tier",
    ),
    "project ledger without days": (
        "Project",
        pb.ProjectRequest(ledger=pb.LedgerHistory()),
        "ledger.last_days",
        "between 1 and",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID_OTHER))
async def test_invalid_other_requests(sidecar: Sidecar, case: str) -> None:
    rpc, request, field, phrase = INVALID_OTHER[case]
    await _invalid(lambda: getattr(sidecar.stub, rpc)(request), field, phrase)


@pytest.mark.usefixtures("no_provider_keys")
async def test_oversized_request_names_size_limit_and_key(start_sidecar: SidecarFactory) -> None:
    side = await start_sidecar("server:\n  max_request_bytes: 2048\n")
    request = complete_request(messages=[_user(_text("x" * 4000))])
    size = request.ByteSize()
    await _invalid(lambda: side.stub.Complete(request), "request", f"serialized size {size} bytes")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await side.stub.Complete(request)
    assert "the limit of 2048 bytes" in info.value.details()
    assert "server.max_request_bytes" in info.value.details()
    # A request under the limit gets past the check (to the missing provider key).
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await side.stub.Complete(complete_request())
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_oversized_check_covers_every_rpc(start_sidecar: SidecarFactory) -> None:
    side = await start_sidecar("server:\n  max_request_bytes: 1024\n")
    big = pb.GetJobRequest(job_id="j" * 2000)
    await _invalid(lambda: side.stub.GetJob(big), "request", "exceeds the limit of 1024 bytes")
