"""The budget guard end to end: gRPC -> pipeline -> emulators, with budgets set over the
budget RPCs (or seeded from config) and read back to check what was reserved and committed."""

from __future__ import annotations

import calendar
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from complete_fixtures import Rig, RigFactory, hand_cost, request
from conftest import rich_status
from google.rpc import error_details_pb2
from redis_fixtures import redis_url
from structlog.testing import capture_logs

from skinflint.emulators import Fault
from skinflint.v1 import skinflint_pb2 as pb

# The fixture is imported, not registered with pytest_plugins, so only this module sees it.
__all__ = ["redis_url"]


async def set_budget(rig: Rig, budget_id: str, scope: str, **fields: Any) -> pb.Budget:
    fields.setdefault("window", pb.BUDGET_WINDOW_MONTH)
    spec = pb.BudgetSpec(id=budget_id, scope=scope, **fields)
    return await rig.stub.SetBudget(pb.SetBudgetRequest(budget=spec))


async def state(rig: Rig, budget_id: str) -> pb.BudgetState:
    return (await rig.stub.GetBudget(pb.GetBudgetRequest(id=budget_id))).state


@pytest.fixture
def request_id_prefix() -> str:
    """A Redis key prefix of this test's own."""
    return f"sf-test-{uuid.uuid4().hex[:12]}:"


def quota_failure(error: grpc.aio.AioRpcError) -> error_details_pb2.QuotaFailure:
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            found = error_details_pb2.QuotaFailure()
            detail.Unpack(found)
            return found
    raise AssertionError(f"no QuotaFailure in {error.details()}")


def retry_delay(error: grpc.aio.AioRpcError) -> float | None:
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToNanoseconds() / 1e9
    return None


def next_month_start() -> int:
    now = datetime.now(UTC)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0))


async def test_reject_names_budget_limit_spent_and_reset_with_quota_failure(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig()
    await set_budget(rig, "acme-daily", "tenant:acme", window=pb.BUDGET_WINDOW_DAY, limit_nanousd=1)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request("anthropic/claude-haiku-4-5"))
    error = info.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = error.details()
    assert details.startswith("budget 'acme-daily': day limit 1 nano-USD on scope tenant:acme")
    assert "spent 0 nano-USD" in details
    tomorrow = datetime.fromtimestamp((datetime.now(UTC).timestamp() // 86_400 + 1) * 86_400, UTC)
    assert f"resets at {tomorrow.isoformat().replace('+00:00', 'Z')}" in details
    violation = quota_failure(error).violations[0]
    assert violation.subject == "budget:acme-daily"
    assert "day limit 1 nano-USD" in violation.description
    delay = retry_delay(error)
    assert delay is not None and 0 < delay <= 86_400
    assert len(rig.anthropic.requests) == 0  # refused before any provider was called
    st = await state(rig, "acme-daily")
    assert (st.spent_nanousd, st.reserved_nanousd, st.requests) == (0, 0, 0)


async def test_committed_spend_equals_the_response_cost_on_every_matching_budget(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig()
    limit = 1_000_000_000
    await set_budget(rig, "acme-month", "tenant:acme", limit_nanousd=limit, limit_tokens=10**6)
    await set_budget(rig, "search-qa", "team:search+feature:qa", limit_nanousd=limit)
    await set_budget(rig, "other-tenant", "tenant:zeta", limit_nanousd=limit)
    response = await rig.stub.Complete(request("anthropic/claude-haiku-4-5"))
    cost = response.cost_nanousd
    assert cost == hand_cost(response.usage, "anthropic/claude-haiku-4-5") > 0
    u = response.usage
    tokens = u.input_tokens + u.output_tokens + u.cache_read_tokens
    tokens += u.cache_write_5m_tokens + u.cache_write_1h_tokens
    for budget_id in ("acme-month", "search-qa"):
        st = await state(rig, budget_id)
        assert (st.spent_nanousd, st.reserved_nanousd, st.requests) == (cost, 0, 1), budget_id
        assert st.remaining_nanousd == limit - cost
        assert st.resets_at.seconds == next_month_start()
    assert (await state(rig, "acme-month")).spent_tokens == tokens
    assert (await state(rig, "other-tenant")).requests == 0
    touches = {t.budget_id: t for t in response.budgets}
    assert set(touches) == {"acme-month", "search-qa"}
    acme = touches["acme-month"]
    assert (acme.scope, acme.remaining_nanousd, acme.remaining_tokens) == (
        "tenant:acme",
        limit - cost,
        10**6 - tokens,
    )
    assert acme.resets_at.seconds == next_month_start()


async def test_reservation_is_all_or_none_across_two_matching_budgets(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig()
    await set_budget(rig, "roomy", "tenant:acme", limit_nanousd=10**12)
    await set_budget(rig, "tight", "team:search", limit_nanousd=1000)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request("anthropic/claude-haiku-4-5"))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "budget 'tight'" in info.value.details()
    for budget_id in ("roomy", "tight"):
        st = await state(rig, budget_id)
        assert (st.spent_nanousd, st.reserved_nanousd, st.requests) == (0, 0, 0), budget_id


async def test_downgrade_routes_to_a_cheaper_tier_that_fits(start_rig: RigFactory) -> None:
    rig = await start_rig()
    # max_tokens 1000: mid's worst case is over $0.015 (Sonnet output at $15/M), small's about
    # $0.005 (Haiku output at $5/M); a $0.01 budget holds small, not mid.
    await set_budget(
        rig,
        "acme-cap",
        "tenant:acme",
        limit_nanousd=10_000_000,
        action=pb.BUDGET_ACTION_DOWNGRADE,
    )
    req = request("mid", params=pb.GenerationParams(max_tokens=1000))
    response = await rig.stub.Complete(req)
    served = response.served_by
    assert (served.provider, served.model, served.tier) == (
        "anthropic",
        "claude-haiku-4-5",
        pb.TIER_SMALL,
    )
    assert "budget downgrade: budget 'acme-cap'" in served.route_reason
    assert "tier 'small' fits" in served.route_reason
    st = await state(rig, "acme-cap")
    assert (st.spent_nanousd, st.reserved_nanousd) == (response.cost_nanousd, 0)
    assert rig.anthropic.requests.last.body["model"] == "claude-haiku-4-5"


async def test_downgrade_never_reroutes_a_pinned_model(start_rig: RigFactory) -> None:
    rig = await start_rig()
    await set_budget(
        rig, "acme-cap", "tenant:acme", limit_nanousd=1000, action=pb.BUDGET_ACTION_DOWNGRADE
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request("anthropic/claude-sonnet-4-6"))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "a pinned model is never rerouted" in info.value.details()
    assert len(rig.anthropic.requests) == 0


async def test_downgrade_reaches_the_free_local_tier_when_only_it_fits(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig()  # the rig's local tier is vLLM, priced at $0
    await set_budget(
        rig, "acme-cap", "tenant:acme", limit_nanousd=10, action=pb.BUDGET_ACTION_DOWNGRADE
    )
    response = await rig.stub.Complete(request("frontier"))
    assert (response.served_by.provider, response.served_by.tier) == ("vllm", pb.TIER_LOCAL)
    assert "tier 'local' fits" in response.served_by.route_reason
    assert response.cost_nanousd == 0


async def test_downgrade_with_no_tier_that_fits_is_rejected(start_rig: RigFactory) -> None:
    rig = await start_rig()
    # Tokens are not cheaper on a lower tier: no tier holds 64 output tokens in a 10-token cap.
    await set_budget(
        rig, "acme-cap", "tenant:acme", limit_tokens=10, action=pb.BUDGET_ACTION_DOWNGRADE
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request("frontier"))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "no cheaper tier fits" in info.value.details()
    assert len(rig.anthropic.requests) + len(rig.openai.requests) + len(rig.vllm.requests) == 0


async def test_defer_answers_resource_exhausted_with_the_reset_time(start_rig: RigFactory) -> None:
    rig = await start_rig()
    await set_budget(
        rig,
        "acme-hourly",
        "tenant:acme",
        window=pb.BUDGET_WINDOW_HOUR,
        limit_nanousd=1,
        action=pb.BUDGET_ACTION_DEFER,
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request("anthropic/claude-haiku-4-5"))
    error = info.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    next_hour = (int(datetime.now(UTC).timestamp()) // 3600 + 1) * 3600
    stamp = datetime.fromtimestamp(next_hour, UTC).isoformat().replace("+00:00", "Z")
    assert f"the window resets at {stamp}" in error.details()
    assert "action defer" in error.details()
    delay = retry_delay(error)
    assert delay is not None and 0 < delay <= 3600
    assert quota_failure(error).violations[0].subject == "budget:acme-hourly"


async def test_spend_rate_minute_budget_seeded_from_config(start_rig: RigFactory) -> None:
    rig = await start_rig(
        "budgets:\n"
        "  seed:\n"
        "    - {id: spend-rate, scope: global, window: minute, limit_nanousd: 1000}\n"
    )
    listed = await rig.stub.ListBudgets(pb.ListBudgetsRequest())
    assert [b.spec.id for b in listed.budgets] == ["spend-rate"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request("anthropic/claude-haiku-4-5"))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "budget 'spend-rate': minute limit 1000 nano-USD on scope global" in (
        info.value.details()
    )


async def test_failed_call_releases_everything(start_rig: RigFactory) -> None:
    rig = await start_rig("  max_retries: 0\n")
    await set_budget(rig, "acme", "tenant:acme", limit_nanousd=10**9, limit_tokens=10**6)
    rig.anthropic.faults.add(Fault(status=500, times=10))
    rig.openai.faults.add(Fault(status=503, times=10))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request("small"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    st = await state(rig, "acme")
    assert (st.spent_nanousd, st.reserved_nanousd, st.spent_tokens, st.reserved_tokens) == (
        0,
        0,
        0,
        0,
    )
    assert st.requests == 0


async def test_fallback_commits_only_the_attempt_that_billed(start_rig: RigFactory) -> None:
    rig = await start_rig()
    await set_budget(rig, "acme", "tenant:acme", limit_nanousd=10**9)
    rig.anthropic.faults.add(Fault(status=529))
    response = await rig.stub.Complete(request("small"))
    assert response.served_by.model == "gpt-4o-mini" and response.served_by.attempts == 2
    st = await state(rig, "acme")
    assert (
        st.spent_nanousd == response.cost_nanousd == hand_cost(response.usage, "openai/gpt-4o-mini")
    )
    assert (st.reserved_nanousd, st.requests) == (0, 1)


async def test_stream_commits_the_usage_of_its_done_event(start_rig: RigFactory) -> None:
    rig = await start_rig()
    await set_budget(rig, "acme", "tenant:acme", limit_nanousd=10**9)
    events = [e async for e in rig.stub.CompleteStream(request("anthropic/claude-haiku-4-5"))]
    done = events[-1].done
    assert done.cost_nanousd > 0
    st = await state(rig, "acme")
    assert (st.spent_nanousd, st.reserved_nanousd, st.requests) == (done.cost_nanousd, 0, 1)
    assert [t.budget_id for t in done.budgets] == ["acme"]
    assert done.budgets[0].remaining_nanousd == 10**9 - done.cost_nanousd


async def test_stream_cut_after_content_commits_the_worst_case_never_zero(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig()
    await set_budget(rig, "acme", "tenant:acme", limit_nanousd=10**9)
    rig.anthropic.faults.add(Fault(stream_cut_after=5))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _event in rig.stub.CompleteStream(request("anthropic/claude-haiku-4-5")):
            pass
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    st = await state(rig, "acme")
    assert st.reserved_nanousd == 0 and st.requests == 1
    # 64 output tokens at Haiku's $5/M alone are 320,000 nano-USD: the worst case holds them.
    assert st.spent_nanousd >= 64 * 5000
    # The full answer of the same request costs less than what was committed for the cut one.
    response = await rig.stub.Complete(request("anthropic/claude-haiku-4-5"))
    assert response.cost_nanousd < st.spent_nanousd


async def test_stream_cut_before_content_falls_back_and_commits_only_the_answer(
    start_rig: RigFactory,
) -> None:
    rig = await start_rig()
    await set_budget(rig, "acme", "tenant:acme", limit_nanousd=10**9)
    rig.anthropic.faults.add(Fault(status=529))
    events = [e async for e in rig.stub.CompleteStream(request("small"))]
    done = events[-1].done
    assert done.served_by.model == "gpt-4o-mini"
    st = await state(rig, "acme")
    assert (st.spent_nanousd, st.requests) == (done.cost_nanousd, 1)


async def test_token_limits_reject_and_count(start_rig: RigFactory) -> None:
    rig = await start_rig()
    await set_budget(rig, "qa-tokens", "feature:qa", window=pb.BUDGET_WINDOW_DAY, limit_tokens=50)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request("openai/gpt-4o-mini"))  # max_tokens 64 alone is > 50
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "day limit 50 tokens" in info.value.details()
    await set_budget(rig, "qa-tokens", "feature:qa", window=pb.BUDGET_WINDOW_DAY, limit_tokens=500)
    response = await rig.stub.Complete(request("openai/gpt-4o-mini"))
    u = response.usage
    st = await state(rig, "qa-tokens")
    assert st.spent_tokens == u.input_tokens + u.cache_read_tokens + u.output_tokens
    assert st.remaining_tokens == 500 - st.spent_tokens
    assert st.spent_nanousd == response.cost_nanousd
    assert response.budgets[0].remaining_nanousd == 0  # no money limit on this budget


@pytest.mark.parametrize("words", [1, 40, 400, 3000])
async def test_worst_case_reservation_covers_the_emulator_bill(
    start_rig: RigFactory, words: int
) -> None:
    rig = await start_rig()
    await set_budget(rig, "acme", "tenant:acme", limit_nanousd=10**12, limit_tokens=10**9)
    text = " ".join(f"word{i} émigré 数据" for i in range(words))
    with capture_logs() as logs:
        for model in ("anthropic/claude-haiku-4-5", "openai/gpt-4o-mini", "small"):
            await rig.stub.Complete(request(model, text=text))
            await rig.stub.Complete(request(model, text=text))  # warm: cache reads / writes
    assert not [e for e in logs if e["event"] == "budget_commit_above_reservation"]
    st = await state(rig, "acme")
    assert (st.reserved_nanousd, st.requests) == (0, 6)


async def test_the_guard_runs_on_the_redis_store(
    start_rig: RigFactory, redis_url: str, request_id_prefix: str
) -> None:
    rig = await start_rig(
        f"budgets:\n  backend: redis\n  redis_url: '{redis_url}'\n"
        f"  redis_prefix: '{request_id_prefix}'\n"
    )
    assert type(rig.app.budgets.store).__name__ == "RedisBudgetStore"
    await set_budget(rig, "acme", "tenant:acme", limit_nanousd=10**9)
    await set_budget(rig, "tight", "team:search", limit_nanousd=10**9)
    response = await rig.stub.Complete(request("anthropic/claude-haiku-4-5"))
    for budget_id in ("acme", "tight"):
        st = await state(rig, budget_id)
        assert (st.spent_nanousd, st.reserved_nanousd, st.requests) == (
            response.cost_nanousd,
            0,
            1,
        )
    await set_budget(rig, "tight", "team:search", limit_nanousd=1)
    with pytest.raises(grpc.aio.AioRpcError) as info:  # a new question: not a cache hit
        await rig.stub.Complete(request("anthropic/claude-haiku-4-5", text="Another one?"))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await state(rig, "acme")).reserved_nanousd == 0  # all or none, across Redis keys


async def test_an_unreachable_store_fails_the_call_closed(start_rig: RigFactory) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rig = await start_rig(
        f"budgets:\n  backend: redis\n  redis_url: 'redis://127.0.0.1:{port}/0'\n"
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.stub.Complete(request("anthropic/claude-haiku-4-5"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "budget store could not" in info.value.details()
    assert len(rig.anthropic.requests) == 0


async def test_a_stream_the_client_cancels_after_content_commits_the_worst_case(
    start_rig: RigFactory,
) -> None:
    import asyncio

    rig = await start_rig(anthropic={"token_latency": 0.05})  # the answer takes seconds
    await set_budget(rig, "acme", "tenant:acme", limit_nanousd=10**9)
    call = rig.stub.CompleteStream(request("anthropic/claude-haiku-4-5", text="tell me a story"))
    async for event in call:
        if event.WhichOneof("event") == "delta":
            call.cancel()
            break
    for _ in range(100):  # the server sees the cancellation asynchronously
        st = await state(rig, "acme")
        if st.requests:
            break
        await asyncio.sleep(0.02)
    assert st.reserved_nanousd == 0
    assert st.requests == 1 and st.spent_nanousd >= 64 * 5000  # billed: never zero


async def test_the_guard_runs_on_the_local_lmdb_store(start_rig: RigFactory) -> None:
    rig = await start_rig("budgets:\n  backend: local\n")
    assert type(rig.app.budgets.store).__name__ == "LocalBudgetStore"
    await set_budget(rig, "acme", "tenant:acme", limit_nanousd=10**9)
    await set_budget(rig, "tight", "team:search", limit_nanousd=10**9)
    response = await rig.stub.Complete(request("anthropic/claude-haiku-4-5"))
    for budget_id in ("acme", "tight"):
        st = await state(rig, budget_id)
        assert (st.spent_nanousd, st.reserved_nanousd, st.requests) == (
            response.cost_nanousd,
            0,
            1,
        )
    await set_budget(rig, "tight", "team:search", limit_nanousd=1)
    with pytest.raises(grpc.aio.AioRpcError) as info:  # a new question: not a cache hit
        await rig.stub.Complete(request("anthropic/claude-haiku-4-5", text="Another one?"))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await state(rig, "acme")).reserved_nanousd == 0
