"""The fleet-wide budget store: every sidecar of a fleet shares its counters through one Redis.

Each operation is one Lua script, so Redis runs it atomically against every other sidecar: a
reservation is checked and held on all of its windows, or on none, with nothing in between.

Key layout (``P`` is the configurable prefix, default ``skinflint:``)::

    P w:{budget_id}:{window_start}   hash   spent_n reserved_n spent_t reserved_t requests
    P z:{budget_id}:{window_start}   zset   live holds on that window, scored by expiry (ms);
                                            member "{reservation_id}|{nanousd}|{tokens}"
    P r:{reservation_id}             hash   exp (ms), st (l=live r=released c=committed), n,
                                            and per charge i: b{i} w{i} e{i} n{i} t{i}
    P zs                             set    the zset keys that may hold live reservations
                                            (what ``purge_expired`` walks)
    P specs                          hash   budget_id -> spec JSON

Why the zset members carry the amounts: releasing an expired hold must never depend on the
reservation hash still being there (it expires on its own, and a crashed sidecar never cleans
up). Each window can release its own expired holds from its zset alone, and ``ZREM`` returning
1 is what decides that a hold is released, so release, commit, expiry and purge can race in any
order and each hold is subtracted exactly once: no leak into a phantom limit, no double release.

Expiry:

* Window hash and zset get ``EXPIREAT window_end + window_margin_s`` when ``window_end > 0``
  (``window_end`` is wall-clock unix seconds; the margin keeps a finished window readable for a
  while). TOTAL windows (``window_end == 0``) never expire.
* A reservation hash gets ``PEXPIRE ttl_ms + reservation_grace_ms``: it outlives the hold so a
  commit that arrives after the reservation expired (a slow stream) still finds the windows it
  was charged on and records the spend there (its holds are already gone; nothing is released
  twice). Once the hash itself is gone the caller's commit carries nothing to attribute the
  spend to, so it records nothing and returns ``[]``; size the grace above the longest call.
  A committed reservation keeps its hash (``st=c``) until then, so a retried commit is a no-op
  rather than double spend; a commit after a release records the spend (the money was spent).
* "Expired" means ``expires_at <= now_ms`` where ``now_ms`` is the caller's clock; Redis's own
  clock is used only for garbage collection (the TTLs above), never for a decision.

Precision: counters are updated with ``HINCRBY`` from decimal strings, so they are exact 64-bit
integers. The limit check runs on Lua numbers (doubles), which are exact up to 2**53; every
amount and limit passed in is therefore checked to be at most ``MAX_EXACT`` = 2**53 - 1
(about $9.0M in nano-USD per charge and per limit) and a larger value is rejected with
``ValueError`` rather than silently rounded. With limit and amount within that bound the check
``amount <= (limit - spent) - reserved`` decides exactly, even when a counter grew past 2**53:
the differences are exact while they are small, and rounding is monotonic, so a difference too
large to be exact is far below zero and still denies.

Deployment: a single Redis, or the primary of a replicated one (scripts replicate as effects).
Redis Cluster is not supported: ``commit``/``release`` find their windows inside the
reservation hash, so they touch keys they cannot declare up front, and no hash tag is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from skinflint.budget_store.base import Charge, Committed, Denial, WindowState

#: The largest amount or limit the Lua check compares exactly (doubles are exact to 2**53).
MAX_EXACT = 2**53 - 1

_COMMON = r"""
local P = ARGV[1]
local function wkey(b, ws) return P .. 'w:' .. b .. ':' .. ws end
local function zkey(b, ws) return P .. 'z:' .. b .. ':' .. ws end
local function incr(key, field, s)
  if s ~= '0' then redis.call('HINCRBY', key, field, s) end
end
local function decr(key, field, s)
  if s ~= '0' then redis.call('HINCRBY', key, field, '-' .. s) end
end
local function counters(wk)
  local v = redis.call('HMGET', wk, 'spent_n', 'reserved_n', 'spent_t', 'reserved_t', 'requests')
  for i = 1, 5 do if not v[i] then v[i] = '0' end end
  return v
end
-- Release every hold on one window whose expiry is <= now; returns the reservation ids.
local function release_expired(wk, zk, now)
  local ids = {}
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', zk, '-inf', now)) do
    local id, n, t = string.match(m, '^(.*)|(%d+)|(%d+)$')
    if redis.call('ZREM', zk, m) == 1 then
      decr(wk, 'reserved_n', n)
      decr(wk, 'reserved_t', t)
      ids[#ids + 1] = id
    end
  end
  return ids
end
-- spent + reserved + amount <= limit, decided exactly for limit, amount <= 2^53 - 1.
local function fits(limit, spent, reserved, amount)
  local l = tonumber(limit)
  if l == 0 then return true end
  return tonumber(amount) <= (l - tonumber(spent)) - tonumber(reserved)
end
local function expire_window(wk, zk, window_end, margin)
  if window_end ~= '0' then
    local at = tonumber(window_end) + tonumber(margin)
    redis.call('EXPIREAT', wk, at)
    redis.call('EXPIREAT', zk, at)
  end
end
local function hgetall(key)
  local flat = redis.call('HGETALL', key)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h, #flat
end
"""

# KEYS: reservation hash, then (window hash, window zset) per charge.
# ARGV: prefix, now, expires_at, pexpire_ms, margin_s, id, n_charges,
#       then per charge: budget_id, window_start, window_end, limit_n, limit_t, n, t.
_RESERVE = (
    _COMMON
    + r"""
local rk, now, exp, pex, margin, id = KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local nc = tonumber(ARGV[7])
if redis.call('EXISTS', rk) == 1 then
  return redis.error_reply('SKINFLINT_DUPLICATE reservation id already used: ' .. id)
end
for i = 1, nc do release_expired(KEYS[2 * i], KEYS[2 * i + 1], now) end
for i = 1, nc do
  local a = 7 + (i - 1) * 7
  local c = counters(KEYS[2 * i])
  if not fits(ARGV[a + 4], c[1], c[2], ARGV[a + 6]) then
    return {'deny', i, 'nanousd', c[1], c[2], c[3], c[4], c[5]}
  end
  if not fits(ARGV[a + 5], c[3], c[4], ARGV[a + 7]) then
    return {'deny', i, 'tokens', c[1], c[2], c[3], c[4], c[5]}
  end
end
local fields = {'exp', exp, 'st', 'l', 'n', tostring(nc)}
for i = 1, nc do
  local a = 7 + (i - 1) * 7
  local wk, zk = KEYS[2 * i], KEYS[2 * i + 1]
  local b, ws, we, n, t = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 6], ARGV[a + 7]
  incr(wk, 'reserved_n', n)
  incr(wk, 'reserved_t', t)
  redis.call('HSETNX', wk, 'requests', '0')
  redis.call('ZADD', zk, exp, id .. '|' .. n .. '|' .. t)
  redis.call('SADD', P .. 'zs', zk)
  expire_window(wk, zk, we, margin)
  local s = tostring(i)
  for _, kv in ipairs({{'b', b}, {'w', ws}, {'e', we}, {'n', n}, {'t', t}}) do
    fields[#fields + 1] = kv[1] .. s
    fields[#fields + 1] = kv[2]
  end
end
redis.call('HSET', rk, unpack(fields))
redis.call('PEXPIRE', rk, pex)
return {'ok'}
"""
)

# KEYS: reservation hash. ARGV: prefix, now, margin_s, id, nanousd, tokens.
_COMMIT = (
    _COMMON
    + r"""
local rk, now, margin, id, an, at = KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local h, len = hgetall(rk)
if len == 0 or h['st'] == 'c' then return {} end
local out = {}
for i = 1, tonumber(h['n']) do
  local s = tostring(i)
  local b, ws, we, hn, ht = h['b' .. s], h['w' .. s], h['e' .. s], h['n' .. s], h['t' .. s]
  local wk, zk = wkey(b, ws), zkey(b, ws)
  release_expired(wk, zk, now)
  local before = counters(wk)
  if redis.call('ZREM', zk, id .. '|' .. hn .. '|' .. ht) == 1 then
    decr(wk, 'reserved_n', hn)
    decr(wk, 'reserved_t', ht)
  end
  incr(wk, 'spent_n', an)
  incr(wk, 'spent_t', at)
  redis.call('HINCRBY', wk, 'requests', 1)
  expire_window(wk, zk, we, margin)
  local after = counters(wk)
  out[#out + 1] = {b, ws, before[1], before[2], before[3], before[4], before[5],
                   after[1], after[2], after[3], after[4], after[5]}
end
redis.call('HSET', rk, 'st', 'c')
return out
"""
)

# KEYS: reservation hash. ARGV: prefix, now, id.
_RELEASE = (
    _COMMON
    + r"""
local rk, now, id = KEYS[1], ARGV[2], ARGV[3]
local h, len = hgetall(rk)
if len == 0 or h['st'] ~= 'l' then return 0 end
for i = 1, tonumber(h['n']) do
  local s = tostring(i)
  local b, ws, hn, ht = h['b' .. s], h['w' .. s], h['n' .. s], h['t' .. s]
  local wk, zk = wkey(b, ws), zkey(b, ws)
  release_expired(wk, zk, now)
  if redis.call('ZREM', zk, id .. '|' .. hn .. '|' .. ht) == 1 then
    decr(wk, 'reserved_n', hn)
    decr(wk, 'reserved_t', ht)
  end
end
redis.call('HSET', rk, 'st', 'r')
return 1
"""
)

# KEYS: (window hash, window zset) per charge.
# ARGV: prefix, now, margin_s, nanousd, tokens, n_charges, then per charge: b, ws, we.
_RECORD = (
    _COMMON
    + r"""
local now, margin, an, at, nc = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local out = {}
for i = 1, nc do
  local a = 6 + (i - 1) * 3
  local b, ws, we = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local wk, zk = KEYS[2 * i - 1], KEYS[2 * i]
  release_expired(wk, zk, now)
  local before = counters(wk)
  incr(wk, 'spent_n', an)
  incr(wk, 'spent_t', at)
  redis.call('HINCRBY', wk, 'requests', 1)
  expire_window(wk, zk, we, margin)
  local after = counters(wk)
  out[#out + 1] = {b, ws, before[1], before[2], before[3], before[4], before[5],
                   after[1], after[2], after[3], after[4], after[5]}
end
return out
"""
)

# KEYS: window hash, window zset. ARGV: prefix, now.
_STATE = (
    _COMMON
    + r"""
release_expired(KEYS[1], KEYS[2], ARGV[2])
return counters(KEYS[1])
"""
)

# KEYS: window zsets (a batch of the index). ARGV: prefix, now. Returns released ids.
_PURGE = (
    _COMMON
    + r"""
local released = {}
for _, zk in ipairs(KEYS) do
  local wk = P .. 'w:' .. string.sub(zk, #P + 3)
  for _, id in ipairs(release_expired(wk, zk, ARGV[2])) do released[#released + 1] = id end
  if redis.call('ZCARD', zk) == 0 then redis.call('SREM', P .. 'zs', zk) end
end
return released
"""
)


def _exact(value: int, what: str) -> str:
    """An amount or limit as the decimal string the scripts take, if Lua compares it exactly."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_EXACT:
        raise ValueError(f"{what} must be in [0, 2**53 - 1] (exact in Redis Lua), got {value}")
    return str(value)


def _nonneg(value: int, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative int, got {value!r}")
    return str(value)


def _state(v: Sequence[Any]) -> WindowState:
    return WindowState(*(int(x) for x in v[:5]))


def _committed(rows: Sequence[Sequence[Any]]) -> list[Committed]:
    return [
        Committed(str(r[0]), int(r[1]), before=_state(r[2:7]), after=_state(r[7:12])) for r in rows
    ]


class RedisBudgetStore:
    """``BudgetStore`` on one Redis shared by a fleet; see the module docstring for the layout."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "skinflint:",
        reservation_grace_ms: int = 3_600_000,
        window_margin_s: int = 86_400,
        max_connections: int = 64,
        pool_timeout_s: float = 20.0,
    ) -> None:
        # A pool, because one sidecar runs many calls at once and each script is a round trip.
        # A blocking one: past ``max_connections`` a call waits for a free connection (up to
        # ``pool_timeout_s``) instead of failing, and Redis is not flooded with connections.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, decode_responses=True, max_connections=max_connections, timeout=pool_timeout_s
        )
        self._redis: aioredis.Redis = aioredis.Redis.from_pool(pool)
        self._prefix = prefix
        self._grace_ms = reservation_grace_ms
        self._margin_s = window_margin_s
        # register_script: EVALSHA, reloading the script on NOSCRIPT (e.g. after a restart).
        self._reserve = self._redis.register_script(_RESERVE)
        self._commit = self._redis.register_script(_COMMIT)
        self._release = self._redis.register_script(_RELEASE)
        self._record = self._redis.register_script(_RECORD)
        self._state = self._redis.register_script(_STATE)
        self._purge = self._redis.register_script(_PURGE)

    # -- keys ------------------------------------------------------------------------------

    def _wkey(self, budget_id: str, window_start: int) -> str:
        return f"{self._prefix}w:{budget_id}:{window_start}"

    def _zkey(self, budget_id: str, window_start: int) -> str:
        return f"{self._prefix}z:{budget_id}:{window_start}"

    def _rkey(self, reservation_id: str) -> str:
        return f"{self._prefix}r:{reservation_id}"

    @property
    def _specs(self) -> str:
        return f"{self._prefix}specs"

    # -- the rule --------------------------------------------------------------------------

    async def reserve(
        self, reservation_id: str, charges: Sequence[Charge], *, ttl_ms: int, now_ms: int
    ) -> Denial | None:
        """Hold every charge or none (one script, so no other sidecar interleaves)."""
        if not reservation_id:
            raise ValueError("reservation_id must be non-empty")
        if ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be positive, got {ttl_ms}")
        seen: set[tuple[str, int]] = set()
        keys = [self._rkey(reservation_id)]
        args: list[str] = [
            self._prefix,
            _nonneg(now_ms, "now_ms"),
            str(now_ms + ttl_ms),
            str(ttl_ms + self._grace_ms),
            str(self._margin_s),
            reservation_id,
            str(len(charges)),
        ]
        for c in charges:
            # Two charges on one window would share a hold member and need a summed check.
            if (c.budget_id, c.window_start) in seen:
                raise ValueError(f"two charges on one window: {c.budget_id}@{c.window_start}")
            seen.add((c.budget_id, c.window_start))
            keys += [
                self._wkey(c.budget_id, c.window_start),
                self._zkey(c.budget_id, c.window_start),
            ]
            args += [
                c.budget_id,
                _nonneg(c.window_start, "window_start"),
                _nonneg(c.window_end, "window_end"),
                _exact(c.limit_nanousd, "limit_nanousd"),
                _exact(c.limit_tokens, "limit_tokens"),
                _exact(c.nanousd, "nanousd"),
                _exact(c.tokens, "tokens"),
            ]
        try:
            out = await self._reserve(keys=keys, args=args)
        except aioredis.ResponseError as exc:
            if "SKINFLINT_DUPLICATE" in str(exc):
                raise ValueError(f"reservation id already used: {reservation_id!r}") from exc
            raise
        if out[0] == "ok":
            return None
        c = charges[int(out[1]) - 1]
        return Denial(
            budget_id=c.budget_id,
            window_start=c.window_start,
            limit_nanousd=c.limit_nanousd,
            limit_tokens=c.limit_tokens,
            state=_state(out[3:8]),
            limit_kind=str(out[2]),
        )

    async def commit(
        self, reservation_id: str, *, nanousd: int, tokens: int, now_ms: int
    ) -> list[Committed]:
        """Release the holds and add the spend; after expiry the spend is still recorded as
        long as the reservation hash lives (``ttl + reservation_grace_ms``)."""
        rows = await self._commit(
            keys=[self._rkey(reservation_id)],
            args=[
                self._prefix,
                _nonneg(now_ms, "now_ms"),
                str(self._margin_s),
                reservation_id,
                _exact(nanousd, "nanousd"),
                _exact(tokens, "tokens"),
            ],
        )
        return _committed(rows)

    async def release(self, reservation_id: str, *, now_ms: int) -> None:
        """Drop the holds; a second release, or a release after commit, does nothing."""
        await self._release(
            keys=[self._rkey(reservation_id)],
            args=[self._prefix, _nonneg(now_ms, "now_ms"), reservation_id],
        )

    async def record(
        self, charges: Sequence[Charge], *, nanousd: int, tokens: int, now_ms: int
    ) -> list[Committed]:
        """Add spend and one request per window, no check (a cache hit, or spend observed)."""
        keys: list[str] = []
        args = [
            self._prefix,
            _nonneg(now_ms, "now_ms"),
            str(self._margin_s),
            _exact(nanousd, "nanousd"),
            _exact(tokens, "tokens"),
            str(len(charges)),
        ]
        for c in charges:
            keys += [
                self._wkey(c.budget_id, c.window_start),
                self._zkey(c.budget_id, c.window_start),
            ]
            args += [
                c.budget_id,
                _nonneg(c.window_start, "window_start"),
                _nonneg(c.window_end, "window_end"),
            ]
        return _committed(await self._record(keys=keys, args=args))

    async def state(self, budget_id: str, window_start: int, *, now_ms: int) -> WindowState:
        """Counters of one window, after releasing its expired holds (a write, hence a script)."""
        out = await self._state(
            keys=[self._wkey(budget_id, window_start), self._zkey(budget_id, window_start)],
            args=[self._prefix, _nonneg(now_ms, "now_ms")],
        )
        return _state(out)

    async def purge_expired(self, *, now_ms: int) -> int:
        """Release every expired hold, walking the index in batches so that no single script
        blocks Redis for long; returns how many distinct reservations lost a hold."""
        released: set[str] = set()
        batch: list[str] = []
        args = [self._prefix, _nonneg(now_ms, "now_ms")]
        async for zk in self._redis.sscan_iter(f"{self._prefix}zs", count=200):
            batch.append(zk)
            if len(batch) >= 200:
                released.update(await self._purge(keys=batch, args=args))
                batch = []
        if batch:
            released.update(await self._purge(keys=batch, args=args))
        return len(released)

    # -- specs -----------------------------------------------------------------------------

    async def put_spec(self, budget_id: str, spec_json: str) -> None:
        await self._redis.hset(self._specs, budget_id, spec_json)

    async def get_spec(self, budget_id: str) -> str | None:
        value: str | None = await self._redis.hget(self._specs, budget_id)
        return value

    async def list_specs(self) -> list[tuple[str, str]]:
        specs: dict[str, str] = await self._redis.hgetall(self._specs)
        return sorted(specs.items())

    async def delete_spec(self, budget_id: str) -> bool:
        """Delete the spec and every window of the budget; True if the spec existed.

        Windows are found with SCAN (delete is rare; no per-budget index to keep in step). A
        budget id may contain ``:``, so a key only belongs to this budget if what follows
        ``w:{budget_id}:`` is all digits (the window start); glob characters are escaped.
        """
        existed = bool(await self._redis.hdel(self._specs, budget_id))
        doomed: list[str] = []
        for kind in ("w", "z"):
            head = f"{self._prefix}{kind}:{budget_id}:"
            async for key in self._redis.scan_iter(match=_glob_escape(head) + "*", count=500):
                if key[len(head) :].isdigit():
                    doomed.append(key)
        for i in range(0, len(doomed), 500):
            await self._redis.delete(*doomed[i : i + 500])
        return existed

    async def aclose(self) -> None:
        """Close the client and its pool (``from_pool`` hands the pool's ownership over)."""
        await self._redis.aclose()


def _glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters so a budget id matches only itself."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
