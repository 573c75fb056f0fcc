"""Complete end to end through the gRPC stubs against the provider emulators: a multi-turn tool
conversation on each provider, cold and warm provider prompt caching, fallback on a cut stream,
bad input on both RPCs, and streamed usage and cost equal to the unary ones.

Every cost is checked against a computation written out from the response's usage and the
price table (``sidecar/skinflint/data/prices.yaml``; nano-USD per token = USD per 1M x 1000),
rounded once per call, half up.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from complete_fixtures import RigFactory, hand_baseline, hand_cost, request
from conftest import bad_request

from skinflint.emulators import Fault
from skinflint.v1 import skinflint_pb2 as pb

HAIKU = "anthropic/claude-haiku-4-5"  # $1 in, $5 out, $0.10 read, $1.25 5m write (per 1M)
SONNET = "anthropic/claude-sonnet-4-6"  # $3 in, $15 out, $0.30 read, $3.75 5m write; min 1024
GPT_MINI = "openai/gpt-4o-mini"  # $0.15 in, $0.60 out, $0.075 cached (per 1M)


async def collect(call: Any) -> list[pb.CompleteStreamEvent]:
    return [event async for event in call]


def text_part(text: str) -> pb.ContentPart:
    return pb.ContentPart(text=pb.TextPart(text=text))


# ---------------------------------------------------------------------------------------------
# 1. Multi-turn conversation with tools, on each provider
# ---------------------------------------------------------------------------------------------

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1},
    },
    "required": ["city", "unit", "days"],
}
TIME_SCHEMA = {
    "type": "object",
    "properties": {"zone": {"type": "string"}},
    "required": ["zone"],
}


def tool_conversation(model: str) -> pb.CompleteRequest:
    """system, user, assistant(text + tool_use), user(tool_result), user; two tools; the
    answer is forced to call get_weather."""
    earlier_call = pb.ToolUsePart(
        id="call_weather_1",
        name="get_weather",
        input_json=json.dumps({"city": "Paris", "unit": "celsius", "days": 1}),
    )
    messages = [
        pb.Message(role=pb.ROLE_USER, content=[text_part("What is the weather in Paris today?")]),
        pb.Message(
            role=pb.ROLE_ASSISTANT,
            content=[text_part("Let me look that up."), pb.ContentPart(tool_use=earlier_call)],
        ),
        pb.Message(
            role=pb.ROLE_USER,
            content=[
                pb.ContentPart(
                    tool_result=pb.ToolResultPart(
                        tool_use_id="call_weather_1", content='{"temp_c": 18, "sky": "clear"}'
                    )
                )
            ],
        ),
        pb.Message(
            role=pb.ROLE_USER,
            content=[text_part("Thanks. Now the three day forecast for Lyon in fahrenheit.")],
        ),
    ]
    return request(
        model,
        system=[pb.SystemBlock(text="You are a weather assistant. Use the tools.")],
        messages=messages,
        tools=[
            pb.Tool(
                name="get_weather",
                description="Weather forecast for a city",
                input_schema_json=json.dumps(WEATHER_SCHEMA),
            ),
            pb.Tool(
                name="get_time",
                description="Local time in a time zone",
                input_schema_json=json.dumps(TIME_SCHEMA),
            ),
        ],
        tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_TOOL, name="get_weather"),
        params=pb.GenerationParams(max_tokens=200, temperature=0.0),
    )


def assert_forced_weather_call(response: pb.CompleteResponse) -> None:
    assert response.stop_reason == pb.STOP_REASON_TOOL_USE
    uses = [p.tool_use for p in response.content if p.WhichOneof("part") == "tool_use"]
    assert len(uses) == 1
    use = uses[0]
    assert use.name == "get_weather"
    assert use.id
    arguments = json.loads(use.input_json)
    assert isinstance(arguments, dict)
    assert set(WEATHER_SCHEMA["required"]) <= set(arguments)
    assert isinstance(arguments["city"], str) and arguments["city"]
    assert arguments["unit"] in ("celsius", "fahrenheit")
    assert isinstance(arguments["days"], int) and arguments["days"] >= 1


async def test_anthropic_multi_turn_with_tools(start_rig: RigFactory) -> None:
    rig = await start_rig()
    response = await rig.stub.Complete(tool_conversation(HAIKU))

    assert (response.served_by.provider, response.served_by.model) == (
        "anthropic",
        "claude-haiku-4-5",
    )
    assert_forced_weather_call(response)

    # What the Messages API received: system apart, tool_use / tool_result blocks, tools with
    # their schemas and the forced tool_choice.
    body = rig.anthropic.requests.last.body
    system = body["system"]
    system_text = system if isinstance(system, str) else "".join(b["text"] for b in system)
    assert system_text == "You are a weather assistant. Use the tools."
    assert [t["name"] for t in body["tools"]] == ["get_weather", "get_time"]
    assert body["tools"][0]["input_schema"] == WEATHER_SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    messages = body["messages"]
    assert messages[0]["role"] == "user"
    assistant = messages[1]
    assert assistant["role"] == "assistant"
    assert [b["type"] for b in assistant["content"]] == ["text", "tool_use"]
    assert assistant["content"][1] == {
        "type": "tool_use",
        "id": "call_weather_1",
        "name": "get_weather",
        "input": {"city": "Paris", "unit": "celsius", "days": 1},
    }
    # The tool result and the final question reach Anthropic as user content after the call:
    # the tool_result block first (it must immediately follow the tool_use turn), then the text.
    later = [block for m in messages[2:] for block in m["content"]]
    assert all(m["role"] == "user" for m in messages[2:])
    assert later[0]["type"] == "tool_result"
    assert later[0]["tool_use_id"] == "call_weather_1"
    result_content = later[0]["content"]
    if isinstance(result_content, list):
        result_content = "".join(b["text"] for b in result_content)
    assert result_content == '{"temp_c": 18, "sky": "clear"}'
    assert later[-1]["type"] == "text" and "Lyon" in later[-1]["text"]

    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.cache_read_tokens == usage.cache_write_5m_tokens == 0  # far below 4096
    # Haiku 4.5: in x $1/M + out x $5/M = in x 1000 + out x 5000 nano-USD, exact integers
    # (147 in + 24 out = 147_000 + 120_000 = 267_000 nano-USD when written).
    assert response.cost_nanousd == usage.input_tokens * 1000 + usage.output_tokens * 5000
    assert response.cost_nanousd == hand_cost(usage, HAIKU)


async def test_openai_multi_turn_with_tools(start_rig: RigFactory) -> None:
    rig = await start_rig()
    response = await rig.stub.Complete(tool_conversation(GPT_MINI))

    assert (response.served_by.provider, response.served_by.model) == ("openai", "gpt-4o-mini")
    assert_forced_weather_call(response)

    # What Chat Completions received: a system message, the assistant turn with tool_calls
    # (arguments as JSON text), a role "tool" message answering it, then the user turn.
    body = rig.openai.requests.last.body
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", "get_time"]
    assert body["tools"][0]["type"] == "function"
    assert body["tools"][0]["function"]["parameters"] == WEATHER_SCHEMA
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "user"]
    assert messages[0]["content"] == "You are a weather assistant. Use the tools."
    assistant = messages[2]
    assert assistant["content"] == "Let me look that up."
    [call] = assistant["tool_calls"]
    assert call["id"] == "call_weather_1"
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {
        "city": "Paris",
        "unit": "celsius",
        "days": 1,
    }
    assert messages[3] == {
        "role": "tool",
        "tool_call_id": "call_weather_1",
        "content": '{"temp_c": 18, "sky": "clear"}',
    }
    assert "Lyon" in json.dumps(messages[4]["content"])

    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.cache_read_tokens == 0  # below OpenAI's 1024-token minimum
    # gpt-4o-mini: in x $0.15/M + out x $0.60/M = in x 150 + out x 600 nano-USD per token
    # (229 in + 25 out = 34_350 + 15_000 = 49_350 nano-USD when written).
    assert response.cost_nanousd == usage.input_tokens * 150 + usage.output_tokens * 600
    assert response.cost_nanousd == hand_cost(usage, GPT_MINI)


# ---------------------------------------------------------------------------------------------
# 2. Cold and warm provider prompt cache: cost by hand
# ---------------------------------------------------------------------------------------------


def long_system(words: int = 1500) -> list[pb.SystemBlock]:
    # One emulator token per word: 1500 tokens, above Sonnet 4.6's and gpt-4o-mini's 1024.
    return [pb.SystemBlock(text=" ".join(["lorem"] * words))]


async def test_anthropic_cold_then_warm_prompt_cache_cost_by_hand(start_rig: RigFactory) -> None:
    rig = await start_rig()
    cold = await rig.stub.Complete(request(SONNET, system=long_system()))
    # no_lookup: the identical request would otherwise be a response-cache hit.
    warm = await rig.stub.Complete(
        request(SONNET, system=long_system(), policy=pb.Policy(no_lookup=True))
    )
    assert [e.status for e in rig.anthropic.requests] == [200, 200]
    assert "cache_control" in rig.anthropic.requests.last.body["system"][0]

    # Cold: the system prompt is written to the 5m cache, nothing is read.
    c = cold.usage
    assert c.cache_write_5m_tokens == 1500  # the whole system prompt (one token per word)
    assert c.cache_read_tokens == 0 and c.cache_write_1h_tokens == 0
    assert c.input_tokens > 0 and c.output_tokens > 0
    # Sonnet 4.6 per token: in $3/M = 3000, out $15/M = 15_000, 5m write 1.25 x 3000 = 3750,
    # read 0.1 x 3000 = 300 nano-USD (whole numbers, so no rounding is involved). E.g.
    # 1500 written x 3750 + 7 in x 3000 + 9 out x 15_000
    #   = 5_625_000 + 21_000 + 135_000 = 5_781_000 nano-USD.
    assert cold.cost_nanousd == (
        c.cache_write_5m_tokens * 3750 + c.input_tokens * 3000 + c.output_tokens * 15_000
    )
    # Uncached, every prompt token at 3000: the write premium is 750 per written token, a
    # negative prompt-caching saving (pricing.py: prompt_caching = uncached - cost).
    assert cold.savings.prompt_caching_nanousd == -750 * c.cache_write_5m_tokens < 0

    # Warm: the same prefix is read back, nothing written.
    w = warm.usage
    assert w.cache_read_tokens == c.cache_write_5m_tokens
    assert w.cache_write_5m_tokens == 0 and w.cache_write_1h_tokens == 0
    assert (w.input_tokens, w.output_tokens) == (c.input_tokens, c.output_tokens)
    # E.g. 1500 read x 300 + 7 in x 3000 + 9 out x 15_000
    #   = 450_000 + 21_000 + 135_000 = 606_000 nano-USD.
    assert warm.cost_nanousd == (
        w.cache_read_tokens * 300 + w.input_tokens * 3000 + w.output_tokens * 15_000
    )
    # Each read token saves 3000 - 300 = 2700 nano-USD against the uncached price.
    assert warm.savings.prompt_caching_nanousd == 2700 * w.cache_read_tokens > 0

    for response in (cold, warm):
        u = response.usage
        prompt = u.input_tokens + u.cache_read_tokens + u.cache_write_5m_tokens
        # Baseline Opus 4.6, no caching: prompt x $5/M + out x $25/M.
        assert response.baseline_cost_nanousd == prompt * 5000 + u.output_tokens * 25_000
        # routing = baseline - uncached (every prompt token at Sonnet's input rate).
        uncached = prompt * 3000 + u.output_tokens * 15_000
        assert response.savings.routing_nanousd == response.baseline_cost_nanousd - uncached
        assert response.cost_nanousd == hand_cost(u, SONNET)
        assert response.savings.total_nanousd == (
            response.baseline_cost_nanousd - response.cost_nanousd
        )


async def test_openai_cold_then_warm_prompt_cache_cost_by_hand(start_rig: RigFactory) -> None:
    rig = await start_rig()
    cold = await rig.stub.Complete(request(GPT_MINI, system=long_system()))
    warm = await rig.stub.Complete(
        request(GPT_MINI, system=long_system(), policy=pb.Policy(no_lookup=True))
    )
    assert len(rig.openai.requests) == 2

    c, w = cold.usage, warm.usage
    # OpenAI bills no cache write: the cold call is plain input.
    assert c.cache_read_tokens == 0
    assert c.cache_write_5m_tokens == c.cache_write_1h_tokens == 0
    assert c.input_tokens >= 1024 and c.output_tokens > 0
    # gpt-4o-mini per token: in $0.15/M = 150, out $0.60/M = 600 nano-USD. E.g.
    # 1517 in x 150 + 9 out x 600 = 227_550 + 5_400 = 232_950 nano-USD.
    assert cold.cost_nanousd == c.input_tokens * 150 + c.output_tokens * 600
    assert cold.savings.prompt_caching_nanousd == 0  # no premium, no discount
    # Warm: a whole number of 128-token steps, at least 1024, of the same prompt is cached.
    assert w.cache_read_tokens >= 1024 and w.cache_read_tokens % 128 == 0
    assert w.input_tokens + w.cache_read_tokens == c.input_tokens
    assert w.output_tokens == c.output_tokens
    # Cached $0.075/M = 75 nano-USD per token. E.g. 1408 cached x 75 + 109 in x 150
    # + 9 out x 600 = 105_600 + 16_350 + 5_400 = 127_350 nano-USD.
    assert warm.cost_nanousd == (
        w.cache_read_tokens * 75 + w.input_tokens * 150 + w.output_tokens * 600
    )
    assert warm.savings.prompt_caching_nanousd == 75 * w.cache_read_tokens > 0
    for response in (cold, warm):
        assert response.cost_nanousd == hand_cost(response.usage, GPT_MINI)
        assert response.baseline_cost_nanousd == hand_baseline(response.usage)


# ---------------------------------------------------------------------------------------------
# 3. A stream cut before any content falls back to the next model of the tier
# ---------------------------------------------------------------------------------------------


async def test_stream_cut_before_content_falls_back_and_is_priced(start_rig: RigFactory) -> None:
    rig = await start_rig("  max_retries: 1\n")  # appended under dispatch
    # Haiku (the small tier's primary) sends message_start, then the connection is reset: on
    # the first try and on its one retry.
    rig.anthropic.faults.add(Fault(stream_cut_after=1, times=2))
    events = await collect(rig.stub.CompleteStream(request("small", request_id="cut-1")))

    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"delta"}
    assert [e.body.get("stream") for e in rig.anthropic.requests] == [True, True]
    assert rig.anthropic.faults.pending == 0  # both cuts fired
    assert len(rig.openai.requests) == 1
    for served in (events[0].started.served_by, events[-1].done.served_by):
        assert (served.provider, served.model) == ("openai", "gpt-4o-mini")
        assert served.tier == pb.TIER_SMALL
        assert served.attempts == 3
        assert "fallback: openai/gpt-4o-mini after anthropic/claude-haiku-4-5 failed" in (
            served.route_reason
        )
    done = events[-1].done
    assert done.request_id == "cut-1"
    assert "".join(e.delta.text for e in events[1:-1]) == done.content[0].text.text
    usage = done.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    # Only the model that answered is billed: gpt-4o-mini, in x 150 + out x 600 nano-USD
    # (e.g. 13 in + 9 out = 1_950 + 5_400 = 7_350 nano-USD).
    assert done.cost_nanousd == usage.input_tokens * 150 + usage.output_tokens * 600
    assert done.cost_nanousd == hand_cost(usage, GPT_MINI)
    # Baseline Opus 4.6: in x 5000 + out x 25_000.
    assert done.baseline_cost_nanousd == usage.input_tokens * 5000 + usage.output_tokens * 25_000
    assert done.savings.total_nanousd == done.baseline_cost_nanousd - done.cost_nanousd


# ---------------------------------------------------------------------------------------------
# 4. Bad input through the stubs: INVALID_ARGUMENT naming the field, no provider call
# ---------------------------------------------------------------------------------------------

BAD_INPUT = {
    "messages empty": (request(HAIKU, messages=[]), "messages", "at least one message"),
    "max_tokens negative": (
        request(HAIKU, params=pb.GenerationParams(max_tokens=-5)),
        "params.max_tokens",
        "(got -5)",
    ),
}


def assert_names_field(error: grpc.aio.AioRpcError, field: str, phrase: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details().startswith(f"{field}: ")
    assert phrase in error.details()
    assert [v.field for v in bad_request(error).field_violations] == [field]


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
async def test_bad_input_is_invalid_argument_on_both_rpcs(start_rig: RigFactory, case: str) -> None:
    rig = await start_rig()
    bad, field, phrase = BAD_INPUT[case]

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(bad)
    assert_names_field(info.value, field, phrase)

    received: list[str | None] = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for event in rig.stub.CompleteStream(bad):
            received.append(event.WhichOneof("event"))
    assert received == []  # rejected before any event
    assert_names_field(info.value, field, phrase)

    assert len(rig.anthropic.requests) == 0 and len(rig.openai.requests) == 0


# ---------------------------------------------------------------------------------------------
# 5. Streamed usage and cost equal the unary ones
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [SONNET, GPT_MINI])
async def test_streamed_usage_and_cost_equal_the_unary_call(
    start_rig: RigFactory, model: str
) -> None:
    # Two rigs, so each call meets fresh emulator caches (a long system prompt makes the
    # cache fields take part: Anthropic writes it, OpenAI bills it as input).
    unary_rig = await start_rig()
    stream_rig = await start_rig()
    prompt = request(model, system=long_system(), params=pb.GenerationParams(max_tokens=40))
    unary = await unary_rig.stub.Complete(prompt)
    events = await collect(stream_rig.stub.CompleteStream(prompt))
    done = events[-1].done

    assert done.usage == unary.usage
    assert done.content == unary.content
    assert done.stop_reason == unary.stop_reason
    usage = done.usage
    assert usage.input_tokens + usage.cache_write_5m_tokens >= 1500 and usage.output_tokens > 0
    if model == SONNET:
        assert usage.cache_write_5m_tokens > 0
        # in x 3000 + 5m write x 3750 + out x 15_000 (e.g. 7 x 3000 + 1500 x 3750 +
        # 9 x 15_000 = 21_000 + 5_625_000 + 135_000 = 5_781_000 nano-USD).
        expected = (
            usage.input_tokens * 3000
            + usage.cache_write_5m_tokens * 3750
            + usage.output_tokens * 15_000
        )
    else:
        assert usage.cache_read_tokens == 0
        # in x 150 + out x 600 (e.g. 1517 x 150 + 9 x 600 = 227_550 + 5_400 = 232_950).
        expected = usage.input_tokens * 150 + usage.output_tokens * 600
    assert done.cost_nanousd == expected == unary.cost_nanousd
    assert done.cost_nanousd == hand_cost(usage, model)
    assert done.baseline_cost_nanousd == unary.baseline_cost_nanousd == hand_baseline(usage)
    assert done.savings == unary.savings
