"""A fleet for the L2 tests: sidecars with their own data dirs (their own LMDB caches) in front
of one set of provider emulators, sharing one real ``redis-server``; and a ``redis-server`` of a
test's own that it may stop, restart on the same port, or freeze (SIGSTOP) to simulate an
outage without disturbing the session's server.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from complete_fixtures import ANTHROPIC_KEY, OPENAI_KEY, VLLM_MODEL, rig_yaml
from redis_fixtures import _free_port

from skinflint.app import App
from skinflint.emulators import AnthropicEmulator, OpenAIEmulator, VLLMEmulator
from skinflint.pipeline.cache_l2 import RedisL2
from skinflint.server import create_server
from skinflint.v1 import skinflint_pb2_grpc as pb_grpc


class RedisServer:
    """One ``redis-server`` (no persistence) on a fixed loopback port: stop it, start it again
    on the same port (empty), or freeze and thaw it."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not on PATH (apt-get install -y redis-server)")
        self._binary = binary
        self._workdir = workdir
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self._proc is None
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "no",
            "dir": str(self._workdir),
        }
        argv = [self._binary] + [x for k, v in options.items() for x in (f"--{k}", v)]
        self._proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        deadline = time.monotonic() + 10
        try:
            while True:
                if self._proc.poll() is not None:
                    pytest.fail(f"redis-server exited early with {self._proc.returncode}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        pytest.fail("redis-server did not answer PING within 10s")
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Kill it (SIGKILL: no goodbye to its clients) and wait for the port to be free."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.send_signal(signal.SIGCONT)  # in case it was frozen
            proc.kill()
            proc.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, started; killed at teardown."""
    workdir = tmp_path / "own-redis"
    workdir.mkdir()
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def l2_yaml(url: str, prefix: str, **options: Any) -> str:
    """A ``cache`` section turning the L2 on; generous read timeout unless a test sets one (a
    loaded test machine must not turn a slow read into a flaky miss)."""
    settings = {"timeout_ms": 2000, "retry_after_ms": 100, **options}
    inline = ", ".join(f"{k}: {v}" for k, v in settings.items())
    return f"cache:\n  l2: {{backend: redis, redis_url: '{url}', prefix: '{prefix}', {inline}}}\n"


@dataclass
class Member:
    """One sidecar of the fleet."""

    name: str
    app: App
    stub: pb_grpc.SkinflintStub

    @property
    def l2(self) -> RedisL2:
        assert self.app.cache_l2 is not None
        return self.app.cache_l2

    async def flush(self) -> None:
        """Wait for its write-behind queue to drain (bounded, so a bug fails, not hangs)."""
        assert await self.l2.flush(10.0), f"{self.name}: L2 writes still pending after 10s"


@dataclass
class Fleet:
    """Sidecars sharing the emulators; ``join`` starts one with its own data dir."""

    anthropic: AnthropicEmulator
    openai: OpenAIEmulator
    join: Callable[..., Any]


@contextlib.asynccontextmanager
async def open_fleet(
    make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Fleet]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    async with contextlib.AsyncExitStack() as stack:
        anthropic = await stack.enter_async_context(AnthropicEmulator())
        openai = await stack.enter_async_context(OpenAIEmulator())
        vllm = await stack.enter_async_context(VLLMEmulator(model=VLLM_MODEL))

        async def join(name: str, cache_yaml: str) -> Member:
            yaml_text = rig_yaml(anthropic.base_url, openai.base_url, vllm.base_url, cache_yaml)
            env = {"SKINFLINT_DATA_DIR": str(tmp_path / f"data-{name}")}
            app = App.open(make_settings(yaml_text, env=env))
            stack.push_async_callback(app.aclose)
            server, port = await create_server(app)
            await server.start()
            stack.push_async_callback(server.stop, None)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            stack.push_async_callback(channel.close)
            return Member(name, app, pb_grpc.SkinflintStub(channel))

        yield Fleet(anthropic, openai, join)


def fresh_prefix() -> str:
    """A key prefix of this test's own on a shared Redis."""
    return f"l2t{uuid.uuid4().hex[:10]}:"


def l2_keys(client: redis.Redis, prefix: str) -> list[bytes]:
    """The L2 entries under ``prefix`` (sorted)."""
    return sorted(client.scan_iter(match=f"{prefix}rc:*"))
