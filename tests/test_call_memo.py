"""``CallMemo``: the servicer's memo of converted requests gives exactly ``convert.to_call``'s
answer (own request id, fresh ids, same validation errors), and stays bounded."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import complete_request
from test_convert_call import rich_request

from skinflint.errors import InvalidArgument
from skinflint.transports.grpc import convert
from skinflint.transports.grpc.call_memo import CallMemo
from skinflint.v1 import skinflint_pb2 as pb


def without_id(call: object) -> object:
    return dataclasses.replace(call, request_id="")  # type: ignore[type-var]


@pytest.mark.parametrize("make", [rich_request, complete_request])
def test_equal_to_to_call_first_and_when_reused(make: object) -> None:
    memo = CallMemo()
    request = make()  # type: ignore[operator]
    expected = convert.to_call(request)
    first = memo.to_call(request)
    again = memo.to_call(make())  # type: ignore[operator]
    assert len(memo) == 1
    assert without_id(first) == without_id(again) == without_id(expected)
    if request.request_id:
        assert first.request_id == again.request_id == request.request_id
    else:
        assert first.request_id != again.request_id  # a fresh id for each call


def test_each_request_keeps_its_own_id_and_the_message_is_left_as_sent() -> None:
    memo = CallMemo()
    a = complete_request(request_id="req-a")
    b = complete_request(request_id="req-b")
    assert memo.to_call(a).request_id == "req-a"
    assert memo.to_call(b).request_id == "req-b"
    assert memo.to_call(complete_request()).request_id not in ("", "req-a", "req-b")
    assert len(memo) == 1  # the id is not part of what is kept
    assert a.request_id == "req-a" and b.request_id == "req-b"


def test_a_bad_id_on_a_kept_request_is_still_rejected() -> None:
    memo = CallMemo()
    memo.to_call(complete_request())
    with pytest.raises(InvalidArgument) as info:
        memo.to_call(complete_request(request_id="has spaces"))
    assert "request_id" in str(info.value)


def test_invalid_requests_fail_every_time_and_are_not_kept() -> None:
    memo = CallMemo()
    bad = complete_request(model="no-slash")
    for _ in range(2):
        with pytest.raises(InvalidArgument) as info:
            memo.to_call(bad)
        assert "model" in str(info.value)
    assert len(memo) == 0


def test_different_content_is_a_different_entry() -> None:
    memo = CallMemo()
    one = memo.to_call(complete_request())
    other = complete_request()
    other.params.temperature = 0.5
    two = memo.to_call(other)
    assert one.params.temperature == 0.0 and two.params.temperature == 0.5
    assert len(memo) == 2


def test_bounded_in_count_and_size() -> None:
    memo = CallMemo(max_entries=3, max_request_bytes=400)
    for n in range(5):
        memo.to_call(complete_request(labels={"n": str(n)}))
    assert len(memo) == 3
    big = complete_request(
        messages=[
            pb.Message(
                role=pb.ROLE_USER, content=[pb.ContentPart(text=pb.TextPart(text="x" * 500))]
            )
        ]
    )
    assert memo.to_call(big).messages[0].parts[0].text == "x" * 500  # type: ignore[union-attr]
    assert len(memo) == 3
