"""Dispatch resilience end to end: fallback, retry-after, all-failed, deadlines, cancellation
and the circuit breaker, with faults scripted on the provider emulators."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest
from complete_fixtures import RigFactory, request
from conftest import rich_status
from google.rpc import error_details_pb2

from skinflint.emulators import Fault
from skinflint.errors import DeadlineExceeded
from skinflint.transports.grpc.convert import to_call
from skinflint.v1 import skinflint_pb2 as pb


async def test_tier_falls_back_to_the_next_model_when_the_primary_is_overloaded(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig()
    rig.anthropic.faults.add(Fault(status=529))
    response = await rig.stub.Complete(request("small"))
    served = response.served_by
    assert (served.provider, served.model) == ("openai", "gpt-4o-mini")
    assert served.tier == 2  # TIER_SMALL
    assert served.attempts == 2
    assert "fallback: openai/gpt-4o-mini after anthropic/claude-haiku-4-5 failed" in (
        served.route_reason
    )
    assert "HTTP 529" in served.route_reason
    assert [e.status for e in rig.anthropic.requests] == [529]
    assert len(rig.openai.requests) == 1


async def test_rate_limit_is_retried_after_the_retry_after_delay(start_rig: RigFactory) -> None:
    rig = await start_rig()
    rig.anthropic.faults.add(Fault(status=429, retry_after_ms=300))
    waits: list[float] = []
    real_sleep = rig.app.dispatcher.sleep

    async def recording_sleep(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(seconds)

    rig.app.dispatcher.sleep = recording_sleep
    response = await rig.stub.Complete(request("anthropic/claude-haiku-4-5"))
    assert response.served_by.model == "claude-haiku-4-5"
    assert response.served_by.attempts == 2
    assert [e.status for e in rig.anthropic.requests] == [429, 200]
    # The backoff is configured at most 0.05 s: only the provider's hint explains this wait.
    assert len(waits) == 1 and waits[0] >= 0.3
    assert "served after 1 retried failure(s)" in response.served_by.route_reason


async def test_retry_after_beyond_the_limit_moves_on_instead_of_waiting(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig("  max_retry_after_s: 1.0\n")  # appended under dispatch
    rig.anthropic.faults.add(Fault(status=429, retry_after=120))
    response = await rig.stub.Complete(request("small"))
    assert response.served_by.model == "gpt-4o-mini"
    assert response.served_by.attempts == 2


async def test_all_models_failing_is_unavailable_listing_each_attempt(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig("  max_retries: 1\n")
    rig.anthropic.faults.add(Fault(status=500, times=10))
    rig.openai.faults.add(Fault(status=503, times=10))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request("small"))
    error = info.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    details = error.details()
    assert "anthropic/claude-haiku-4-5, openai/gpt-4o-mini" in details
    assert "after 4 attempt(s)" in details
    # Each model: one try and one retry (max_retries 1). Overloaded moves on at once except
    # on the last model, where waiting and retrying is the only option left.
    assert details.count("anthropic/claude-haiku-4-5: HTTP 500") == 2
    assert details.count("openai/gpt-4o-mini: HTTP 503") == 2
    positions = [details.index(f"attempt {n} ") for n in (1, 2, 3, 4)]
    assert positions == sorted(positions)
    assert (len(rig.anthropic.requests), len(rig.openai.requests)) == (2, 2)
    assert not any(
        d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in rich_status(error).details
    )  # no provider said when to come back


async def test_unavailable_carries_the_providers_retry_hint(start_rig: RigFactory) -> None:
    rig = await start_rig("  max_retry_after_s: 1.0\n")
    rig.anthropic.faults.add(Fault(status=429, retry_after=120))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request("anthropic/claude-haiku-4-5"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(rig.anthropic.requests) == 1  # 120 s is beyond max_retry_after_s: not waited
    hints = [
        d for d in rich_status(info.value).details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)
    ]
    retry = error_details_pb2.RetryInfo()
    hints[0].Unpack(retry)
    assert retry.retry_delay.seconds == 120


async def test_invalid_request_is_not_retried_or_rerouted(start_rig: RigFactory) -> None:
    rig = await start_rig()
    rig.anthropic.faults.add(Fault(status=400, message="max_tokens: too large"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request("small"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_tokens: too large" in info.value.details()
    assert len(rig.openai.requests) == 0


async def test_deadline_runs_out_while_the_provider_is_slow(start_rig: RigFactory) -> None:
    rig = await start_rig(anthropic={"latency": 3.0})
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request("anthropic/claude-haiku-4-5"), timeout=0.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The same through the App: the deadline becomes the provider's timeout and our error.
    with pytest.raises(DeadlineExceeded, match="deadline ran out"):
        await rig.app.complete(to_call(request("anthropic/claude-haiku-4-5")), timeout_s=0.3)


async def test_deadline_too_short_for_a_fallback_is_deadline_exceeded(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig(anthropic={"latency": 3.0}, openai={"latency": 3.0})
    with pytest.raises(DeadlineExceeded) as info:
        await rig.app.complete(to_call(request("small")), timeout_s=0.4)
    assert "anthropic/claude-haiku-4-5" in str(info.value) or "waiting for" in str(info.value)


async def test_client_cancellation_cancels_the_provider_call(start_rig: RigFactory) -> None:
    rig = await start_rig(anthropic={"latency": 5.0})
    call = rig.stub.Complete(request("anthropic/claude-haiku-4-5"))
    await _until(lambda: len(rig.anthropic.requests) == 1)  # the provider saw it start
    assert rig.app.dispatcher.in_flight("anthropic") == 1
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # The RPC's cancellation reached the provider call: the provider connection was closed
    # while the emulator was still working on it, and the slot is free again.
    await _until(lambda: rig.anthropic.requests.last.error == "client disconnected")
    assert rig.anthropic.requests.last.status is None
    await _until(lambda: rig.app.dispatcher.in_flight("anthropic") == 0)


async def test_client_cancelling_a_stream_closes_the_provider_connection(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig(anthropic={"token_latency": 0.1})
    long_answer = request("anthropic/claude-haiku-4-5", params=pb.GenerationParams(max_tokens=500))
    call = rig.stub.CompleteStream(long_answer)
    seen = [await call.read() for _ in range(2)]  # started, then a first delta
    assert seen[0].HasField("started") and seen[1].HasField("delta")
    call.cancel()
    # The emulator is still streaming: its next write finds the connection closed.
    await _until(lambda: rig.anthropic.requests.last.error == "client disconnected")
    assert rig.app.dispatcher.in_flight("anthropic") == 0


async def _until(condition: Callable[[], bool], tries: int = 500) -> None:
    """Poll ``condition`` every 10 ms (the emulator and the sidecar share this event loop)."""
    for _ in range(tries):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_circuit_breaker_opens_then_lets_a_trial_through(start_rig: RigFactory) -> None:
    rig = await start_rig("  max_retries: 0\n  breaker_failures: 2\n  breaker_cooldown_s: 0.3\n")
    rig.anthropic.faults.add(Fault(status=500, times=2))
    model = "anthropic/claude-haiku-4-5"
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await rig.stub.Complete(request(model))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # Open: no call goes out.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request(model))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "circuit open" in info.value.details()
    assert len(rig.anthropic.requests) == 2
    # A tier with a fallback skips the open model and is served by the next one.
    response = await rig.stub.Complete(request("small"))
    assert response.served_by.model == "gpt-4o-mini"
    assert response.served_by.attempts == 1
    assert "circuit open" in response.served_by.route_reason
    # After the cooldown one trial call goes out; its success closes the circuit.
    await asyncio.sleep(0.35)
    response = await rig.stub.Complete(request(model))
    assert response.served_by.model == "claude-haiku-4-5"
    assert len(rig.anthropic.requests) == 3


async def test_provider_concurrency_limit_queues_calls(start_rig: RigFactory) -> None:
    rig = await start_rig(anthropic_settings=", max_concurrency: 1", anthropic={"latency": 1.0})
    model = "anthropic/claude-haiku-4-5"
    # Different questions: identical ones would be coalesced by the response cache.
    calls = [
        asyncio.ensure_future(rig.stub.Complete(request(model, text=f"Question {i}?")))
        for i in range(2)
    ]
    await _until(lambda: len(rig.anthropic.requests) == 1)
    await asyncio.sleep(0.1)
    # The second call waits for the slot: the provider has seen only the first.
    assert len(rig.anthropic.requests) == 1
    assert rig.app.dispatcher.in_flight("anthropic") == 1
    responses = await asyncio.gather(*calls)
    assert [r.served_by.attempts for r in responses] == [1, 1]
    assert len(rig.anthropic.requests) == 2


async def test_rejected_key_skips_that_provider_without_retrying(start_rig: RigFactory) -> None:
    rig = await start_rig(anthropic={"api_keys": {"sk-ant-someone-else": "org-x"}})
    response = await rig.stub.Complete(request("small"))
    assert response.served_by.model == "gpt-4o-mini"
    assert response.served_by.attempts == 2
    assert "HTTP 401" in response.served_by.route_reason
    assert [e.status for e in rig.anthropic.requests] == [401]  # never retried
