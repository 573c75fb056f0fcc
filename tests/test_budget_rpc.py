"""Budgets as resources over gRPC: Set/Get/List/Delete round trips with the state fields."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from conftest import Sidecar, SidecarFactory

from skinflint.v1 import skinflint_pb2 as pb


def spec(budget_id: str, scope: str = "tenant:acme", **fields: object) -> pb.BudgetSpec:
    fields.setdefault("window", pb.BUDGET_WINDOW_DAY)
    fields.setdefault("limit_nanousd", 5_000_000_000)
    return pb.BudgetSpec(id=budget_id, scope=scope, **fields)  # type: ignore[arg-type]


async def test_set_get_list_delete_round_trip(sidecar: Sidecar) -> None:
    stub = sidecar.stub
    sent = spec(
        "acme-daily",
        scope="team:search+tenant:acme",  # stored in canonical order
        limit_tokens=1_000_000,
        soft_thresholds_percent=[80, 50, 100],
        action=pb.BUDGET_ACTION_DOWNGRADE,
    )
    created = await stub.SetBudget(pb.SetBudgetRequest(budget=sent))
    assert created.spec.id == "acme-daily"
    assert created.spec.scope == "tenant:acme+team:search"
    assert list(created.spec.soft_thresholds_percent) == [50, 80, 100]
    assert created.spec.window == pb.BUDGET_WINDOW_DAY
    assert created.spec.action == pb.BUDGET_ACTION_DOWNGRADE
    st = created.state
    assert (st.spent_nanousd, st.reserved_nanousd, st.remaining_nanousd) == (0, 0, 5_000_000_000)
    assert (st.spent_tokens, st.reserved_tokens, st.remaining_tokens) == (0, 0, 1_000_000)
    assert st.requests == 0
    today = int(datetime.now(UTC).timestamp()) // 86_400 * 86_400
    assert (st.window_start.seconds, st.resets_at.seconds) == (today, today + 86_400)

    got = await stub.GetBudget(pb.GetBudgetRequest(id="acme-daily"))
    assert got == created

    # Replace: the spec changes, the window's spend is kept.
    replaced = await stub.SetBudget(
        pb.SetBudgetRequest(budget=spec("acme-daily", limit_nanousd=7, window=pb.BUDGET_WINDOW_DAY))
    )
    assert replaced.spec.limit_nanousd == 7 and replaced.spec.limit_tokens == 0
    assert replaced.spec.action == pb.BUDGET_ACTION_REJECT

    await stub.SetBudget(
        pb.SetBudgetRequest(budget=spec("zz-total", window=pb.BUDGET_WINDOW_TOTAL))
    )
    await stub.SetBudget(pb.SetBudgetRequest(budget=spec("team-m", scope="team:x")))
    listed = await stub.ListBudgets(pb.ListBudgetsRequest())
    assert [b.spec.id for b in listed.budgets] == ["acme-daily", "team-m", "zz-total"]
    assert listed.next_page_token == ""
    total = listed.budgets[2].state
    assert not total.HasField("resets_at")  # a TOTAL window never resets
    assert total.window_start.seconds == 0

    prefixed = await stub.ListBudgets(pb.ListBudgetsRequest(scope_prefix="tenant:"))
    assert [b.spec.id for b in prefixed.budgets] == ["acme-daily", "zz-total"]

    first = await stub.ListBudgets(pb.ListBudgetsRequest(page_size=2))
    assert [b.spec.id for b in first.budgets] == ["acme-daily", "team-m"]
    assert first.next_page_token
    second = await stub.ListBudgets(
        pb.ListBudgetsRequest(page_size=2, page_token=first.next_page_token)
    )
    assert [b.spec.id for b in second.budgets] == ["zz-total"]
    assert second.next_page_token == ""

    deleted = await stub.DeleteBudget(pb.DeleteBudgetRequest(id="acme-daily"))
    assert deleted.deleted is True
    again = await stub.DeleteBudget(pb.DeleteBudgetRequest(id="acme-daily"))
    assert again.deleted is False
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetBudget(pb.GetBudgetRequest(id="acme-daily"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no budget 'acme-daily'" in info.value.details()


async def test_bad_page_token_is_invalid_argument(sidecar: Sidecar) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await sidecar.stub.ListBudgets(pb.ListBudgetsRequest(page_token="NOT A TOKEN"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("page_token:")


async def test_seeded_budgets_are_upserted_at_start(start_sidecar: SidecarFactory) -> None:
    side = await start_sidecar(
        "budgets:\n"
        "  seed:\n"
        "    - id: spend-rate\n"
        "      scope: global\n"
        "      window: minute\n"
        "      limit_nanousd: 2000000000\n"
        "      soft_thresholds_percent: [80]\n"
        "    - {id: acme-month, scope: tenant:acme, window: month, limit_tokens: 9,"
        " action: defer}\n"
    )
    await side.app.start()
    listed = await side.stub.ListBudgets(pb.ListBudgetsRequest())
    by_id = {b.spec.id: b.spec for b in listed.budgets}
    assert by_id["spend-rate"].window == pb.BUDGET_WINDOW_MINUTE
    assert list(by_id["spend-rate"].soft_thresholds_percent) == [80]
    assert by_id["acme-month"].action == pb.BUDGET_ACTION_DEFER
    assert by_id["acme-month"].limit_tokens == 9


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        (
            "budgets:\n  seed:\n    - {id: a, scope: 'org:x', window: day, limit_nanousd: 1}\n",
            "budgets.seed[0].scope",
        ),
        (
            "budgets:\n  seed:\n    - {id: a, scope: global, window: day}\n",
            "budgets.seed[0].limit_nanousd",
        ),
        (
            "budgets:\n  seed:\n    - {id: A!, scope: global, window: day, limit_tokens: 1}\n",
            "budgets.seed[0].id",
        ),
        ("budgets:\n  backend: redis\n", "budgets.redis_url"),
    ],
)
def test_bad_budget_config_names_the_key(
    make_settings,  # type: ignore[no-untyped-def]
    yaml_text: str,
    key: str,
) -> None:
    from skinflint.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        make_settings(yaml_text)
    assert key in str(info.value)


@pytest.mark.parametrize("backend", ["memory", "local"])
async def test_the_factory_builds_the_configured_store(
    make_settings,  # type: ignore[no-untyped-def]
    backend: str,
) -> None:
    from skinflint.budget_store import open_budget_store
    from skinflint.budget_store.base import BudgetStore
    from skinflint.config import prepare_data_dir

    settings = make_settings(f"budgets:\n  backend: {backend}\n")
    prepare_data_dir(settings)
    store = open_budget_store(settings)
    try:
        assert isinstance(store, BudgetStore)
    finally:
        await store.aclose()


def test_a_backend_missing_from_the_build_is_a_config_error(
    make_settings,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from skinflint.budget_store import open_budget_store
    from skinflint.errors import ConfigError

    # As if the Redis client were not installed: importing the module fails.
    monkeypatch.setitem(sys.modules, "skinflint.budget_store.redis_store", None)
    settings = make_settings("budgets:\n  backend: redis\n  redis_url: redis://127.0.0.1:1/0\n")
    with pytest.raises(ConfigError) as info:
        open_budget_store(settings)
    assert "budgets.backend" in str(info.value) and "'redis'" in str(info.value)
