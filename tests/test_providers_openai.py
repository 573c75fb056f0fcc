"""``OpenAICompatProvider`` (kinds openai, openai_compatible, vllm) against the OpenAI and
vLLM emulators, through the real ``openai`` SDK; the wire is checked in the request logs."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from skinflint.call import (
    Attribution,
    Call,
    GenerationParams,
    ImagePart,
    Message,
    ModelKind,
    ModelSpec,
    Part,
    ResponseFormat,
    ResponseFormatType,
    Role,
    SystemBlock,
    TextPart,
    Tool,
    ToolChoice,
    ToolChoiceMode,
    ToolResultPart,
    ToolUsePart,
)
from skinflint.emulators import Fault, ManualClock, OpenAIEmulator, VLLMEmulator
from skinflint.emulators.common import key_id
from skinflint.errors import ProviderNotConfigured
from skinflint.providers.base import (
    CachePlan,
    FailureKind,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    StopReason,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolUseDelta,
)
from skinflint.providers.openai_compat import NO_KEY, OpenAICompatProvider
from skinflint.providers.settings import ProviderSettings

MODEL = "gpt-4o-mini"
VLLM_MODEL = "emulated/llama-3-8b-instruct"
KEY = "sk-openai-provider-test-0123456789abcdef"
KEY_ENV = "SKINFLINT_TEST_OPENAI_KEY"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
LOOKUP = Tool(
    name="lookup",
    description="Look something up.",
    input_schema={
        "type": "object",
        "properties": {"q": {"type": "string"}, "limit": {"type": "integer"}},
        "required": ["q", "limit"],
    },
)


def user(*parts: Part | str) -> Message:
    return Message(Role.USER, tuple(TextPart(p) if isinstance(p, str) else p for p in parts))


def assistant(*parts: Part | str) -> Message:
    return Message(Role.ASSISTANT, tuple(TextPart(p) if isinstance(p, str) else p for p in parts))


def request(
    *messages: Message,
    system: Sequence[str] = (),
    max_tokens: int = 128,
    model: str = MODEL,
    cache_key: str | None = None,
    timeout_s: float | None = 30.0,
    **fields: Any,
) -> ProviderRequest:
    call = Call(
        model=ModelSpec(requested=f"openai/{model}", kind=ModelKind.PINNED),
        messages=messages or (user("What is the capital of France?"),),
        request_id="req-test",
        system=tuple(SystemBlock(text) for text in system),
        **fields,
    )
    return ProviderRequest(
        call=call,
        model=model,
        max_tokens=max_tokens,
        cache_plan=CachePlan(openai_cache_key=cache_key),
        timeout_s=timeout_s,
    )


@pytest.fixture
async def emu() -> AsyncIterator[OpenAIEmulator]:
    async with OpenAIEmulator(clock=ManualClock()) as emulator:
        yield emulator


def make_provider(
    emu: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> OpenAICompatProvider:
    monkeypatch.setenv(KEY_ENV, KEY)
    settings = ProviderSettings(
        kind="openai", base_url=emu.base_url + "/v1", api_key_env=KEY_ENV, **overrides
    )
    return OpenAICompatProvider("openai", settings)


@pytest.fixture
async def provider(
    emu: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[OpenAICompatProvider]:
    p = make_provider(emu, monkeypatch)
    yield p
    await p.aclose()


@pytest.fixture
async def vllm_emu() -> AsyncIterator[VLLMEmulator]:
    async with VLLMEmulator(model=VLLM_MODEL, enable_prompt_tokens_details=True) as emulator:
        yield emulator


@pytest.fixture
async def vllm(
    vllm_emu: VLLMEmulator, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[OpenAICompatProvider]:
    # A real OpenAI key in the environment must never be sent to a vLLM server.
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    p = OpenAICompatProvider(
        "vllm", ProviderSettings(kind="vllm", base_url=vllm_emu.base_url + "/v1")
    )
    yield p
    await p.aclose()


def vreq(*messages: Message, **fields: Any) -> ProviderRequest:
    fields.setdefault("model", VLLM_MODEL)
    return request(*messages, **fields)


async def collect(provider: Provider, req: ProviderRequest) -> list[StreamEvent]:
    return [event async for event in provider.stream(req)]


def reassemble(events: Sequence[StreamEvent]) -> tuple[Any, ...]:
    texts: dict[int, list[str]] = {}
    tools: dict[int, dict[str, Any]] = {}
    for event in events:
        if isinstance(event, TextDelta):
            texts.setdefault(event.index, []).append(event.text)
        elif isinstance(event, ToolUseDelta):
            slot = tools.setdefault(event.index, {"id": "", "name": "", "json": []})
            if event.id:
                slot["id"], slot["name"] = event.id, event.name
            slot["json"].append(event.partial_json)
    out: dict[int, Any] = {i: TextPart("".join(t)) for i, t in texts.items()}
    for i, slot in tools.items():
        raw = "".join(slot["json"])
        out[i] = ToolUsePart(slot["id"], slot["name"], json.loads(raw) if raw else {})
    return tuple(out[i] for i in sorted(out))


def end_of(events: Sequence[StreamEvent]) -> ProviderResponse:
    assert isinstance(events[-1], StreamEnd)
    assert not any(isinstance(e, StreamEnd) for e in events[:-1])
    return events[-1].response


# -- OpenAI round trips --------------------------------------------------------------------


async def test_text_round_trip(provider: OpenAICompatProvider, emu: OpenAIEmulator) -> None:
    assert isinstance(provider, Provider)
    response = await provider.complete(request())
    assert response.provider == "openai"
    assert response.content == (TextPart("Echo: What is the capital of France?"),)
    assert response.stop_reason is StopReason.END_TURN
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    entry = emu.requests.last
    assert response.request_id == entry.request_id
    assert entry.body["max_completion_tokens"] == 128
    assert "max_tokens" not in entry.body
    assert entry.header("x-stainless-retry-count") == "0"


async def test_system_multi_turn_and_params(
    provider: OpenAICompatProvider, emu: OpenAIEmulator
) -> None:
    req = request(
        user("Hello there"),
        assistant("Hi. How can I help?"),
        user("Tell me about the sea"),
        system=["You are terse.", "Answer in English."],
        params=GenerationParams(
            temperature=0.3,
            top_p=0.8,
            top_k=40,
            seed=11,
            presence_penalty=0.1,
            frequency_penalty=0.2,
            thinking_budget_tokens=2048,
            provider_params={"service_tier": "default", "temperature": 0.5},
        ),
        attribution=Attribution(tenant="acme", user="user-42"),
    )
    response = await provider.complete(req)
    assert response.content == (TextPart("Echo: Tell me about the sea"),)
    body = emu.requests.last.body
    assert body["messages"] == [
        {"role": "system", "content": "You are terse.\n\nAnswer in English."},
        {"role": "user", "content": [{"type": "text", "text": "Hello there"}]},
        {"role": "assistant", "content": "Hi. How can I help?"},
        {"role": "user", "content": [{"type": "text", "text": "Tell me about the sea"}]},
    ]
    assert body["temperature"] == 0.5  # provider_params win
    assert body["top_p"] == 0.8
    assert body["seed"] == 11
    assert body["presence_penalty"] == 0.1
    assert body["frequency_penalty"] == 0.2
    assert body["service_tier"] == "default"
    # Attribution stays local; no OpenAI top_k or thinking budget.
    for absent in ("user", "safety_identifier", "top_k", "thinking", "prompt_cache_key"):
        assert absent not in body


async def test_forced_tool_call_then_tool_result_turn(
    provider: OpenAICompatProvider, emu: OpenAIEmulator
) -> None:
    question = user("find cats")
    first = await provider.complete(
        request(question, tools=(LOOKUP,), tool_choice=ToolChoice(ToolChoiceMode.TOOL, "lookup"))
    )
    assert first.stop_reason is StopReason.TOOL_USE
    call = first.content[-1]
    assert isinstance(call, ToolUsePart)
    assert call.name == "lookup"
    assert isinstance(call.input["q"], str) and isinstance(call.input["limit"], int)
    body = emu.requests.last.body
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look something up.",
                "parameters": {
                    "type": "object",
                    "properties": {"q": {"type": "string"}, "limit": {"type": "integer"}},
                    "required": ["q", "limit"],
                },
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}

    second = await provider.complete(
        request(
            question,
            assistant(*first.content),
            user(ToolResultPart(tool_use_id=call.id, content="3 cats found"), "Summarize."),
            tools=(LOOKUP,),
            tool_choice=ToolChoice(ToolChoiceMode.AUTO),
        )
    )
    assert second.stop_reason is StopReason.END_TURN
    assert second.content == (TextPart("Echo: Summarize."),)
    sent = emu.requests.last.body["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": "lookup", "arguments": json.dumps(dict(call.input))},
            }
        ],
    }
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "3 cats found"}
    assert sent[3] == {"role": "user", "content": [{"type": "text", "text": "Summarize."}]}
    assert emu.requests.last.body["tool_choice"] == "auto"


async def test_any_tool_is_required(provider: OpenAICompatProvider, emu: OpenAIEmulator) -> None:
    response = await provider.complete(
        request(user("x"), tools=(LOOKUP,), tool_choice=ToolChoice(ToolChoiceMode.ANY))
    )
    assert response.stop_reason is StopReason.TOOL_USE
    assert emu.requests.last.body["tool_choice"] == "required"


async def test_images_as_data_and_plain_urls(
    provider: OpenAICompatProvider, emu: OpenAIEmulator
) -> None:
    response = await provider.complete(
        request(
            user(
                ImagePart(media_type="image/png", data=PNG),
                ImagePart(media_type="image/jpeg", url="https://example.com/cat.jpg"),
                "What is in these pictures?",
            )
        )
    )
    assert response.content == (TextPart("Echo: What is in these pictures?"),)
    content = emu.requests.last.body["messages"][0]["content"]
    encoded = base64.b64encode(PNG).decode()
    assert content[0] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{encoded}"},
    }
    assert content[1] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}


async def test_stop_sequences_and_max_tokens(
    provider: OpenAICompatProvider, emu: OpenAIEmulator
) -> None:
    prompt = user("alpha beta gamma delta epsilon")
    stopped = await provider.complete(
        request(prompt, params=GenerationParams(stop_sequences=("gamma",)))
    )
    # OpenAI says "stop" for a stop sequence too: it reads as END_TURN.
    assert stopped.stop_reason is StopReason.END_TURN
    assert stopped.content == (TextPart("Echo: alpha beta "),)
    assert emu.requests.last.body["stop"] == ["gamma"]

    cut = await provider.complete(request(prompt, max_tokens=3))
    assert cut.stop_reason is StopReason.MAX_TOKENS
    assert cut.usage.output_tokens == 3


async def test_json_object_and_json_schema(
    provider: OpenAICompatProvider, emu: OpenAIEmulator
) -> None:
    as_json = await provider.complete(
        request(
            user("answer in json"),
            params=GenerationParams(response_format=ResponseFormat(ResponseFormatType.JSON_OBJECT)),
        )
    )
    (part,) = as_json.content
    assert isinstance(part, TextPart) and isinstance(json.loads(part.text), dict)
    assert emu.requests.last.body["response_format"] == {"type": "json_object"}

    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    fmt = ResponseFormat(ResponseFormatType.JSON_SCHEMA, name="person", schema=schema, strict=True)
    person = await provider.complete(
        request(user("a person"), params=GenerationParams(response_format=fmt))
    )
    (part,) = person.content
    assert isinstance(part, TextPart) and set(json.loads(part.text)) == {"name", "age"}
    assert emu.requests.last.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "person", "strict": True, "schema": schema},
    }


async def test_reasoning_effort_and_reasoning_tokens(
    provider: OpenAICompatProvider, emu: OpenAIEmulator
) -> None:
    response = await provider.complete(
        request(user("Prove it"), model="gpt-5", params=GenerationParams(reasoning_effort="low"))
    )
    assert emu.requests.last.body["reasoning_effort"] == "low"
    assert 0 < response.usage.reasoning_tokens < response.usage.output_tokens


async def test_cached_tokens_with_a_prompt_cache_key(
    provider: OpenAICompatProvider, emu: OpenAIEmulator
) -> None:
    req = request(system=[" lorem" * 1300], cache_key="tenant-acme")
    first = await provider.complete(req)
    second = await provider.complete(req)
    assert emu.requests.last.body["prompt_cache_key"] == "tenant-acme"
    assert first.usage.cache_read_tokens == 0
    assert second.usage.cache_read_tokens >= 1024
    # cached_tokens is a subset of prompt_tokens: never billed twice.
    assert second.usage.prompt_tokens == first.usage.prompt_tokens
    assert second.usage.input_tokens == first.usage.prompt_tokens - second.usage.cache_read_tokens
    other_key = await provider.complete(request(system=[" lorem" * 1300], cache_key="tenant-other"))
    assert other_key.usage.cache_read_tokens == 0


# -- OpenAI streaming ----------------------------------------------------------------------


async def test_stream_reassembles_to_the_non_streaming_answer(
    provider: OpenAICompatProvider, emu: OpenAIEmulator
) -> None:
    req = request(user("one two three four five six seven"), system=["Be brief."])
    plain = await provider.complete(req)
    events = await collect(provider, req)
    assert sum(isinstance(e, TextDelta) for e in events) > 1
    end = end_of(events)
    assert reassemble(events[:-1]) == plain.content == end.content
    assert end.stop_reason is plain.stop_reason
    assert end.usage == plain.usage
    assert end.request_id == emu.requests.last.request_id
    assert emu.requests.last.body["stream_options"] == {"include_usage": True}


async def test_stream_tool_call_deltas(provider: OpenAICompatProvider) -> None:
    req = request(
        user("weather in Oslo"), tools=(LOOKUP,), tool_choice=ToolChoice(ToolChoiceMode.ANY)
    )
    plain = await provider.complete(req)
    events = await collect(provider, req)
    firsts = [e for e in events if isinstance(e, ToolUseDelta) and e.id]
    assert len(firsts) == 1 and firsts[0].name == "lookup"
    end = end_of(events)
    assert end.stop_reason is StopReason.TOOL_USE
    assert reassemble(events[:-1]) == end.content
    assert end.content[-1].input == plain.content[-1].input  # type: ignore[union-attr]


@pytest.mark.parametrize("abort", [True, False])
async def test_cut_stream_raises_stream_cut(
    provider: OpenAICompatProvider, emu: OpenAIEmulator, abort: bool
) -> None:
    emu.faults.add(Fault(stream_cut_after=3, cut_abort=abort))
    seen: list[StreamEvent] = []
    with pytest.raises(ProviderError) as info:
        async for event in provider.stream(request(user("one two three four five six"))):
            seen.append(event)
    assert info.value.kind is FailureKind.STREAM_CUT
    assert not any(isinstance(e, StreamEnd) for e in seen)


async def test_in_stream_error_raises(provider: OpenAICompatProvider, emu: OpenAIEmulator) -> None:
    emu.faults.add(Fault(stream_error_after=2))
    with pytest.raises(ProviderError) as info:
        await collect(provider, request())
    assert info.value.kind is FailureKind.STREAM_CUT
    assert info.value.attempt_retryable
    assert info.value.status is None  # it came after a 200


# -- OpenAI errors -------------------------------------------------------------------------


async def test_rate_limit_with_retry_after_is_not_retried_by_the_sdk(
    provider: OpenAICompatProvider, emu: OpenAIEmulator
) -> None:
    emu.faults.add(Fault(status=429, retry_after=2))
    with pytest.raises(ProviderError) as info:
        await provider.complete(request())
    err = info.value
    assert err.kind is FailureKind.RATE_LIMITED
    assert err.retry_after_s == 2.0
    assert err.request_id == emu.requests.last.request_id
    assert len(emu.requests) == 1


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (503, FailureKind.OVERLOADED),
        (529, FailureKind.OVERLOADED),
        (500, FailureKind.SERVER),
        (408, FailureKind.TIMEOUT),
        (422, FailureKind.INVALID),
    ],
)
async def test_status_maps_to_kind(
    provider: OpenAICompatProvider, emu: OpenAIEmulator, status: int, kind: FailureKind
) -> None:
    emu.faults.add(Fault(status=status))
    with pytest.raises(ProviderError) as info:
        await provider.complete(request())
    assert info.value.kind is kind
    assert info.value.status == status
    assert len(emu.requests) == 1


async def test_unknown_model_is_invalid(provider: OpenAICompatProvider) -> None:
    with pytest.raises(ProviderError) as info:
        await provider.complete(request(model="no-such-model"))
    assert info.value.kind is FailureKind.INVALID
    assert info.value.status == 404


async def test_wrong_key_is_auth_and_never_shows_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    async with OpenAIEmulator(api_keys={"sk-the-right-one": "org"}) as emulator:
        provider = make_provider(emulator, monkeypatch)
        try:
            with pytest.raises(ProviderError) as info:
                await provider.complete(request())
        finally:
            await provider.aclose()
    err = info.value
    assert err.kind is FailureKind.AUTH and err.status == 401
    for text in (str(err), repr(err), repr(provider), str(err.args)):
        assert KEY not in text
        assert KEY[:12] not in text


async def test_missing_key_fails_at_call_time_naming_the_variable(
    emu: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    provider = OpenAICompatProvider(
        "openai", ProviderSettings(kind="openai", base_url=emu.base_url + "/v1")
    )
    with pytest.raises(ProviderNotConfigured) as info:
        await provider.complete(request())
    assert "OPENAI_API_KEY" in str(info.value)
    assert len(emu.requests) == 0


async def test_openai_compatible_endpoint_by_config(
    emu: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKINFLINT_TEST_GROQ_KEY", KEY)
    settings = ProviderSettings(
        kind="openai_compatible",
        base_url=emu.base_url + "/v1",
        api_key_env="SKINFLINT_TEST_GROQ_KEY",
        default_headers={"X-Title": "skinflint"},
    )
    provider = OpenAICompatProvider("groq", settings)
    try:
        response = await provider.complete(request(cache_key="ignored"))
    finally:
        await provider.aclose()
    assert response.provider == "groq"
    entry = emu.requests.last
    assert entry.body["max_tokens"] == 128
    assert "max_completion_tokens" not in entry.body
    assert "prompt_cache_key" not in entry.body
    assert entry.header("x-title") == "skinflint"


# -- vLLM ----------------------------------------------------------------------------------


async def test_vllm_works_without_a_key(vllm: OpenAICompatProvider, vllm_emu: VLLMEmulator) -> None:
    response = await vllm.complete(vreq(params=GenerationParams(top_k=20)))
    assert response.provider == "vllm"
    assert response.content == (TextPart("Echo: What is the capital of France?"),)
    assert response.stop_reason is StopReason.END_TURN
    entry = vllm_emu.requests.last
    assert entry.body["max_tokens"] == 128
    assert entry.body["top_k"] == 20
    # The placeholder, never the OPENAI_API_KEY from the environment.
    assert entry.key_id == key_id(NO_KEY)
    assert entry.key_id != key_id(KEY)


async def test_vllm_prefix_cache_usage(vllm: OpenAICompatProvider) -> None:
    req = vreq(system=[" ".join(["rule"] * 200)])
    first = await vllm.complete(req)
    second = await vllm.complete(vreq(user("Other?"), system=[" ".join(["rule"] * 200)]))
    assert first.usage.cache_read_tokens == 0
    assert second.usage.cache_read_tokens > 0
    assert second.usage.cache_read_tokens % 16 == 0


async def test_vllm_stream_and_tools(vllm: OpenAICompatProvider) -> None:
    req = vreq(user("one two three four"))
    plain = await vllm.complete(req)
    events = await collect(vllm, req)
    end = end_of(events)
    assert reassemble(events[:-1]) == plain.content == end.content
    # The second run reads vLLM's prefix cache, so only the totals match.
    assert end.usage.prompt_tokens == plain.usage.prompt_tokens
    assert end.usage.output_tokens == plain.usage.output_tokens
    assert end.usage.cache_read_tokens > 0
    tool = await vllm.complete(
        vreq(user("find"), tools=(LOOKUP,), tool_choice=ToolChoice(ToolChoiceMode.ANY))
    )
    assert tool.stop_reason is StopReason.TOOL_USE


async def test_vllm_errors(vllm: OpenAICompatProvider, vllm_emu: VLLMEmulator) -> None:
    with pytest.raises(ProviderError) as info:
        await vllm.complete(vreq(model="other"))
    assert info.value.kind is FailureKind.INVALID and info.value.status == 404
    vllm_emu.faults.add(Fault(status=503, retry_after=1))
    with pytest.raises(ProviderError) as info:
        await vllm.complete(vreq())
    assert info.value.kind is FailureKind.OVERLOADED
    assert info.value.retry_after_s == 1.0


async def test_vllm_with_a_configured_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKINFLINT_TEST_VLLM_KEY", "vllm-secret")
    async with VLLMEmulator(model=VLLM_MODEL, api_key="vllm-secret") as emulator:
        settings = ProviderSettings(
            kind="vllm", base_url=emulator.base_url + "/v1", api_key_env="SKINFLINT_TEST_VLLM_KEY"
        )
        provider = OpenAICompatProvider("vllm", settings)
        try:
            response = await provider.complete(vreq())
        finally:
            await provider.aclose()
    assert response.stop_reason is StopReason.END_TURN


async def test_vllm_in_stream_error_uses_its_integer_code(
    vllm: OpenAICompatProvider, vllm_emu: VLLMEmulator
) -> None:
    vllm_emu.faults.add(Fault(stream_error_after=1))
    with pytest.raises(ProviderError) as info:
        await collect(vllm, vreq())
    assert info.value.kind is FailureKind.SERVER
    assert info.value.attempt_retryable
