"""``skinflint estimate`` and ``skinflint project`` in a real subprocess, on a fresh data dir
with the default configuration (no provider is called by either)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from skinflint.errors import ConfigError
from skinflint.pipeline.projection import Projection
from skinflint.projection_chart import render_png

REQUEST_YAML = """\
model: openai/gpt-4o-mini
messages:
  - role: ROLE_USER
    content:
      - text: {text: "What is the capital of France?"}
params: {max_tokens: 64, temperature: 0}
attribution: {tenant: acme, team: search, feature: qa}
"""

WORKLOAD_YAML = """\
monthly_growth: 0.58
features:
  - feature: qa
    requests_per_month: 1000
    avg_input_tokens: 1000
    avg_output_tokens: 200
    tier_mix: {small: 1.0}
  - feature: chat
    requests_per_month: 10
    avg_input_tokens: 10
    avg_output_tokens: 1
    tier_mix: {small: 1.0}
"""


def run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    env = {"SKINFLINT_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "skinflint", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_estimate_json_from_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "request.yaml"
    path.write_text(REQUEST_YAML)
    code, out, err = run(tmp_path, "estimate", str(path), "--json")
    assert code == 0, err
    answer: dict[str, Any] = json.loads(out)
    assert answer["route"]["provider"] == "openai"
    assert answer["input_tokens_exact"] is True
    assert answer["output_tokens"] == {"low": "1", "expected": "32", "high": "64"}
    cost = answer["cost"]
    assert int(cost["low_nanousd"]) < int(cost["expected_nanousd"]) < int(cost["high_nanousd"])
    assert answer["predicted_cache_status"] == "CACHE_STATUS_MISS"
    assert len(answer["levers"]) == 5


def test_estimate_table_from_a_json_file(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "request.json"
    path.write_text(json.dumps(yaml.safe_load(REQUEST_YAML)))
    code, out, err = run(tmp_path, "estimate", str(path))
    assert code == 0, err
    assert "openai/gpt-4o-mini" in out
    assert "without routing" in out and "with batching" in out


def test_estimate_invalid_request_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "request.yaml"
    path.write_text(REQUEST_YAML.replace("role: ROLE_USER", "role: ROLE_UNSPECIFIED"))
    code, out, err = run(tmp_path, "estimate", str(path))
    assert code == 2
    assert "messages[0].role" in err
    assert out == ""


def test_estimate_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "request.yaml"
    path.write_text("- just\n- a list\n")
    code, _, err = run(tmp_path, "estimate", str(path))
    assert code == 2 and "must hold a mapping" in err
    code, _, err = run(tmp_path, "estimate", str(tmp_path / "missing.yaml"))
    assert code == 2 and "cannot read request" in err


def test_project_from_options_json(tmp_path: Path) -> None:
    code, out, err = run(
        tmp_path,
        "project",
        "--requests",
        "1000",
        "--input-tokens",
        "1000",
        "--output-tokens",
        "200",
        "--tier-mix",
        "small=1",
        "--cache-hit-rate",
        "0.25",
        "--months",
        "3",
        "--json",
    )
    assert code == 0, err
    months = json.loads(out)["months"]
    assert [m["month"] for m in months] == [1, 2, 3]
    # haiku: 1000 + 200 x 5 = 2,000,000 nano-USD... per request x 1000 tokens, 750 misses.
    assert int(months[0]["cost_nanousd"]) == 750 * (1000 * 1000 + 200 * 5000)
    assert int(months[0]["savings"]["response_cache_nanousd"]) == 250 * 2_000_000


def test_project_from_a_workload_file_with_a_chart(tmp_path: Path) -> None:
    path = tmp_path / "workload.yaml"
    path.write_text(WORKLOAD_YAML)
    png = tmp_path / "projection.png"
    code, out, err = run(tmp_path, "project", "--workload", str(path), "--png", str(png))
    assert code == 0, err
    assert "month 6 vs month 1" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_project_validation_names_the_field(tmp_path: Path) -> None:
    code, _out, err = run(tmp_path, "project", "--requests", "10", "--tier-mix", "small=0.5")
    assert code == 2
    assert "workload.features[0].tier_mix: shares must sum to 1" in err
    code, _out, err = run(tmp_path, "project", "--requests", "10", "--tier-mix", "small")
    assert code == 2 and "--tier-mix" in err


def test_project_from_ledger_without_calls(tmp_path: Path) -> None:
    code, _out, err = run(tmp_path, "project", "--from-ledger", "7")
    assert code == 2
    assert "ledger" in err


def test_chart_without_matplotlib_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A None entry in sys.modules makes `import matplotlib` raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    projection = Projection((), "", None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as info:
        render_png(projection, tmp_path / "x.png")
    assert "skinflint[charts]" in str(info.value)
    assert not (tmp_path / "x.png").exists()
