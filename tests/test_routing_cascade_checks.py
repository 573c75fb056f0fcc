"""Cascade checks and the combined bill, unit by unit (the end-to-end runs are in
``test_routing_e2e.py``)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from skinflint.accounting import Usage
from skinflint.call import (
    Call,
    GenerationParams,
    Message,
    ModelKind,
    ModelSpec,
    ResponseFormat,
    ResponseFormatType,
    Role,
    TextPart,
    ToolUsePart,
)
from skinflint.pipeline.cascade import combine, failed_check
from skinflint.pipeline.pricing import Bill, Savings
from skinflint.providers.base import ProviderResponse, StopReason

ALL = ("schema", "refusal", "empty", "truncated")
SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 0}},
    "required": ["n"],
}


def make_call(fmt: ResponseFormat | None = None) -> Call:
    return Call(
        model=ModelSpec("auto", ModelKind.AUTO),
        messages=(Message(Role.USER, (TextPart("count"),)),),
        request_id="r",
        params=GenerationParams(response_format=fmt),
    )


def answer(text: str, stop: StopReason = StopReason.END_TURN, tool: bool = False) -> Any:
    content: tuple[Any, ...] = (TextPart(text),) if text else ()
    if tool:
        content += (ToolUsePart("t1", "lookup", {"q": "x"}),)
    return ProviderResponse("anthropic", "m", content, stop, Usage(1, 1))


def test_each_check_and_its_switch() -> None:
    plain = make_call()
    assert failed_check(plain, answer("fine"), ALL) is None
    assert failed_check(plain, answer("no", StopReason.REFUSAL), ALL).startswith("refusal")
    assert failed_check(plain, answer("x", StopReason.CONTENT_FILTER), ALL).startswith("refusal")
    assert failed_check(plain, answer("cut", StopReason.MAX_TOKENS), ALL).startswith("truncated")
    assert failed_check(plain, answer("  \n"), ALL).startswith("empty")
    assert failed_check(plain, answer("", tool=True), ALL) is None  # a tool call is an answer
    # A check that is switched off does not fire.
    assert failed_check(plain, answer("cut", StopReason.MAX_TOKENS), ("refusal",)) is None
    assert failed_check(plain, answer(""), ("schema", "truncated")) is None


def test_schema_check_parses_and_validates() -> None:
    schema_call = make_call(ResponseFormat(ResponseFormatType.JSON_SCHEMA, "a", SCHEMA))
    assert failed_check(schema_call, answer('{"n": 3}'), ALL) is None
    assert "not JSON" in failed_check(schema_call, answer("{n: 3"), ALL)
    wrong = failed_check(schema_call, answer('{"n": -1}'), ALL)
    assert wrong is not None and "invalid at n" in wrong
    missing = failed_check(schema_call, answer('{"m": 1}'), ALL)
    assert missing is not None and "'n' is a required property" in missing
    object_call = make_call(ResponseFormat(ResponseFormatType.JSON_OBJECT))
    assert failed_check(object_call, answer('{"any": 1}'), ALL) is None
    assert "not an object" in failed_check(object_call, answer("[1, 2]"), ALL)
    assert failed_check(object_call, answer("[1, 2]"), ("empty",)) is None


nano = st.integers(0, 10**12)


@given(c1=nano, pc1=nano, r1=nano, c2=nano, pc2=nano, base=nano)
def test_combined_bill_keeps_the_levers_adding_up(
    c1: int, pc1: int, r1: int, c2: int, pc2: int, base: int
) -> None:
    first = Bill(c1, r1 + pc1 + c1, Savings(routing=r1, prompt_caching=pc1), "v")
    final = Bill(c2, base, Savings(routing=base - c2 - pc2, prompt_caching=pc2), "v")
    both = combine(first, final)
    assert both.cost_nanousd == c1 + c2
    assert both.baseline_cost_nanousd == base  # one naive call, not two
    assert both.savings.total == base - c1 - c2
