"""Cost arithmetic pinned against hand computations, the known gateway bugs, and properties.

Rates below are nano-USD per 1M tokens; ``tokens x rate / 1_000_000`` is nano-USD.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skinflint.accounting import (
    Cost,
    ModelPrice,
    PriceTable,
    Usage,
    baseline_cost_nanousd,
    cost_nanousd,
    default_price_table,
    from_anthropic,
    from_anthropic_stream,
    from_openai,
    from_vllm,
)

AT = datetime(2026, 8, 1, tzinfo=UTC)


def price(provider: str, model: str) -> ModelPrice:
    return default_price_table().lookup(provider, model, AT)


HAIKU_45 = price("anthropic", "claude-haiku-4-5")  # in 1e9, out 5e9, read 1e8, 5m 1.25e9, 1h 2e9
SONNET_45 = price("anthropic", "claude-sonnet-4-5")  # in 3e9, out 15e9, read 3e8, 5m 3.75e9
GPT_4O_MINI = price("openai", "gpt-4o-mini")  # in 1.5e8, cached 7.5e7, out 6e8
GPT_5_NANO = price("openai", "gpt-5-nano")  # in 5e7, cached 5e6, out 4e8

HAIKU_USAGE = Usage(
    input_tokens=1000,
    cache_read_tokens=2000,
    cache_write_5m_tokens=3000,
    cache_write_1h_tokens=500,
    output_tokens=400,
)


def local_price(**rates: str) -> ModelPrice:
    """A vLLM model the operator priced (fine-grained rates exercise rounding)."""
    entry = {
        "provider": "vllm",
        "model": "gpu-model",
        "effective_from": "2025-01-01",
        "batch_discount": 0,
        "input": "0",
        "output": "0",
        **rates,
    }
    return PriceTable.from_mapping({"version": "t", "models": [entry]}).lookup(
        "vllm", "gpu-model", AT
    )


# --- hand-computed cases --------------------------------------------------------------------


def test_haiku_45_with_every_token_class() -> None:
    # input       1000 x 1_000_000_000 / 1e6 = 1_000_000
    # cache read  2000 x   100_000_000 / 1e6 =   200_000
    # write 5m    3000 x 1_250_000_000 / 1e6 = 3_750_000
    # write 1h     500 x 2_000_000_000 / 1e6 = 1_000_000
    # output       400 x 5_000_000_000 / 1e6 = 2_000_000
    # total                                   = 7_950_000 nano-USD = $0.00795
    cost = cost_nanousd(HAIKU_USAGE, HAIKU_45)
    assert cost == Cost(
        total=7_950_000,
        input=1_000_000,
        output=2_000_000,
        cache_read=200_000,
        cache_write=4_750_000,
    )
    assert str(cost.usd) == "0.007950000"


def test_haiku_45_from_the_providers_usage() -> None:
    raw = {
        "input_tokens": 1000,
        "output_tokens": 400,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 3500,
        "cache_creation": {"ephemeral_5m_input_tokens": 3000, "ephemeral_1h_input_tokens": 500},
    }
    assert cost_nanousd(from_anthropic(raw), HAIKU_45).total == 7_950_000


def test_gpt_4o_mini_cached_prompt() -> None:
    # prompt 2006, cached 1920 -> uncached 86
    # input    86 x 150_000_000 / 1e6 =  12_900
    # cached 1920 x  75_000_000 / 1e6 = 144_000
    # output  300 x 600_000_000 / 1e6 = 180_000
    # total                            = 336_900 nano-USD
    usage = from_openai(
        {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 1920},
        }
    )
    assert cost_nanousd(usage, GPT_4O_MINI) == Cost(
        total=336_900, input=12_900, output=180_000, cache_read=144_000, cache_write=0
    )


def test_batch_halves_every_component() -> None:
    # Haiku 4.5 case above, 50% batch discount on all components (caching stacks with batch):
    # 7_950_000 x 5000 / 10000 = 3_975_000; components 500_000 / 1_000_000 / 100_000 / 2_375_000.
    assert cost_nanousd(HAIKU_USAGE, HAIKU_45, batch=True) == Cost(
        total=3_975_000, input=500_000, output=1_000_000, cache_read=100_000, cache_write=2_375_000
    )
    # gpt-4o-mini case: 336_900 / 2 = 168_450.
    usage = Usage(input_tokens=86, cache_read_tokens=1920, output_tokens=300)
    assert cost_nanousd(usage, GPT_4O_MINI, batch=True).total == 168_450


def test_batch_flag_off_is_list_price() -> None:
    assert cost_nanousd(HAIKU_USAGE, HAIKU_45, batch=False).total == 7_950_000


def test_vllm_call_at_zero_price() -> None:
    # Every rate is 0: 0 nano-USD whatever the counts, batch or not.
    usage = from_vllm(
        {
            "prompt_tokens": 120_000,
            "completion_tokens": 4000,
            "prompt_tokens_details": {"cached_tokens": 100_000},
        }
    )
    local = price("vllm", "meta-llama/Llama-3.1-8B-Instruct")
    assert cost_nanousd(usage, local) == Cost(total=0)
    assert cost_nanousd(usage, local, batch=True) == Cost(total=0)


def test_half_a_nano_usd_rounds_up() -> None:
    # gpt-5-nano cached, batch: 1 x 5_000_000 x 5000 / (1e6 x 10000) = 2.5 -> 3.
    assert cost_nanousd(Usage(cache_read_tokens=1), GPT_5_NANO, batch=True).total == 3
    # 3 tokens: 7.5 -> 8; 2 tokens: 5 exactly.
    assert cost_nanousd(Usage(cache_read_tokens=3), GPT_5_NANO, batch=True).total == 8
    assert cost_nanousd(Usage(cache_read_tokens=2), GPT_5_NANO, batch=True).total == 5


def test_below_half_rounds_down() -> None:
    # $0.0014/M = 1_400_000 nano-USD per 1M = 1.4 nano-USD per token: 1 token -> 1, 4 -> 5.6 -> 6.
    local = local_price(input="0.0014")
    assert cost_nanousd(Usage(input_tokens=1), local).total == 1
    assert cost_nanousd(Usage(input_tokens=4), local).total == 6


def test_baseline_bills_every_prompt_token_at_the_baseline_input_rate() -> None:
    # Haiku usage replayed on Sonnet 4.5 with no caching:
    # prompt (1000 + 2000 + 3000 + 500) = 6500 x 3_000_000_000 / 1e6 = 19_500_000
    # output                         400 x 15_000_000_000 / 1e6 =  6_000_000
    # total                                                      = 25_500_000
    baseline = baseline_cost_nanousd(HAIKU_USAGE, SONNET_45)
    assert baseline == Cost(total=25_500_000, input=19_500_000, output=6_000_000)
    # savings against the actual call: 25_500_000 - 7_950_000
    assert baseline.total - cost_nanousd(HAIKU_USAGE, HAIKU_45).total == 17_550_000


def test_baseline_never_applies_a_batch_discount() -> None:
    usage = Usage(input_tokens=1000, output_tokens=100)
    assert baseline_cost_nanousd(usage, SONNET_45).total == cost_nanousd(usage, SONNET_45).total


def test_costs_add_up() -> None:
    a = cost_nanousd(HAIKU_USAGE, HAIKU_45)
    assert (a + a).total == 15_900_000
    assert sum([a, a, a], Cost(total=0)).cache_write == 3 * 4_750_000


# --- the known failure modes of other gateways ----------------------------------------------


def test_cache_writes_are_not_charged_twice() -> None:
    # Anthropic: 50 uncached input, 10_000 written to cache, 100 output on Sonnet 4.5.
    # right:  50 x 3e9/1e6 = 150_000; writes 10_000 x 3.75e9/1e6 = 37_500_000;
    #         output 100 x 15e9/1e6 = 1_500_000                   -> 39_150_000
    # bug (writes also billed as input): + 10_000 x 3e9/1e6       -> 69_150_000
    usage = from_anthropic(
        {"input_tokens": 50, "cache_creation_input_tokens": 10_000, "output_tokens": 100}
    )
    assert usage.input_tokens == 50
    assert cost_nanousd(usage, SONNET_45).total == 39_150_000


def test_openai_cache_writes_are_not_charged_twice() -> None:
    # A model that bills writes (operator-priced like GPT-5.6's 1.25x): in $2, write $2.50,
    # cached $0.20, out $10. prompt 5000 = 1000 uncached + 1000 cached + 3000 written.
    # right: 1000 x 2e9/1e6 = 2_000_000; 1000 x 2e8/1e6 = 200_000; 3000 x 2.5e9/1e6 = 7_500_000;
    #        100 x 1e10/1e6 = 1_000_000                                   -> 10_700_000
    # bug (written tokens also in input): + 3000 x 2e9/1e6 = 6_000_000    -> 16_700_000
    writes = PriceTable.from_mapping(
        {
            "version": "t",
            "models": [
                {
                    "provider": "openai",
                    "model": "gpt-writes",
                    "effective_from": "2026-01-01",
                    "input": "2",
                    "cache_read": "0.20",
                    "cache_write": "2.50",
                    "output": "10",
                    "batch_discount": 50,
                }
            ],
        }
    ).lookup("openai", "gpt-writes", AT)
    usage = from_openai(
        {
            "prompt_tokens": 5000,
            "completion_tokens": 100,
            "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 3000},
        }
    )
    assert cost_nanousd(usage, writes).total == 10_700_000


def test_streamed_cache_reads_are_not_priced_as_full_input() -> None:
    # Haiku 4.5 stream: message_start has 30 input + 12_000 cache read; the final
    # message_delta carries only output_tokens 250 (cumulative).
    # right: 30 x 1e9/1e6 = 30_000; 12_000 x 1e8/1e6 = 1_200_000; 250 x 5e9/1e6 = 1_250_000
    #        -> 2_480_000
    # bug (reads as input): 12_030 x 1e9/1e6 + 1_250_000 = 13_280_000
    # bug (delta zeroes the cache counts): 30_000 + 1_250_000 = 1_280_000
    start = {
        "input_tokens": 30,
        "cache_read_input_tokens": 12_000,
        "cache_creation_input_tokens": 0,
        "output_tokens": 1,
    }
    usage = from_anthropic_stream(start, {"output_tokens": 250})
    cost = cost_nanousd(usage, HAIKU_45)
    assert cost.total == 2_480_000
    assert cost.cache_read == 1_200_000


def test_openai_cached_tokens_are_not_double_counted() -> None:
    # gpt-4o-mini, prompt 2006 / cached 1920 / completion 300.
    # right: 336_900 (see test_gpt_4o_mini_cached_prompt)
    # bug (all 2006 as input plus 1920 as cached): 2006 x 150 + 144_000 + 180_000 = 624_900
    usage = from_openai(
        {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 1920},
        }
    )
    assert usage.input_tokens + usage.cache_read_tokens == 2006
    assert cost_nanousd(usage, GPT_4O_MINI).total == 336_900


def test_rounding_happens_once_per_call_not_per_component() -> None:
    # Operator-priced local model: input $0.0015/M = 1.5 nano-USD per token, output
    # $0.0025/M = 2.5 nano-USD per token. One token each: exact 1.5 + 2.5 = 4.0.
    # right (round once): 4. bug (round each component half up): 2 + 3 = 5.
    local = local_price(input="0.0015", output="0.0025")
    cost = cost_nanousd(Usage(input_tokens=1, output_tokens=1), local)
    assert cost.total == 4
    # The breakdown is rounded per component (informational) and may differ from the total.
    assert (cost.input, cost.output) == (2, 3)


def test_rounding_once_holds_with_the_batch_discount_too() -> None:
    # Local rates of 5 nano-USD per token for input and output, 50% batch discount:
    # exact 2.5 + 2.5 = 5.0. right (round once): 5. bug (round each component half up): 3 + 3 = 6.
    entry = {
        "provider": "vllm",
        "model": "m",
        "effective_from": "2025-01-01",
        "input": "0.005",
        "output": "0.005",
        "batch_discount": 50,
    }
    local = PriceTable.from_mapping({"version": "t", "models": [entry]}).lookup("vllm", "m", AT)
    assert cost_nanousd(Usage(input_tokens=1, output_tokens=1), local, batch=True).total == 5


# --- properties -----------------------------------------------------------------------------

# No wall-clock deadline: the machine is shared, and tests never assert on time.
PROPERTY = settings(deadline=None, max_examples=200)

tokens = st.integers(min_value=0, max_value=10**8)
usages = st.builds(Usage, tokens, tokens, tokens, tokens, tokens, st.just(0))
rates = st.integers(min_value=0, max_value=200 * 10**9)  # up to $200 per 1M tokens
prices = st.one_of(
    st.sampled_from(default_price_table().entries()),
    st.builds(
        ModelPrice,
        provider=st.just("p"),
        model=st.just("m"),
        aliases=st.just(()),
        effective_from=st.just(date(2025, 1, 1)),
        effective_until=st.none(),
        input=rates,
        output=rates,
        cache_read=rates,
        cache_write_5m=rates,
        cache_write_1h=rates,
        batch_discount_bp=st.integers(0, 10_000),
    ),
)
FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
)


def exact_usd_nano(usage: Usage, p: ModelPrice, batch: bool) -> Fraction:
    """Independent oracle: the exact cost in nano-USD as a fraction."""
    raw = (
        usage.input_tokens * p.input
        + usage.output_tokens * p.output
        + usage.cache_read_tokens * p.cache_read
        + usage.cache_write_5m_tokens * p.cache_write_5m
        + usage.cache_write_1h_tokens * p.cache_write_1h
    )
    factor = Fraction(10_000 - p.batch_discount_bp, 10_000) if batch else Fraction(1)
    return Fraction(raw, 1_000_000) * factor


@PROPERTY
@given(usage=usages, p=prices, batch=st.booleans())
def test_total_is_the_exact_cost_rounded_half_up_once(
    usage: Usage, p: ModelPrice, batch: bool
) -> None:
    exact = exact_usd_nano(usage, p, batch)
    total = cost_nanousd(usage, p, batch=batch).total
    assert total - Fraction(1, 2) <= exact < total + Fraction(1, 2)


@PROPERTY
@given(usage=usages, p=prices, batch=st.booleans())
def test_cost_is_integer_and_never_negative(usage: Usage, p: ModelPrice, batch: bool) -> None:
    cost = cost_nanousd(usage, p, batch=batch)
    for value in (cost.total, cost.input, cost.output, cost.cache_read, cost.cache_write):
        assert type(value) is int
        assert value >= 0


@PROPERTY
@given(usage=usages, p=prices, batch=st.booleans(), field=st.sampled_from(FIELDS), more=tokens)
def test_cost_is_monotone_in_every_token_count(
    usage: Usage, p: ModelPrice, batch: bool, field: str, more: int
) -> None:
    bigger = usage + Usage(**{field: more})
    before, after = cost_nanousd(usage, p, batch=batch), cost_nanousd(bigger, p, batch=batch)
    assert after.total >= before.total
    for part in ("input", "output", "cache_read", "cache_write"):
        assert getattr(after, part) >= getattr(before, part)
    assert baseline_cost_nanousd(bigger, p).total >= baseline_cost_nanousd(usage, p).total


@PROPERTY
@given(a=usages, b=usages, p=prices, batch=st.booleans())
def test_cost_is_additive_within_one_nano_usd_per_component(
    a: Usage, b: Usage, p: ModelPrice, batch: bool
) -> None:
    whole = cost_nanousd(a + b, p, batch=batch)
    parts = cost_nanousd(a, p, batch=batch) + cost_nanousd(b, p, batch=batch)
    for name in ("total", "input", "output", "cache_read", "cache_write"):
        assert abs(getattr(whole, name) - getattr(parts, name)) <= 1, name


@PROPERTY
@given(calls=st.lists(st.tuples(usages, prices, st.booleans()), min_size=1, max_size=20))
def test_a_ledger_of_calls_is_within_half_a_nano_usd_per_call(
    calls: list[tuple[Usage, ModelPrice, bool]],
) -> None:
    billed = sum(cost_nanousd(u, p, batch=b).total for u, p, b in calls)
    exact = sum((exact_usd_nano(u, p, b) for u, p, b in calls), Fraction(0))
    assert abs(billed - exact) <= Fraction(len(calls), 2)


@PROPERTY
@given(usage=usages, p=prices)
def test_breakdown_is_within_two_nano_usd_of_the_total(usage: Usage, p: ModelPrice) -> None:
    cost = cost_nanousd(usage, p)
    assert abs(cost.total - (cost.input + cost.output + cost.cache_read + cost.cache_write)) <= 2


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_cost_rejects_non_integer_or_negative_values(bad: object) -> None:
    with pytest.raises(ValueError, match=r"Cost\.total"):
        Cost(total=bad)  # type: ignore[arg-type]
