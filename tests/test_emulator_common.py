"""Shared emulator machinery: tokenizers, the answer generator's rules, faults, the server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from emulator_fixtures import get_text, parse_sse, post_json, words
from hypothesis import given, settings
from hypothesis import strategies as st

from skinflint.emulators import (
    AnthropicEmulator,
    EmulatorError,
    EmulatorServer,
    Fault,
    FaultQueue,
    ManualClock,
    OpenAIEmulator,
)
from skinflint.emulators.common import NativeTokenizer, WordPieceTokenizer
from skinflint.emulators.generation import (
    choose_tool,
    complete_text,
    reply_text,
    sample_for_schema,
)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_word_piece_split_is_lossless_and_counts_pieces(text: str) -> None:
    tok = WordPieceTokenizer()
    pieces = tok.pieces(text)
    assert "".join(p for p, _ in pieces) == text
    assert tok.count(text) == len(pieces) == len(tok.encode(text))


def test_native_tokenizer_is_exact_for_openai() -> None:
    from skinflint._native import count_tokens

    tok = NativeTokenizer("gpt-4o")
    assert tok.name == "o200k_base"
    text = "The quick brown fox jumps over the lazy dog."
    assert tok.count(text) == count_tokens("gpt-4o", text).count
    assert "".join(p for p, _ in tok.pieces(text)) == text


def test_complete_text_stop_rules() -> None:
    tok = WordPieceTokenizer()
    full = "Echo: one two three four"
    assert complete_text(full, tok, None).stop == "end"
    cut = complete_text(full, tok, 3)
    assert (cut.stop, cut.tokens, cut.text) == ("max_tokens", 3, "Echo: one")
    stopped = complete_text(full, tok, None, ["three", "two"])
    assert (stopped.stop, stopped.stop_sequence, stopped.text) == (
        "stop_sequence",
        "two",
        "Echo: one ",
    )
    budget_first = complete_text(full, tok, 2, ["four"])
    assert budget_first.stop == "max_tokens"  # the budget ran out before the stop text
    assert budget_first.stop_sequence is None


def test_reply_is_derived_from_the_prompt() -> None:
    assert reply_text("  hello   world ") == "Echo: hello world"
    assert reply_text(" ".join(str(i) for i in range(100))).count(" ") == 48


def test_choose_tool_rules() -> None:
    names = ["search", "weather"]
    kw: dict[str, Any] = {"forced": None, "after_tool_result": False}
    assert choose_tool(names, mode="auto", last_user_text="the weather?", **kw) == "weather"
    assert choose_tool(names, mode="auto", last_user_text="hello", **kw) is None
    assert choose_tool(names, mode="any", last_user_text="hello", **kw) == "search"
    assert choose_tool(names, mode="none", last_user_text="weather", **kw) is None
    after = {"forced": None, "after_tool_result": True}
    assert choose_tool(names, mode="auto", last_user_text="weather", **after) is None
    assert (
        choose_tool(
            names, mode="auto", last_user_text="x", forced="weather", after_tool_result=True
        )
        == "weather"
    )


def test_sample_for_schema_fills_required_properties() -> None:
    schema = {
        "type": "object",
        "$defs": {
            "point": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}
        },
        "properties": {
            "name": {"type": "string", "maxLength": 3},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "kind": {"enum": ["a", "b"]},
            "at": {"$ref": "#/$defs/point"},
            "maybe": {"type": ["null", "integer"], "minimum": 5},
            "optional": {"type": "boolean"},
        },
        "required": ["name", "tags", "kind", "at", "maybe"],
    }
    value = sample_for_schema(schema, "hello big world")
    assert value == {
        "name": "hel",
        "tags": ["hello big world", "hello big world"],
        "kind": "a",
        "at": {"x": 1.0},
        "maybe": 5,
    }
    assert "optional" in sample_for_schema(schema, "x", all_properties=True)
    json.dumps(value)


def test_fault_queue_order_paths_and_kinds() -> None:
    queue = FaultQueue()
    queue.add(
        Fault(stream_error_after=1),
        Fault(status=429, times=2, path="/v1/messages"),
        Fault(status=500),
    )
    assert queue.pending == 4
    first = queue.take("/v1/messages", streaming=False)
    assert first is not None and first.status == 429  # stream faults skip plain requests
    assert queue.take("/other", streaming=False).status == 500  # type: ignore[union-attr]
    assert queue.take("/v1/messages", streaming=True).stream_error_after == 1  # type: ignore[union-attr]
    assert queue.take("/v1/messages", streaming=False).status == 429  # type: ignore[union-attr]
    assert queue.take("/v1/messages", streaming=False) is None
    with pytest.raises(ValueError):
        Fault(status=429, stream_cut_after=2)
    assert Fault(status=429, retry_after=2, retry_after_ms=1500).response_headers() == {
        "retry-after": "2",
        "retry-after-ms": "1500",
    }


def test_manual_clock() -> None:
    clock = ManualClock(start=10)
    clock.advance(5)
    assert clock.now() == 15
    with pytest.raises(ValueError):
        clock.advance(-1)


async def test_server_helper_and_unknown_routes() -> None:
    emulator = OpenAIEmulator()
    async with EmulatorServer(emulator) as server:
        assert server.port > 0
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        status, text = await get_text(server.base_url + "/v1/nothing")
        assert status == 404
        assert "error" in json.loads(text)
    with pytest.raises(RuntimeError):
        _ = emulator.base_url


async def test_latency_fault_and_clean_stream_cut() -> None:
    async with AnthropicEmulator() as emulator:
        emulator.faults.add(Fault(latency=0.01), Fault(stream_cut_after=2, cut_abort=False))
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
        body = {
            "model": "claude-haiku-4-5",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}],
        }
        status, _, _ = await post_json(emulator.base_url + "/v1/messages", body, headers)
        assert status == 200
        status, _, text = await post_json(
            emulator.base_url + "/v1/messages", {**body, "stream": True}, headers
        )
        assert status == 200
        assert [name for name, _ in parse_sse(text)] == ["message_start", "content_block_start"]
        assert emulator.faults.pending == 0


def test_non_http_entry_points_follow_the_same_rules() -> None:
    anthropic_emu = AnthropicEmulator()
    system = [{"type": "text", "text": words(1500), "cache_control": {"type": "ephemeral"}}]
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 8,
        "system": system,
        "messages": [{"role": "user", "content": "hi"}],
    }
    first = anthropic_emu.create_message("org-1", body)
    second = anthropic_emu.create_message("org-1", body)
    assert first["usage"]["cache_creation_input_tokens"] == 1500
    assert second["usage"]["cache_read_input_tokens"] == 1500
    with pytest.raises(EmulatorError) as info:
        anthropic_emu.create_message("org-1", {"model": "claude-sonnet-4-6", "messages": []})
    assert info.value.status == 400

    openai_emu = OpenAIEmulator()
    completion = openai_emu.create_completion(
        "org-1", {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert completion["object"] == "chat.completion"
    assert completion["usage"]["total_tokens"] == (
        completion["usage"]["prompt_tokens"] + completion["usage"]["completion_tokens"]
    )


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    from skinflint.emulators.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "anthropic" in capsys.readouterr().out
