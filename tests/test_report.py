"""``skinflint report``: totals equal the sum of the responses' costs (real calls through the
sidecar, read back from its ledger), grouping, JSON with exact nano-USD, HTML and PNG charts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from complete_fixtures import RigFactory, request
from ledger_fixtures import rec
from typer.testing import CliRunner

from skinflint.cli import app as cli
from skinflint.emulators import Fault
from skinflint.ledger import Ledger
from skinflint.reporting.charts import waterfall_steps
from skinflint.reporting.report import GroupBy, build_report, parse_since, usd, usd_short
from skinflint.v1 import skinflint_pb2 as pb

LEVER_FIELDS = {
    "response_cache": "response_cache_nanousd",
    "routing": "routing_nanousd",
    "prompt_caching": "prompt_caching_nanousd",
    "batching": "batching_nanousd",
    "local_tier": "local_tier_nanousd",
}


async def _traffic(start_rig: RigFactory) -> tuple[Any, list[pb.CompleteResponse]]:
    rig = await start_rig()
    responses = [
        await rig.stub.Complete(request("small")),
        await rig.stub.Complete(request("small")),  # a response-cache hit
        await rig.stub.Complete(request("mid", text="Explain photosynthesis briefly.")),
    ]
    other = pb.Attribution(tenant="zeta", team="ops", feature="triage")
    responses.append(
        await rig.stub.Complete(request("small", text="Triage this.", attribution=other))
    )
    rig.anthropic.faults.add(Fault(status=529))
    responses.append(await rig.stub.Complete(request("small", text="Fallback please.")))
    events = [e async for e in rig.stub.CompleteStream(request("small", text="Stream it."))]
    responses.append(events[-1].done)
    assert rig.app.ledger is not None
    assert rig.app.ledger.flush(timeout_s=30)
    return rig, responses


async def test_report_totals_equal_the_sum_of_response_costs(start_rig: RigFactory) -> None:
    rig, responses = await _traffic(start_rig)
    now = datetime.now(UTC)
    with rig.app.ledger.reading() as conn:
        report = build_report(
            conn,
            since=now - timedelta(hours=1),
            until=now + timedelta(seconds=1),
            by=GroupBy.FEATURE,
        )
    total = report.total
    assert total.requests == len(responses) == 6
    assert total.cost_nanousd == sum(r.cost_nanousd for r in responses) > 0
    assert total.baseline_nanousd == sum(r.baseline_cost_nanousd for r in responses)
    for lever, field in LEVER_FIELDS.items():
        assert total.savings[lever] == sum(getattr(r.savings, field) for r in responses), lever
    assert total.saved_nanousd == total.baseline_nanousd - total.cost_nanousd
    assert total.cache_hits == 1
    assert total.output_tokens == sum(r.usage.output_tokens for r in responses)
    by_key = {g.key: g.figures for g in report.groups}
    assert set(by_key) == {"qa", "triage"}
    assert by_key["triage"].cost_nanousd == responses[3].cost_nanousd
    assert by_key["qa"].requests == 5
    assert [g.key for g in report.groups] == sorted(by_key, key=lambda k: -by_key[k].cost_nanousd)
    assert sum(cost for _, _, cost in report.daily) == total.cost_nanousd
    # The waterfall telescopes from the baseline to the actual spend exactly.
    steps = waterfall_steps(report)
    assert steps[0] == ("baseline", 0, total.baseline_nanousd)
    assert steps[-1] == ("actual spend", 0, total.cost_nanousd)

    with rig.app.ledger.reading() as conn:
        by_model = build_report(
            conn, since=now - timedelta(hours=1), until=now + timedelta(seconds=1), by=GroupBy.MODEL
        )
    models = {g.key: g.figures.requests for g in by_model.groups}
    assert models["openai/gpt-4o-mini"] == 1  # the fallback
    assert sum(models.values()) == 6


async def test_report_cli_json_table_html_and_png(start_rig: RigFactory, tmp_path: Path) -> None:
    rig, responses = await _traffic(start_rig)
    data_dir = str(rig.app.data_dir)
    runner = CliRunner()
    result = runner.invoke(
        cli, ["report", "--json", "--by", "tenant", "--since", "1h", "--data-dir", data_dir]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    cost = sum(r.cost_nanousd for r in responses)
    assert doc["total"]["cost_nanousd"] == cost
    assert doc["total"]["cost_usd"] == usd(cost)
    assert {g["key"]: g["requests"] for g in doc["groups"]} == {"acme": 5, "zeta": 1}
    spenders = doc["top_spenders"]
    assert {(s["tenant"], s["feature"]) for s in spenders} == {("acme", "qa"), ("zeta", "triage")}
    assert sum(s["cost_nanousd"] for s in spenders) == cost
    assert [s["cost_nanousd"] for s in spenders] == sorted(
        (s["cost_nanousd"] for s in spenders), reverse=True
    )

    html_path, png_path = tmp_path / "r.html", tmp_path / "r.png"
    result = runner.invoke(
        cli,
        [
            "report",
            "--by",
            "model",
            "--data-dir",
            data_dir,
            "--html",
            str(html_path),
            "--png",
            str(png_path),
        ],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    assert "openai/gpt-4o-mini" in result.stdout
    assert usd_short(cost) in result.stdout
    assert "top" in result.stdout and "spenders" in result.stdout
    assert png_path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    page = html_path.read_text()
    assert "data:image/png;base64," in page and "openai/gpt-4o-mini" in page


def test_report_cli_errors_name_the_fix(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["report", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "no ledger at" in result.stderr
    result = runner.invoke(cli, ["report", "--by", "colour", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "--by 'colour'" in result.stderr
    result = runner.invoke(cli, ["report", "--since", "lately", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "--since 'lately'" in result.stderr


def test_money_formatting_is_exact() -> None:
    assert usd(1) == "0.000000001"
    assert usd(1_234_567_890_123) == "1234.567890123"
    assert usd(-5) == "-0.000000005"
    assert usd_short(1_234_567_890_123) == "$1,234.57"
    assert usd_short(123_456) == "$0.000123"


def test_parse_since() -> None:
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="duration"):
        parse_since("soon", now)


async def test_app_history_is_the_ledger_and_sees_the_calls(start_rig: RigFactory) -> None:
    rig, responses = await _traffic(start_rig)
    assert rig.app.history is rig.app.ledger
    stats = rig.app.history.output_tokens("qa")
    assert stats is not None
    provider_answers = [
        r
        for r in responses
        if r.served_by.cache_status != pb.CACHE_STATUS_EXACT
        and r.served_by.provider != ""
        and r is not responses[3]  # the triage feature
    ]
    assert stats.calls == len(provider_answers) == 4
    assert stats.max == max(r.usage.output_tokens for r in provider_answers)
    workload = rig.app.history.workload(1)
    assert workload is not None
    qa = {f.feature: f for f in workload.features}["qa"]
    assert qa.requests_per_month == 5 * 30
    assert qa.cache_hit_rate == 1 / 5


def test_report_on_an_empty_ledger_is_all_zeros(tmp_path: Path) -> None:
    Ledger.open(tmp_path, retention_days=30).close()
    runner = CliRunner()
    result = runner.invoke(cli, ["report", "--json", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["total"]["requests"] == doc["total"]["cost_nanousd"] == 0
    assert doc["groups"] == doc["top_spenders"] == doc["daily"] == []
    png = tmp_path / "empty.png"
    result = runner.invoke(cli, ["report", "--data-dir", str(tmp_path), "--png", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        (GroupBy.FEATURE, {"qa": 3, "chat": 1}),
        (GroupBy.TEAM, {"search": 2, "ops": 2}),
        (GroupBy.TENANT, {"acme": 3, "zeta": 1}),
        (GroupBy.MODEL, {"anthropic/claude-haiku-4-5": 3, "openai/gpt-4.1": 1}),
        (GroupBy.TIER, {"small": 2, "mid": 1, "(pinned)": 1}),
        (GroupBy.LANE, {"interactive": 3, "async": 1}),
    ],
)
def test_every_grouping(tmp_path: Path, by: GroupBy, expected: dict[str, int]) -> None:
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    ts = int(now.timestamp() * 1000) - 60_000
    rows = [
        rec(1, ts_ms=ts, tier="small", team="search"),
        rec(2, ts_ms=ts, tier="small", team="search", tenant="zeta"),
        rec(3, ts_ms=ts, tier=None, team="ops", lane="async"),
        rec(
            4, ts_ms=ts, tier="mid", team="ops", feature="chat", provider="openai", model="gpt-4.1"
        ),
    ]
    with Ledger(tmp_path / "l.sqlite3", retention_days=3650) as ledger:
        for row in rows:
            ledger.append(row)
        ledger.flush()
        with ledger.reading() as conn:
            result = build_report(conn, since=now - timedelta(days=1), until=now, by=by)
    assert {g.key: g.figures.requests for g in result.groups} == expected
    assert result.total.cost_nanousd == sum(r.cost_nanousd for r in rows)
