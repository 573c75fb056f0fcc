"""CompleteStream end to end: started, deltas as they arrive, done with usage, cost and savings;
early failures still fall back; a stream cut after content is an error, never a clean end."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from complete_fixtures import RigFactory, hand_baseline, hand_cost, request

from skinflint.emulators import Fault
from skinflint.v1 import skinflint_pb2 as pb


async def collect(call: Any) -> list[pb.CompleteStreamEvent]:
    return [event async for event in call]


@pytest.mark.parametrize("model", ["anthropic/claude-haiku-4-5", "openai/gpt-4o-mini"])
async def test_stream_sends_started_deltas_and_a_priced_done(
    start_rig: RigFactory, model: str
) -> None:
    rig = await start_rig()
    events = await collect(rig.stub.CompleteStream(request(model, request_id="s-1")))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "started"
    assert kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"delta"} and len(kinds) >= 4
    started = events[0].started
    assert started.request_id == "s-1"
    assert f"{started.served_by.provider}/{started.served_by.model}" == model
    done = events[-1].done
    streamed = "".join(e.delta.text for e in events[1:-1])
    assert streamed == done.content[0].text.text
    assert {e.delta.index for e in events[1:-1]} == {0}
    assert done.usage.output_tokens > 0
    assert done.cost_nanousd == hand_cost(done.usage, model)
    assert done.baseline_cost_nanousd == hand_baseline(done.usage)
    assert done.savings.total_nanousd == done.baseline_cost_nanousd - done.cost_nanousd
    assert done.served_by.attempts == 1


async def test_failure_before_the_first_event_still_falls_back(start_rig: RigFactory) -> None:
    rig = await start_rig()
    rig.anthropic.faults.add(Fault(status=529))
    events = await collect(rig.stub.CompleteStream(request("small")))
    started = events[0].started
    assert started.served_by.model == "gpt-4o-mini"
    assert started.served_by.attempts == 2
    assert "fallback: openai/gpt-4o-mini" in started.served_by.route_reason
    assert events[-1].done.served_by.model == "gpt-4o-mini"


async def test_stream_cut_before_content_is_retried(start_rig: RigFactory) -> None:
    rig = await start_rig()
    rig.anthropic.faults.add(Fault(stream_cut_after=1))  # message_start only, then reset
    events = await collect(rig.stub.CompleteStream(request("anthropic/claude-haiku-4-5")))
    assert events[0].started.served_by.attempts == 2
    assert events[-1].WhichOneof("event") == "done"


async def test_stream_cut_after_content_is_an_error_not_a_clean_end(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig()
    rig.anthropic.faults.add(Fault(stream_cut_after=5))
    call = rig.stub.CompleteStream(request("anthropic/claude-haiku-4-5"))
    received: list[str] = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for event in call:
            received.append(event.WhichOneof("event"))
    assert received[0] == "started"
    assert "delta" in received
    assert "done" not in received
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "cut after content was sent" in info.value.details()
    assert len(rig.anthropic.requests) == 1  # never retried once content had gone out


async def test_error_event_mid_stream_is_an_error(start_rig: RigFactory) -> None:
    rig = await start_rig()
    rig.openai.faults.add(Fault(stream_error_after=3))
    call = rig.stub.CompleteStream(request("openai/gpt-4o-mini"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _event in call:
            pass
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
