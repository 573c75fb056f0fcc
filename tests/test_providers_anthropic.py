"""``AnthropicProvider`` against the Anthropic emulator, through the real ``anthropic`` SDK.

Every test goes over HTTP to the emulator and reads back what it received (its request log),
so the translation is checked on the wire, not against a mock.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from skinflint.call import (
    Attribution,
    CacheTtl,
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
from skinflint.emulators import AnthropicEmulator, Fault, ManualClock
from skinflint.errors import InternalError, ProviderNotConfigured
from skinflint.providers.anthropic import JSON_OBJECT_INSTRUCTION, AnthropicProvider
from skinflint.providers.base import (
    Breakpoint,
    BreakpointSite,
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
from skinflint.providers.settings import ProviderSettings

MODEL = "claude-sonnet-4-6"  # minimum cacheable prompt: 1024 emulator tokens
KEY = "sk-ant-provider-test-0123456789abcdef"
KEY_ENV = "SKINFLINT_TEST_ANTHROPIC_KEY"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
WEATHER = Tool(
    name="weather",
    description="Current weather for a city.",
    input_schema={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)


def words(n: int, word: str = "lorem") -> str:
    return " ".join([word] * n)


def user(*parts: Part | str) -> Message:
    return Message(Role.USER, tuple(TextPart(p) if isinstance(p, str) else p for p in parts))


def assistant(*parts: Part | str) -> Message:
    return Message(Role.ASSISTANT, tuple(TextPart(p) if isinstance(p, str) else p for p in parts))


def request(
    *messages: Message,
    system: Sequence[str] = (),
    max_tokens: int = 128,
    breakpoints: Sequence[Breakpoint] = (),
    timeout_s: float | None = 30.0,
    model: str = MODEL,
    **fields: Any,
) -> ProviderRequest:
    call = Call(
        model=ModelSpec(requested=f"anthropic/{model}", kind=ModelKind.PINNED),
        messages=messages or (user("What is the capital of France?"),),
        request_id="req-test",
        system=tuple(SystemBlock(text) for text in system),
        **fields,
    )
    return ProviderRequest(
        call=call,
        model=model,
        max_tokens=max_tokens,
        cache_plan=CachePlan(breakpoints=tuple(breakpoints)),
        timeout_s=timeout_s,
    )


@pytest.fixture
async def emu() -> AsyncIterator[AnthropicEmulator]:
    async with AnthropicEmulator(clock=ManualClock()) as emulator:
        yield emulator


def make_provider(
    emu: AnthropicEmulator, monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> AnthropicProvider:
    monkeypatch.setenv(KEY_ENV, KEY)
    settings = ProviderSettings(
        kind="anthropic", base_url=emu.base_url, api_key_env=KEY_ENV, **overrides
    )
    return AnthropicProvider("anthropic", settings)


@pytest.fixture
async def provider(
    emu: AnthropicEmulator, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AnthropicProvider]:
    p = make_provider(emu, monkeypatch)
    yield p
    await p.aclose()


async def collect(provider: Provider, req: ProviderRequest) -> list[StreamEvent]:
    return [event async for event in provider.stream(req)]


def reassemble(events: Sequence[StreamEvent]) -> tuple[Any, ...]:
    """Content rebuilt from the deltas alone, as a client of the stream would."""
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


# -- round trips ---------------------------------------------------------------------------


async def test_text_round_trip(provider: AnthropicProvider, emu: AnthropicEmulator) -> None:
    assert isinstance(provider, Provider)
    response = await provider.complete(request())
    assert response.provider == "anthropic"
    assert response.model == MODEL
    assert response.content == (TextPart("Echo: What is the capital of France?"),)
    assert response.stop_reason is StopReason.END_TURN
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0
    assert response.usage.cache_write_tokens == response.usage.cache_read_tokens == 0
    entry = emu.requests.last
    assert response.request_id == entry.request_id
    assert entry.body["max_tokens"] == 128
    assert entry.header("x-stainless-retry-count") == "0"
    assert "system" not in entry.body
    assert "metadata" not in entry.body


async def test_system_multi_turn_params_and_metadata(
    provider: AnthropicProvider, emu: AnthropicEmulator
) -> None:
    req = request(
        user("Hello there"),
        assistant("Hi. How can I help?"),
        user("Tell me about", "the sea"),
        system=["You are terse.", "Answer in English."],
        params=GenerationParams(
            temperature=0.2,
            top_p=0.9,
            top_k=40,
            seed=7,
            presence_penalty=0.5,
            provider_params={"service_tier": "standard_only", "top_k": 5},
        ),
        attribution=Attribution(tenant="acme", user="user-42"),
    )
    response = await provider.complete(req)
    assert response.content == (TextPart("Echo: Tell me about the sea"),)
    body = emu.requests.last.body
    assert body["system"] == [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "Answer in English."},
    ]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hello there"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hi. How can I help?"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Tell me about"},
                {"type": "text", "text": "the sea"},
            ],
        },
    ]
    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.9
    assert body["top_k"] == 5  # provider_params win
    assert body["service_tier"] == "standard_only"
    assert body["metadata"] == {"user_id": "user-42"}
    # No Anthropic equivalent: not sent rather than failing the call.
    assert "seed" not in body
    assert "presence_penalty" not in body


async def test_forced_tool_call_then_tool_result_turn(
    provider: AnthropicProvider, emu: AnthropicEmulator
) -> None:
    question = user("What is the weather in Oslo?")
    first = await provider.complete(
        request(
            question,
            tools=(WEATHER,),
            tool_choice=ToolChoice(ToolChoiceMode.TOOL, name="weather"),
        )
    )
    assert first.stop_reason is StopReason.TOOL_USE
    call = first.content[-1]
    assert isinstance(call, ToolUsePart)
    assert call.name == "weather"
    assert isinstance(call.input["city"], str)
    body = emu.requests.last.body
    assert body["tools"] == [
        {
            "name": "weather",
            "description": "Current weather for a city.",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "weather"}

    second = await provider.complete(
        request(
            question,
            assistant(*first.content),
            user(ToolResultPart(tool_use_id=call.id, content="Sunny, 21 C")),
            tools=(WEATHER,),
            tool_choice=ToolChoice(ToolChoiceMode.NONE),
        )
    )
    assert second.stop_reason is StopReason.END_TURN
    assert all(isinstance(part, TextPart) for part in second.content)
    sent = emu.requests.last.body["messages"]
    assert sent[1]["content"][-1] == {
        "type": "tool_use",
        "id": call.id,
        "name": "weather",
        "input": dict(call.input),
    }
    assert sent[2]["content"] == [
        {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"}
    ]
    assert emu.requests.last.body["tool_choice"] == {"type": "none"}


async def test_images_inline_and_by_url(
    provider: AnthropicProvider, emu: AnthropicEmulator
) -> None:
    req = request(
        user(
            ImagePart(media_type="image/png", data=PNG),
            ImagePart(media_type="image/jpeg", url="https://example.com/cat.jpg"),
            "What is in these pictures?",
        )
    )
    response = await provider.complete(req)
    assert response.content == (TextPart("Echo: What is in these pictures?"),)
    assert response.usage.input_tokens > 2 * 1600  # the emulator's flat per-image count
    content = emu.requests.last.body["messages"][0]["content"]
    assert content[0] == {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": base64.b64encode(PNG).decode(),
        },
    }
    assert content[1] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
    }


async def test_stop_sequences_and_max_tokens(
    provider: AnthropicProvider, emu: AnthropicEmulator
) -> None:
    prompt = user("alpha beta gamma delta epsilon")
    stopped = await provider.complete(
        request(prompt, params=GenerationParams(stop_sequences=("delta",)))
    )
    assert stopped.stop_reason is StopReason.STOP_SEQUENCE
    assert stopped.content == (TextPart("Echo: alpha beta gamma "),)
    assert emu.requests.last.body["stop_sequences"] == ["delta"]

    cut = await provider.complete(request(prompt, max_tokens=3))
    assert cut.stop_reason is StopReason.MAX_TOKENS
    assert cut.usage.output_tokens == 3


async def test_json_schema_uses_structured_outputs(
    provider: AnthropicProvider, emu: AnthropicEmulator
) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    fmt = ResponseFormat(ResponseFormatType.JSON_SCHEMA, name="person", schema=schema, strict=True)
    response = await provider.complete(
        request(user("A person, please"), params=GenerationParams(response_format=fmt))
    )
    (part,) = response.content
    assert isinstance(part, TextPart)
    person = json.loads(part.text)
    assert set(person) == {"name", "age"}
    assert isinstance(person["age"], int)
    body = emu.requests.last.body
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "system" not in body


async def test_json_object_adds_a_trailing_system_instruction(
    provider: AnthropicProvider, emu: AnthropicEmulator
) -> None:
    fmt = ResponseFormat(ResponseFormatType.JSON_OBJECT)
    await provider.complete(
        request(
            system=["Be brief."],
            params=GenerationParams(response_format=fmt),
            breakpoints=[Breakpoint(BreakpointSite.SYSTEM, 0)],
        )
    )
    body = emu.requests.last.body
    assert body["system"] == [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "5m"}},
        {"type": "text", "text": JSON_OBJECT_INSTRUCTION},
    ]
    assert "output_config" not in body


async def test_thinking_budget_and_effort(
    provider: AnthropicProvider, emu: AnthropicEmulator
) -> None:
    params = GenerationParams(thinking_budget_tokens=1024, reasoning_effort="high")
    response = await provider.complete(request(max_tokens=2048, params=params))
    assert all(isinstance(part, TextPart) for part in response.content)
    body = emu.requests.last.body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert body["output_config"] == {"effort": "high"}


# -- prompt caching ------------------------------------------------------------------------


async def test_breakpoints_write_then_read_the_cache(provider: AnthropicProvider) -> None:
    req = request(
        system=[words(1500)],
        breakpoints=[Breakpoint(BreakpointSite.SYSTEM, 0, ttl=CacheTtl.ONE_HOUR)],
    )
    first = await provider.complete(req)
    second = await provider.complete(req)
    assert first.usage.cache_write_1h_tokens == 1500
    assert first.usage.cache_write_5m_tokens == 0
    assert first.usage.cache_read_tokens == 0
    assert second.usage.cache_read_tokens == 1500
    assert second.usage.cache_write_tokens == 0
    # Same prompt either way; Usage classes are disjoint (input excludes cached tokens).
    assert first.usage.prompt_tokens == second.usage.prompt_tokens
    assert second.usage.input_tokens == first.usage.input_tokens


async def test_no_breakpoints_no_cache(provider: AnthropicProvider, emu: AnthropicEmulator) -> None:
    req = request(system=[words(1500)])
    await provider.complete(req)
    again = await provider.complete(req)
    assert again.usage.cache_read_tokens == again.usage.cache_write_tokens == 0
    assert "cache_control" not in json.dumps(emu.requests.last.body)


async def test_cache_control_lands_on_exactly_the_planned_blocks(
    provider: AnthropicProvider, emu: AnthropicEmulator
) -> None:
    other = Tool(name="search", description="Search.", input_schema={"type": "object"})
    req = request(
        user("first question", words(1200, "ipsum")),
        assistant("an answer"),
        user("second question"),
        system=["System one.", words(300)],
        tools=(WEATHER, other),
        breakpoints=[
            Breakpoint(BreakpointSite.TOOL, 1, ttl=CacheTtl.ONE_HOUR),
            Breakpoint(BreakpointSite.SYSTEM, 1),
            Breakpoint(BreakpointSite.MESSAGE, 0, part=1),
            Breakpoint(BreakpointSite.MESSAGE, 2),
        ],
    )
    first = await provider.complete(req)
    body = emu.requests.last.body
    marked = []
    for i, tool in enumerate(body["tools"]):
        if "cache_control" in tool:
            marked.append(("tools", i, 0, tool["cache_control"]))
    for i, block in enumerate(body["system"]):
        if "cache_control" in block:
            marked.append(("system", i, 0, block["cache_control"]))
    for i, message in enumerate(body["messages"]):
        for j, block in enumerate(message["content"]):
            if "cache_control" in block:
                marked.append(("messages", i, j, block["cache_control"]))
    assert marked == [
        ("tools", 1, 0, {"type": "ephemeral", "ttl": "1h"}),
        ("system", 1, 0, {"type": "ephemeral", "ttl": "5m"}),
        ("messages", 0, 1, {"type": "ephemeral", "ttl": "5m"}),
        ("messages", 2, 0, {"type": "ephemeral", "ttl": "5m"}),
    ]
    # (The tools-only prefix is below the 1024-token minimum, so only later marks write.)
    assert first.usage.cache_write_tokens > 1200
    second = await provider.complete(req)
    assert second.usage.cache_read_tokens == first.usage.cache_write_tokens


async def test_a_breakpoint_outside_the_call_is_a_bug(provider: AnthropicProvider) -> None:
    with pytest.raises(InternalError, match="breakpoint"):
        await provider.complete(request(breakpoints=[Breakpoint(BreakpointSite.SYSTEM, 0)]))


# -- streaming -----------------------------------------------------------------------------


async def test_stream_reassembles_to_the_non_streaming_answer(
    provider: AnthropicProvider,
) -> None:
    req = request(user("one two three four five six seven"), system=["Be brief."])
    plain = await provider.complete(req)
    events = await collect(provider, req)
    assert sum(isinstance(e, TextDelta) for e in events) > 1  # really streamed in pieces
    end = end_of(events)
    assert reassemble(events[:-1]) == plain.content == end.content
    assert end.stop_reason is plain.stop_reason
    assert end.usage == plain.usage
    assert end.request_id is not None and end.request_id.startswith("req_")


async def test_stream_tool_call_deltas(provider: AnthropicProvider) -> None:
    req = request(
        user("weather in Paris"),
        tools=(WEATHER,),
        tool_choice=ToolChoice(ToolChoiceMode.ANY),
    )
    plain = await provider.complete(req)
    events = await collect(provider, req)
    firsts = [e for e in events if isinstance(e, ToolUseDelta) and e.id]
    assert len(firsts) == 1
    assert firsts[0].name == "weather"
    end = end_of(events)
    assert end.stop_reason is StopReason.TOOL_USE
    assert reassemble(events[:-1]) == end.content
    assert [type(p) for p in end.content] == [type(p) for p in plain.content]
    assert end.content[-1].input == plain.content[-1].input  # type: ignore[union-attr]


async def test_stream_with_cache_reports_cache_usage(provider: AnthropicProvider) -> None:
    req = request(system=[words(1500)], breakpoints=[Breakpoint(BreakpointSite.SYSTEM, 0)])
    first = end_of(await collect(provider, req))
    second = end_of(await collect(provider, req))
    assert first.usage.cache_write_5m_tokens == 1500
    assert second.usage.cache_read_tokens == 1500
    assert second.usage.output_tokens == first.usage.output_tokens > 1


@pytest.mark.parametrize("abort", [True, False])
async def test_cut_stream_raises_stream_cut(
    provider: AnthropicProvider, emu: AnthropicEmulator, abort: bool
) -> None:
    emu.faults.add(Fault(stream_cut_after=4, cut_abort=abort))
    seen: list[StreamEvent] = []
    with pytest.raises(ProviderError) as info:
        async for event in provider.stream(request()):
            seen.append(event)
    assert info.value.kind is FailureKind.STREAM_CUT
    assert info.value.attempt_retryable
    assert not any(isinstance(e, StreamEnd) for e in seen)


async def test_error_event_mid_stream_raises_its_kind(
    provider: AnthropicProvider, emu: AnthropicEmulator
) -> None:
    emu.faults.add(Fault(stream_error_after=3))
    with pytest.raises(ProviderError) as info:
        await collect(provider, request())
    assert info.value.kind is FailureKind.OVERLOADED
    assert info.value.status is None  # it came after a 200
    assert info.value.attempt_retryable
    assert "overloaded" in str(info.value)


async def test_stream_error_before_the_body(
    provider: AnthropicProvider, emu: AnthropicEmulator
) -> None:
    emu.faults.add(Fault(status=529))
    with pytest.raises(ProviderError) as info:
        await collect(provider, request())
    assert info.value.kind is FailureKind.OVERLOADED
    assert info.value.status == 529


# -- errors --------------------------------------------------------------------------------


async def test_rate_limit_with_retry_after_is_not_retried_by_the_sdk(
    provider: AnthropicProvider, emu: AnthropicEmulator
) -> None:
    emu.faults.add(Fault(status=429, retry_after=2))
    with pytest.raises(ProviderError) as info:
        await provider.complete(request())
    err = info.value
    assert err.kind is FailureKind.RATE_LIMITED
    assert err.status == 429
    assert err.retry_after_s == 2.0
    assert err.request_id == emu.requests.last.request_id
    assert err.provider == "anthropic" and err.model == MODEL
    assert len(emu.requests) == 1


async def test_retry_after_ms_wins_over_retry_after(
    provider: AnthropicProvider, emu: AnthropicEmulator
) -> None:
    emu.faults.add(Fault(status=429, retry_after=30, retry_after_ms=250))
    with pytest.raises(ProviderError) as info:
        await provider.complete(request())
    assert info.value.retry_after_s == 0.25


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (529, FailureKind.OVERLOADED),
        (503, FailureKind.OVERLOADED),
        (500, FailureKind.SERVER),
        (504, FailureKind.TIMEOUT),
        (403, FailureKind.AUTH),
        (413, FailureKind.INVALID),
    ],
)
async def test_status_maps_to_kind(
    provider: AnthropicProvider, emu: AnthropicEmulator, status: int, kind: FailureKind
) -> None:
    emu.faults.add(Fault(status=status))
    with pytest.raises(ProviderError) as info:
        await provider.complete(request())
    assert info.value.kind is kind
    assert info.value.status == status
    assert len(emu.requests) == 1


async def test_invalid_request_keeps_the_providers_reason(provider: AnthropicProvider) -> None:
    with pytest.raises(ProviderError) as info:
        await provider.complete(request(params=GenerationParams(temperature=1.5)))
    assert info.value.kind is FailureKind.INVALID
    assert not info.value.attempt_retryable
    assert "temperature" in str(info.value)
    assert "capital of France" not in str(info.value)  # never the prompt


async def test_wrong_key_is_auth_and_never_shows_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    async with AnthropicEmulator(api_keys={"sk-ant-the-right-one": "org"}) as emulator:
        provider = make_provider(emulator, monkeypatch)
        try:
            with pytest.raises(ProviderError) as info:
                await provider.complete(request())
        finally:
            await provider.aclose()
    err = info.value
    assert err.kind is FailureKind.AUTH
    assert err.status == 401
    assert not err.attempt_retryable
    for text in (str(err), repr(err), repr(provider), str(err.args)):
        assert KEY not in text
        assert KEY[:12] not in text


async def test_missing_key_fails_at_call_time_naming_the_variable(
    emu: AnthropicEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SKINFLINT_TEST_UNSET_KEY", raising=False)
    settings = ProviderSettings(
        kind="anthropic", base_url=emu.base_url, api_key_env="SKINFLINT_TEST_UNSET_KEY"
    )
    provider = AnthropicProvider("anthropic", settings)  # building needs no key
    with pytest.raises(ProviderNotConfigured) as info:
        await provider.complete(request())
    assert "SKINFLINT_TEST_UNSET_KEY" in str(info.value)
    with pytest.raises(ProviderNotConfigured):
        await collect(provider, request())
    assert len(emu.requests) == 0
    await provider.aclose()


async def test_key_from_a_secret_file(
    emu: AnthropicEmulator, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SKINFLINT_TEST_UNSET_KEY", raising=False)
    secret = tmp_path / "anthropic-key"
    secret.write_text(KEY + "\n")
    settings = ProviderSettings(
        kind="anthropic",
        base_url=emu.base_url,
        api_key_env="SKINFLINT_TEST_UNSET_KEY",
        api_key_file=secret,
    )
    provider = AnthropicProvider("anthropic", settings)
    try:
        response = await provider.complete(request())
    finally:
        await provider.aclose()
    assert response.stop_reason is StopReason.END_TURN
    assert emu.requests.last.key_id is not None


async def test_deadline_becomes_timeout(
    provider: AnthropicProvider, emu: AnthropicEmulator
) -> None:
    emu.faults.add(Fault(latency=2.0))
    with pytest.raises(ProviderError) as info:
        await provider.complete(request(timeout_s=0.2))
    assert info.value.kind is FailureKind.TIMEOUT
    assert info.value.attempt_retryable


async def test_connection_refused_is_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    async with AnthropicEmulator() as emulator:
        base_url = emulator.base_url
    monkeypatch.setenv(KEY_ENV, KEY)
    provider = AnthropicProvider(
        "anthropic", ProviderSettings(kind="anthropic", base_url=base_url, api_key_env=KEY_ENV)
    )
    try:
        with pytest.raises(ProviderError) as info:
            await provider.complete(request())
    finally:
        await provider.aclose()
    assert info.value.kind is FailureKind.CONNECTION


async def test_deadline_cuts_a_slow_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    async with AnthropicEmulator(token_latency=0.2) as emulator:
        provider = make_provider(emulator, monkeypatch)
        seen: list[StreamEvent] = []
        try:
            with pytest.raises(ProviderError) as info:
                async for event in provider.stream(request(timeout_s=0.5)):
                    seen.append(event)
        finally:
            await provider.aclose()
    assert info.value.kind is FailureKind.TIMEOUT
    assert not any(isinstance(e, StreamEnd) for e in seen)
