"""A real ``redis-server`` for the tests, and a picklable store factory over it.

Use with ``pytest_plugins = ["redis_fixtures"]`` (or import the fixtures). The server is started
once per session on a free loopback port, without persistence; each test gets its own key
prefix, so tests never see each other's keys and nothing needs flushing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from skinflint.budget_store.redis_store import RedisBudgetStore


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``redis-server`` (from PATH) on 127.0.0.1, wait for PING, yield its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not on PATH (apt-get install -y redis-server)")
    workdir = tmp_path_factory.mktemp("redis")
    port = _free_port()
    options = {
        "port": str(port),
        "bind": "127.0.0.1",
        "save": "",
        "appendonly": "no",
        "dir": str(workdir),
        "maxclients": "4000",
    }
    argv = [binary] + [x for k, v in options.items() for x in (f"--{k}", v)]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited early with {proc.returncode}")
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail("redis-server did not answer PING within 10s")
                time.sleep(0.02)
        client.close()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class RedisStoreFactory:
    """Builds a ``RedisBudgetStore``; picklable, so child processes build their own."""

    url: str
    prefix: str
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> RedisBudgetStore:
        return RedisBudgetStore(self.url, prefix=self.prefix, **self.options)


@pytest.fixture
def redis_store_factory(redis_url: str) -> RedisStoreFactory:
    """A factory with a fresh key prefix: this test's keys only."""
    return RedisStoreFactory(redis_url, f"t{uuid.uuid4().hex[:12]}:")
