"""The provider adapters' hot path: the OpenAI adapter sends the body through the SDK's
generic ``post`` and reads the JSON answer without the SDK's pydantic models; both adapters
use the SDKs' aiohttp transport. These tests pin the reading rules the SDK models used to
provide (refusals, custom tool calls, vLLM's ``stop_reason``, missing fields), what a body
that is not a Chat Completion becomes, and that a lost connection is still a connection
failure (not a timeout) under the aiohttp transport."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from skinflint.call import (
    Call,
    GenerationParams,
    Message,
    ModelKind,
    ModelSpec,
    Role,
    TextPart,
    ToolUsePart,
)
from skinflint.providers.anthropic import AnthropicProvider
from skinflint.providers.base import (
    CachePlan,
    FailureKind,
    ProviderError,
    ProviderRequest,
    StopReason,
)
from skinflint.providers.openai_compat import OpenAICompatProvider
from skinflint.providers.settings import ProviderSettings

USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def provider(kind: str = "openai", base_url: str = "http://127.0.0.1:9/v1") -> OpenAICompatProvider:
    settings = ProviderSettings(kind=kind, base_url=base_url, api_key_env=None)
    return OpenAICompatProvider(kind, settings)


def body(message: dict[str, Any], finish: str = "stop", **choice: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, **choice}],
        "usage": USAGE,
    }


def test_text_usage_model_and_request_id() -> None:
    answer = provider()._response(
        body({"role": "assistant", "content": "Paris."}), "gpt-4o-mini", "req-1"
    )
    assert answer.content == (TextPart("Paris."),)
    assert answer.stop_reason is StopReason.END_TURN
    assert answer.model == "gpt-4o-mini-2024-07-18"
    assert answer.request_id == "req-1"
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (12, 5)


def test_refusal_is_the_text_and_the_stop_reason() -> None:
    answer = provider()._response(
        body({"role": "assistant", "content": None, "refusal": "I can't help with that."}),
        "gpt-4o-mini",
        None,
    )
    assert answer.content == (TextPart("I can't help with that."),)
    assert answer.stop_reason is StopReason.REFUSAL


def test_function_tool_calls_kept_custom_tool_calls_skipped() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "custom", "custom": {"name": "grep", "input": "x"}},
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": "Paris"}'},
            },
        ],
    }
    answer = provider()._response(body(message, "tool_calls"), "gpt-4o-mini", None)
    assert answer.content == (ToolUsePart("call_2", "lookup", {"q": "Paris"}),)
    assert answer.stop_reason is StopReason.TOOL_USE


def test_bad_tool_arguments_and_missing_choices_are_errors() -> None:
    message = {
        "role": "assistant",
        "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{"}}
        ],
    }
    with pytest.raises(ProviderError) as info:
        provider()._response(body(message, "tool_calls"), "gpt-4o-mini", None)
    assert info.value.kind is FailureKind.OTHER
    for bad in ({"choices": [], "usage": USAGE}, {"usage": USAGE}, [1, 2], "text"):
        with pytest.raises(ProviderError) as info:
            provider()._response(bad, "gpt-4o-mini", None)
        assert info.value.kind is FailureKind.OTHER


def test_vllm_stop_reason_only_read_for_vllm() -> None:
    answer = body({"role": "assistant", "content": "one two"}, stop_reason="three")
    assert provider("vllm")._response(answer, "m", None).stop_reason is StopReason.STOP_SEQUENCE
    assert provider("openai")._response(answer, "m", None).stop_reason is StopReason.END_TURN


def test_broken_usage_is_an_error_not_a_free_answer() -> None:
    answer = body({"role": "assistant", "content": "x"})
    answer["usage"] = {
        "prompt_tokens": 3,
        "completion_tokens": 1,
        "prompt_tokens_details": {"cached_tokens": 9},
    }
    with pytest.raises(ProviderError) as info:
        provider()._response(answer, "gpt-4o-mini", None)
    assert info.value.kind is FailureKind.OTHER


def call(text: str) -> ProviderRequest:
    return ProviderRequest(
        call=Call(
            model=ModelSpec(requested="x/m", kind=ModelKind.PINNED, provider="x", name="m"),
            messages=(Message(Role.USER, (TextPart(text),)),),
            request_id="req-raw",
            params=GenerationParams(temperature=0.0),
        ),
        model="m",
        max_tokens=32,
        cache_plan=CachePlan(),
        timeout_s=10.0,
    )


@pytest.fixture
async def not_json() -> AsyncIterator[str]:
    """A real HTTP server answering every chat completion with 200 and an HTML page."""

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(text="<html>proxy login</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


async def test_a_body_that_is_not_json_is_an_error(not_json: str) -> None:
    openai = provider("openai_compatible", not_json)
    try:
        with pytest.raises(ProviderError) as info:
            await openai.complete(call("hello"))
    finally:
        await openai.aclose()
    assert info.value.kind is FailureKind.OTHER
    assert "not JSON" in str(info.value)


@pytest.fixture
async def hangs_up() -> AsyncIterator[str]:
    """A real HTTP server that starts a 200 answer, sends part of it and drops the
    connection."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "application/json", "Content-Length": "4000"}
        )
        await response.prepare(request)
        await response.write(b'{"id": "chatcmpl-1", "choices": [')
        assert request.transport is not None
        request.transport.close()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    app.router.add_post("/v1/messages", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


async def test_a_dropped_connection_is_a_connection_failure_not_a_timeout(hangs_up: str) -> None:
    openai = provider("openai_compatible", hangs_up)
    try:
        with pytest.raises(ProviderError) as info:
            await openai.complete(call("hello"))
    finally:
        await openai.aclose()
    assert info.value.kind is FailureKind.CONNECTION


async def test_nothing_listening_is_a_connection_failure() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        openai = provider("openai_compatible", f"http://127.0.0.1:{port}/v1")
        try:
            with pytest.raises(ProviderError) as info:
                await openai.complete(call("hello"))
        finally:
            await openai.aclose()
    assert info.value.kind is FailureKind.CONNECTION


async def test_anthropic_dropped_connection_is_a_connection_failure_too(
    hangs_up: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Anthropic adapter uses the same aiohttp transport and the same rule."""
    monkeypatch.setenv("SKINFLINT_TEST_RAW_ANTHROPIC_KEY", "sk-ant-raw-test")
    settings = ProviderSettings(
        kind="anthropic",
        base_url=hangs_up.removesuffix("/v1"),
        api_key_env="SKINFLINT_TEST_RAW_ANTHROPIC_KEY",
    )
    claude = AnthropicProvider("anthropic", settings)
    try:
        with pytest.raises(ProviderError) as info:
            await claude.complete(call("hello"))
    finally:
        await claude.aclose()
    assert info.value.kind is FailureKind.CONNECTION
