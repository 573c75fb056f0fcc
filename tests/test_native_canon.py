"""Canonicalization: documented rules, idempotence, and robustness on arbitrary input."""

from __future__ import annotations

import contextlib
import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skinflint._native import KeyInputError, RuleSet, RuleSetError

BUILTINS = ["exact", "conservative", "volatile", "aggressive"]

# Text that stresses the rules: combining marks, odd whitespace, timestamps, UUIDs, case
# folding oddities (final sigma, dotted I, ligatures) next to arbitrary Unicode.
TRICKY = st.sampled_from(
    [
        "e\u0301",
        "\u00e9",
        "\u212b",
        "\u0130",
        "\u03a3\u03a3",
        "\ufb01",
        "\u1e9e",
        "\u00a0",
        "\u2003",
        "\u3000",
        "\t\n\r ",
        "\u200b",
        "2024-05-01T12:30:00Z",
        "2024-05-01 12:30:00.123+02:00",
        "1999-12-31",
        "123e4567-E89B-12d3-a456-426614174000",
        "<ts>",
        "<uuid>",
        "{}",
        '"k"',
    ]
)
# The Unicode White_Space property (what the core collapses). Python's str.isspace() also
# counts the information separators U+001C..U+001F, which Unicode does not.
UNICODE_WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
TEXT = st.lists(st.one_of(st.text(max_size=20), TRICKY), max_size=12).map("".join)


def rules(name: str) -> RuleSet:
    return RuleSet.named(name)


def test_builtin_names() -> None:
    assert sorted(RuleSet.builtin_names()) == sorted(BUILTINS)
    for name in BUILTINS:
        assert RuleSet.named(name).name == name


def test_unknown_named_rule_set_names_the_valid_ones() -> None:
    with pytest.raises(RuleSetError) as err:
        RuleSet.named("agressive")
    msg = str(err.value)
    assert "agressive" in msg
    for name in BUILTINS:
        assert name in msg


def test_bad_custom_pattern_is_named() -> None:
    with pytest.raises(RuleSetError) as err:
        RuleSet(strip_patterns=["ok-[0-9]+", "(unclosed"])
    assert "(unclosed" in str(err.value)


def test_exact_changes_nothing() -> None:
    text = "  Hello\u00a0 World e\u0301 2024-05-01T12:30:00Z  "
    assert rules("exact").canonicalize_text(text) == text


def test_conservative_nfc_whitespace_trim_keeps_case_and_volatile_fields() -> None:
    out = rules("conservative").canonicalize_text("  Caf\u0065\u0301 \t\n\u00a0 at 2024-05-01  ")
    assert out == "Caf\u00e9 at 2024-05-01"


def test_volatile_strips_timestamps_dates_uuids() -> None:
    r = rules("volatile")
    a = r.canonicalize_text(
        "req 123e4567-e89b-12d3-a456-426614174000 at 2024-05-01T12:30:00Z on 2024-05-01"
    )
    b = r.canonicalize_text(
        "req 9F1B2C3D-0000-4000-8000-ABCDEFABCDEF at 2025-12-31 23:59:59.5+02:00 on 2026-01-02"
    )
    assert a == b
    assert "2024" not in a and "e89b" not in a


def test_aggressive_folds_case() -> None:
    r = rules("aggressive")
    assert r.canonicalize_text("HELLO World") == r.canonicalize_text("hello world")
    assert rules("volatile").canonicalize_text("HELLO") != rules("volatile").canonicalize_text(
        "hello"
    )


def test_custom_patterns_replace_matches() -> None:
    r = RuleSet(name="reqid", strip_patterns=[r"req-[0-9a-f]{8}"])
    assert r.canonicalize_text("id req-deadbeef ok") == r.canonicalize_text("id req-0badf00d ok")
    assert r.describe()["strip_patterns"] == [r"req-[0-9a-f]{8}"]
    assert r.name == "reqid"


def test_json_key_order_and_whitespace() -> None:
    r = rules("conservative")
    a = r.canonicalize_json('{"b": 1, "a": {"y": [1, 2], "x": "  hi  there "}}')
    b = r.canonicalize_json('{"a":{"x":"hi there","y":[1,2]},"b":1}')
    assert a == b
    assert json.loads(a) == {"a": {"x": "hi there", "y": [1, 2]}, "b": 1}
    assert a.index('"a"') < a.index('"b"')


def test_json_numbers_are_canonical_and_integers_exact() -> None:
    r = rules("conservative")
    assert r.canonicalize_json("[1.0]") == r.canonicalize_json("[1.00]")
    assert "9007199254740993" in r.canonicalize_json("[9007199254740993]")


def test_invalid_json_is_a_clear_error() -> None:
    with pytest.raises(KeyInputError):
        rules("conservative").canonicalize_json("{not json")


@pytest.mark.parametrize("name", BUILTINS)
@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_canonicalize_text_is_idempotent(name: str, text: str) -> None:
    r = rules(name)
    once = r.canonicalize_text(text)
    assert r.canonicalize_text(once) == once


@pytest.mark.parametrize("name", ["conservative", "volatile", "aggressive"])
@settings(max_examples=200, deadline=None)
@given(text=TEXT)
def test_canonical_text_is_nfc_and_has_no_whitespace_runs(name: str, text: str) -> None:
    out = rules(name).canonicalize_text(text)
    assert unicodedata.is_normalized("NFC", out)
    assert not out.startswith(" ") and not out.endswith(" ")
    assert "  " not in out
    assert not any(ch in UNICODE_WHITE_SPACE and ch != " " for ch in out)


@settings(max_examples=200, deadline=None)
@given(text=TEXT, pad=st.lists(st.sampled_from([" ", "\t", "\n", "\u00a0", "\u3000"]), min_size=1))
def test_whitespace_variants_are_equal(text: str, pad: list[str]) -> None:
    r = rules("conservative")
    ws = "".join(pad)
    assert r.canonicalize_text(ws + text + ws) == r.canonicalize_text(text)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(value=JSON_VALUES)
def test_canonicalize_json_is_idempotent_and_valid(value: object) -> None:
    r = rules("volatile")
    once = r.canonicalize_json(json.dumps(value))
    json.loads(once)
    assert r.canonicalize_json(once) == once


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=64).map(lambda b: b.decode("utf-8", "replace")) | st.text())
def test_arbitrary_input_never_crashes(raw: str) -> None:
    for name in BUILTINS:
        rules(name).canonicalize_text(raw)
        with contextlib.suppress(KeyInputError):
            rules(name).canonicalize_json(raw)


def test_lone_surrogates_are_a_python_error_not_a_crash() -> None:
    with pytest.raises(ValueError):  # UnicodeEncodeError is a ValueError
        rules("conservative").canonicalize_text("bad \ud800 text")
