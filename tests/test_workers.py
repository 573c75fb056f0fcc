"""``server.workers``: ``skinflint serve`` as a supervisor of several worker processes on one
port (SO_REUSEPORT), in real subprocesses: every worker listens on the same port and answers,
the workers share the LMDB ledger, SIGTERM drains them all, a worker that dies takes the
sidecar down (non-zero exit), and the memory budget backend is refused."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from test_cli_serve import GRACE_SECONDS, START_TIMEOUT, Served, _env, _health, _skinflint

from skinflint.v1 import skinflint_pb2 as pb
from skinflint.v1 import skinflint_pb2_grpc as pb_grpc


def _serve(tmp_path: Path, workers: int) -> Served:
    config = tmp_path / "skinflint.yaml"
    config.write_text(f"server:\n  grace_seconds: {GRACE_SECONDS}\n  workers: {workers}\n")
    args = ["--port", "0", "--data-dir", str(tmp_path / "data"), "--config", str(config)]
    return Served(args, _env(), tmp_path)


def _events(served: Served, wanted: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """Log records read until each event in ``wanted`` was seen that many times."""
    seen: dict[str, list[dict[str, Any]]] = {event: [] for event in wanted}
    deadline = time.monotonic() + START_TIMEOUT
    while any(len(seen[e]) < n for e, n in wanted.items()):
        try:
            line = served._queue.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"missing {wanted}: {served.lines}") from None
        assert line is not None, f"process ended early: {''.join(served.lines)}"
        served.lines.append(line)
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") in seen:
            seen[record["event"]].append(record)
    return seen


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _all_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def test_workers_share_one_port_and_the_ledger_and_drain_on_sigterm(tmp_path: Path) -> None:
    served = _serve(tmp_path, 2)
    try:
        seen = _events(served, {"workers_starting": 1, "worker_starting": 2, "listening": 2})
        port = seen["workers_starting"][0]["port"]
        assert port != 0
        assert [r["port"] for r in seen["listening"]] == [port, port]
        pids = [r["pid"] for r in seen["worker_starting"]]
        assert len(set(pids)) == 2 and served.proc.pid not in pids
        for _ in range(8):  # fresh connections, spread over the workers by the kernel
            assert _health(port) == health_pb2.HealthCheckResponse.SERVING
        spec = pb.BudgetSpec(
            id="shared", scope="tenant:acme", window=pb.BUDGET_WINDOW_DAY, limit_nanousd=10**9
        )
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            pb_grpc.SkinflintStub(channel).SetBudget(pb.SetBudgetRequest(budget=spec), timeout=10)
        for _ in range(8):  # whichever worker answers reads what the other one wrote
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                got = pb_grpc.SkinflintStub(channel).GetBudget(
                    pb.GetBudgetRequest(id="shared"), timeout=10
                )
            assert got.spec.limit_nanousd == 10**9
        served.proc.send_signal(signal.SIGTERM)
        code, records = served.finish(timeout=GRACE_SECONDS + START_TIMEOUT)
        assert code == 0
        assert [r["event"] for r in records].count("stopped") == 2
        assert any(r["event"] == "workers_stopped" for r in records if "event" in r)
        assert _all_gone(pids, 10)
        refused = socket.socket()
        try:
            assert refused.connect_ex(("127.0.0.1", port)) != 0
        finally:
            refused.close()
    finally:
        served.close()


def test_a_dead_worker_stops_the_sidecar_with_an_error(tmp_path: Path) -> None:
    served = _serve(tmp_path, 2)
    try:
        seen = _events(served, {"worker_starting": 2, "listening": 2})
        pids = [r["pid"] for r in seen["worker_starting"]]
        os.kill(pids[0], signal.SIGKILL)
        code, records = served.finish(timeout=GRACE_SECONDS + START_TIMEOUT)
        assert code != 0
        assert any(r.get("event") == "worker_exited" for r in records)
        assert _all_gone(pids, 10)
    finally:
        served.close()


def test_memory_budgets_with_several_workers_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "skinflint.yaml"
    config.write_text("server:\n  workers: 2\nbudgets:\n  backend: memory\n")
    result = _skinflint("config", "check", "--config", str(config))
    assert result.returncode == 2
    assert "server.workers" in result.stderr + result.stdout
