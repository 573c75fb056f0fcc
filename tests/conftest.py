"""Shared fixtures: settings built the way the CLI builds them, and a real in-process sidecar
(grpc.aio server on 127.0.0.1, port 0) reached through a real grpc.aio channel."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2_grpc

from skinflint.app import App
from skinflint.config import Settings, load_settings
from skinflint.server import create_server
from skinflint.v1 import skinflint_pb2 as pb
from skinflint.v1 import skinflint_pb2_grpc as pb_grpc

SettingsFactory = Callable[..., Settings]

#: ``start_rig`` (emulators + an in-process sidecar, started only by the tests that ask for it).
pytest_plugins = ["complete_fixtures"]


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Build ``Settings`` from optional YAML text, an environment and CLI-style flags.

    The data dir defaults to a fresh directory under ``tmp_path`` and the port to 0, and the
    real process environment is never read, so tests do not depend on the shell.
    """

    def make(
        yaml_text: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        **flags: Any,
    ) -> Settings:
        path = None
        if yaml_text is not None:
            path = tmp_path / "skinflint.yaml"
            path.write_text(yaml_text, encoding="utf-8")
        base = {"SKINFLINT_DATA_DIR": str(tmp_path / "data"), "SKINFLINT_PORT": "0"}
        return load_settings(path, env={**base, **(env or {})}, flags=flags)

    return make


@dataclass
class Sidecar:
    app: App
    port: int
    channel: grpc.aio.Channel
    stub: pb_grpc.SkinflintStub
    health: health_pb2_grpc.HealthStub


SidecarFactory = Callable[..., Awaitable[Sidecar]]


@pytest.fixture
async def start_sidecar(make_settings: SettingsFactory) -> AsyncIterator[SidecarFactory]:
    """Start sidecars (same arguments as ``make_settings``); all are stopped at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(yaml_text: str | None = None, **kwargs: Any) -> Sidecar:
            app = App.open(make_settings(yaml_text, **kwargs))
            stack.push_async_callback(app.aclose)
            server, port = await create_server(app)
            await server.start()
            stack.push_async_callback(server.stop, None)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            stack.push_async_callback(channel.close)
            return Sidecar(
                app=app,
                port=port,
                channel=channel,
                stub=pb_grpc.SkinflintStub(channel),
                health=health_pb2_grpc.HealthStub(channel),
            )

        yield start


@pytest.fixture
async def sidecar(start_sidecar: SidecarFactory) -> Sidecar:
    """One sidecar with the default configuration."""
    return await start_sidecar()


def complete_request(**fields: Any) -> pb.CompleteRequest:
    """A small valid ``CompleteRequest``; keyword arguments replace top-level fields."""
    request = pb.CompleteRequest(
        model="auto",
        messages=[
            pb.Message(
                role=pb.ROLE_USER,
                content=[pb.ContentPart(text=pb.TextPart(text="What is the capital of France?"))],
            )
        ],
        params=pb.GenerationParams(max_tokens=64, temperature=0.0),
        attribution=pb.Attribution(tenant="acme", team="search", feature="qa"),
    )
    for name, value in fields.items():
        request.ClearField(name)
        if isinstance(value, list):
            getattr(request, name).extend(value)
        elif isinstance(value, dict):
            getattr(request, name).update(value)
        elif hasattr(value, "DESCRIPTOR"):
            getattr(request, name).CopyFrom(value)
        else:
            setattr(request, name, value)
    return request


def rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The ``google.rpc.Status`` a failed call carried in its trailers."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            assert status.code == error.code().value[0]
            assert status.message == error.details()
            return status
    raise AssertionError(f"no rich status on {error.code()}: {error.details()}")


def bad_request(error: grpc.aio.AioRpcError) -> error_details_pb2.BadRequest:
    """The ``BadRequest`` detail of an INVALID_ARGUMENT answer."""
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            found = error_details_pb2.BadRequest()
            detail.Unpack(found)
            return found
    raise AssertionError(f"no BadRequest detail in {error.details()}")
