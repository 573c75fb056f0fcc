"""The fleet L2 tier on its own, against a real redis-server: sealing, what a read refuses,
the bounded write queue, and failures that must never reach the caller."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
from l2_fixtures import RedisServer, fresh_prefix, own_redis
from redis_fixtures import _free_port, redis_url
from structlog.testing import capture_logs

from skinflint.config import CacheL2Config, load_settings
from skinflint.errors import ConfigError
from skinflint.pipeline.cache_l2 import RedisL2, open_cache_l2, seal, unseal

# The fixtures are imported, not registered with pytest_plugins, so only this module sees them.
__all__ = ["own_redis", "redis_url"]

KEY = bytes(range(16))
OTHER = bytes(range(1, 17))


@pytest.fixture
async def make_l2() -> AsyncIterator[Callable[..., RedisL2]]:
    made: list[RedisL2] = []

    def make(url: str, **options: Any) -> RedisL2:
        cfg = CacheL2Config(backend="redis", redis_url=url, **options)
        l2 = RedisL2(cfg)
        made.append(l2)
        return l2

    yield make
    for l2 in made:
        await l2.aclose()


# -- sealing ---------------------------------------------------------------------------------


def test_a_sealed_value_opens_only_under_its_own_key() -> None:
    value = b'{"v":1,"content":[]}'
    sealed = seal(KEY, value)
    assert unseal(KEY, sealed) == value
    assert unseal(OTHER, sealed) is None
    assert unseal(KEY, seal(OTHER, value)) is None


def test_any_flipped_bit_or_truncation_is_refused() -> None:
    sealed = seal(KEY, b"an answer")
    for i in range(len(sealed)):
        for bit in (0x01, 0x80):
            damaged = bytearray(sealed)
            damaged[i] ^= bit
            assert unseal(KEY, bytes(damaged)) is None, (i, bit)
    for n in range(len(sealed)):
        assert unseal(KEY, sealed[:n]) is None
    assert unseal(KEY, b"") is None
    assert unseal(KEY, os.urandom(200)) is None


# -- reads -----------------------------------------------------------------------------------


async def test_a_written_value_reads_back_with_its_remaining_ttl(
    make_l2: Callable[..., RedisL2], redis_url: str
) -> None:
    l2 = make_l2(redis_url, prefix=fresh_prefix())
    assert await l2.get(KEY) is None
    l2.put(KEY, b"value", 60_000)
    assert await l2.flush(10)
    found = await l2.get(KEY)
    assert found is not None
    value, ttl_ms = found
    assert value == b"value"
    assert 0 < ttl_ms <= 60_000
    assert await l2.get(OTHER) is None
    assert (l2.stats.hits, l2.stats.misses, l2.stats.writes) == (1, 2, 1)


@pytest.mark.parametrize("kind", ["hash", "no-ttl", "garbage"])
async def test_a_foreign_value_is_a_miss_and_not_an_outage(
    make_l2: Callable[..., RedisL2], redis_url: str, kind: str
) -> None:
    prefix = fresh_prefix()
    l2 = make_l2(redis_url, prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    rkey = l2.redis_key(KEY)
    if kind == "hash":
        client.hset(rkey, "field", "value")
    elif kind == "no-ttl":
        client.set(rkey, seal(KEY, b"value"))  # well sealed, but set to live forever
    else:
        client.set(rkey, b"not a sealed value", px=60_000)
    with capture_logs() as logs:
        assert await l2.get(KEY) is None
        assert await l2.get(KEY) is None
    assert l2.stats.rejected == 2
    assert not l2.down
    rejected = [e for e in logs if e["event"] == "cache_l2_value_rejected"]
    assert len(rejected) == 1  # rate-limited
    assert rejected[0]["log_level"] == "warning"
    client.delete(rkey)
    client.close()


# -- writes ----------------------------------------------------------------------------------


async def test_a_full_write_queue_drops_counts_and_warns_once(
    make_l2: Callable[..., RedisL2], redis_url: str
) -> None:
    l2 = make_l2(redis_url, prefix=fresh_prefix(), write_queue=2)
    with capture_logs() as logs:
        for i in range(5):  # no await in between: the writer has not taken any yet
            l2.put(bytes([i]) * 16, b"value", 60_000)
    assert l2.stats.dropped == 3
    assert l2.pending == 2
    full = [e for e in logs if e["event"] == "cache_l2_write_queue_full"]
    assert len(full) == 1 and full[0]["log_level"] == "warning"
    assert await l2.flush(10)
    assert l2.stats.writes == 2
    assert l2.pending == 0


async def test_the_ttl_sent_is_what_is_left_when_the_write_leaves(
    make_l2: Callable[..., RedisL2], own_redis: RedisServer
) -> None:
    l2 = make_l2(own_redis.url, prefix="p:", write_timeout_ms=30_000)
    client = own_redis.client()
    client.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
    try:
        l2.put(KEY, b"first", 60_000)  # taken by the writer, then held by the pause
        await asyncio.sleep(0)
        l2.put(OTHER, b"second", 60_000)  # queued behind it
        await asyncio.sleep(0.5)
    finally:
        client.execute_command("CLIENT", "UNPAUSE")
    assert await l2.flush(10)
    # The second write waited at least 0.5s in the queue; it was sent with that much less.
    assert client.pttl(l2.redis_key(OTHER)) <= 59_500
    client.close()


# -- failures --------------------------------------------------------------------------------


async def test_nothing_listening_is_a_miss_with_one_warning(
    make_l2: Callable[..., RedisL2],
) -> None:
    l2 = make_l2(f"redis://127.0.0.1:{_free_port()}/0", retry_after_ms=60_000)
    with capture_logs() as logs:
        for _ in range(5):
            assert await l2.get(KEY) is None
            l2.put(KEY, b"value", 60_000)
        assert await l2.flush(10)
    assert l2.down
    assert l2.stats.read_errors == 1  # then skipped until retry_after_ms
    assert l2.stats.read_skipped == 4
    assert l2.stats.write_skipped == 5
    warnings = [e for e in logs if e["event"].startswith("cache_l2")]
    assert [e["event"] for e in warnings] == ["cache_l2_unavailable"]
    assert warnings[0]["operation"] == "read"


async def test_a_restarted_redis_is_used_again_through_stale_connections(
    make_l2: Callable[..., RedisL2], own_redis: RedisServer
) -> None:
    l2 = make_l2(own_redis.url, prefix="p:")
    l2.put(KEY, b"value", 60_000)
    assert await l2.flush(10)
    assert await l2.get(KEY) is not None  # its connection is now idle in the free list
    own_redis.stop()
    own_redis.start()  # empty, same port: the idle connection is dead
    assert await l2.get(KEY) is None
    assert not l2.down  # the stale connection was replaced, not taken for an outage
    assert l2.stats.misses == 1
    l2.put(KEY, b"again", 60_000)
    assert await l2.flush(10)
    found = await l2.get(KEY)
    assert found is not None and found[0] == b"again"


async def test_close_sends_what_is_queued(make_l2: Callable[..., RedisL2], redis_url: str) -> None:
    prefix = fresh_prefix()
    l2 = make_l2(redis_url, prefix=prefix)
    for i in range(10):
        l2.put(bytes([i]) * 16, b"value", 60_000)
    await l2.aclose()
    client = redis.Redis.from_url(redis_url)
    assert len(list(client.scan_iter(match=f"{prefix}rc:*"))) == 10
    client.close()
    l2.put(KEY, b"after close", 60_000)  # ignored, never an error
    assert l2.pending == 0


# -- config ----------------------------------------------------------------------------------


async def test_l2_is_off_by_default_and_needs_a_url_when_on() -> None:
    assert open_cache_l2(load_settings(None, env={}).cache.l2) is None
    with pytest.raises(ConfigError, match=r"cache\.l2\.redis_url"):
        load_settings(None, env={"SKINFLINT__CACHE__L2__BACKEND": "redis"})
    settings = load_settings(
        None,
        env={
            "SKINFLINT__CACHE__L2__BACKEND": "redis",
            "SKINFLINT__CACHE__L2__REDIS_URL": "redis://127.0.0.1:1/0",
        },
    )
    l2 = open_cache_l2(settings.cache.l2)
    assert isinstance(l2, RedisL2)
    await l2.aclose()


# -- signing ---------------------------------------------------------------------------------


def test_a_keyed_seal_opens_only_with_the_same_secret() -> None:
    sealed = seal(KEY, b"value", b"s" * 32)
    assert unseal(KEY, sealed, b"s" * 32) == b"value"
    assert unseal(KEY, sealed) is None
    assert unseal(KEY, sealed, b"t" * 32) is None
    assert unseal(KEY, seal(KEY, b"value"), b"s" * 32) is None  # unsigned: planted


async def test_a_signing_key_must_be_set_when_configured() -> None:
    cfg = CacheL2Config(
        backend="redis", redis_url="redis://127.0.0.1:1/0", signing_key_env="FLEET_SECRET"
    )
    with pytest.raises(ConfigError, match=r"cache\.l2\.signing_key_env.*FLEET_SECRET"):
        open_cache_l2(cfg, {})
    l2 = open_cache_l2(cfg, {"FLEET_SECRET": "correct horse battery staple"})
    assert isinstance(l2, RedisL2)
    await l2.aclose()


async def test_values_signed_with_another_secret_are_refused(
    make_l2: Callable[..., RedisL2], redis_url: str
) -> None:
    prefix = fresh_prefix()
    cfg = CacheL2Config(backend="redis", redis_url=redis_url, prefix=prefix, signing_key_env="K")
    ours = open_cache_l2(cfg, {"K": "fleet secret"})
    twin = open_cache_l2(cfg, {"K": "fleet secret"})
    stranger = open_cache_l2(cfg, {"K": "another secret"})
    unsigned = make_l2(redis_url, prefix=prefix)
    assert ours is not None and twin is not None and stranger is not None
    try:
        ours.put(KEY, b"signed", 60_000)
        assert await ours.flush(10)
        found = await twin.get(KEY)
        assert found is not None and found[0] == b"signed"
        assert await stranger.get(KEY) is None
        assert await unsigned.get(KEY) is None
        unsigned.put(OTHER, b"planted", 60_000)
        assert await unsigned.flush(10)
        assert await ours.get(OTHER) is None
        assert (stranger.stats.rejected, unsigned.stats.rejected, ours.stats.rejected) == (1, 1, 1)
    finally:
        for l2 in (ours, twin, stranger):
            await l2.aclose()


async def test_a_redis_refusing_us_is_an_outage_not_a_failed_call(
    make_l2: Callable[..., RedisL2], own_redis: RedisServer
) -> None:
    client = own_redis.client()
    client.config_set("requirepass", "sesame")  # this sidecar's URL carries no password
    l2 = make_l2(own_redis.url, prefix="p:", retry_after_ms=1)
    with capture_logs() as logs:
        assert await l2.get(KEY) is None
        l2.put(KEY, b"value", 60_000)
        assert await l2.flush(10)
    assert l2.down
    assert l2.stats.writes == 0
    assert [e["event"] for e in logs] == ["cache_l2_unavailable"]
    assert "sesame" not in str(logs)
    client.execute_command("AUTH", "sesame")
    client.config_set("requirepass", "")
    await asyncio.sleep(0.01)
    l2.put(KEY, b"value", 60_000)
    assert await l2.flush(10)
    assert not l2.down
    found = await l2.get(KEY)
    assert found is not None and found[0] == b"value"
    client.close()


@pytest.mark.parametrize(("interval_s", "still"), [(0.0, 3), (3600.0, 0)])
async def test_while_down_failed_probes_warn_at_most_once_per_interval(
    make_l2: Callable[..., RedisL2], interval_s: float, still: int
) -> None:
    url = f"redis://127.0.0.1:{_free_port()}/0"
    l2 = make_l2(url, retry_after_ms=1, warn_interval_s=interval_s)
    with capture_logs() as logs:
        for _ in range(4):
            assert await l2.get(KEY) is None
            await asyncio.sleep(0.01)  # past retry_after_ms: the next read is a probe
    assert l2.stats.read_errors == 4
    events = [e["event"] for e in logs]
    assert events == ["cache_l2_unavailable"] + ["cache_l2_still_unavailable"] * still


async def test_concurrent_reads_over_few_connections_each_get_their_own_value(
    make_l2: Callable[..., RedisL2], redis_url: str
) -> None:
    l2 = make_l2(
        redis_url, prefix=fresh_prefix(), max_connections=3, write_queue=1000, timeout_ms=10_000
    )
    keys = [i.to_bytes(16, "big") for i in range(200)]
    for i, key in enumerate(keys):
        l2.put(key, f"value {i}".encode(), 60_000)
    assert await l2.flush(10)
    found = await asyncio.gather(*(l2.get(key) for key in keys))
    assert [f[0] if f else None for f in found] == [f"value {i}".encode() for i in range(200)]
    assert l2.stats.hits == 200
    assert l2.stats.rejected == 0


async def test_no_free_connection_within_the_timeout_is_a_miss_not_an_outage(
    make_l2: Callable[..., RedisL2], redis_url: str
) -> None:
    l2 = make_l2(redis_url, prefix=fresh_prefix(), max_connections=1, timeout_ms=300)
    l2.put(KEY, b"value", 60_000)
    assert await l2.flush(10)
    await l2._slots.acquire()  # every connection busy (a test may hold one)
    try:
        with capture_logs() as logs:
            assert await l2.get(KEY) is None
            assert await l2.get(KEY) is None
    finally:
        l2._slots.release()
    assert l2.stats.read_busy == 2
    assert not l2.down
    assert [e["event"] for e in logs] == ["cache_l2_busy"]
    found = await l2.get(KEY)
    assert found is not None and found[0] == b"value"
