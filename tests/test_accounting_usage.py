"""Usage normalizers: each provider's usage read exactly as the provider defines it."""

from __future__ import annotations

from typing import Any

import anthropic.types as anthropic_types
import openai.types as openai_types
import openai.types.responses as responses
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skinflint.accounting import (
    Usage,
    UsageError,
    from_anthropic,
    from_anthropic_stream,
    from_openai,
    from_vllm,
)

# --- Usage ----------------------------------------------------------------------------------


def test_usage_is_frozen_and_checks_its_counts() -> None:
    usage = Usage(input_tokens=1, output_tokens=2)
    with pytest.raises(AttributeError):
        usage.input_tokens = 5  # type: ignore[misc]
    with pytest.raises(UsageError, match=r"Usage\.output_tokens: .* got -1"):
        Usage(output_tokens=-1)
    with pytest.raises(UsageError, match=r"Usage\.input_tokens: .* got 1\.0"):
        Usage(input_tokens=1.0)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"Usage\.cache_read_tokens: .* got True"):
        Usage(cache_read_tokens=True)


def test_usage_totals_and_sum() -> None:
    a = Usage(1, 2, 3, 4, 5, 1)
    assert (a.cache_write_tokens, a.prompt_tokens, a.total_tokens) == (9, 13, 15)
    assert a + a == Usage(2, 4, 6, 8, 10, 2)


# --- Anthropic ------------------------------------------------------------------------------

ANTHROPIC_USAGE = {
    "input_tokens": 1000,
    "output_tokens": 400,
    "cache_read_input_tokens": 2000,
    "cache_creation_input_tokens": 3500,
    "cache_creation": {"ephemeral_5m_input_tokens": 3000, "ephemeral_1h_input_tokens": 500},
    "service_tier": "standard",
}


def test_anthropic_input_already_excludes_the_cache() -> None:
    usage = from_anthropic(ANTHROPIC_USAGE)
    assert usage == Usage(
        input_tokens=1000,
        output_tokens=400,
        cache_read_tokens=2000,
        cache_write_5m_tokens=3000,
        cache_write_1h_tokens=500,
    )
    # The whole prompt is input + writes + reads (Anthropic's own definition).
    assert usage.prompt_tokens == 1000 + 3500 + 2000


def test_anthropic_without_the_ttl_split_counts_writes_as_5m() -> None:
    usage = from_anthropic(
        {"input_tokens": 10, "output_tokens": 1, "cache_creation_input_tokens": 70}
    )
    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (70, 0)
    split_is_null = {**ANTHROPIC_USAGE, "cache_creation": None}
    assert from_anthropic(split_is_null).cache_write_5m_tokens == 3500


def test_anthropic_total_wins_when_the_split_disagrees() -> None:
    # More written than the split explains: the rest is billed (as 5m), not dropped.
    more = {**ANTHROPIC_USAGE, "cache_creation_input_tokens": 4000}
    assert (
        from_anthropic(more).cache_write_5m_tokens,
        from_anthropic(more).cache_write_1h_tokens,
    ) == (
        3500,
        500,
    )
    less = {**ANTHROPIC_USAGE, "cache_creation_input_tokens": 300}
    assert from_anthropic(less).cache_write_tokens == 300
    assert from_anthropic(less).cache_write_1h_tokens == 300


def test_anthropic_missing_and_null_fields_are_zero() -> None:
    assert from_anthropic({}) == Usage()
    assert from_anthropic({"input_tokens": 5, "output_tokens": None}) == Usage(input_tokens=5)


def test_anthropic_thinking_is_part_of_output() -> None:
    usage = from_anthropic({**ANTHROPIC_USAGE, "output_tokens_details": {"thinking_tokens": 150}})
    assert (usage.output_tokens, usage.reasoning_tokens) == (400, 150)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("input_tokens", -1),
        ("output_tokens", 3.5),
        ("cache_read_input_tokens", "12"),
        ("input_tokens", False),
    ],
)
def test_anthropic_bad_counts_raise_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(
        UsageError, match=rf"anthropic usage\.{field}: expected a non-negative integer"
    ):
        from_anthropic({**ANTHROPIC_USAGE, field: value})


def test_anthropic_bad_split_count_names_the_nested_field() -> None:
    bad = {**ANTHROPIC_USAGE, "cache_creation": {"ephemeral_1h_input_tokens": -2}}
    with pytest.raises(UsageError, match=r"cache_creation\.ephemeral_1h_input_tokens"):
        from_anthropic(bad)


def test_anthropic_sdk_object() -> None:
    sdk = anthropic_types.Usage.model_validate(ANTHROPIC_USAGE)
    assert from_anthropic(sdk) == from_anthropic(ANTHROPIC_USAGE)


# --- Anthropic streaming --------------------------------------------------------------------

START = {
    "input_tokens": 30,
    "output_tokens": 1,
    "cache_read_input_tokens": 12_000,
    "cache_creation_input_tokens": 800,
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 800},
}


def test_stream_delta_output_overwrites_and_cache_counts_come_from_start() -> None:
    usage = from_anthropic_stream(START, {"output_tokens": 250})
    assert usage == Usage(
        input_tokens=30,
        output_tokens=250,  # cumulative, not 1 + 250
        cache_read_tokens=12_000,
        cache_write_1h_tokens=800,
    )


def test_stream_delta_with_null_cache_fields_keeps_start_counts() -> None:
    delta = {
        "output_tokens": 250,
        "input_tokens": None,
        "cache_read_input_tokens": None,
        "cache_creation_input_tokens": None,
    }
    assert from_anthropic_stream(START, delta).cache_read_tokens == 12_000


def test_stream_delta_carrying_cumulative_cache_counts_is_not_added() -> None:
    delta = {
        "output_tokens": 250,
        "input_tokens": 30,
        "cache_read_input_tokens": 12_000,
        "cache_creation_input_tokens": 800,
    }
    assert from_anthropic_stream(START, delta) == from_anthropic_stream(
        START, {"output_tokens": 250}
    )


def test_stream_with_sdk_objects() -> None:
    start = anthropic_types.Usage.model_validate(START)
    delta = anthropic_types.MessageDeltaUsage.model_validate({"output_tokens": 250})
    assert from_anthropic_stream(start, delta) == from_anthropic_stream(
        START, {"output_tokens": 250}
    )


def test_stream_missing_parts() -> None:
    assert from_anthropic_stream(START, None).output_tokens == 1
    assert from_anthropic_stream(None, {"output_tokens": 9}) == Usage(output_tokens=9)


def test_stream_bad_delta_raises() -> None:
    with pytest.raises(UsageError, match=r"anthropic stream usage\.output_tokens"):
        from_anthropic_stream(START, {"output_tokens": -4})


# --- OpenAI / vLLM --------------------------------------------------------------------------

OPENAI_GUIDE = {  # the prompt-caching guide's example
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "accepted_prediction_tokens": 0},
}


def test_openai_cached_tokens_are_a_subset_of_the_prompt() -> None:
    usage = from_openai(OPENAI_GUIDE)
    assert usage == Usage(input_tokens=2006 - 1920, output_tokens=300, cache_read_tokens=1920)
    assert usage.prompt_tokens == 2006


def test_openai_cache_writes_are_a_subset_too() -> None:
    usage = from_openai(
        {
            "prompt_tokens": 5000,
            "completion_tokens": 100,
            "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 3000},
            "completion_tokens_details": {"reasoning_tokens": 64},
        }
    )
    assert usage == Usage(
        input_tokens=1000,
        output_tokens=100,
        cache_read_tokens=1000,
        cache_write_5m_tokens=3000,
        reasoning_tokens=64,
    )


def test_openai_responses_and_batch_shape() -> None:
    usage = from_openai(
        {
            "input_tokens": 2006,
            "input_tokens_details": {"cached_tokens": 1920},
            "output_tokens": 300,
            "output_tokens_details": {"reasoning_tokens": 120},
            "total_tokens": 2306,
        }
    )
    assert usage == Usage(
        input_tokens=86, output_tokens=300, cache_read_tokens=1920, reasoning_tokens=120
    )


def test_openai_missing_details() -> None:
    assert from_openai(
        {"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": None}
    ) == Usage(input_tokens=10, output_tokens=2)
    assert from_openai({}) == Usage()


def test_openai_more_cached_than_prompt_is_inconsistent() -> None:
    with pytest.raises(UsageError, match=r"cached_tokens \(30\) .* exceed prompt_tokens \(20\)"):
        from_openai({"prompt_tokens": 20, "prompt_tokens_details": {"cached_tokens": 30}})


def test_openai_bad_counts_raise_naming_the_field() -> None:
    with pytest.raises(UsageError, match=r"openai usage\.prompt_tokens_details\.cached_tokens"):
        from_openai({"prompt_tokens": 20, "prompt_tokens_details": {"cached_tokens": -1}})
    with pytest.raises(UsageError, match=r"openai usage\.completion_tokens"):
        from_openai({"prompt_tokens": 20, "completion_tokens": 2.0})


def test_openai_sdk_objects() -> None:
    chat = openai_types.CompletionUsage.model_validate(OPENAI_GUIDE)
    assert from_openai(chat) == from_openai(OPENAI_GUIDE)
    resp = responses.ResponseUsage.model_validate(
        {
            "input_tokens": 2006,
            "input_tokens_details": {"cached_tokens": 1920, "cache_write_tokens": 0},
            "output_tokens": 300,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 2306,
        }
    )
    assert from_openai(resp) == from_openai(OPENAI_GUIDE)


def test_vllm_without_prompt_details_is_all_uncached() -> None:
    # --enable-prompt-tokens-details is off by default: no cached count is reported.
    plain = {
        "prompt_tokens": 900,
        "completion_tokens": 50,
        "total_tokens": 950,
        "prompt_tokens_details": None,
    }
    assert from_vllm(plain) == Usage(input_tokens=900, output_tokens=50)
    with_details = {**plain, "prompt_tokens_details": {"cached_tokens": 512}}
    assert from_vllm(with_details) == Usage(
        input_tokens=388, output_tokens=50, cache_read_tokens=512
    )
    with pytest.raises(UsageError, match=r"^vllm usage"):
        from_vllm({"prompt_tokens": -1})


# --- properties -----------------------------------------------------------------------------

# No wall-clock deadline: the machine is shared, and tests never assert on time.
PROPERTY = settings(deadline=None, max_examples=200)

counts = st.integers(min_value=0, max_value=10**9)


@PROPERTY
@given(data=st.data(), prompt=counts, completion=counts)
def test_from_openai_never_yields_negative_input(
    data: st.DataObject, prompt: int, completion: int
) -> None:
    cached = data.draw(st.integers(0, prompt))
    written = data.draw(st.integers(0, prompt - cached))
    raw: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
    }
    usage = from_openai(raw)
    assert usage.input_tokens >= 0
    assert usage.prompt_tokens == prompt  # nothing lost, nothing counted twice
    assert usage.output_tokens == completion


@PROPERTY
@given(prompt=counts, cached=counts, written=counts)
def test_from_openai_inconsistent_reports_raise_instead_of_going_negative(
    prompt: int, cached: int, written: int
) -> None:
    raw = {
        "prompt_tokens": prompt,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
    }
    if cached + written > prompt:
        with pytest.raises(UsageError):
            from_openai(raw)
    else:
        assert from_openai(raw).input_tokens == prompt - cached - written


@PROPERTY
@given(i=counts, o=counts, r=counts, w5=counts, w1=counts)
def test_from_anthropic_keeps_the_prompt_total(i: int, o: int, r: int, w5: int, w1: int) -> None:
    raw = {
        "input_tokens": i,
        "output_tokens": o,
        "cache_read_input_tokens": r,
        "cache_creation_input_tokens": w5 + w1,
        "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1},
    }
    usage = from_anthropic(raw)
    assert usage.prompt_tokens == i + r + w5 + w1
    assert usage.input_tokens == i
