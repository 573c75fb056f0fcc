"""Token counting: exact for OpenAI encodings, a documented over-estimate for Anthropic."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skinflint._native import count_chat_tokens, count_tokens, encoding_for_model


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("openai/gpt-4o-mini", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("claude-haiku-4-5", "anthropic-estimate"),
        ("anthropic/claude-opus-4-6", "anthropic-estimate"),
        ("vllm/qwen2.5-7b-instruct", "o200k_base"),
    ],
)
def test_encoding_for_model(model: str, encoding: str) -> None:
    assert encoding_for_model(model) == encoding


def test_known_counts() -> None:
    # Values from tiktoken itself ("hello world" is two tokens in both encodings; the
    # cookbook's "tiktoken is great!" is six in cl100k_base).
    assert count_tokens("gpt-4o", "hello world").count == 2
    assert count_tokens("gpt-4", "hello world").count == 2
    assert count_tokens("gpt-4", "tiktoken is great!").count == 6
    assert count_tokens("gpt-4o", "").count == 0


def test_exactness_flags() -> None:
    assert count_tokens("gpt-4o", "x").exact is True
    assert count_tokens("gpt-4o", "x").method == "o200k_base"
    est = count_tokens("claude-sonnet-4-5", "x")
    assert est.exact is False and est.method == "anthropic-estimate"
    unknown = count_tokens("somevendor/some-model", "x")
    assert unknown.exact is False and unknown.method == "o200k_base"


def test_special_token_text_is_ordinary_text() -> None:
    # A user cannot inject a special token: "<|endoftext|>" counts as several ordinary tokens.
    assert count_tokens("gpt-4", "<|endoftext|>").count > 1


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_anthropic_estimate_is_cl100k_times_1_3_rounded_up(text: str) -> None:
    base = count_tokens("gpt-4", text).count
    assert count_tokens("claude-haiku-4-5", text).count == (base * 13 + 9) // 10


def test_chat_framing() -> None:
    messages = [("system", "You are terse."), ("user", "hello world")]
    body = sum(
        count_tokens("gpt-4o", role).count + count_tokens("gpt-4o", text).count
        for role, text in messages
    )
    assert count_chat_tokens("gpt-4o", messages).count == body + 3 * len(messages) + 3
    assert count_chat_tokens("gpt-4o", []).count == 3
