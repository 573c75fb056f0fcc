"""The Anthropic emulator, driven through the official ``anthropic`` SDK.

Each test asserts a documented rule (PROVIDERS.md section 1): usage arithmetic, prompt caching
(prefix order, minimum length, lookback, TTLs, visibility), validation, streaming and errors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import pytest
from emulator_fixtures import ANTHROPIC_KEY, ANTHROPIC_MODEL, parse_sse, post_json, words

from skinflint.emulators import AnthropicEmulator, Fault, ManualClock

MODEL = ANTHROPIC_MODEL


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def emu(clock: ManualClock) -> AsyncIterator[AnthropicEmulator]:
    async with AnthropicEmulator(clock=clock) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: AnthropicEmulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=emu.base_url, api_key=ANTHROPIC_KEY) as c:
        yield c


def system_block(n: int, ttl: str | None = "5m", word: str = "lorem") -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": words(n, word)}
    if ttl is not None:
        block["cache_control"] = {"type": "ephemeral", "ttl": ttl}
    return block


def user(text: str = "What is the answer?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def total(usage: Any) -> int:
    return usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens


def creation_sum(usage: Any) -> int:
    split = usage.cache_creation
    return split.ephemeral_5m_input_tokens + split.ephemeral_1h_input_tokens


async def count(client: anthropic.AsyncAnthropic, **kwargs: Any) -> int:
    result = await client.messages.count_tokens(model=MODEL, **kwargs)
    return result.input_tokens


# -- usage and caching ----------------------------------------------------------------------


async def test_cache_write_then_read_and_usage_arithmetic(client: anthropic.AsyncAnthropic) -> None:
    system = [system_block(1500)]
    prompt = await count(client, system=system, messages=user())
    first = await client.messages.create(model=MODEL, max_tokens=64, system=system, messages=user())
    second = await client.messages.create(
        model=MODEL, max_tokens=64, system=system, messages=user()
    )

    assert first.usage.cache_creation_input_tokens == 1500
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.cache_read_input_tokens == 1500
    for message in (first, second):
        usage = message.usage
        # input_tokens excludes cache reads and writes; the three parts add up to the prompt.
        assert total(usage) == prompt
        assert usage.input_tokens == prompt - 1500
        assert creation_sum(usage) == usage.cache_creation_input_tokens
        assert usage.output_tokens > 0
    assert first.content == second.content


async def test_prompt_below_minimum_never_caches(client: anthropic.AsyncAnthropic) -> None:
    system = [system_block(1000)]  # Sonnet 4.6 minimum is 1024 tokens
    for _ in range(2):
        message = await client.messages.create(
            model=MODEL, max_tokens=16, system=system, messages=user()
        )
        assert message.usage.cache_creation_input_tokens == 0
        assert message.usage.cache_read_input_tokens == 0
        assert message.usage.input_tokens == await count(client, system=system, messages=user())


async def test_minimum_is_per_model(client: anthropic.AsyncAnthropic) -> None:
    system = [system_block(2000)]
    haiku = await client.messages.create(
        model="claude-haiku-4-5", max_tokens=16, system=system, messages=user()
    )
    sonnet = await client.messages.create(
        model=MODEL, max_tokens=16, system=system, messages=user()
    )
    assert haiku.usage.cache_creation_input_tokens == 0  # Haiku 4.5 needs 4096
    assert sonnet.usage.cache_creation_input_tokens == 2000


async def test_changed_tool_definition_invalidates_the_cache(
    client: anthropic.AsyncAnthropic,
) -> None:
    def tools(description: str) -> list[dict[str, Any]]:
        schema = {"type": "object", "properties": {"city": {"type": "string"}}}
        return [{"name": "weather", "description": description, "input_schema": schema}]

    system = [system_block(1500)]
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 16, "system": system}
    await client.messages.create(tools=tools("Get the weather."), messages=user(), **kwargs)
    same = await client.messages.create(
        tools=tools("Get the weather."), messages=user("A different question"), **kwargs
    )
    changed = await client.messages.create(
        tools=tools("Get the weather now."), messages=user(), **kwargs
    )
    assert same.usage.cache_read_input_tokens > 1500  # tools + system, messages differ after
    assert changed.usage.cache_read_input_tokens == 0
    assert changed.usage.cache_creation_input_tokens > 1500


async def test_tool_choice_change_invalidates_only_messages(
    client: anthropic.AsyncAnthropic,
) -> None:
    tools = [{"name": "lookup", "input_schema": {"type": "object", "properties": {}}}]
    system = [system_block(1200, ttl="1h")]
    history = [
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": words(300, "ipsum"),
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        }
    ]
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 16, "system": system, "tools": tools}
    first = await client.messages.create(messages=history, **kwargs)
    auto = await client.messages.create(messages=history, tool_choice={"type": "auto"}, **kwargs)
    prefix = first.usage.cache_creation_input_tokens
    assert auto.usage.cache_read_input_tokens < prefix  # messages level invalidated ...
    assert (
        auto.usage.cache_read_input_tokens == first.usage.cache_creation.ephemeral_1h_input_tokens
    )
    assert auto.usage.cache_read_input_tokens > 1200  # ... tools + system still read


async def test_ttl_expiry_and_refresh_on_hit(
    client: anthropic.AsyncAnthropic, clock: ManualClock
) -> None:
    system = [system_block(1500)]

    async def call() -> Any:
        message = await client.messages.create(
            model=MODEL, max_tokens=8, system=system, messages=user()
        )
        return message.usage

    assert (await call()).cache_creation_input_tokens == 1500
    clock.advance(290)
    assert (await call()).cache_read_input_tokens == 1500  # hit at 4m50s refreshes the TTL
    clock.advance(290)
    assert (await call()).cache_read_input_tokens == 1500  # 9m40s after the write, still alive
    clock.advance(301)
    expired = await call()
    assert expired.cache_read_input_tokens == 0
    assert expired.cache_creation_input_tokens == 1500


async def test_one_hour_ttl_outlives_five_minutes(
    client: anthropic.AsyncAnthropic, clock: ManualClock
) -> None:
    one_hour = [system_block(1500, ttl="1h")]
    five_min = [system_block(1500, ttl="5m", word="dolor")]
    for system in (one_hour, five_min):
        await client.messages.create(model=MODEL, max_tokens=8, system=system, messages=user())
    clock.advance(1800)
    long_lived = await client.messages.create(
        model=MODEL, max_tokens=8, system=one_hour, messages=user()
    )
    short_lived = await client.messages.create(
        model=MODEL, max_tokens=8, system=five_min, messages=user()
    )
    assert long_lived.usage.cache_read_input_tokens == 1500
    assert short_lived.usage.cache_read_input_tokens == 0


async def test_mixed_ttls_split_the_write(client: anthropic.AsyncAnthropic) -> None:
    system = [system_block(1200, ttl="1h"), system_block(400, ttl="5m", word="dolor")]
    first = await client.messages.create(model=MODEL, max_tokens=8, system=system, messages=user())
    split = first.usage.cache_creation
    assert split.ephemeral_1h_input_tokens == 1200  # B - A, A = 0
    assert split.ephemeral_5m_input_tokens == 400  # C - B
    assert first.usage.cache_creation_input_tokens == 1600

    system[1] = system_block(400, ttl="5m", word="amet")
    second = await client.messages.create(model=MODEL, max_tokens=8, system=system, messages=user())
    assert second.usage.cache_read_input_tokens == 1200  # A = the 1h prefix
    assert second.usage.cache_creation.ephemeral_1h_input_tokens == 0
    assert second.usage.cache_creation.ephemeral_5m_input_tokens == 400


async def test_one_hour_after_five_minutes_is_rejected(client: anthropic.AsyncAnthropic) -> None:
    system = [system_block(1200, ttl="5m"), system_block(400, ttl="1h", word="dolor")]
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(model=MODEL, max_tokens=8, system=system, messages=user())
    assert "1h" in info.value.message


async def test_more_than_four_breakpoints_is_rejected(client: anthropic.AsyncAnthropic) -> None:
    system = [system_block(10, word=w) for w in ("a", "b", "c", "d", "e")]
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(model=MODEL, max_tokens=8, system=system, messages=user())
    assert info.value.status_code == 400
    assert isinstance(info.value.body, dict)
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert "maximum of 4" in info.value.body["error"]["message"]


async def test_automatic_caching_takes_a_slot(client: anthropic.AsyncAnthropic) -> None:
    four = [system_block(10, word=w) for w in ("a", "b", "c", "d")]
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(
            model=MODEL,
            max_tokens=8,
            system=four,
            messages=user(),
            cache_control={"type": "ephemeral"},
        )
    history = user(words(1500))
    first = await client.messages.create(
        model=MODEL, max_tokens=8, messages=history, cache_control={"type": "ephemeral"}
    )
    grown = [
        *history,
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "And next?"},
    ]
    second = await client.messages.create(
        model=MODEL, max_tokens=8, messages=grown, cache_control={"type": "ephemeral"}
    )
    assert first.usage.cache_creation_input_tokens == total(first.usage)  # up to the last block
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.input_tokens == 0  # the breakpoint moved to the new last block


async def test_cache_control_on_empty_text_block_is_rejected(
    client: anthropic.AsyncAnthropic,
) -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hello"},
                {"type": "text", "text": "", "cache_control": {"type": "ephemeral"}},
            ],
        }
    ]
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(model=MODEL, max_tokens=8, messages=messages)
    assert "empty text" in info.value.message


async def test_lookback_reaches_twenty_blocks(client: anthropic.AsyncAnthropic) -> None:
    def request(marker_at: int | None) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = [
            {"type": "text", "text": f"part {i} " + words(5, "ipsum")} for i in range(30)
        ]
        if marker_at is not None:
            blocks[marker_at]["cache_control"] = {"type": "ephemeral"}
        return {
            "model": MODEL,
            "max_tokens": 8,
            # block 0, written by the first call (the only one that marks it)
            "system": [system_block(1500, ttl=None if marker_at is not None else "5m")],
            "messages": [{"role": "user", "content": blocks}],
        }

    await client.messages.create(**request(None))
    beyond = await client.messages.create(**request(19))  # block 20: 21 positions back to 0
    within = await client.messages.create(**request(18))  # block 19: 20 positions, reaches 0
    assert beyond.usage.cache_read_input_tokens == 0
    assert within.usage.cache_read_input_tokens == 1500


async def test_parallel_requests_all_miss(clock: ManualClock) -> None:
    async with (
        AnthropicEmulator(clock=clock, latency=0.2) as emulator,
        anthropic.AsyncAnthropic(base_url=emulator.base_url, api_key=ANTHROPIC_KEY) as client,
    ):
        kwargs: dict[str, Any] = {
            "model": MODEL,
            "max_tokens": 8,
            "system": [system_block(1500)],
            "messages": user(),
        }
        together = await asyncio.gather(*(client.messages.create(**kwargs) for _ in range(3)))
        later = await client.messages.create(**kwargs)
    assert [m.usage.cache_read_input_tokens for m in together] == [0, 0, 0]
    assert all(m.usage.cache_creation_input_tokens == 1500 for m in together)
    assert later.usage.cache_read_input_tokens == 1500


async def test_caches_are_isolated_per_organization(clock: ManualClock) -> None:
    keys = {"sk-a": "org-a", "sk-b": "org-b", "sk-a2": "org-a"}
    async with AnthropicEmulator(clock=clock, api_keys=keys) as emulator:
        reads = []
        for key in ("sk-a", "sk-b", "sk-a2"):
            async with anthropic.AsyncAnthropic(base_url=emulator.base_url, api_key=key) as c:
                message = await c.messages.create(
                    model=MODEL, max_tokens=8, system=[system_block(1500)], messages=user()
                )
                reads.append(message.usage.cache_read_input_tokens)
        async with anthropic.AsyncAnthropic(base_url=emulator.base_url, api_key="sk-x") as c:
            with pytest.raises(anthropic.AuthenticationError):
                await c.messages.create(model=MODEL, max_tokens=8, messages=user())
    assert reads == [0, 0, 1500]


async def test_max_tokens_zero_prewarms(client: anthropic.AsyncAnthropic) -> None:
    system = [system_block(1500)]
    warm = await client.messages.create(model=MODEL, max_tokens=0, system=system, messages=user())
    assert warm.content == []
    assert warm.usage.output_tokens == 0
    assert warm.usage.cache_creation_input_tokens == 1500
    real = await client.messages.create(model=MODEL, max_tokens=32, system=system, messages=user())
    assert real.usage.cache_read_input_tokens == 1500


# -- generation rules -----------------------------------------------------------------------


async def test_max_tokens_and_stop_sequences(client: anthropic.AsyncAnthropic) -> None:
    prompt = user("alpha beta gamma delta epsilon zeta eta theta")
    full = await client.messages.create(model=MODEL, max_tokens=200, messages=prompt)
    cut = await client.messages.create(model=MODEL, max_tokens=3, messages=prompt)
    stopped = await client.messages.create(
        model=MODEL, max_tokens=200, messages=prompt, stop_sequences=["delta"]
    )
    assert full.stop_reason == "end_turn"
    assert "alpha beta gamma delta" in full.content[0].text  # type: ignore[union-attr]
    assert cut.stop_reason == "max_tokens"
    assert cut.usage.output_tokens == 3
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence == "delta"
    text = stopped.content[0].text  # type: ignore[union-attr]
    assert text.endswith("gamma ")
    assert "delta" not in text


async def test_forced_tool_use_gets_valid_input(client: anthropic.AsyncAnthropic) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer", "minimum": 1},
            "units": {"type": "string", "enum": ["metric", "imperial"]},
            "verbose": {"type": "boolean"},
        },
        "required": ["city", "days", "units"],
    }
    message = await client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=user("Forecast for Paris"),
        tools=[{"name": "forecast", "input_schema": schema}],
        tool_choice={"type": "tool", "name": "forecast"},
    )
    assert message.stop_reason == "tool_use"
    block = message.content[-1]
    assert block.type == "tool_use"
    assert block.name == "forecast"
    assert set(block.input) == {"city", "days", "units"}
    assert isinstance(block.input["city"], str)
    assert isinstance(block.input["days"], int)
    assert block.input["units"] in ("metric", "imperial")


async def test_validation_errors(client: anthropic.AsyncAnthropic, emu: AnthropicEmulator) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "system", "content": "x"}]
        )
    assert "system" in info.value.message
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(
            model=MODEL, max_tokens=8, messages=user(), extra_body={"temperature": 1.5}
        )
    assert "temperature" in info.value.message
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(model=MODEL, max_tokens=10**6, messages=user(), timeout=30)
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(model="gpt-4o", max_tokens=8, messages=user())
    dangling = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}}],
        },
        {"role": "user", "content": "no result"},
    ]
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(model=MODEL, max_tokens=8, messages=dangling)
    assert "tool_result" in info.value.message
    assert emu.requests.last.status == 400


async def test_auth_and_version_headers_are_required(emu: AnthropicEmulator) -> None:
    url = emu.base_url + "/v1/messages"
    body = {"model": MODEL, "max_tokens": 8, "messages": user()}
    status, headers, text = await post_json(url, body, {"anthropic-version": "2023-06-01"})
    assert status == 401
    error = json.loads(text)
    assert error["type"] == "error"
    assert error["error"]["type"] == "authentication_error"
    assert headers["request-id"] == error["request_id"]

    status, _, text = await post_json(url, body, {"x-api-key": ANTHROPIC_KEY})
    assert status == 400
    assert "anthropic-version" in json.loads(text)["error"]["message"]

    ok = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
    status, headers, text = await post_json(url, body, ok)
    assert status == 200
    assert headers["request-id"].startswith("req_")
    assert json.loads(text)["type"] == "message"


async def test_request_log_redacts_the_key(
    client: anthropic.AsyncAnthropic, emu: AnthropicEmulator
) -> None:
    await client.messages.create(
        model=MODEL, max_tokens=8, messages=user(), metadata={"user_id": "u1"}
    )
    entry = emu.requests.last
    assert entry.body["metadata"] == {"user_id": "u1"}
    assert entry.key_id is not None
    assert ANTHROPIC_KEY not in repr(entry)
    assert ANTHROPIC_KEY not in json.dumps(entry.headers)


# -- streaming ------------------------------------------------------------------------------


async def test_stream_event_order_on_the_wire(emu: AnthropicEmulator) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 64,
        "stream": True,
        "system": [system_block(1500)],
        "messages": user("one two three"),
    }
    headers = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
    status, resp_headers, text = await post_json(emu.base_url + "/v1/messages", body, headers)
    assert status == 200
    assert resp_headers["content-type"].startswith("text/event-stream")
    events = parse_sse(text)
    names = [name for name, _ in events]
    for name, data in events:
        assert json.loads(data)["type"] == name  # event name matches the data's type
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert "ping" in names
    body_names = [n for n in names[1:-2] if n != "ping"]
    assert body_names[0] == "content_block_start"
    assert body_names[-1] == "content_block_stop"
    assert set(body_names[1:-1]) == {"content_block_delta"}

    start = json.loads(events[0][1])["message"]
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["usage"]["cache_creation_input_tokens"] == 1500
    assert start["usage"]["output_tokens"] == 1
    delta = json.loads(events[-2][1])
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] > 1
    assert delta["usage"]["cache_creation_input_tokens"] == 1500  # cumulative, not incremental


async def test_stream_helper_final_message_matches_create(
    client: anthropic.AsyncAnthropic,
) -> None:
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 64, "messages": user("hello world")}
    created = await client.messages.create(**kwargs)
    async with client.messages.stream(**kwargs) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == final.content[0].text  # type: ignore[union-attr]
    assert [b.model_dump(include={"type", "text"}) for b in final.content] == [
        b.model_dump(include={"type", "text"}) for b in created.content
    ]
    assert final.stop_reason == created.stop_reason
    assert final.usage.output_tokens == created.usage.output_tokens
    assert final.usage.input_tokens == created.usage.input_tokens


async def test_stream_tool_use_input_json_deltas(client: anthropic.AsyncAnthropic) -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    async with client.messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=user("please search for cats"),
        tools=[{"name": "search", "input_schema": schema}],
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[-1].type == "tool_use"
    assert final.content[-1].input == {"q": "please search for cats"}


async def test_error_event_mid_stream_raises(
    client: anthropic.AsyncAnthropic, emu: AnthropicEmulator
) -> None:
    emu.faults.add(Fault(stream_error_after=3))
    with pytest.raises(anthropic.APIStatusError) as info:
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=user()) as stream:
            await stream.get_final_message()
    assert isinstance(info.value.body, dict)
    assert info.value.body["error"]["type"] == "overloaded_error"
    assert emu.requests.last.status == 200  # the error came after a 200


async def test_cut_stream_surfaces_as_an_error(
    client: anthropic.AsyncAnthropic, emu: AnthropicEmulator
) -> None:
    emu.faults.add(Fault(stream_cut_after=4))
    # The connection is reset mid-body: the HTTP client reports an incomplete message.
    with pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)):
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=user()) as stream:
            await stream.get_final_message()


# -- errors and retries ---------------------------------------------------------------------


async def test_sdk_retries_overloaded_then_succeeds(
    client: anthropic.AsyncAnthropic, emu: AnthropicEmulator
) -> None:
    emu.faults.add(Fault(status=529, retry_after_ms=10))
    message = await client.messages.create(model=MODEL, max_tokens=8, messages=user())
    assert message.type == "message"
    statuses = [e.status for e in emu.requests]
    assert statuses == [529, 200]
    assert [e.header("x-stainless-retry-count") for e in emu.requests] == ["0", "1"]


async def test_overloaded_without_retries_raises(emu: AnthropicEmulator) -> None:
    emu.faults.add(Fault(status=529, retry_after=1))
    async with anthropic.AsyncAnthropic(
        base_url=emu.base_url, api_key=ANTHROPIC_KEY, max_retries=0
    ) as client:
        with pytest.raises(anthropic.InternalServerError) as info:
            await client.messages.create(model=MODEL, max_tokens=8, messages=user())
    assert info.value.status_code == 529
    assert isinstance(info.value.body, dict)
    assert info.value.body["error"]["type"] == "overloaded_error"
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.request_id == info.value.response.headers["request-id"]


async def test_rate_limit_with_retry_after(emu: AnthropicEmulator) -> None:
    emu.faults.add(Fault(status=429, retry_after_ms=10, times=2))
    async with anthropic.AsyncAnthropic(
        base_url=emu.base_url, api_key=ANTHROPIC_KEY, max_retries=0
    ) as client:
        with pytest.raises(anthropic.RateLimitError) as info:
            await client.messages.create(model=MODEL, max_tokens=8, messages=user())
        assert info.value.status_code == 429
        assert isinstance(info.value.body, dict)
        assert info.value.body["error"]["type"] == "rate_limit_error"
        retried = client.with_options(max_retries=1)
        message = await retried.messages.create(model=MODEL, max_tokens=8, messages=user())
    assert message.type == "message"
    assert [e.status for e in emu.requests] == [429, 429, 200]


async def test_failed_request_leaves_no_cache_entry(
    client: anthropic.AsyncAnthropic, emu: AnthropicEmulator
) -> None:
    emu.faults.add(Fault(status=500))
    system = [system_block(1500)]
    async with anthropic.AsyncAnthropic(
        base_url=emu.base_url, api_key=ANTHROPIC_KEY, max_retries=0
    ) as once:
        with pytest.raises(anthropic.InternalServerError):
            await once.messages.create(model=MODEL, max_tokens=8, system=system, messages=user())
    message = await client.messages.create(
        model=MODEL, max_tokens=8, system=system, messages=user()
    )
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 1500
