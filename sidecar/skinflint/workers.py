"""Serving from several processes on one port (``server.workers`` > 1).

One Python process runs one event loop on one core; a response-cache hit or a provider call
is CPU-bound Python plus gRPC's C core, so a single process caps throughput at about one core
(bench/cache.py, bench/overhead.py). With ``server.workers: N`` the ``serve`` command becomes
a small supervisor that starts N worker processes (``spawn``: each a fresh interpreter with
its own ``App`` and event loop), all listening on the same address with ``SO_REUSEPORT``, so
the kernel spreads incoming connections over them.

What is shared and what is not: the LMDB response cache and the local budget ledger are
files that LMDB lets several processes use at once (a hit stored by one worker is a hit in
all; budget reservations are transactions); Redis is shared by nature. In-process state is
per worker: single flight (concurrent identical misses in two workers both call a provider),
the decoded-entry and request memos, provider connection pools. The ``memory`` budget backend
lives inside one process, so it is rejected with more than one worker (config check).

The supervisor binds the address itself first (``SO_REUSEPORT``, not listening: it takes no
connections), which resolves port 0 to one real port for every worker and fails fast, naming
``server.port``, when the address is taken. It forwards SIGTERM/SIGINT to the workers and
waits for them to drain (``server.grace_seconds``); if a worker dies on its own, the others
are stopped and ``serve`` exits non-zero, so the orchestrator restarts the whole sidecar
rather than running on with fewer workers than configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from skinflint.config import Settings
from skinflint.errors import ConfigError, ConfigIssue
from skinflint.logs import configure_logging, get_logger

_log = get_logger("workers")
#: Extra time beyond ``server.grace_seconds`` a draining worker gets before SIGKILL.
KILL_SLACK_S = 10.0


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening ``SO_REUSEPORT`` socket on ``host:port`` (port 0 picks one).

    Raises:
        ConfigError: the address cannot be bound (names ``server.port``).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            [
                ConfigIssue(
                    "server.port",
                    f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                    "choose a free port (server.port, SKINFLINT_PORT or --port; 0 picks one) "
                    "or a local address (server.host, SKINFLINT_HOST or --host)",
                )
            ]
        ) from None
    return sock


def worker_main(
    config_path: str | None,
    flags: dict[str, Any],
    index: int,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None,
) -> None:
    """One worker: the same as a single-process ``serve`` on the reserved port. It loads
    the configuration again (same file, same inherited environment, the supervisor's flags
    with the resolved port): ``Settings`` holds read-only mappings that do not pickle."""
    from skinflint.app import App
    from skinflint.config import load_settings
    from skinflint.server import serve

    settings = load_settings(config_path, flags=flags)
    # Its own process group: a terminal's Ctrl-C reaches the supervisor only, which then
    # stops each worker exactly once (a second signal would cut a worker's drain short).
    os.setpgrp()
    configure_logging(settings.logging)
    _log.info("worker_starting", worker=index, pid=os.getpid())
    application = App.open(settings)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(application))


def supervise(
    settings: Settings,
    config_path: str | None,
    flags: dict[str, Any],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None,
) -> int:
    """Run ``server.workers`` workers until SIGTERM/SIGINT (then 0) or until one of them
    exits by itself (then 1, after stopping the others).

    Raises:
        ConfigError: the address cannot be bound.
    """
    cfg = settings.server
    reserved = reserve_port(cfg.host, cfg.port)
    port = reserved.getsockname()[1]
    pinned = {**flags, "port": port}
    ctx = mp.get_context("spawn")
    workers: list[BaseProcess] = []
    stopping: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not stopping:
            stopping.append(signal.Signals(signum).name)
            _terminate(workers)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        _log.info("workers_starting", workers=cfg.workers, host=cfg.host, port=port)
        for index in range(cfg.workers):
            if stopping:
                break
            worker = ctx.Process(
                target=worker_main,
                args=(config_path, pinned, index, loop_factory),
                name=f"skinflint-worker-{index}",
            )
            worker.start()
            workers.append(worker)
        if stopping:  # a signal while workers were starting: stop the late ones too
            _terminate(workers)
        code = 0
        while not stopping:
            dead = [w for w in workers if not w.is_alive()]
            if dead:
                _log.error(
                    "worker_exited",
                    worker=dead[0].name,
                    exitcode=dead[0].exitcode,
                    action="stopping the other workers",
                )
                code = 1
                stopping.append("worker_exited")
                _terminate(workers)
                break
            time.sleep(0.2)
        deadline = time.monotonic() + cfg.grace_seconds + KILL_SLACK_S
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                worker.kill()
                worker.join()
                code = 1
        _log.info("workers_stopped", reason=stopping[0])
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reserved.close()


def _terminate(workers: list[BaseProcess]) -> None:
    """SIGTERM every live worker (each drains as a single-process ``serve`` does)."""
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)


__all__ = ["KILL_SLACK_S", "reserve_port", "supervise", "worker_main"]
