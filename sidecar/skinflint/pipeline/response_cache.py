"""The response cache: exact-key lookups before routing, storage after a priced answer, and
in-process single flight for concurrent identical misses.

**Key.** ``_native.cache_key(call.key_material(), rules)``: the tenant namespace, the requested
model text, every output-affecting parameter, tools and the canonical messages, canonicalized
with the feature's rule set (``features.<f>.rule_set``, default ``cache.rule_set``). The tenant
is in the key, so no request is ever answered from another tenant's entry. The namespace is
further scoped by the feature and its rule set (name and a hash of its flags): the feature
decides what model ``auto`` or a tier name runs on, and a request canonicalized by a looser
rule set (say case folding) must never be answered from an entry keyed under a stricter one
(or the other way round, after a config change). For a model that is routed (``auto`` or a
tier name, not a pinned ``provider/model``) the request's routing bounds (``min_tier``,
``max_tier``, ``task_type``) scope it too, since they change which model answers.

**Policy** (``decide``), in this order:

* ``features.<f>.cache: false`` -> BYPASS (no lookup, no store, no single flight);
* lookup unless the request says ``policy.no_lookup`` (then BYPASS; the answer may still be
  stored);
* store only a *deterministic* request: ``temperature`` 0. An unset temperature is **not**
  deterministic (every provider defaults to 1), so it is neither stored nor coalesced unless the
  feature opts in with ``features.<f>.cache_nondeterministic: true``. ``policy.no_store`` never
  stores. A non-deterministic request is still looked up (a deterministic twin with the same
  key cannot exist: the temperature is in the key, so in practice it only finds entries stored
  under an opt-in);
* TTL: ``policy.cache_ttl_seconds``, else ``features.<f>.cache_ttl_seconds``, else
  ``cache.default_ttl_seconds``.

**Stored value.** A small versioned JSON document (``FORMAT_VERSION``): content, stop reason,
usage, the provider/model/tier that answered, and the original cost, baseline and savings by
lever. Nothing request- or tenant-specific (no request id, attribution, budgets) is stored;
the tenant is only in the key. A value that does not decode (an older format) is a miss.

**A hit** reports ``cost_nanousd`` 0, the original baseline, ``savings.response_cache`` = the
original cost (the other levers as originally saved, so ``total`` = baseline - 0), the original
usage (the tokens of the answer; none is billed), the original provider/model/tier, attempts 0
and route reason ``response cache hit (key <first 8 hex>…)``.

**Single flight.** While a storable miss is in flight (the *leader*), identical requests
(same key, lookup and store allowed) wait for it instead of calling the provider and answer
with status COALESCED, their own request id and zero cost, like a hit. If the leader fails (or
its stream is cut, or it is cancelled) the followers are not given anything from it: each
retries as its own call (it looks the cache up again and may become the next leader). Single
flight is per process (an asyncio dict of futures); across processes sharing the LMDB cache a
*later* identical call is a hit, but *concurrent* misses in two processes both call a provider.

**Fleet L2** (``cache.l2``, optional; ``pipeline.cache_l2``). On a local miss that may be
looked up, ``get_l2`` reads the shared Redis tier; a hit there is written into LMDB for the
rest of its TTL and answered as EXACT (route reason ``response cache hit from the fleet L2``).
Every local store is also queued for L2 (write-behind, off the caller's path), so the same
``no_store`` / ``no_lookup`` / determinism rules hold for both tiers.

**Budgets.** A hit or coalesced answer calls ``BudgetGuard.record`` with zero cost and zero
tokens: each matching budget counts one more request and no spend (only the leader's call is
billed).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from skinflint import _native
from skinflint.accounting import Usage
from skinflint.call import Call, ModelKind, TextPart, Tier, ToolUsePart, freeze_json, thaw_json
from skinflint.config import Settings
from skinflint.errors import SkinflintError, native_errors
from skinflint.logs import get_logger
from skinflint.pipeline.cache_l2 import RedisL2
from skinflint.pipeline.pricing import Bill, Savings
from skinflint.pipeline.semantic_cache import Probe, SemanticCache
from skinflint.providers.base import Content, StopReason

_log = get_logger("response_cache")

#: Version of the stored JSON document; a value of another version is a miss.
FORMAT_VERSION = 1
#: Bounds of the decoded-entry memo (at most about 16 MiB of values).
DECODED_MAX_ENTRIES = 1024
DECODED_MAX_VALUE_BYTES = 16 * 1024


class CacheStatus(StrEnum):
    """The wire's ``CacheStatus``."""

    MISS = "miss"
    EXACT = "exact"
    COALESCED = "coalesced"
    BYPASS = "bypass"
    #: Same context, similar last user turn (``pipeline.semantic_cache``).
    SEMANTIC = "semantic"


@dataclass(frozen=True, slots=True)
class CacheDecision:
    """What the response cache does for one call (``key`` is None when it is bypassed)."""

    key: _native.CacheKey | None
    lookup: bool
    store: bool
    ttl_s: int
    #: The semantic cache's probe (set on an exact miss of an opted-in feature): a stored
    #: answer adds its vector.
    probe: Probe | None = None
    #: A semantic hit: its similarity and the key of the entry that answered.
    similar: tuple[float, bytes] | None = None

    @property
    def coalesce(self) -> bool:
        """Take part in single flight: only when the answer may be both read and stored."""
        return self.key is not None and self.lookup and self.store

    @property
    def miss_status(self) -> CacheStatus:
        """The status of an answer that came from a provider."""
        return CacheStatus.MISS if self.lookup and self.key is not None else CacheStatus.BYPASS

    @property
    def short(self) -> str:
        return self.key.hex[:8] if self.key is not None else ""


_BYPASS = CacheDecision(None, lookup=False, store=False, ttl_s=0)


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored answer (see the module docstring for what is in it and what is not)."""

    content: tuple[Content, ...]
    stop_reason: StopReason
    usage: Usage
    provider: str
    model: str
    tier: Tier | None
    bill: Bill
    #: This very object is the decoded-entry memo's: every hit of the same stored value
    #: returns it, so what is derived from it may be kept by its identity (``IdentityMemo``).
    shared: bool = field(default=False, compare=False)


def hit_bill(original: Bill) -> Bill:
    """Zero cost; the original cost saved by the response cache, other levers unchanged."""
    saved = original.savings
    return Bill(
        cost_nanousd=0,
        baseline_cost_nanousd=original.baseline_cost_nanousd,
        savings=Savings(
            response_cache=original.cost_nanousd + saved.response_cache,
            routing=saved.routing,
            prompt_caching=saved.prompt_caching,
            batching=saved.batching,
            local_tier=saved.local_tier,
        ),
        price_version=original.price_version,
    )


def is_deterministic(call: Call) -> bool:
    """Temperature 0 exactly; unset means the provider default (1), so not deterministic."""
    return call.params.temperature is not None and call.params.temperature == 0.0


def encode(entry: Entry) -> bytes:
    savings = entry.bill.savings
    document: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "content": [_encode_part(p) for p in entry.content],
        "stop_reason": entry.stop_reason.value,
        "usage": {
            "input_tokens": entry.usage.input_tokens,
            "output_tokens": entry.usage.output_tokens,
            "cache_read_tokens": entry.usage.cache_read_tokens,
            "cache_write_5m_tokens": entry.usage.cache_write_5m_tokens,
            "cache_write_1h_tokens": entry.usage.cache_write_1h_tokens,
            "reasoning_tokens": entry.usage.reasoning_tokens,
        },
        "provider": entry.provider,
        "model": entry.model,
        "tier": entry.tier.value if entry.tier is not None else None,
        "cost_nanousd": entry.bill.cost_nanousd,
        "baseline_cost_nanousd": entry.bill.baseline_cost_nanousd,
        "savings": {
            "response_cache": savings.response_cache,
            "routing": savings.routing,
            "prompt_caching": savings.prompt_caching,
            "batching": savings.batching,
            "local_tier": savings.local_tier,
        },
        "price_version": entry.bill.price_version,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode(value: bytes) -> Entry | None:
    """The stored entry, or None when the value is of another version or does not decode."""
    try:
        document = json.loads(value)
        if not isinstance(document, dict) or document.get("v") != FORMAT_VERSION:
            return None
        saved = document["savings"]
        tier = document["tier"]
        return Entry(
            content=tuple(_decode_part(p) for p in document["content"]),
            stop_reason=StopReason(document["stop_reason"]),
            usage=Usage(**{k: int(v) for k, v in document["usage"].items()}),
            provider=str(document["provider"]),
            model=str(document["model"]),
            tier=Tier(tier) if tier is not None else None,
            bill=Bill(
                cost_nanousd=int(document["cost_nanousd"]),
                baseline_cost_nanousd=int(document["baseline_cost_nanousd"]),
                savings=Savings(**{k: int(v) for k, v in saved.items()}),
                price_version=str(document["price_version"]),
            ),
        )
    except (ValueError, KeyError, TypeError) as exc:
        _log.warning("response_cache_value_undecodable", error=f"{type(exc).__name__}: {exc}")
        return None


def _encode_part(part: Content) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    return {"type": "tool_use", "id": part.id, "name": part.name, "input": thaw_json(part.input)}


def _decode_part(item: Mapping[str, Any]) -> Content:
    if item["type"] == "text":
        return TextPart(str(item["text"]))
    if item["type"] == "tool_use":
        tool_input = freeze_json(item["input"])
        if not isinstance(tool_input, Mapping):
            raise TypeError("a tool_use input must be an object")
        return ToolUsePart(str(item["id"]), str(item["name"]), tool_input)
    raise ValueError(f"unknown content type {item['type']!r}")


class ResponseCacheLayer:
    """Plans, looks up, stores and coalesces (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        cache: _native.ResponseCache,
        rule_sets: Mapping[str, _native.RuleSet],
        l2: RedisL2 | None = None,
        semantic: SemanticCache | None = None,
    ) -> None:
        self._settings = settings
        self._cache = cache
        self.l2 = l2
        self._rule_sets = rule_sets
        self._semantic = semantic
        self._inflight: dict[bytes, asyncio.Future[Entry | None]] = {}
        self._scopes: dict[str, str] = {}
        #: Performance (bench/cache.py): decoded entries by their stored bytes, so a hot key
        #: is not JSON-decoded on every hit. Keyed by the value itself (expiry stays LMDB's:
        #: a value is only seen when it is live), bounded in count and per-value size.
        self._decoded: dict[bytes, Entry] = {}

    def decide(self, call: Call) -> CacheDecision:
        """What the cache does for ``call``; a pure function of every part of the call but
        its id and labels, so it is kept in ``call.derived`` (a repeated request arrives as
        the transport's kept ``Call`` under a new id, and decides once)."""
        decision: CacheDecision | None = call.derived.get(self)
        if decision is None:
            decision = call.derived[self] = self._decide(call)
        return decision

    def _decide(self, call: Call) -> CacheDecision:
        feature = call.attribution.feature
        cfg = self._settings.feature(feature)
        if not cfg.cache:
            return _BYPASS
        rules = self._rule_sets[self._settings.rule_set_name(feature)]
        material = self._material(call, rules)
        policy = call.policy
        try:
            with native_errors("computing the response-cache key"):
                key = _native.cache_key(material, rules)
        except SkinflintError as exc:  # a bug in the key material: serve the call uncached
            _log.error("response_cache_key_failed", error=str(exc))
            return _BYPASS
        store = not policy.no_store and (is_deterministic(call) or cfg.cache_nondeterministic)
        ttl = policy.cache_ttl_seconds or self._settings.cache_ttl_seconds(feature)
        return CacheDecision(key, lookup=not policy.no_lookup, store=store, ttl_s=ttl)

    def _material(self, call: Call, rules: _native.RuleSet) -> dict[str, Any]:
        """The key material, its tenant namespace scoped (see the module docstring)."""
        material = call.key_material()
        scope = self._scope(call.attribution.feature, rules)
        policy = call.policy
        if call.model.kind is not ModelKind.PINNED:
            # What "auto" or a tier name runs on also depends on the request's routing bounds.
            bounds = (policy.min_tier, policy.max_tier, policy.task_type)
            if any(b is not None for b in bounds):
                scope += "/route:" + ",".join("" if b is None else str(b) for b in bounds)
        material["namespace"] = f"{material['namespace']}/{scope}"
        return material

    def _scope(self, feature: str, rules: _native.RuleSet) -> str:
        """The feature and its rule set (name and flags), which scope the tenant namespace."""
        scope = self._scopes.get(feature)
        if scope is None:
            described = json.dumps(rules.describe(), sort_keys=True, separators=(",", ":"))
            digest = hashlib.blake2b(described.encode(), digest_size=6).hexdigest()
            scope = f"feature:{feature}/rules:{rules.name}:{digest}"
            self._scopes[feature] = scope
        return scope

    def get(self, decision: CacheDecision) -> Entry | None:
        if decision.key is None or not decision.lookup:
            return None
        try:
            with native_errors("reading the response cache"):
                value = self._cache.get(decision.key.bytes)
        except Exception as exc:  # a broken cache is a miss, never a failed call
            _log.error("response_cache_get_failed", error=f"{type(exc).__name__}: {exc}")
            return None
        return self._decode(value) if value is not None else None

    def _decode(self, value: bytes) -> Entry | None:
        """``decode`` through the memo of recently decoded values (oldest dropped first)."""
        entry = self._decoded.get(value)
        if entry is None:
            entry = decode(value)
            if entry is not None and len(value) <= DECODED_MAX_VALUE_BYTES:
                if len(self._decoded) >= DECODED_MAX_ENTRIES:
                    del self._decoded[next(iter(self._decoded))]
                entry = self._decoded[value] = replace(entry, shared=True)
        return entry

    async def get_l2(self, decision: CacheDecision) -> Entry | None:
        """After a local miss: the fleet L2's entry, kept locally for the rest of its TTL."""
        if self.l2 is None or decision.key is None or not decision.lookup:
            return None
        found = await self.l2.get(decision.key.bytes)
        if found is None:
            return None
        value, ttl_ms = found
        entry = decode(value)
        if entry is not None:
            self._put_local(decision, value, ttl_ms / 1000)
        return entry

    def peek(self, decision: CacheDecision) -> Entry | None:
        """As ``get`` with no side effect: counted in no cache statistic, no single flight
        (Estimate's "would this request hit?")."""
        if decision.key is None or not decision.lookup:
            return None
        try:
            with native_errors("reading the response cache"):
                value = self._cache.peek(decision.key.bytes)
        except Exception as exc:
            _log.error("response_cache_peek_failed", error=f"{type(exc).__name__}: {exc}")
            return None
        return decode(value) if value is not None else None

    def put(self, decision: CacheDecision, entry: Entry) -> None:
        if decision.key is None or not decision.store:
            return
        value = encode(entry)
        if not self._put_local(decision, value, float(decision.ttl_s)):
            return
        if self.l2 is not None:
            self.l2.put(decision.key.bytes, value, decision.ttl_s * 1000)
        if decision.probe is not None and self._semantic is not None:
            self._semantic.add(decision.probe, decision.key.bytes, decision.ttl_s)

    def _put_local(self, decision: CacheDecision, value: bytes, ttl_s: float) -> bool:
        assert decision.key is not None
        try:
            with native_errors("writing the response cache"):
                self._cache.put(decision.key.bytes, value, ttl_seconds=ttl_s)
        except Exception as exc:  # the caller keeps its answer; the next call is a miss
            _log.error(
                "response_cache_put_failed",
                key=decision.short,
                error=f"{type(exc).__name__}: {exc}",
            )
            return False
        return True

    # -- semantic cache -------------------------------------------------------------------

    async def semantic(
        self, call: Call, decision: CacheDecision
    ) -> tuple[CacheDecision, Entry | None]:
        """After an exact miss: an entry stored for a similar last user turn in the same
        context (``decision.similar`` says which), and the probe a stored answer adds.
        Features that do not enable the semantic cache return at once."""
        if self._semantic is None or decision.key is None:
            return decision, None
        cfg = self._settings.feature(call.attribution.feature).semantic
        if not cfg.enabled or not (decision.lookup or decision.store):
            return decision, None
        rules = self._rule_sets[self._settings.rule_set_name(call.attribution.feature)]
        probe = await self._semantic.probe(self._material(call, rules), rules, cfg.threshold)
        if probe is None:
            return decision, None
        decision = replace(decision, probe=probe)
        if not decision.lookup:
            return decision, None
        for candidate in self._semantic.search(probe):
            # The row is only a pointer: an expired or evicted entry is a miss.
            entry = self._get_key(candidate.key)
            if entry is not None:
                return replace(decision, similar=(candidate.score, candidate.key)), entry
        return decision, None

    def _get_key(self, key: bytes) -> Entry | None:
        try:
            with native_errors("reading the response cache"):
                value = self._cache.get(key)
        except Exception as exc:  # a broken cache is a miss, never a failed call
            _log.error("response_cache_get_failed", error=f"{type(exc).__name__}: {exc}")
            return None
        return decode(value) if value is not None else None

    # -- single flight --------------------------------------------------------------------

    def join(self, decision: CacheDecision) -> tuple[asyncio.Future[Entry | None], bool]:
        """The in-flight future for ``decision``'s key and whether this call leads it. A leader
        must ``settle`` its future exactly once; a follower awaits it (shielded)."""
        assert decision.key is not None
        key = decision.key.bytes
        future = self._inflight.get(key)
        if future is not None and not future.done():
            return future, False
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        return future, True

    def settle(
        self, decision: CacheDecision, future: asyncio.Future[Entry | None], entry: Entry | None
    ) -> None:
        """The leader's outcome: the answer, or None (failed, cut or cancelled)."""
        assert decision.key is not None
        if self._inflight.get(decision.key.bytes) is future:
            del self._inflight[decision.key.bytes]
        if not future.done():
            future.set_result(entry)


__all__ = [
    "FORMAT_VERSION",
    "CacheDecision",
    "CacheStatus",
    "Entry",
    "ResponseCacheLayer",
    "decode",
    "encode",
    "hit_bill",
    "is_deterministic",
]
