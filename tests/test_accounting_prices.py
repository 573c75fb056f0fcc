"""The price table: the shipped file, validation, lookups, effective dates and overrides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from skinflint.accounting import (
    PriceNotEffective,
    PriceTable,
    PriceTableError,
    UnknownModel,
    default_price_table,
)
from skinflint.errors import Code

AT = datetime(2026, 8, 1, tzinfo=UTC)

# PROVIDERS.md section 6.1 / 6.2, USD per 1M tokens, copied by hand so an accidental edit of
# prices.yaml fails here: (input, output, cache_read, cache_write_5m, cache_write_1h).
ANTHROPIC = {
    "claude-opus-4-8": ("5", "25", "0.50", "6.25", "10"),
    "claude-opus-4-7": ("5", "25", "0.50", "6.25", "10"),
    "claude-opus-4-6": ("5", "25", "0.50", "6.25", "10"),
    "claude-opus-4-5": ("5", "25", "0.50", "6.25", "10"),
    "claude-opus-4-1": ("15", "75", "1.50", "18.75", "30"),
    "claude-opus-4-0": ("15", "75", "1.50", "18.75", "30"),
    "claude-sonnet-4-6": ("3", "15", "0.30", "3.75", "6"),
    "claude-sonnet-4-5": ("3", "15", "0.30", "3.75", "6"),
    "claude-sonnet-4-0": ("3", "15", "0.30", "3.75", "6"),
    "claude-haiku-4-5": ("1", "5", "0.10", "1.25", "2"),
    "claude-3-5-haiku-20241022": ("0.80", "4", "0.08", "1", "1.6"),
    "claude-3-haiku-20240307": ("0.25", "1.25", "0.03", "0.30", "0.50"),
}
# (input, cached input, output)
OPENAI = {
    "gpt-4o": ("2.50", "1.25", "10"),
    "gpt-4o-mini": ("0.15", "0.075", "0.60"),
    "gpt-4.1": ("2", "0.50", "8"),
    "gpt-4.1-mini": ("0.40", "0.10", "1.60"),
    "gpt-4.1-nano": ("0.10", "0.025", "0.40"),
    "gpt-5": ("1.25", "0.125", "10"),
    "gpt-5.1": ("1.25", "0.125", "10"),
    "gpt-5-mini": ("0.25", "0.025", "2"),
    "gpt-5-nano": ("0.05", "0.005", "0.40"),
    "gpt-5.2": ("1.75", "0.175", "14"),
}
# PROVIDERS.md 1.5, latest doc copy.
MIN_CACHEABLE = {
    "claude-opus-4-8": 1024,
    "claude-opus-4-7": 2048,
    "claude-opus-4-6": 4096,
    "claude-opus-4-5": 4096,
    "claude-opus-4-1": 1024,
    "claude-opus-4-0": 1024,
    "claude-sonnet-4-6": 1024,
    "claude-sonnet-4-5": 1024,
    "claude-sonnet-4-0": 1024,
    "claude-haiku-4-5": 4096,
    "claude-3-5-haiku-20241022": 2048,
    "claude-3-haiku-20240307": 2048,
}


def nano(usd_per_mtok: str) -> int:
    """Hand conversion used by the pins: USD per 1M -> nano-USD per 1M, via exact decimals."""
    whole, _, frac = usd_per_mtok.partition(".")
    return int(whole) * 10**9 + int((frac + "0" * 9)[:9] or 0)


def entry(**overrides: Any) -> dict[str, Any]:
    """A valid OpenAI-style entry to tweak in validation tests."""
    base: dict[str, Any] = {
        "provider": "openai",
        "model": "gpt-test",
        "effective_from": "2025-01-01",
        "input": "1",
        "output": "2",
        "batch_discount": 50,
    }
    return {**base, **overrides}


def table(*entries: dict[str, Any], version: str = "t1") -> PriceTable:
    return PriceTable.from_mapping({"version": version, "models": list(entries)})


def issues_of(exc: pytest.ExceptionInfo[PriceTableError]) -> list[str]:
    return [str(issue) for issue in exc.value.issues]


# --- the shipped table ----------------------------------------------------------------------


def test_shipped_table_loads_from_package_data() -> None:
    prices = default_price_table()
    assert prices.version == "2026-08-21"
    assert default_price_table() is prices  # parsed once


@pytest.mark.parametrize("model", sorted(ANTHROPIC))
def test_shipped_anthropic_prices_match_the_pricing_page(model: str) -> None:
    price = default_price_table().lookup("anthropic", model, AT)
    want = tuple(nano(v) for v in ANTHROPIC[model])
    got = (price.input, price.output, price.cache_read, price.cache_write_5m, price.cache_write_1h)
    assert got == want
    assert price.batch_discount_bp == 5000
    assert price.min_cacheable_tokens == MIN_CACHEABLE[model]


@pytest.mark.parametrize("model", sorted(OPENAI))
def test_shipped_openai_prices_match_the_pricing_page(model: str) -> None:
    price = default_price_table().lookup("openai", model, AT)
    i, cached, o = (nano(v) for v in OPENAI[model])
    assert (price.input, price.cache_read, price.output) == (i, cached, o)
    # No write fee for these models: written tokens bill as plain input.
    assert price.cache_write_5m == price.cache_write_1h == price.input
    assert price.batch_discount_bp == 5000


def test_shipped_anthropic_cache_rates_follow_the_documented_multipliers() -> None:
    # 5m write = 1.25x input, 1h write = 2x, read = 0.1x; checked in integers.
    # Haiku 3 is the documented exception: its page rounds to $0.03 read / $0.30 write.
    for price in default_price_table().entries():
        if price.provider != "anthropic" or price.model == "claude-3-haiku-20240307":
            continue
        assert 4 * price.cache_write_5m == 5 * price.input, price.model
        assert price.cache_write_1h == 2 * price.input, price.model
        assert 10 * price.cache_read == price.input, price.model


def test_price_strings_become_exact_nano_usd_per_million() -> None:
    # $0.075/M -> 75_000_000 nano-USD per 1M tokens; $0.005/M -> 5_000_000.
    prices = default_price_table()
    assert prices.lookup("openai", "gpt-4o-mini", AT).cache_read == 75_000_000
    assert prices.lookup("openai", "gpt-5-nano", AT).cache_read == 5_000_000
    assert prices.lookup("anthropic", "claude-opus-4-1", AT).cache_write_5m == 18_750_000_000


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-opus-4-20250514", "claude-opus-4-0"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku-20241022"),
        ("gpt-4o-2024-11-20", "gpt-4o"),
        ("gpt-5-nano-2025-08-07", "gpt-5-nano"),
    ],
)
def test_dated_snapshots_resolve_to_their_model(alias: str, canonical: str) -> None:
    prices = default_price_table()
    provider = "openai" if alias.startswith("gpt") else "anthropic"
    assert prices.lookup(provider, alias, AT).model == canonical
    assert prices.aliases()[f"{provider}/{alias}"] == f"{provider}/{canonical}"


def test_the_old_dearer_gpt_4o_snapshot_is_not_an_alias() -> None:
    # gpt-4o-2024-05-13 was a different, dearer model: pricing it as gpt-4o would under-bill.
    with pytest.raises(UnknownModel):
        default_price_table().lookup("openai", "gpt-4o-2024-05-13", AT)


def test_provider_slash_model_form() -> None:
    prices = default_price_table()
    assert prices.lookup(None, "anthropic/claude-haiku-4-5", AT).model == "claude-haiku-4-5"
    assert prices.lookup("openai", "openai/gpt-4.1-mini", AT).model == "gpt-4.1-mini"
    with pytest.raises(UnknownModel, match="provider/model"):
        prices.lookup(None, "claude-haiku-4-5", AT)


def test_vllm_wildcard_prices_any_served_model_at_zero() -> None:
    price = default_price_table().lookup("vllm", "Qwen/Qwen2.5-7B-Instruct", AT)
    assert price.model == "*"
    assert (price.input, price.output, price.cache_read, price.cache_write_5m) == (0, 0, 0, 0)
    assert default_price_table().lookup(None, "vllm/meta-llama/Llama-3.1-8B", AT).model == "*"


# --- unknown models -------------------------------------------------------------------------


def test_unknown_model_names_it_and_suggests_close_ones() -> None:
    with pytest.raises(UnknownModel) as exc:
        default_price_table().lookup("anthropic", "claude-haiku-4.5", AT)
    assert exc.value.code == Code.INVALID_ARGUMENT
    assert exc.value.field == "model"
    assert "anthropic/claude-haiku-4.5" in str(exc.value)
    assert exc.value.suggestions[0] == "anthropic/claude-haiku-4-5"
    assert "anthropic/claude-haiku-4-5" in str(exc.value)


def test_unknown_model_without_close_match_lists_the_providers_models() -> None:
    with pytest.raises(UnknownModel) as exc:
        default_price_table().lookup("openai", "davinci-002", AT)
    assert exc.value.suggestions == ()
    assert "known openai models" in str(exc.value)
    assert "gpt-4o-mini" in str(exc.value)


def test_unknown_provider_suggests_the_close_one() -> None:
    with pytest.raises(UnknownModel) as exc:
        default_price_table().lookup("antropic", "claude-haiku-4-5", AT)
    assert "did you mean anthropic" in str(exc.value)
    assert exc.value.suggestions == ("anthropic/claude-haiku-4-5",)


def test_lookup_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        default_price_table().lookup("openai", "gpt-4o", datetime(2026, 1, 1))


def test_lookup_defaults_to_now() -> None:
    assert default_price_table().lookup("openai", "gpt-5").model == "gpt-5"


# --- effective dates ------------------------------------------------------------------------


def two_periods() -> PriceTable:
    return table(
        entry(effective_from="2025-01-01", effective_until="2025-07-01", input="1"),
        entry(effective_from="2025-07-01", input="2"),
    )


def test_effective_dates_pick_the_entry_in_force() -> None:
    prices = two_periods()
    last_second = datetime(2025, 6, 30, 23, 59, 59, tzinfo=UTC)
    assert prices.lookup("openai", "gpt-test", last_second).input == 1_000_000_000
    assert prices.lookup("openai", "gpt-test", datetime(2025, 7, 1, tzinfo=UTC)).input == 2 * 10**9
    # 01:00 at UTC+2 is still June 30 in UTC: boundaries are UTC midnights.
    plus_two = datetime(2025, 7, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert prices.lookup("openai", "gpt-test", plus_two).input == 1_000_000_000


def test_before_the_first_entry_there_is_no_price() -> None:
    with pytest.raises(PriceNotEffective, match="2025-01-01 to 2025-07-01"):
        two_periods().lookup("openai", "gpt-test", datetime(2024, 12, 31, tzinfo=UTC))


def test_shipped_gap_is_reported_not_guessed() -> None:
    # Haiku 3.5's launch price was cut on a date our sources do not give: no price then.
    with pytest.raises(PriceNotEffective):
        default_price_table().lookup(
            "anthropic", "claude-3-5-haiku-20241022", datetime(2024, 12, 1, tzinfo=UTC)
        )


def test_overlapping_periods_are_rejected() -> None:
    with pytest.raises(PriceTableError) as exc:
        table(
            entry(effective_from="2025-01-01", effective_until="2025-08-01"),
            entry(effective_from="2025-07-01"),
        )
    (issue,) = issues_of(exc)
    assert "prices.models[1].effective_from" in issue
    assert "openai/gpt-test" in issue
    assert "overlaps prices.models[0]" in issue


def test_open_ended_earlier_period_overlaps() -> None:
    with pytest.raises(PriceTableError, match="open-ended"):
        table(entry(effective_from="2025-01-01"), entry(effective_from="2026-01-01"))


def test_until_must_follow_from() -> None:
    with pytest.raises(PriceTableError, match=r"models\[0\]\.effective_until"):
        table(entry(effective_from="2025-01-01", effective_until="2025-01-01"))


# --- validation -----------------------------------------------------------------------------


def test_too_precise_price_is_rejected_naming_model_and_field() -> None:
    # 1e-10 USD per 1M tokens is 0.1 nano-USD per 1M: not representable, so refused.
    with pytest.raises(PriceTableError) as exc:
        table(entry(cache_read="0.0000000001"))
    (issue,) = issues_of(exc)
    assert issue.startswith("prices.models[0].cache_read: openai/gpt-test:")
    assert "more precise than 1 nano-USD per 1M tokens" in issue


def test_nine_decimal_places_are_accepted() -> None:
    price = table(entry(input="0.000000001")).lookup("openai", "gpt-test", AT)
    assert price.input == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0.075, "quoted decimal string"),
        (True, "quoted decimal string"),
        ("abc", "not a decimal number"),
        ("-1", "must not be negative"),
        ("NaN", "must be finite"),
    ],
)
def test_bad_price_values(value: object, message: str) -> None:
    with pytest.raises(PriceTableError, match=message) as exc:
        table(entry(output=value))
    assert "prices.models[0].output" in issues_of(exc)[0]


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(PriceTableError, match=r"models\[0\]\.cached_input: .*unknown key"):
        table(entry(cached_input="0.5"))
    with pytest.raises(PriceTableError, match=r"prices\.currency: unknown key"):
        PriceTable.from_mapping({"version": "x", "models": [], "currency": "EUR"})


def test_required_fields() -> None:
    broken = entry()
    del broken["batch_discount"]
    with pytest.raises(PriceTableError, match=r"models\[0\]\.batch_discount: .*is required"):
        table(broken)
    with pytest.raises(PriceTableError, match=r"prices\.version: is required"):
        PriceTable.from_mapping({"models": []})


def test_every_anthropic_model_needs_cache_prices() -> None:
    anthropic = entry(provider="anthropic", model="claude-x", cache_read="0.1", cache_write_5m="1")
    with pytest.raises(PriceTableError) as exc:
        table(anthropic)
    found = issues_of(exc)
    assert any(i.startswith("prices.models[0].cache_write_1h: anthropic/claude-x") for i in found)
    assert any("min_cacheable_tokens" in i for i in found)


@pytest.mark.parametrize(("value", "bp"), [(0, 0), (50, 5000), ("12.5", 1250), ("100", 10000)])
def test_batch_discount_percent(value: object, bp: int) -> None:
    price = table(entry(batch_discount=value)).lookup("openai", "gpt-test", AT)
    assert price.batch_discount_bp == bp


@pytest.mark.parametrize(("value", "message"), [(101, "between 0 and 100"), ("-5", "negative")])
def test_batch_discount_out_of_range(value: object, message: str) -> None:
    with pytest.raises(PriceTableError, match=rf"models\[0\]\.batch_discount: .*{message}"):
        table(entry(batch_discount=value))


def test_single_write_rate_excludes_ttl_rates() -> None:
    with pytest.raises(PriceTableError, match="either cache_write or"):
        table(entry(cache_write="1.25", cache_write_5m="1.25"))
    price = table(entry(cache_write="1.25")).lookup("openai", "gpt-test", AT)
    assert price.cache_write_5m == price.cache_write_1h == 1_250_000_000


def test_an_alias_may_name_only_one_model() -> None:
    with pytest.raises(PriceTableError, match="already names openai/gpt-"):
        table(entry(), entry(model="gpt-other", aliases=["gpt-test"]))


def test_model_ids_do_not_repeat_the_provider() -> None:
    # lookup() strips a "provider/" prefix, so such an id could never be looked up.
    with pytest.raises(PriceTableError, match=r"models\[0\]\.model: .*repeats the provider"):
        table(entry(model="openai/gpt-test"))


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(PriceTableError) as exc:
        table(entry(input="x"), entry(model="b", output=1.0))
    assert len(exc.value.issues) == 2
    assert exc.value.code == Code.FAILED_PRECONDITION


def test_yaml_float_in_a_file_is_refused(tmp_path: Any) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "version: '1'\nmodels:\n  - {provider: openai, model: m, effective_from: 2025-01-01,\n"
        "     input: 0.075, output: '1', batch_discount: 50}\n",
        encoding="utf-8",
    )
    with pytest.raises(PriceTableError, match=r"prices\.yaml\.models\[0\]\.input: .*not float"):
        PriceTable.load(path)


# --- overrides ------------------------------------------------------------------------------


def haiku_override(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "provider": "anthropic",
        "model": "claude-haiku-4-5-20251001",
        "effective_from": "2025-10-01",
        "input": "0.90",
        "output": "4.50",
        "cache_read": "0.09",
        "cache_write_5m": "1.125",
        "cache_write_1h": "1.80",
        "batch_discount": 50,
        "min_cacheable_tokens": 4096,
    }
    return {**base, **changes}


def test_override_replaces_a_model_and_keeps_its_aliases() -> None:
    shipped = default_price_table()
    prices = shipped.with_overrides({"models": [haiku_override()]})
    assert prices.version == "2026-08-21+local"
    for name in ("claude-haiku-4-5", "claude-haiku-4-5-20251001"):
        price = prices.lookup("anthropic", name, AT)
        assert (price.model, price.input) == ("claude-haiku-4-5", 900_000_000)
    # The shipped table is untouched.
    assert shipped.lookup("anthropic", "claude-haiku-4-5", AT).input == 1_000_000_000


def test_override_adds_a_model() -> None:
    prices = default_price_table().with_overrides(
        {"version": "acme-3", "models": [entry(model="gpt-9", input="3", output="12")]}
    )
    assert prices.version == "2026-08-21+acme-3"
    assert prices.lookup("openai", "gpt-9", AT).output == 12 * 10**9
    assert "openai/gpt-9" in prices.models()


def test_override_prices_a_local_model_ahead_of_the_wildcard() -> None:
    gpu = entry(provider="vllm", model="llama-70b", input="0.02", output="0.06", batch_discount=0)
    prices = default_price_table().with_overrides({"models": [gpu]})
    assert prices.lookup("vllm", "llama-70b", AT).input == 20_000_000
    assert prices.lookup("vllm", "other", AT).input == 0


def test_bad_override_is_rejected_naming_model_and_field() -> None:
    bad = haiku_override(cache_write_1h="1.8000000001")
    with pytest.raises(PriceTableError) as exc:
        default_price_table().with_overrides({"models": [bad]})
    (issue,) = issues_of(exc)
    assert issue.startswith(
        "prices.overrides.models[0].cache_write_1h: anthropic/claude-haiku-4-5-20251001:"
    )
    assert "more precise" in issue


def test_override_is_validated_like_the_file() -> None:
    shipped = default_price_table()
    missing = haiku_override()
    del missing["cache_read"]
    with pytest.raises(PriceTableError, match=r"overrides\.models\[0\]\.cache_read"):
        shipped.with_overrides({"models": [missing]})
    with pytest.raises(PriceTableError, match=r"overrides\.models\[0\]\.inputs: .*unknown key"):
        shipped.with_overrides({"models": [entry(inputs="1")]})
    with pytest.raises(PriceTableError, match="already names openai/gpt-4o"):
        shipped.with_overrides({"models": [entry(model="gpt-4o-turbo", aliases=["gpt-4o"])]})
    with pytest.raises(PriceTableError, match="overlaps"):
        shipped.with_overrides(
            {"models": [haiku_override(), haiku_override(effective_from="2026-01-01")]}
        )
