"""The gRPC server: the Skinflint service, standard health checking and reflection.

``create_server`` builds and binds a server (port 0 picks a free port; tests use it) and
returns it with the bound port. ``serve`` runs it until SIGTERM or SIGINT, then drains:
health turns NOT_SERVING (so probes stop routing new calls), in-flight calls get
``server.grace_seconds`` to finish, the app is closed, and the function returns.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from skinflint.app import App
from skinflint.errors import ConfigError, ConfigIssue
from skinflint.logs import get_logger
from skinflint.transports.grpc.servicer import SkinflintServicer
from skinflint.v1 import skinflint_pb2 as pb
from skinflint.v1 import skinflint_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Skinflint"].full_name
#: gRPC itself accepts this much more than ``server.max_request_bytes``, so oversized
#: requests reach our check, which answers INVALID_ARGUMENT naming the config key.
RECEIVE_SLACK_BYTES = 1 << 20

_log = get_logger("server")


@dataclass(frozen=True, slots=True)
class _Built:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer


def format_address(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals bracketed."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


async def _build(app: App) -> _Built:
    cfg = app.settings.server
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", cfg.max_request_bytes + RECEIVE_SLACK_BYTES),
            # Without this, a second sidecar on the same port would silently share it;
            # on only when this is one of ``server.workers`` processes (skinflint.workers).
            ("grpc.so_reuseport", 1 if cfg.workers > 1 else 0),
        ],
        maximum_concurrent_rpcs=cfg.max_concurrent_rpcs,
    )
    pb_grpc.add_SkinflintServicer_to_server(SkinflintServicer(app), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = format_address(cfg.host, cfg.port)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        port, reason = 0, str(exc)
    else:
        reason = "the address is in use or not local"
    if port == 0:
        raise ConfigError(
            [
                ConfigIssue(
                    "server.port",
                    f"cannot listen on {address} ({reason})",
                    "choose a free port (server.port, SKINFLINT_PORT or --port; 0 picks one) "
                    "or a local address (server.host, SKINFLINT_HOST or --host)",
                )
            ]
        )
    return _Built(server, port, health_servicer)


async def create_server(app: App) -> tuple[grpc.aio.Server, int]:
    """A bound, not yet started server for ``app`` and the port it is bound to.

    Raises:
        ConfigError: the configured address cannot be bound (names ``server.port``).
    """
    built = await _build(app)
    return built.server, built.port


async def serve(app: App) -> None:
    """Serve until SIGTERM/SIGINT, then drain within ``server.grace_seconds`` and close."""
    cfg = app.settings.server
    built = await _build(app)
    received: list[str] = []
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stopping.set()

    # Handlers go in before "listening" is logged: whoever reads that line may signal at once.
    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await app.start()  # seeded budgets are written before the first request arrives
        await built.server.start()
        _log.info("listening", host=cfg.host, port=built.port, grace_seconds=cfg.grace_seconds)
        await stopping.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        _log.info(
            "draining", signal=received[0] if received else None, grace_seconds=cfg.grace_seconds
        )
        await built.health.enter_graceful_shutdown()
        await built.server.stop(cfg.grace_seconds)
        await app.aclose()
        _log.info("stopped")
