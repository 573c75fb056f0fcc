"""``skinflint budget get|set|list|delete`` in a real subprocess against an in-process
sidecar (the test's event loop keeps serving while the CLI runs)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from conftest import Sidecar

from skinflint.v1 import skinflint_pb2 as pb


async def cli(sidecar: Sidecar, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "skinflint",
        "budget",
        *args,
        "--address",
        f"127.0.0.1:{sidecar.port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def rows(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def test_budget_set_get_list_delete(sidecar: Sidecar) -> None:
    code, out, err = await cli(
        sidecar,
        "set",
        "acme-month",
        "--scope",
        "tenant:acme",
        "--window",
        "month",
        "--limit-usd",
        "12.5",
        "--limit-tokens",
        "1000000",
        "--threshold",
        "50",
        "--threshold",
        "80",
        "--action",
        "downgrade",
        "--json",
    )
    assert code == 0, err
    [created] = rows(out)
    assert created["id"] == "acme-month"
    assert created["limit_nanousd"] == 12_500_000_000
    assert created["remaining_nanousd"] == 12_500_000_000
    assert created["soft_thresholds_percent"] == [50, 80]
    assert (created["window"], created["action"]) == ("month", "downgrade")
    assert created["resets_at"].endswith("Z")

    # The sidecar really holds it.
    got = await sidecar.stub.GetBudget(pb.GetBudgetRequest(id="acme-month"))
    assert got.spec.limit_tokens == 1_000_000

    code, out, err = await cli(
        sidecar, "set", "rate", "--scope", "global", "--window", "minute", "--limit-nanousd", "5"
    )
    assert code == 0, err
    assert "rate" in out and "minute" in out and "global" in out  # the rich table

    code, out, err = await cli(sidecar, "get", "acme-month")
    assert code == 0, err
    for text in ("acme-month", "tenant:acme", "month", "downgrade", "$12.5", "1,000,000 tok"):
        assert text in out, text

    code, out, err = await cli(sidecar, "list", "--json")
    assert code == 0, err
    listed = rows(out)
    assert [r["id"] for r in listed] == ["acme-month", "rate"]
    assert listed[1]["resets_at"] is not None and listed[1]["spent_nanousd"] == 0

    code, out, err = await cli(sidecar, "list", "--scope-prefix", "tenant:")
    assert code == 0 and "acme-month" in out and "rate" not in out.split("acme-month")[-1]

    code, out, err = await cli(sidecar, "delete", "rate")
    assert code == 0, err
    assert "deleted budget rate" in out
    code, out, err = await cli(sidecar, "delete", "rate")
    assert code == 1 and "no budget 'rate'" in err

    code, out, err = await cli(sidecar, "get", "rate")
    assert code == 1
    assert "NOT_FOUND" in err and "no budget 'rate'" in err


async def test_budget_set_reports_bad_input(sidecar: Sidecar) -> None:
    code, _out, err = await cli(
        sidecar, "set", "x", "--scope", "org:acme", "--window", "day", "--limit-nanousd", "1"
    )
    assert code == 1
    assert "INVALID_ARGUMENT" in err and "budget.scope" in err
    code, _out, err = await cli(
        sidecar, "set", "x", "--scope", "global", "--window", "week", "--limit-nanousd", "1"
    )
    assert code == 2 and "--window must be one of" in err
    code, _out, err = await cli(
        sidecar, "set", "x", "--scope", "global", "--window", "day", "--limit-usd", "0.0000000001"
    )
    assert code == 2 and "--limit-usd" in err
