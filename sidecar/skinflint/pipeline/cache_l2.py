"""The fleet L2 of the response cache: one Redis shared by the sidecars of a fleet, behind each
sidecar's local LMDB tier (``cache.l2``; off by default).

**Read-through.** On a local miss the layer asks L2 (``get``): one round trip with ``GET`` and
``PTTL`` pipelined, bounded by ``cache.l2.timeout_ms`` (connect included), so an unresponsive
Redis delays a miss by at most that. A hit comes back with its *remaining* TTL (Redis's own
``PTTL``: no clock is compared across machines), and the caller writes it into LMDB for that
long, so an entry expires at the same moment on every sidecar that holds it.

**Write-behind.** After an answer is stored locally, ``put`` queues it (bounded by
``cache.l2.write_queue``; when full the write is dropped, counted and logged) and returns at
once; a background task seals the values and writes them in batches (``SET … PX``, pipelined).
The TTL sent is what is left of the local TTL when the write leaves, never more.

**Keys and integrity.** The Redis key is ``{prefix}rc:{hex of the native cache key}``; the
native key already hashes the tenant namespace, so tenant isolation is the local tier's. A
value is sealed: ``SFL2``, a format byte, the native key it was stored under, the local value
bytes, then a BLAKE2b-128 digest of all of that. A value whose digest, format or key does not
match (corrupted, truncated, written by something else, or copied under another key, such as
another tenant's) is a miss, counted and logged, never an error or someone else's answer.
With ``cache.l2.signing_key_env`` the digest is keyed with the fleet's secret, so a party that
can write to Redis but does not hold the secret cannot plant an answer either.

**Outages.** Any failure to talk to Redis (refused, reset, timed out) marks L2 down: it is
skipped (reads miss at once, writes are dropped and counted) for ``cache.l2.retry_after_ms``,
then one call probes it again; a success brings it back. The caller never sees an error. A
WARNING is logged when it goes down and at most once per ``cache.l2.warn_interval_s`` while it
stays down; recovery is logged at INFO. redis-py reconnects a dropped connection on next use.
A read that finds no free connection (``cache.l2.max_connections``) within its timeout is a
miss counted as ``read_busy``, not an outage: the queue is this sidecar's, not Redis's.

The URL (which may carry a password) is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from skinflint.config import CacheL2Config
from skinflint.errors import ConfigError, ConfigIssue
from skinflint.logs import get_logger

_log = get_logger("cache_l2")

MAGIC = b"SFL2"
FORMAT_VERSION = 1
_DIGEST = 16
#: Writes sent to Redis in one pipelined round trip at most.
_BATCH = 64


def seal(key: bytes, value: bytes, secret: bytes = b"") -> bytes:
    """``value`` bound to ``key``, with a digest over both (keyed by ``secret`` if any)."""
    body = b"".join((MAGIC, bytes((FORMAT_VERSION,)), key, value))
    return body + hashlib.blake2b(body, digest_size=_DIGEST, key=secret).digest()


def unseal(key: bytes, sealed: bytes, secret: bytes = b"") -> bytes | None:
    """The value sealed under ``key`` (with ``secret``), or None when ``sealed`` is not that."""
    head = len(MAGIC) + 1 + len(key)
    if len(sealed) < head + _DIGEST:
        return None
    body, digest = sealed[:-_DIGEST], sealed[-_DIGEST:]
    expected = hashlib.blake2b(body, digest_size=_DIGEST, key=secret).digest()
    if not hmac.compare_digest(digest, expected):
        return None
    if body[: len(MAGIC)] != MAGIC or body[len(MAGIC)] != FORMAT_VERSION:
        return None
    if body[len(MAGIC) + 1 : head] != key:
        return None
    return body[head:]


@dataclass(slots=True)
class L2Stats:
    """Counters of this process (for logs, tests and the bench)."""

    hits: int = 0
    misses: int = 0
    #: Values found but refused: corrupted, foreign, of another format, or without a TTL.
    rejected: int = 0
    #: Reads that failed (Redis unavailable or too slow) or were skipped while it was down.
    read_errors: int = 0
    read_skipped: int = 0
    #: Reads that found no free connection within the read timeout (a miss, not an outage).
    read_busy: int = 0
    writes: int = 0
    write_errors: int = 0
    #: Writes dropped because the queue was full, or skipped while Redis was down.
    dropped: int = 0
    write_skipped: int = 0


class _Every:
    """Allows one event per ``interval_s`` (the first one at once)."""

    __slots__ = ("_interval", "_last")

    def __init__(self, interval_s: float) -> None:
        self._interval = interval_s
        self._last: float | None = None

    def __call__(self, now: float) -> bool:
        if self._last is not None and now - self._last < self._interval:
            return False
        self._last = now
        return True


class _Health:
    """Up, or down since a failure: skipped until ``retry_at``, then one call probes."""

    __slots__ = ("_retry_after", "_stats", "_warn", "down_since", "retry_at")

    def __init__(self, cfg: CacheL2Config, stats: L2Stats) -> None:
        self._retry_after = cfg.retry_after_ms / 1000
        self._warn = _Every(cfg.warn_interval_s)
        self._stats = stats
        self.down_since: float | None = None
        self.retry_at = 0.0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def allow(self) -> bool:
        """Whether to talk to Redis now; while down, only the first call after ``retry_at``
        does (the probe), and the next probe is due ``retry_after_ms`` later."""
        if self.down_since is None:
            return True
        now = time.monotonic()
        if now < self.retry_at:
            return False
        self.retry_at = now + self._retry_after
        return True

    def failed(self, operation: str, error: BaseException) -> None:
        now = time.monotonic()
        self.retry_at = now + self._retry_after
        described = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        if self.down_since is None:
            self.down_since = now
            self._warn(now)
            _log.warning(
                "cache_l2_unavailable",
                operation=operation,
                error=described,
                note="serving from the local cache only until Redis answers again",
            )
        elif self._warn(now):
            s = self._stats
            _log.warning(
                "cache_l2_still_unavailable",
                operation=operation,
                error=described,
                down_for_s=round(now - self.down_since, 1),
                read_skipped=s.read_skipped,
                write_skipped=s.write_skipped,
            )

    def succeeded(self) -> None:
        if self.down_since is not None:
            _log.info("cache_l2_recovered", down_for_s=round(time.monotonic() - self.down_since, 1))
            self.down_since = None


_Write = tuple[bytes, bytes, int, float]  # native key, local value, ttl ms, queued at


class RedisL2:
    """The L2 tier on one Redis (see the module docstring)."""

    def __init__(self, cfg: CacheL2Config, *, secret: bytes = b"") -> None:
        if not cfg.redis_url:
            raise ValueError("cache.l2.redis_url is required for the redis backend")
        if len(secret) > 64:
            raise ValueError("the signing key of a BLAKE2b digest is at most 64 bytes")
        self._secret = secret
        # A plain pool whose connections, once taken, stay in a LIFO free list (as in the
        # Redis budget store); the slots bound the connections in use. Timeouts are ours
        # (one ``asyncio.timeout`` around an exchange), so the sockets have none.
        self._pool = aioredis.ConnectionPool.from_url(
            cfg.redis_url, max_connections=cfg.max_connections, protocol=2
        )
        self._pool.connection_kwargs["socket_timeout"] = None
        self._pool.connection_kwargs["socket_connect_timeout"] = None
        self._slots = asyncio.Semaphore(cfg.max_connections)
        self._idle: list[Any] = []
        self._prefix = cfg.prefix.encode() + b"rc:"
        self._read_timeout = cfg.timeout_ms / 1000
        self._write_timeout = cfg.write_timeout_ms / 1000
        self.stats = L2Stats()
        self._health = _Health(cfg, self.stats)
        self._queue: asyncio.Queue[_Write] = asyncio.Queue(cfg.write_queue)
        self._queue_full_warn = _Every(cfg.warn_interval_s)
        self._rejected_warn = _Every(cfg.warn_interval_s)
        self._busy_warn = _Every(cfg.warn_interval_s)
        self._pending = 0
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    def redis_key(self, key: bytes) -> bytes:
        """The Redis key of a native cache key."""
        return self._prefix + key.hex().encode()

    @property
    def down(self) -> bool:
        """Whether Redis is currently considered unavailable (L2 skipped)."""
        return self._health.down

    @property
    def pending(self) -> int:
        """Writes queued or being sent."""
        return self._pending

    # -- read-through ---------------------------------------------------------------------

    async def get(self, key: bytes) -> tuple[bytes, int] | None:
        """The local value stored under ``key`` and its remaining TTL in ms, or None (absent,
        expired, refused, or Redis unavailable: never an error)."""
        if not self._health.allow():
            self.stats.read_skipped += 1
            return None
        rkey = self.redis_key(key)
        deadline = asyncio.get_running_loop().time() + self._read_timeout
        # Waiting for a free connection is this sidecar's own queue, not Redis being down:
        # running out of time there is a miss, not an outage.
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            self._busy()
            return None
        try:
            async with asyncio.timeout_at(deadline):
                sealed, pttl = await self._exchange(
                    ((b"GET", rkey), (b"PTTL", rkey)), slot_held=True
                )
        except ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):  # not a string at that key: someone else's
                self._health.succeeded()
                self._reject(key, "the key holds another type")
                return None
            self.stats.read_errors += 1
            self._health.failed("read", exc)
            return None
        except (RedisError, OSError, TimeoutError) as exc:
            self.stats.read_errors += 1
            self._health.failed("read", exc)
            return None
        self._health.succeeded()
        if sealed is None:
            self.stats.misses += 1
            return None
        value = unseal(key, sealed, self._secret) if isinstance(sealed, bytes) else None
        if value is None:
            self._reject(key, "the value does not match its key, format or digest")
            return None
        if not isinstance(pttl, int) or pttl <= 0:  # expired meanwhile, or never set to expire
            self._reject(key, f"the entry has no positive TTL ({pttl!r})")
            return None
        self.stats.hits += 1
        return value, pttl

    def _busy(self) -> None:
        self.stats.read_busy += 1
        if self._busy_warn(time.monotonic()):
            _log.warning(
                "cache_l2_busy",
                read_busy=self.stats.read_busy,
                note="every connection was in use for the whole read timeout; treated as a "
                "miss (raise cache.l2.max_connections or cache.l2.timeout_ms)",
            )

    def _reject(self, key: bytes, reason: str) -> None:
        self.stats.rejected += 1
        if self._rejected_warn(time.monotonic()):
            _log.warning(
                "cache_l2_value_rejected",
                key=key.hex()[:8],
                reason=reason,
                rejected=self.stats.rejected,
                note="treated as a miss",
            )

    # -- write-behind ---------------------------------------------------------------------

    def put(self, key: bytes, value: bytes, ttl_ms: int) -> None:
        """Queue a write of ``value`` (the local tier's bytes) for ``ttl_ms``; never blocks."""
        if self._closed or ttl_ms <= 0:
            return
        if self._health.down and time.monotonic() < self._health.retry_at:
            self.stats.write_skipped += 1
            return
        try:
            self._queue.put_nowait((key, value, ttl_ms, time.monotonic()))
        except asyncio.QueueFull:
            self.stats.dropped += 1
            if self._queue_full_warn(time.monotonic()):
                _log.warning(
                    "cache_l2_write_queue_full",
                    dropped=self.stats.dropped,
                    queue=self._queue.maxsize,
                    note="raise cache.l2.write_queue, or Redis is too slow for the write rate",
                )
            return
        self._pending += 1
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            finally:
                self._pending -= len(batch)
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: Sequence[_Write]) -> None:
        if not self._health.allow():
            self.stats.write_skipped += len(batch)
            return
        now = time.monotonic()
        commands = []
        for key, value, ttl_ms, queued_at in batch:
            left = ttl_ms - int((now - queued_at) * 1000)
            if left > 0:
                sealed = seal(key, value, self._secret)
                commands.append((b"SET", self.redis_key(key), sealed, b"PX", left))
        if not commands:
            return
        try:
            async with asyncio.timeout(self._write_timeout):
                replies = await self._exchange(commands)
        except (RedisError, OSError, TimeoutError) as exc:
            self.stats.write_errors += len(commands)
            self._health.failed("write", exc)
            return
        self._health.succeeded()
        self.stats.writes += len(replies)

    async def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the queued writes to be sent; True when none is left."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._queue.join()
        except TimeoutError:
            return False
        return True

    # -- connections ----------------------------------------------------------------------

    async def _exchange(
        self, commands: Sequence[tuple[Any, ...]], *, slot_held: bool = False
    ) -> list[Any]:
        """Send ``commands`` pipelined on one connection and read their replies (the caller
        bounds the whole exchange with a timeout). A connection from the free list that turns
        out dead (Redis restarted since it was last used) is retried once, reconnected: every
        command sent here is idempotent. ``slot_held``: the caller acquired a slot, released
        here."""
        if not slot_held:
            await self._slots.acquire()
        try:
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._pool.get_connection()
            try:
                try:
                    return await _send(conn, commands)
                except (RedisConnectionError, OSError):
                    if not reused:
                        raise
                    return await _send(conn, commands)
            finally:
                self._idle.append(conn)
        finally:
            self._slots.release()

    async def aclose(self) -> None:
        """Send what is queued (within the write timeout, while Redis is up), then close."""
        self._closed = True
        if self._writer is not None:
            if not self._health.down:
                await self.flush(self._write_timeout)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        self._idle.clear()
        await self._pool.disconnect()


async def _send(conn: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """One pipelined exchange; a connection cut off midway (error, timeout, cancellation) may
    still have replies due, so it is dropped (and reconnects on next use)."""
    try:
        await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        return [await conn.read_response() for _ in commands]
    except BaseException:
        await conn.disconnect(nowait=True)
        raise


def open_cache_l2(cfg: CacheL2Config, environ: Mapping[str, str] = os.environ) -> RedisL2 | None:
    """The configured L2 tier, or None when ``cache.l2.backend`` is ``none``.

    Raises:
        ConfigError: ``cache.l2.signing_key_env`` names a variable that is not set.
    """
    if cfg.backend == "none":
        return None
    secret = b""
    if cfg.signing_key_env is not None:
        text = environ.get(cfg.signing_key_env, "")
        if not text:
            raise ConfigError(
                [
                    ConfigIssue(
                        "cache.l2.signing_key_env",
                        f"the environment variable {cfg.signing_key_env} is not set or empty",
                        "set it to the fleet's shared secret on every sidecar, or remove "
                        "cache.l2.signing_key_env",
                    )
                ]
            )
        # Any length in, the 32 bytes of a digest out (a BLAKE2b key is at most 64).
        secret = hashlib.blake2b(text.encode(), digest_size=32, person=b"skinflint-l2").digest()
    _log.info(
        "cache_l2_enabled",
        prefix=cfg.prefix,
        timeout_ms=cfg.timeout_ms,
        write_queue=cfg.write_queue,
        signed=bool(secret),
    )
    return RedisL2(cfg, secret=secret)


__all__ = ["FORMAT_VERSION", "MAGIC", "L2Stats", "RedisL2", "open_cache_l2", "seal", "unseal"]
