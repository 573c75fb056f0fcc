"""The ``skinflint`` command in a real subprocess: serve, drain on SIGTERM, config errors,
``config check`` and ``version``."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import skinflint

#: Generous bounds for a slow CI machine; they are not performance assertions.
START_TIMEOUT = 60.0
GRACE_SECONDS = 2.0


def _env(**extra: str) -> dict[str, str]:
    """The test process's environment minus any SKINFLINT_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SKINFLINT_")}
    return {**env, **extra}


def _skinflint(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skinflint", *args],
        env=dict(env if env is not None else _env()),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )


class Served:
    """A ``skinflint serve`` subprocess whose stderr log lines are read on a thread."""

    def __init__(self, args: list[str], env: Mapping[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "skinflint", "serve", *args],
            env=dict(env),
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for_event(self, event: str) -> dict[str, Any]:
        """The first JSON log line with ``event``; fails if the process ends first."""
        while True:
            try:
                line = self._queue.get(timeout=START_TIMEOUT)
            except queue.Empty:
                pytest.fail(f"no {event!r} log line within {START_TIMEOUT}s: {self.lines}")
            if line is None:
                pytest.fail(f"process ended before {event!r}: {''.join(self.lines)}")
            self.lines.append(line)
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("event") == event:
                return record

    def finish(self, timeout: float) -> tuple[int, list[dict[str, Any]]]:
        """Wait for exit; the exit code and every JSON log line."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        while (line := self._queue.get_nowait() if not self._queue.empty() else None) is not None:
            self.lines.append(line)
        records = []
        for line in self.lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return code, records

    def close(self) -> None:
        """Kill the process if it still runs and release its pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    config = tmp_path / "skinflint.yaml"
    config.write_text(f"server:\n  grace_seconds: {GRACE_SECONDS}\n")
    proc = Served(
        ["--port", "0", "--data-dir", str(tmp_path / "data"), "--config", str(config)],
        _env(),
        tmp_path,
    )
    yield proc
    proc.close()


def _health(port: int, service: str = "") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        return answer.status


def test_serve_listens_on_loopback_answers_health_and_drains_on_sigterm(
    served: Served, tmp_path: Path
) -> None:
    listening = served.wait_for_event("listening")
    assert listening["host"] == "127.0.0.1"
    port = listening["port"]
    assert isinstance(port, int) and port > 0
    assert listening["level"] == "info" and "timestamp" in listening
    assert _health(port) == health_pb2.HealthCheckResponse.SERVING
    assert _health(port, "skinflint.v1.Skinflint") == health_pb2.HealthCheckResponse.SERVING
    assert (tmp_path / "data" / "cache").exists()

    served.proc.send_signal(signal.SIGTERM)
    code, records = served.finish(timeout=GRACE_SECONDS + START_TIMEOUT)
    assert code == 0, served.lines
    events = [record.get("event") for record in records]
    assert "draining" in events and "stopped" in events
    assert events.index("draining") < events.index("stopped")
    draining = records[events.index("draining")]
    assert draining["signal"] == "SIGTERM"
    assert draining["grace_seconds"] == GRACE_SECONDS


def test_sigint_also_drains(served: Served) -> None:
    served.wait_for_event("listening")
    served.proc.send_signal(signal.SIGINT)
    code, records = served.finish(timeout=GRACE_SECONDS + START_TIMEOUT)
    assert code == 0
    assert any(r.get("event") == "draining" and r.get("signal") == "SIGINT" for r in records)


def test_flags_win_over_env(tmp_path: Path) -> None:
    proc = Served(
        ["--port", "0"],
        _env(SKINFLINT_PORT="70000", SKINFLINT_DATA_DIR=str(tmp_path / "d")),
        tmp_path,
    )
    try:
        assert proc.wait_for_event("listening")["port"] > 0
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.finish(timeout=START_TIMEOUT)[0] == 0
    finally:
        proc.close()


def test_invalid_config_makes_serve_exit_nonzero_naming_the_key(tmp_path: Path) -> None:
    result = _skinflint(
        "serve", env=_env(SKINFLINT_PORT="70000", SKINFLINT_DATA_DIR=str(tmp_path / "d"))
    )
    assert result.returncode == 2
    assert "server.port: must be between 0 and 65535" in result.stderr
    assert "SKINFLINT_PORT" in result.stderr


def test_bad_rule_set_pattern_makes_serve_exit_nonzero(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("rule_sets:\n  mine:\n    strip_patterns: ['(']\n")
    result = _skinflint("serve", "--port", "0", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "rule_sets.mine.strip_patterns[0]" in result.stderr


def test_busy_port_exits_naming_server_port(served: Served, tmp_path: Path) -> None:
    port = served.wait_for_event("listening")["port"]
    result = _skinflint(
        "serve", "--port", str(port), "--data-dir", str(tmp_path / "other"), cwd=tmp_path
    )
    assert result.returncode == 2
    assert "server.port: cannot listen on 127.0.0.1:" in result.stderr


def test_config_check_prints_the_effective_config(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("server:\n  port: 6001\nfeatures:\n  qa:\n    default_max_tokens: 300\n")
    result = _skinflint(
        "config",
        "check",
        "--config",
        str(config),
        env=_env(SKINFLINT_HOST="127.0.0.3", SKINFLINT_DATA_DIR=str(tmp_path / "d")),
    )
    assert result.returncode == 0, result.stderr
    import yaml

    printed = yaml.safe_load(result.stdout)
    assert printed["server"]["port"] == 6001
    assert printed["server"]["host"] == "127.0.0.3"
    assert printed["features"]["qa"]["default_max_tokens"] == 300
    assert printed["data_dir"] == str(tmp_path / "d")
    assert "configuration OK" in result.stderr
    assert not (tmp_path / "d").exists()  # checking creates nothing


def test_config_check_masks_secrets_in_urls_and_collector_headers(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "budgets:\n  backend: redis\n  redis_url: redis://app:s3cret-pw@10.0.0.5:6379/0\n"
        "cache:\n  l2:\n    backend: redis\n    redis_url: rediss://:other-pw@cache:6380/1\n"
        "telemetry:\n  exporter: otlp_http\n  endpoint: http://collector:4318\n"
        "  headers:\n    x-api-key: collector-token-123\n"
    )
    result = _skinflint("config", "check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for secret in ("s3cret-pw", "other-pw", "collector-token-123"):
        assert secret not in result.stdout
    import yaml

    printed = yaml.safe_load(result.stdout)
    assert printed["budgets"]["redis_url"] == "redis://app:***@10.0.0.5:6379/0"
    assert printed["cache"]["l2"]["redis_url"] == "rediss://:***@cache:6380/1"
    assert printed["telemetry"]["headers"] == {"x-api-key": "***"}
    assert printed["telemetry"]["endpoint"] == "http://collector:4318"


def test_config_check_reads_skinflint_config(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("logging:\n  format: console\n")
    result = _skinflint("config", "check", env=_env(SKINFLINT_CONFIG=str(config)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"({config} + environment)" in result.stdout


def test_config_check_fails_with_exit_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("cache:\n  max_byte: 5\n")
    result = _skinflint("config", "check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "cache.max_byte: unknown key; valid keys under cache: max_bytes," in result.stderr
    assert result.stdout == ""


def test_version() -> None:
    result = _skinflint("version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"skinflint {skinflint.__version__}"
