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

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

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
-- The space-separated words of one ARGV (numbers go packed: fewer arguments to send).
local function words(s)
  local w = {}
  for x in string.gmatch(s, '%S+') do w[#w + 1] = x end
  return unpack(w)
end
local function hgetall(key)
  local flat = redis.call('HGETALL', key)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h, #flat
end
"""

# KEYS: reservation hash (P r:{id}), then (window hash, window zset) per charge.
# ARGV: prefix, "now expires_at pexpire_ms margin_s",
#       then per charge "window_start window_end limit_n limit_t n t".
# The reservation id and each budget id are read back from the keys (fewer, shorter args).
_RESERVE = (
    _COMMON
    + r"""
local rk = KEYS[1]
local id = string.sub(rk, #P + 3)
local now, exp, pex, margin = words(ARGV[2])
local nc = (#KEYS - 1) / 2
if redis.call('EXISTS', rk) == 1 then
  return redis.error_reply('SKINFLINT_DUPLICATE reservation id already used: ' .. id)
end
local ch = {}
for i = 1, nc do
  ch[i] = {words(ARGV[2 + i])}  -- ws, we, limit_n, limit_t, n, t
  release_expired(KEYS[2 * i], KEYS[2 * i + 1], now)
end
for i = 1, nc do
  local c, x = counters(KEYS[2 * i]), ch[i]
  if not fits(x[3], c[1], c[2], x[5]) then
    return {'deny', i, 'nanousd', c[1], c[2], c[3], c[4], c[5]}
  end
  if not fits(x[4], c[3], c[4], x[6]) then
    return {'deny', i, 'tokens', c[1], c[2], c[3], c[4], c[5]}
  end
end
local fields = {'exp', exp, 'st', 'l', 'n', tostring(nc)}
for i = 1, nc do
  local wk, zk = KEYS[2 * i], KEYS[2 * i + 1]
  local ws, we, _, _, n, t = unpack(ch[i])
  local b = string.sub(wk, #P + 3, #wk - #ws - 1)  -- wk is P w:{b}:{ws}
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

# KEYS: reservation hash (P r:{id}). ARGV: prefix, "now margin_s nanousd tokens".
# Returns 12 flat values per charge: budget_id, window_start, 5 counters before, 5 after.
_COMMIT = (
    _COMMON
    + r"""
local rk = KEYS[1]
local id = string.sub(rk, #P + 3)
local now, margin, an, at = words(ARGV[2])
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
  for _, v in ipairs({b, ws, before[1], before[2], before[3], before[4], before[5],
                      after[1], after[2], after[3], after[4], after[5]}) do out[#out + 1] = v end
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
# Returns the same flat rows as _COMMIT.
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
  for _, v in ipairs({b, ws, before[1], before[2], before[3], before[4], before[5],
                      after[1], after[2], after[3], after[4], after[5]}) do out[#out + 1] = v end
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


class _Script:
    """A Lua script and its SHA1 digest (what EVALSHA names it by)."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest().encode()  # bytes: sent as is


async def _roundtrip(conn: Any, args: Sequence[Any], limit_s: float | None) -> Any:
    """Send one command and read its reply within ``limit_s`` seconds (None: no limit)."""
    try:
        async with asyncio.timeout(limit_s):
            await conn.send_command(*args)
            return await conn.read_response()
    except TimeoutError:
        # Cut off midway: redis-py already dropped the connection (the reply may still come).
        await conn.disconnect(nowait=True)
        raise RedisTimeoutError(f"Timeout talking to Redis after {limit_s}s") from None


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


def _state(v: Sequence[Any], i: int = 0) -> WindowState:
    """The five counters at ``v[i : i + 5]``."""
    return WindowState(int(v[i]), int(v[i + 1]), int(v[i + 2]), int(v[i + 3]), int(v[i + 4]))


def _committed(flat: Sequence[Any]) -> list[Committed]:
    """Rows of 12 flat values: budget_id, window_start, 5 counters before, 5 after."""
    return [
        Committed(
            str(flat[i]),
            int(flat[i + 1]),
            before=_state(flat, i + 2),
            after=_state(flat, i + 7),
        )
        for i in range(0, len(flat), 12)
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
        # At most ``max_connections`` commands are in flight (so Redis is not flooded with
        # connections); past that a call waits for a free slot, up to ``pool_timeout_s``, then
        # fails with ``ConnectionError`` (what redis-py's BlockingConnectionPool does, without
        # its per-call condition, timeout and bookkeeping, which cost more than the round trip).
        # Connections come from a plain redis-py pool and, once taken, stay with this store in
        # a LIFO free list (``_idle``); the pool still owns them and closes them in ``aclose``.
        # RESP2: the replies used here are flat arrays, parsed the same in both protocols, and
        # RESP2 needs no HELLO on connect.
        self._pool = aioredis.ConnectionPool.from_url(
            url, decode_responses=True, max_connections=max_connections, protocol=2
        )
        # The socket timeout (redis-py's default, or ``?socket_timeout=`` in the URL) bounds
        # each whole exchange here, with one ``asyncio.timeout``: redis-py would put every send
        # under ``asyncio.wait_for``, a new task per command. Connecting keeps its own timeout.
        probe = self._pool.make_connection()  # not connected: only reads the settings
        self._io_timeout: float | None = probe.socket_timeout
        self._pool.connection_kwargs["socket_connect_timeout"] = probe.socket_connect_timeout
        self._pool.connection_kwargs["socket_timeout"] = None
        self._slots = asyncio.Semaphore(max_connections)
        self._pool_timeout_s = pool_timeout_s
        self._idle: list[Any] = []
        self._prefix = prefix
        self._grace_ms = reservation_grace_ms
        self._margin = str(window_margin_s)
        # EVALSHA by digest; a NOSCRIPT reply (a restart, SCRIPT FLUSH) loads the script and
        # runs it again on the same connection.
        self._reserve = _Script(_RESERVE)
        self._commit = _Script(_COMMIT)
        self._release = _Script(_RELEASE)
        self._record = _Script(_RECORD)
        self._state = _Script(_STATE)
        self._purge = _Script(_PURGE)

    # -- connections -----------------------------------------------------------------------

    async def _take_slot(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns without suspending
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), self._pool_timeout_s)
        except TimeoutError as err:
            raise aioredis.ConnectionError("No connection available.") from err

    async def _execute(self, *args: Any) -> Any:
        """One command on a free connection, with the connection's retry policy."""
        await self._take_slot()
        try:
            conn = self._idle.pop() if self._idle else await self._pool.get_connection()
            try:
                return await conn.retry.call_with_retry(
                    lambda: _roundtrip(conn, args, self._io_timeout),
                    lambda _error: conn.disconnect(),
                )
            finally:
                # redis-py disconnects a connection whose exchange failed midway (error,
                # timeout, cancellation); the next command on it reconnects.
                self._idle.append(conn)
        finally:
            self._slots.release()

    async def _run(self, script: _Script, keys: Sequence[str], args: Sequence[str]) -> Any:
        try:
            return await self._execute(b"EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._execute("SCRIPT", "LOAD", script.text)
            return await self._execute(b"EVALSHA", script.sha, len(keys), *keys, *args)

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
        prefix = self._prefix
        keys = [f"{prefix}r:{reservation_id}"]
        args = [
            prefix,
            f"{_nonneg(now_ms, 'now_ms')} {now_ms + ttl_ms} {ttl_ms + self._grace_ms} "
            f"{self._margin}",
        ]
        for c in charges:
            # Two charges on one window would share a hold member and need a summed check.
            window = (c.budget_id, c.window_start)
            if window in seen:
                raise ValueError(f"two charges on one window: {c.budget_id}@{c.window_start}")
            seen.add(window)
            ws = _nonneg(c.window_start, "window_start")
            keys.append(f"{prefix}w:{c.budget_id}:{ws}")
            keys.append(f"{prefix}z:{c.budget_id}:{ws}")
            args.append(
                " ".join(
                    (
                        ws,
                        _nonneg(c.window_end, "window_end"),
                        _exact(c.limit_nanousd, "limit_nanousd"),
                        _exact(c.limit_tokens, "limit_tokens"),
                        _exact(c.nanousd, "nanousd"),
                        _exact(c.tokens, "tokens"),
                    )
                )
            )
        try:
            out = await self._run(self._reserve, keys, args)
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
            state=_state(out, 3),
            limit_kind=str(out[2]),
        )

    async def commit(
        self, reservation_id: str, *, nanousd: int, tokens: int, now_ms: int
    ) -> list[Committed]:
        """Release the holds and add the spend; after expiry the spend is still recorded as
        long as the reservation hash lives (``ttl + reservation_grace_ms``)."""
        args = [
            self._prefix,
            f"{_nonneg(now_ms, 'now_ms')} {self._margin} "
            f"{_exact(nanousd, 'nanousd')} {_exact(tokens, 'tokens')}",
        ]
        return _committed(await self._run(self._commit, [self._rkey(reservation_id)], args))

    async def release(self, reservation_id: str, *, now_ms: int) -> None:
        """Drop the holds; a second release, or a release after commit, does nothing."""
        await self._run(
            self._release,
            [self._rkey(reservation_id)],
            [self._prefix, _nonneg(now_ms, "now_ms"), reservation_id],
        )

    async def record(
        self, charges: Sequence[Charge], *, nanousd: int, tokens: int, now_ms: int
    ) -> list[Committed]:
        """Add spend and one request per window, no check (a cache hit, or spend observed)."""
        keys: list[str] = []
        args = [
            self._prefix,
            _nonneg(now_ms, "now_ms"),
            self._margin,
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
        return _committed(await self._run(self._record, keys, args))

    async def state(self, budget_id: str, window_start: int, *, now_ms: int) -> WindowState:
        """Counters of one window, after releasing its expired holds (a write, hence a script)."""
        out = await self._run(
            self._state,
            [self._wkey(budget_id, window_start), self._zkey(budget_id, window_start)],
            [self._prefix, _nonneg(now_ms, "now_ms")],
        )
        return _state(out)

    async def purge_expired(self, *, now_ms: int) -> int:
        """Release every expired hold, walking the index in batches so that no single script
        blocks Redis for long; returns how many distinct reservations lost a hold."""
        released: set[str] = set()
        batch: list[str] = []
        args = [self._prefix, _nonneg(now_ms, "now_ms")]
        async for zk in self._scan("SSCAN", f"{self._prefix}zs", "COUNT", "200"):
            batch.append(zk)
            if len(batch) >= 200:
                released.update(await self._run(self._purge, batch, args))
                batch = []
        if batch:
            released.update(await self._run(self._purge, batch, args))
        return len(released)

    # -- specs -----------------------------------------------------------------------------

    async def put_spec(self, budget_id: str, spec_json: str) -> None:
        await self._execute("HSET", self._specs, budget_id, spec_json)

    async def get_spec(self, budget_id: str) -> str | None:
        value: str | None = await self._execute("HGET", self._specs, budget_id)
        return value

    async def list_specs(self) -> list[tuple[str, str]]:
        reply = await self._execute("HGETALL", self._specs)
        if isinstance(reply, dict):  # RESP3 (``?protocol=3`` in the URL)
            return sorted(reply.items())
        return sorted(zip(reply[::2], reply[1::2], strict=True))

    async def delete_spec(self, budget_id: str) -> bool:
        """Delete the spec and every window of the budget; True if the spec existed.

        Windows are found with SCAN (delete is rare; no per-budget index to keep in step). A
        budget id may contain ``:``, so a key only belongs to this budget if what follows
        ``w:{budget_id}:`` is all digits (the window start); glob characters are escaped.
        """
        existed = bool(await self._execute("HDEL", self._specs, budget_id))
        doomed: list[str] = []
        for kind in ("w", "z"):
            head = f"{self._prefix}{kind}:{budget_id}:"
            match = _glob_escape(head) + "*"
            async for key in self._scan("SCAN", "MATCH", match, "COUNT", "500"):
                if key[len(head) :].isdigit():
                    doomed.append(key)
        for i in range(0, len(doomed), 500):
            await self._execute("DEL", *doomed[i : i + 500])
        return existed

    async def _scan(self, command: str, *args: str) -> AsyncIterator[str]:
        """SCAN / SSCAN to the end (``args`` go after the key, for SSCAN, or the cursor)."""
        key = (args[0],) if command == "SSCAN" else ()
        rest = args[len(key) :]
        cursor = "0"
        while True:
            cursor, items = await self._execute(command, *key, cursor, *rest)
            for item in items:
                yield item
            if cursor == "0":
                return

    async def aclose(self) -> None:
        """Close every connection (those in the free list are still the pool's)."""
        self._idle.clear()
        await self._pool.disconnect()


def _glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters so a budget id matches only itself."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
