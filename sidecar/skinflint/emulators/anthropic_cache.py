"""Anthropic prompt caching, per the documented rules (PROVIDERS.md section 1.5, A-CACHE).

* The prompt is a sequence of blocks in the order ``tools -> system -> messages``; each block
  boundary is a position, and the prefix up to a position is identified by a hash chained over
  the exact bytes of every block before it (so any change invalidates that level and all later
  ones). Message blocks also carry ``tool_choice`` and the thinking settings, which the docs list
  as invalidating the messages level only.
* Entries are written only at breakpoints (``cache_control`` markers, or the automatic one),
  and only when the prefix is at least the model's minimum cacheable length; shorter prefixes
  silently do not cache (both counters stay 0).
* Reads: for each breakpoint the cache checks that position and the earlier boundaries, at most
  ``lookback`` (20) positions counting the breakpoint itself, and uses the longest hit (A).
* Writes: every breakpoint after A writes its prefix. Billing follows "Mixing different TTLs":
  ``cache_read = A``, 1h write = ``B - A`` (B = last 1h breakpoint after A), 5m write =
  ``C - max(A, B)`` (C = last breakpoint); ``input_tokens`` = total - max(A, C), i.e. only the
  tokens after the last cached position.
* TTL: 5 minutes by default or 1 hour, refreshed (free) on every hit.
* Visibility: an entry is readable only once the first response that wrote it has started
  (``publish``); parallel requests fired together all miss. A request that fails before its
  response starts leaves nothing behind (``abandon``).
* Isolation: keys are ``(organization, model, prefix hash)``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from skinflint.emulators.common import Clock

Ttl = Literal["5m", "1h"]
TTL_SECONDS: dict[str, float] = {"5m": 300.0, "1h": 3600.0}
DEFAULT_LOOKBACK = 20


@dataclass(frozen=True)
class Block:
    """One cacheable unit of the prompt: its exact bytes (without ``cache_control``), its
    token count, and its breakpoint TTL if it carries ``cache_control``."""

    level: Literal["tools", "system", "messages"]
    key: bytes
    tokens: int
    marker: Ttl | None = None
    location: str = ""


@dataclass(frozen=True)
class CacheUsage:
    """What one request reads and writes; the numbers go straight into ``usage``."""

    total_tokens: int
    input_tokens: int
    cache_read_input_tokens: int
    ephemeral_5m_input_tokens: int
    ephemeral_1h_input_tokens: int
    hit_position: int | None = None
    written_positions: tuple[int, ...] = ()

    @property
    def cache_creation_input_tokens(self) -> int:
        return self.ephemeral_5m_input_tokens + self.ephemeral_1h_input_tokens


@dataclass
class _Entry:
    tokens: int
    ttl: Ttl
    expires_at: float
    visible: bool = False
    writers: set[str] = field(default_factory=set)


def prefix_hashes(blocks: list[Block], salt: str) -> list[str]:
    """Chained hashes: ``hashes[i]`` identifies the prefix ending with ``blocks[i]``."""
    digest = hashlib.sha256(salt.encode()).digest()
    out: list[str] = []
    for block in blocks:
        h = hashlib.sha256(digest)
        h.update(block.level.encode())
        h.update(len(block.key).to_bytes(8, "big"))
        h.update(block.key)
        digest = h.digest()
        out.append(digest.hex())
    return out


class PromptCache:
    """The cache of one emulated API (all organizations; keys include the organization)."""

    def __init__(self, clock: Clock, *, lookback: int = DEFAULT_LOOKBACK) -> None:
        self.clock = clock
        self.lookback = lookback
        self._entries: dict[tuple[str, str, str], _Entry] = {}

    def __len__(self) -> int:
        return sum(1 for e in self._entries.values() if e.expires_at > self.clock.now())

    def clear(self) -> None:
        self._entries.clear()

    def _live(self, key: tuple[str, str, str]) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self.clock.now():
            del self._entries[key]
            return None
        return entry

    def plan(
        self,
        *,
        org: str,
        model: str,
        blocks: list[Block],
        breakpoints: list[tuple[int, Ttl]],
        min_tokens: int,
        writer: str,
    ) -> CacheUsage:
        """Look up, refresh and register writes for one request (see module docstring)."""
        now = self.clock.now()
        hashes = prefix_hashes(blocks, salt=f"{org}\x00{model}")
        cum: list[int] = []
        running = 0
        for block in blocks:
            running += block.tokens
            cum.append(running)
        total = running

        best = -1
        for position, _ttl in breakpoints:
            for j in range(position, max(position - self.lookback, -1), -1):
                entry = self._live((org, model, hashes[j]))
                if entry is not None and entry.visible:
                    best = max(best, j)
                    break
        if best >= 0:
            hit = self._entries[(org, model, hashes[best])]
            hit.expires_at = now + TTL_SECONDS[hit.ttl]  # refreshed free on every hit
        read = cum[best] if best >= 0 else 0

        writes = [(p, ttl) for p, ttl in breakpoints if p > best and cum[p] >= min_tokens]
        last_1h = max((cum[p] for p, ttl in writes if ttl == "1h"), default=None)
        last_any = max((cum[p] for p, _ in writes), default=None)
        write_1h = (last_1h - read) if last_1h is not None else 0
        write_5m = 0
        if last_any is not None:
            write_5m = last_any - max(read, last_1h or 0)
        cached_end = max(read, last_any or 0)

        for position, ttl in writes:
            key = (org, model, hashes[position])
            entry = self._live(key)
            if entry is None:
                entry = _Entry(tokens=cum[position], ttl=ttl, expires_at=now + TTL_SECONDS[ttl])
                self._entries[key] = entry
            if not entry.visible:
                entry.writers.add(writer)
            else:  # rewritten while readable but outside the lookback window: refresh
                entry.expires_at = max(entry.expires_at, now + TTL_SECONDS[ttl])

        return CacheUsage(
            total_tokens=total,
            input_tokens=total - cached_end,
            cache_read_input_tokens=read,
            ephemeral_5m_input_tokens=write_5m,
            ephemeral_1h_input_tokens=write_1h,
            hit_position=best if best >= 0 else None,
            written_positions=tuple(p for p, _ in writes),
        )

    def publish(self, writer: str) -> None:
        """The writer's response has started: its entries become readable."""
        for entry in self._entries.values():
            if writer in entry.writers:
                entry.writers.discard(writer)
                entry.visible = True

    def abandon(self, writer: str) -> None:
        """The writer failed before its response started: drop what only it was writing."""
        for key, entry in list(self._entries.items()):
            if writer in entry.writers:
                entry.writers.discard(writer)
                if not entry.visible and not entry.writers:
                    del self._entries[key]
