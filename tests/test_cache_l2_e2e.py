"""The fleet L2 end to end: sidecars with their own LMDB caches share one real redis-server,
reached through the gRPC stubs, in front of one set of emulators (whose request logs count the
provider calls). Cross-sidecar hits, TTLs, tenant isolation, storage policy, integrity,
outages (killed, frozen, restarted) and write-behind."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from complete_fixtures import request
from l2_fixtures import Fleet, RedisServer, fresh_prefix, l2_keys, l2_yaml, open_fleet, own_redis
from redis_fixtures import redis_url
from structlog.testing import capture_logs

from skinflint.v1 import skinflint_pb2 as pb

# The fixtures are imported, not registered with pytest_plugins, so only this module sees them.
__all__ = ["own_redis", "redis_url"]

HAIKU = "anthropic/claude-haiku-4-5"
L2_HIT = re.compile(r"response cache hit from the fleet L2 \(key [0-9a-f]{8}\u2026\)")


@pytest.fixture
async def fleet(
    make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Fleet]:
    async with open_fleet(make_settings, monkeypatch, tmp_path) as started:
        yield started


def tenant(name: str) -> pb.Attribution:
    return pb.Attribution(tenant=name, team="search", feature="qa")


def text_of(response: pb.CompleteResponse) -> str:
    return "".join(part.text.text for part in response.content)


# -- read-through / write-behind across sidecars ---------------------------------------------


async def test_a_miss_answered_by_one_sidecar_is_a_hit_on_another(
    fleet: Fleet, redis_url: str
) -> None:
    cache = l2_yaml(redis_url, fresh_prefix())
    a, b = await fleet.join("a", cache), await fleet.join("b", cache)

    first = await a.stub.Complete(request(HAIKU, request_id="a-1"))
    assert first.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert first.cost_nanousd > 0
    await a.flush()

    second = await b.stub.Complete(request(HAIKU, request_id="b-1"))
    assert len(fleet.anthropic.requests) == 1  # B did not call the provider
    served = second.served_by
    assert served.cache_status == pb.CACHE_STATUS_EXACT
    assert L2_HIT.fullmatch(served.route_reason), served.route_reason
    assert (served.provider, served.model, served.attempts) == ("anthropic", "claude-haiku-4-5", 0)
    assert second.request_id == "b-1"
    assert list(second.content) == list(first.content)
    assert second.usage == first.usage
    assert second.cost_nanousd == 0
    assert second.baseline_cost_nanousd == first.baseline_cost_nanousd
    assert second.savings.response_cache_nanousd == first.cost_nanousd
    assert b.l2.stats.hits == 1

    # B kept it locally: the next hit does not read Redis again.
    third = await b.stub.Complete(request(HAIKU, request_id="b-2"))
    assert third.served_by.cache_status == pb.CACHE_STATUS_EXACT
    assert third.served_by.route_reason.startswith("response cache hit (key ")
    assert (b.l2.stats.hits, b.l2.stats.misses) == (1, 0)
    assert len(fleet.anthropic.requests) == 1


async def test_a_stream_on_another_sidecar_replays_the_l2_entry(
    fleet: Fleet, redis_url: str
) -> None:
    cache = l2_yaml(redis_url, fresh_prefix())
    a, b = await fleet.join("a", cache), await fleet.join("b", cache)
    first = [e async for e in a.stub.CompleteStream(request(HAIKU))]
    assert first[-1].done.served_by.cache_status == pb.CACHE_STATUS_MISS
    await a.flush()

    events = [e async for e in b.stub.CompleteStream(request(HAIKU))]
    assert events[0].started.served_by.cache_status == pb.CACHE_STATUS_EXACT
    assert L2_HIT.fullmatch(events[-1].done.served_by.route_reason)
    assert "".join(e.delta.text for e in events[1:-1]) == text_of(first[-1].done)
    assert events[-1].done.cost_nanousd == 0
    assert len(fleet.anthropic.requests) == 1


async def test_the_ttl_is_kept_across_sidecars(fleet: Fleet, redis_url: str) -> None:
    prefix = fresh_prefix()
    cache = l2_yaml(redis_url, prefix)
    a, b = await fleet.join("a", cache), await fleet.join("b", cache)
    req = request(HAIKU, policy=pb.Policy(cache_ttl_seconds=3))

    await a.stub.Complete(req)
    await a.flush()
    client = a_client(redis_url)
    (key,) = l2_keys(client, prefix)
    assert 0 < client.pttl(key) <= 3000  # the request's TTL went to Redis

    await asyncio.sleep(1.5)
    hit = await b.stub.Complete(req)
    assert hit.served_by.cache_status == pb.CACHE_STATUS_EXACT
    assert L2_HIT.fullmatch(hit.served_by.route_reason)

    # B kept the entry for what was left of the TTL (about 1.5s), not for a fresh 3s: once the
    # original 3s have passed, it is gone on both sidecars and in Redis.
    await asyncio.sleep(1.8)
    assert client.exists(key) == 0
    on_b = await b.stub.Complete(req)
    assert on_b.served_by.cache_status == pb.CACHE_STATUS_MISS
    await b.flush()
    # A's local copy expired too; its local miss now reads B's fresh answer from the L2.
    on_a = await a.stub.Complete(req)
    assert L2_HIT.fullmatch(on_a.served_by.route_reason)
    assert len(fleet.anthropic.requests) == 2
    client.close()


def a_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


# -- tenant isolation and integrity ----------------------------------------------------------


async def test_another_tenant_cannot_read_an_entry_even_through_l2(
    fleet: Fleet, redis_url: str
) -> None:
    prefix = fresh_prefix()
    cache = l2_yaml(redis_url, prefix)
    a, b = await fleet.join("a", cache), await fleet.join("b", cache)
    await a.stub.Complete(request(HAIKU, attribution=tenant("acme")))
    await a.flush()

    other = await b.stub.Complete(request(HAIKU, attribution=tenant("globex")))
    assert other.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert other.cost_nanousd > 0
    assert len(fleet.anthropic.requests) == 2
    await b.flush()

    # Even acme's value copied under globex's key is refused: a value is bound to its key.
    client = a_client(redis_url)
    keys = l2_keys(client, prefix)
    assert len(keys) == 2
    acme_value = client.get(keys[0])
    globex_value = client.get(keys[1])
    client.set(keys[0], globex_value, px=60_000)
    client.set(keys[1], acme_value, px=60_000)
    b.app.cache.clear()
    again = await b.stub.Complete(request(HAIKU, attribution=tenant("globex")))
    assert again.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert len(fleet.anthropic.requests) == 3
    assert b.l2.stats.rejected == 1
    assert b.l2.stats.hits == 0
    client.close()


async def test_a_corrupted_value_in_redis_is_a_miss(fleet: Fleet, redis_url: str) -> None:
    prefix = fresh_prefix()
    cache = l2_yaml(redis_url, prefix)
    a, b = await fleet.join("a", cache), await fleet.join("b", cache)
    first = await a.stub.Complete(request(HAIKU))
    await a.flush()
    client = a_client(redis_url)
    (key,) = l2_keys(client, prefix)
    value = bytearray(client.get(key))
    value[len(value) // 2] ^= 0x01  # one bit, in the middle of the answer
    client.set(key, bytes(value), keepttl=True)

    with capture_logs() as logs:
        response = await b.stub.Complete(request(HAIKU))
    assert response.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert response.cost_nanousd > 0
    assert list(response.content) == list(first.content)  # the provider's answer, not garbage
    assert len(fleet.anthropic.requests) == 2
    assert b.l2.stats.rejected == 1
    assert [e["event"] for e in logs if e["event"] == "cache_l2_value_rejected"] == [
        "cache_l2_value_rejected"
    ]
    # B's answer replaced the corrupted value: a third sidecar hits.
    await b.flush()
    c = await fleet.join("c", cache)
    third = await c.stub.Complete(request(HAIKU))
    assert L2_HIT.fullmatch(third.served_by.route_reason)
    assert len(fleet.anthropic.requests) == 2
    client.close()


# -- storage policy --------------------------------------------------------------------------


async def test_no_store_and_nondeterministic_answers_never_reach_l2(
    fleet: Fleet, redis_url: str
) -> None:
    prefix = fresh_prefix()
    cache = l2_yaml(redis_url, prefix)
    a, b = await fleet.join("a", cache), await fleet.join("b", cache)
    no_store = request(HAIKU, policy=pb.Policy(no_store=True))
    warm = request(HAIKU, text="Name a warm colour.", params=pb.GenerationParams(max_tokens=64))
    await a.stub.Complete(no_store)
    await a.stub.Complete(warm)  # temperature unset: not deterministic
    await a.flush()
    client = a_client(redis_url)
    assert l2_keys(client, prefix) == []
    assert a.l2.stats.writes == 0
    for req in (no_store, warm):
        response = await b.stub.Complete(req)
        assert response.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert len(fleet.anthropic.requests) == 4
    client.close()


async def test_no_lookup_skips_l2_but_stores_to_it(fleet: Fleet, redis_url: str) -> None:
    prefix = fresh_prefix()
    cache = l2_yaml(redis_url, prefix)
    a, b = await fleet.join("a", cache), await fleet.join("b", cache)
    await a.stub.Complete(request(HAIKU))
    await a.flush()

    bypassed = await b.stub.Complete(request(HAIKU, policy=pb.Policy(no_lookup=True)))
    assert bypassed.served_by.cache_status == pb.CACHE_STATUS_BYPASS
    assert len(fleet.anthropic.requests) == 2
    assert (b.l2.stats.hits, b.l2.stats.misses, b.l2.stats.rejected) == (0, 0, 0)  # not read
    await b.flush()
    assert b.l2.stats.writes == 1  # its answer may still be stored, in both tiers
    c = await fleet.join("c", cache)
    hit = await c.stub.Complete(request(HAIKU))
    assert L2_HIT.fullmatch(hit.served_by.route_reason)
    assert len(fleet.anthropic.requests) == 2


async def test_sidecars_with_other_prefixes_do_not_share(fleet: Fleet, redis_url: str) -> None:
    a = await fleet.join("a", l2_yaml(redis_url, fresh_prefix()))
    b = await fleet.join("b", l2_yaml(redis_url, fresh_prefix()))
    await a.stub.Complete(request(HAIKU))
    await a.flush()
    response = await b.stub.Complete(request(HAIKU))
    assert response.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert len(fleet.anthropic.requests) == 2


# -- outages ---------------------------------------------------------------------------------


def _events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


async def test_a_killed_redis_degrades_to_local_only_and_recovers_on_restart(
    fleet: Fleet, own_redis: RedisServer
) -> None:
    cache = l2_yaml(own_redis.url, "fleet:")
    a, b = await fleet.join("a", cache), await fleet.join("b", cache)
    await a.stub.Complete(request(HAIKU, text="one"))
    await a.flush()
    assert L2_HIT.fullmatch(
        (await b.stub.Complete(request(HAIKU, text="one"))).served_by.route_reason
    )
    assert len(fleet.anthropic.requests) == 1

    own_redis.stop()
    with capture_logs() as logs:
        # Local hits still work, misses go to the provider, nothing fails.
        local = await a.stub.Complete(request(HAIKU, text="one"))
        assert local.served_by.cache_status == pb.CACHE_STATUS_EXACT
        for i in range(3):
            for member in (a, b):
                response = await member.stub.Complete(request(HAIKU, text=f"outage {i}"))
                assert response.served_by.cache_status == pb.CACHE_STATUS_MISS
                assert response.content
        await a.l2.flush(10.0)
    assert len(fleet.anthropic.requests) == 1 + 6  # every outage request went to the provider
    warnings = _events(logs, "cache_l2_unavailable")
    assert len(warnings) == 2  # one per sidecar, not one per request
    assert all(e["log_level"] == "warning" for e in warnings)
    assert own_redis.url not in str(logs)
    assert a.l2.down and b.l2.down

    own_redis.start()  # empty: no persistence
    await asyncio.sleep(0.2)  # past retry_after_ms (100 ms)
    with capture_logs() as logs:
        await a.stub.Complete(request(HAIKU, text="two"))
        await a.flush()
    assert _events(logs, "cache_l2_recovered")
    assert not a.l2.down
    back = await b.stub.Complete(request(HAIKU, text="two"))
    assert L2_HIT.fullmatch(back.served_by.route_reason)
    assert len(fleet.anthropic.requests) == 8
    assert not b.l2.down


async def test_a_frozen_redis_cannot_fail_a_call(fleet: Fleet, own_redis: RedisServer) -> None:
    cache = l2_yaml(own_redis.url, "fleet:", timeout_ms=200, write_timeout_ms=200)
    a, b = await fleet.join("a", cache), await fleet.join("b", cache)
    await a.stub.Complete(request(HAIKU, text="warm-up"))  # connections open
    await a.flush()

    own_redis.freeze()  # accepts connections, answers nothing
    try:
        with capture_logs() as logs:
            responses = [
                await b.stub.Complete(request(HAIKU, text=f"frozen {i}")) for i in range(3)
            ]
    finally:
        own_redis.thaw()
    assert [r.served_by.cache_status for r in responses] == [pb.CACHE_STATUS_MISS] * 3
    assert b.l2.stats.read_errors >= 1
    assert len(_events(logs, "cache_l2_unavailable")) == 1

    await asyncio.sleep(0.2)
    await b.stub.Complete(request(HAIKU, text="thawed"))
    await b.flush()
    assert not b.l2.down
    hit = await a.stub.Complete(request(HAIKU, text="thawed"))
    assert L2_HIT.fullmatch(hit.served_by.route_reason)


async def test_write_behind_does_not_hold_the_response(
    fleet: Fleet, own_redis: RedisServer
) -> None:
    cache = l2_yaml(own_redis.url, "fleet:", write_timeout_ms=30_000)
    a, b = await fleet.join("a", cache), await fleet.join("b", cache)
    client = own_redis.client()
    # Writes block on the server until unpaused; reads still run.
    client.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
    try:
        response = await a.stub.Complete(request(HAIKU))
        assert response.served_by.cache_status == pb.CACHE_STATUS_MISS
        # The caller has its answer while the write is provably still waiting on Redis.
        assert a.l2.pending == 1
        assert l2_keys(client, "fleet:") == []
    finally:
        client.execute_command("CLIENT", "UNPAUSE")
    await a.flush()
    assert a.l2.stats.writes == 1
    assert len(l2_keys(client, "fleet:")) == 1
    hit = await b.stub.Complete(request(HAIKU))
    assert L2_HIT.fullmatch(hit.served_by.route_reason)
    assert len(fleet.anthropic.requests) == 1
    client.close()


async def test_only_sidecars_holding_the_fleet_secret_share_answers(
    fleet: Fleet, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = fresh_prefix()
    monkeypatch.setenv("FLEET_L2_KEY", "the fleet's secret")
    monkeypatch.setenv("OTHER_L2_KEY", "not the fleet's secret")
    a = await fleet.join("a", l2_yaml(redis_url, prefix, signing_key_env="FLEET_L2_KEY"))
    b = await fleet.join("b", l2_yaml(redis_url, prefix, signing_key_env="FLEET_L2_KEY"))
    outsider = await fleet.join("x", l2_yaml(redis_url, prefix, signing_key_env="OTHER_L2_KEY"))
    await a.stub.Complete(request(HAIKU))
    await a.flush()

    shared = await b.stub.Complete(request(HAIKU))
    assert L2_HIT.fullmatch(shared.served_by.route_reason)
    refused = await outsider.stub.Complete(request(HAIKU))
    assert refused.served_by.cache_status == pb.CACHE_STATUS_MISS
    assert outsider.l2.stats.rejected == 1
    assert len(fleet.anthropic.requests) == 2
