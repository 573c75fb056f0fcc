"""The parts a response-cache hit reuses: ``IdentityMemo`` (kept by identity, holds its keys,
bounded), ``Call.with_request_id``, ``new_request_id`` and the transport's kept wire
responses (``CompleteResponses``: the same bytes as building the response afresh)."""

from __future__ import annotations

import dataclasses
import gc
import uuid
import weakref

import pytest
from conftest import complete_request
from test_convert_call import rich_request

from skinflint.accounting import Usage
from skinflint.call import Lane, TextPart, Tier, ToolUsePart, new_request_id
from skinflint.memo import IdentityMemo
from skinflint.pipeline.budget_guard import Touch
from skinflint.pipeline.complete import Completion, Served
from skinflint.pipeline.pricing import Bill, Savings
from skinflint.pipeline.response_cache import CacheStatus
from skinflint.providers.base import StopReason
from skinflint.transports.grpc import convert
from skinflint.transports.grpc.responses import CompleteResponses, complete_response


class Part:
    """A stand-in frozen part (weak-referenceable, unlike a tuple)."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Part) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


# -- IdentityMemo ----------------------------------------------------------------------------


def test_the_memo_finds_the_very_objects_and_only_them() -> None:
    memo: IdentityMemo[str] = IdentityMemo(8)
    a, b = Part("a"), Part("b")
    assert memo.get((a, b)) is None
    assert memo.put((a, b), "ab") == "ab"
    assert memo.get((a, b)) == "ab"
    assert memo.get((b, a)) is None  # order is part of the key
    assert memo.get((Part("a"), b)) is None  # equal is not enough: the same object is needed
    assert memo.get((a,)) is None


def test_the_memo_holds_its_keys_so_an_id_is_never_reused_while_kept() -> None:
    memo: IdentityMemo[str] = IdentityMemo(2)
    part = Part("kept")
    alive = weakref.ref(part)
    memo.put((part,), "v")
    del part
    gc.collect()
    assert alive() is not None  # held by the memo: its id cannot name another object
    memo.put((Part("x"),), "x")
    memo.put((Part("y"),), "y")  # the oldest entry goes, and its key object with it
    gc.collect()
    assert alive() is None
    assert len(memo) == 2


def test_the_memo_is_bounded_oldest_first() -> None:
    memo: IdentityMemo[int] = IdentityMemo(3)
    parts = [Part(str(i)) for i in range(5)]
    for i, part in enumerate(parts):
        memo.put((part,), i)
    assert len(memo) == 3
    assert [memo.get((p,)) for p in parts] == [None, None, 2, 3, 4]
    with pytest.raises(ValueError, match="max_entries"):
        IdentityMemo(0)


# -- ids ---------------------------------------------------------------------------------------


def test_new_request_ids_are_version_4_uuids_and_distinct() -> None:
    ids = [new_request_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:2_000]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


@pytest.mark.parametrize("make", [rich_request, complete_request])
def test_with_request_id_is_replace_sharing_every_other_part(make: object) -> None:
    call = convert.to_call(make())  # type: ignore[operator]
    twin = call.with_request_id("other-id")
    assert twin == dataclasses.replace(call, request_id="other-id")
    assert twin.request_id == "other-id" and call.request_id != "other-id"
    for field in dataclasses.fields(call):
        if field.name != "request_id":
            assert getattr(twin, field.name) is getattr(call, field.name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        twin.request_id = "changed"  # type: ignore[misc]


# -- CompleteResponses -----------------------------------------------------------------------

USAGE = Usage(input_tokens=12, output_tokens=7, cache_read_tokens=3)
BILL = Bill(
    cost_nanousd=0,
    baseline_cost_nanousd=9_000,
    savings=Savings(response_cache=4_000, routing=5_000),
    price_version="test-1",
)
CONTENT = (TextPart("Paris."), ToolUsePart("toolu_1", "lookup", {"city": "Paris"}))


def served(status: CacheStatus) -> Served:
    return Served(
        provider="anthropic",
        model="claude-haiku-4-5",
        tier=Tier.SMALL,
        lane=Lane.INTERACTIVE,
        route_reason="response cache hit (key 0123abcd…)",
        attempts=0,
        cache_status=status,
    )


def completion(
    request_id: str, served_by: Served, budgets: tuple[Touch, ...] = (), content: tuple = CONTENT
) -> Completion:
    return Completion(
        request_id=request_id,
        content=content,
        stop_reason=StopReason.TOOL_USE,
        served=served_by,
        usage=USAGE,
        bill=BILL,
        budgets=budgets,
    )


def test_a_kept_hit_response_is_byte_for_byte_a_fresh_one() -> None:
    responses = CompleteResponses()
    hit = served(CacheStatus.EXACT)
    touch = Touch("acme", "tenant:acme", remaining_nanousd=5, remaining_tokens=0, resets_at=7)
    cases = [
        completion("r-1", hit),
        completion("r-2", hit, (touch,)),
        completion("r-3", hit),
        completion("", hit),
    ]
    for case in cases:
        built = responses(case)
        assert built.SerializeToString(deterministic=True) == complete_response(
            case
        ).SerializeToString(deterministic=True)
    assert len(responses._kept) == 1  # one shape, kept once, copied per call
    first, again = responses(cases[0]), responses(cases[0])
    assert first == again and first is not again  # a copy each time: callers may change it


def test_only_exact_hits_of_bounded_size_are_kept() -> None:
    responses = CompleteResponses(max_bytes=200)
    for status in (CacheStatus.MISS, CacheStatus.BYPASS, CacheStatus.SEMANTIC):
        case = completion("r", served(status))
        assert responses(case) == complete_response(case)
    assert len(responses._kept) == 0
    big = completion("r", served(CacheStatus.EXACT), content=(TextPart("x" * 500),))
    assert responses(big) == complete_response(big)
    assert len(responses._kept) == 0
    small = completion("r", served(CacheStatus.EXACT), content=(TextPart("ok"),))
    assert responses(small) == complete_response(small)
    assert len(responses._kept) == 1
