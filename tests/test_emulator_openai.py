"""The OpenAI emulator, driven through the official ``openai`` SDK.

Each test asserts a documented rule (PROVIDERS.md section 3): usage arithmetic, automatic
prefix caching (1024-token floor, 128-token increments, routing), validation, streaming with
``include_usage``, errors and retries.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from emulator_fixtures import OPENAI_KEY, parse_sse, post_json

from skinflint.emulators import Fault, ManualClock, OpenAIEmulator
from skinflint.emulators.common import NativeTokenizer

MODEL = "gpt-4o-mini"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def emu(clock: ManualClock) -> AsyncIterator[OpenAIEmulator]:
    async with OpenAIEmulator(clock=clock) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: OpenAIEmulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=emu.base_url + "/v1", api_key=OPENAI_KEY) as c:
        yield c


def text_of(tokens: int) -> str:
    """Text of exactly ``tokens`` o200k tokens (" lorem" is one token)."""
    text = " lorem" * tokens
    assert NativeTokenizer(MODEL).count(text) == tokens
    return text


def chat(system_tokens: int, question: str = "What now?") -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": text_of(system_tokens)},
        {"role": "user", "content": question},
    ]


async def ask(client: openai.AsyncOpenAI, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
    return await client.chat.completions.create(model=MODEL, messages=messages, **kwargs)


# -- usage and caching ----------------------------------------------------------------------


async def test_usage_arithmetic_and_documented_framing(client: openai.AsyncOpenAI) -> None:
    response = await ask(client, [{"role": "user", "content": "Hello there"}])
    usage = response.usage
    # OpenAI's documented count: 3 tokens per message + role + content + 3 priming the reply.
    tokenizer = NativeTokenizer(MODEL)
    assert usage.prompt_tokens == 3 + tokenizer.count("user") + tokenizer.count("Hello there") + 3
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details.reasoning_tokens == 0
    assert response.choices[0].finish_reason == "stop"
    assert response.object == "chat.completion"


async def test_identical_prompt_caches_in_128_token_steps(client: openai.AsyncOpenAI) -> None:
    messages = chat(1500)
    first = await ask(client, messages)
    second = await ask(client, messages)
    prompt = first.usage.prompt_tokens
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached == prompt // 128 * 128  # the longest 128-multiple the prefix covers
    assert cached <= second.usage.prompt_tokens  # cached_tokens is a subset of prompt_tokens


async def test_growing_prefix_hits_grow_by_128(client: openai.AsyncOpenAI) -> None:
    base = 1100
    hits = []
    for extra in (0, 128, 256):
        response = await ask(client, chat(base + extra, "q"))
        await ask(client, chat(base + extra, "q"))  # now cached at this length
        again = await ask(client, chat(base + extra, "another question"))
        hits.append(again.usage.prompt_tokens_details.cached_tokens)
        assert response.usage.prompt_tokens_details.cached_tokens % 128 == 0
    assert all(h % 128 == 0 and h >= 1024 for h in hits)
    assert hits[1] - hits[0] == 128
    assert hits[2] - hits[1] == 128


async def test_no_cache_below_1024_tokens(client: openai.AsyncOpenAI) -> None:
    messages = chat(1000)
    for _ in range(3):
        response = await ask(client, messages)
        assert response.usage.prompt_tokens < 1024
        assert response.usage.prompt_tokens_details.cached_tokens == 0


async def test_prompt_cache_key_and_org_separate_caches(clock: ManualClock) -> None:
    keys = {"sk-a": "org-a", "sk-b": "org-b"}
    async with OpenAIEmulator(clock=clock, api_keys=keys) as emulator:
        base = emulator.base_url + "/v1"
        async with (
            openai.AsyncOpenAI(base_url=base, api_key="sk-a") as a,
            openai.AsyncOpenAI(base_url=base, api_key="sk-b") as b,
        ):
            messages = chat(1300)
            await ask(a, messages, prompt_cache_key="tenant-1")
            same_key = await ask(a, messages, prompt_cache_key="tenant-1")
            other_key = await ask(a, messages, prompt_cache_key="tenant-2")
            other_org = await ask(b, messages, prompt_cache_key="tenant-1")
    assert same_key.usage.prompt_tokens_details.cached_tokens >= 1024
    assert other_key.usage.prompt_tokens_details.cached_tokens == 0
    assert other_org.usage.prompt_tokens_details.cached_tokens == 0


async def test_in_memory_retention_expires_when_idle(
    client: openai.AsyncOpenAI, clock: ManualClock
) -> None:
    messages = chat(1300)
    await ask(client, messages)
    clock.advance(300)
    assert (await ask(client, messages)).usage.prompt_tokens_details.cached_tokens > 0
    clock.advance(601)
    assert (await ask(client, messages)).usage.prompt_tokens_details.cached_tokens == 0

    extended = chat(1300, "extended retention")
    await ask(client, extended, prompt_cache_retention="24h")
    clock.advance(2 * 3600)
    response = await ask(client, extended, prompt_cache_retention="24h")
    assert response.usage.prompt_tokens_details.cached_tokens > 0


async def test_routing_overflow_above_15_rpm_lowers_hits(
    client: openai.AsyncOpenAI, clock: ManualClock
) -> None:
    messages = chat(1300)
    cached = []
    for _ in range(17):
        response = await ask(client, messages)
        cached.append(response.usage.prompt_tokens_details.cached_tokens)
        clock.advance(1)
    assert cached[0] == 0
    assert all(c > 0 for c in cached[1:15])
    assert cached[15] == 0  # the 16th request in a minute spills to a cold machine
    clock.advance(60)
    assert (await ask(client, messages)).usage.prompt_tokens_details.cached_tokens > 0


async def test_uncacheable_model_reports_zero(client: openai.AsyncOpenAI) -> None:
    for _ in range(2):
        response = await client.chat.completions.create(model="gpt-4-turbo", messages=chat(1300))
        assert response.usage.prompt_tokens_details.cached_tokens == 0


# -- generation rules -----------------------------------------------------------------------


async def test_max_tokens_and_stop(client: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "alpha beta gamma delta epsilon"}]
    cut = await ask(client, messages, max_tokens=3)
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage.completion_tokens == 3
    stopped = await ask(client, messages, stop=["gamma"])
    assert stopped.choices[0].finish_reason == "stop"
    assert "gamma" not in stopped.choices[0].message.content
    assert stopped.choices[0].message.content.endswith("beta ")


async def test_reasoning_tokens_for_reasoning_models(client: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "Prove it"}]
    low = await client.chat.completions.create(
        model="gpt-5", messages=messages, reasoning_effort="low"
    )
    high = await client.chat.completions.create(
        model="gpt-5", messages=messages, reasoning_effort="high"
    )
    details_low = low.usage.completion_tokens_details
    assert 0 < details_low.reasoning_tokens < high.usage.completion_tokens_details.reasoning_tokens
    assert low.usage.completion_tokens > details_low.reasoning_tokens  # reasoning is included
    starved = await client.chat.completions.create(
        model="o3", messages=messages, max_completion_tokens=50
    )
    assert starved.choices[0].finish_reason == "length"
    assert starved.choices[0].message.content == ""
    assert starved.usage.completion_tokens == 50


async def test_forced_tool_call_and_json_mode(client: openai.AsyncOpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {
                    "type": "object",
                    "properties": {"q": {"type": "string"}, "limit": {"type": "integer"}},
                    "required": ["q", "limit"],
                },
            },
        }
    ]
    called = await ask(
        client, [{"role": "user", "content": "find cats"}], tools=tools, tool_choice="required"
    )
    choice = called.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    args = json.loads(choice.message.tool_calls[0].function.arguments)
    assert isinstance(args["q"], str)
    assert isinstance(args["limit"], int)

    as_json = await ask(
        client,
        [{"role": "user", "content": "answer in json"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(as_json.choices[0].message.content), dict)

    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    structured = await ask(
        client,
        [{"role": "user", "content": "a person"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema, "strict": True},
        },
    )
    person = json.loads(structured.choices[0].message.content)
    assert set(person) == {"name", "age"}


async def test_validation_errors(client: openai.AsyncOpenAI, emu: OpenAIEmulator) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await ask(client, [{"role": "robot", "content": "x"}])
    assert info.value.param == "messages[0].role"
    assert info.value.code == "invalid_value"
    assert info.value.request_id == emu.requests.last.request_id

    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="o3-mini", messages=[{"role": "user", "content": "x"}], max_tokens=10
        )
    assert info.value.code == "unsupported_parameter"

    with pytest.raises(openai.BadRequestError) as info:
        await ask(
            client, [{"role": "user", "content": "x"}], response_format={"type": "json_object"}
        )
    assert "json" in info.value.message

    with pytest.raises(openai.BadRequestError) as info:
        await ask(client, [{"role": "tool", "tool_call_id": "call_1", "content": "x"}])
    assert "tool_calls" in info.value.message

    with pytest.raises(openai.BadRequestError):
        await ask(client, [{"role": "user", "content": "x"}], tool_choice="required")

    with pytest.raises(openai.BadRequestError) as info:
        await ask(client, [{"role": "user", "content": "x"}], extra_body={"bogus": 1})
    assert "Unrecognized request argument" in info.value.message

    with pytest.raises(openai.NotFoundError) as not_found:
        await client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    assert not_found.value.code == "model_not_found"


async def test_missing_bearer_is_401(emu: OpenAIEmulator) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    status, headers, text = await post_json(emu.base_url + "/v1/chat/completions", body)
    assert status == 401
    assert set(json.loads(text)["error"]) == {"message", "type", "param", "code"}
    assert headers["x-request-id"].startswith("req_")
    assert emu.requests.last.key_id is None


# -- streaming ------------------------------------------------------------------------------


async def test_stream_include_usage_final_chunk(client: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "stream this answer"}]
    plain = await ask(client, messages)
    stream = await ask(client, messages, stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    *body, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == plain.usage.prompt_tokens
    assert last.usage.completion_tokens == plain.usage.completion_tokens
    assert all(c.usage is None for c in body)
    assert body[0].choices[0].delta.role == "assistant"
    assert body[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in body[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in body)
    assert text == plain.choices[0].message.content


async def test_stream_without_include_usage_has_no_usage(emu: OpenAIEmulator) -> None:
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {OPENAI_KEY}"}
    status, _, text = await post_json(emu.base_url + "/v1/chat/completions", body, headers)
    assert status == 200
    events = parse_sse(text)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert all("usage" not in c for c in chunks)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


async def test_stream_helper_accumulates_tool_calls(client: openai.AsyncOpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    async with client.chat.completions.stream(
        model=MODEL, messages=[{"role": "user", "content": "weather in Oslo"}], tools=tools
    ) as stream:
        final = await stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "weather"
    assert json.loads(call.function.arguments) == {"city": "weather in Oslo"}
    assert final.choices[0].finish_reason == "tool_calls"


async def test_in_stream_error_raises(client: openai.AsyncOpenAI, emu: OpenAIEmulator) -> None:
    emu.faults.add(Fault(stream_error_after=2))
    stream = await ask(client, [{"role": "user", "content": "hello"}], stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


# -- errors and retries ---------------------------------------------------------------------


async def test_sdk_retries_429_then_succeeds(
    client: openai.AsyncOpenAI, emu: OpenAIEmulator
) -> None:
    emu.faults.add(Fault(status=429, retry_after_ms=10))
    response = await ask(client, [{"role": "user", "content": "hi"}])
    assert response.choices[0].message.content
    assert [e.status for e in emu.requests] == [429, 200]


async def test_errors_without_retries(emu: OpenAIEmulator) -> None:
    emu.faults.add(
        Fault(status=429, retry_after=2),
        Fault(status=500),
        Fault(status=503, retry_after_ms=10),
    )
    async with openai.AsyncOpenAI(
        base_url=emu.base_url + "/v1", api_key=OPENAI_KEY, max_retries=0
    ) as client:
        messages = [{"role": "user", "content": "hi"}]
        with pytest.raises(openai.RateLimitError) as limited:
            await ask(client, messages)
        assert limited.value.status_code == 429
        assert limited.value.code == "rate_limit_exceeded"
        assert limited.value.response.headers["retry-after"] == "2"
        assert limited.value.response.headers["x-request-id"] == limited.value.request_id
        with pytest.raises(openai.InternalServerError) as failed:
            await ask(client, messages)
        assert failed.value.status_code == 500
        with pytest.raises(openai.InternalServerError) as overloaded:
            await ask(client, messages)
        assert overloaded.value.status_code == 503
        assert (await ask(client, messages)).choices
    assert emu.faults.pending == 0
