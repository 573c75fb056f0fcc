"""OpenAI automatic prompt caching (PROVIDERS.md section 3.4, O-CACHE).

* Only prompts of at least ``min_tokens`` (1024) tokens are cached; hits are reported in
  ``step`` (128) token increments: 1024, 1152, 1280, ... of the longest prefix this prompt
  shares with an earlier prompt in the same cache, so ``cached_tokens <= prompt_tokens``.
* A prompt becomes readable once its response has started (``store`` is called then), so
  identical requests fired together all miss.
* Retention: ``in_memory`` entries live while used at least every ``idle_ttl`` (10 min, the
  documented 5-10 min) and at most ``max_age`` (1 h); ``24h`` entries up to 24 hours.
* Caches are per key; the emulator keys them by (organization, model, ``prompt_cache_key``,
  machine), see ``openai_api`` for the routing overflow.

Prefix length is measured on prompt segments: whole equal segments count fully; inside the
first differing text segment the common text is cut back to a word boundary and counted with
the model's tokenizer (so partial matches never over-count).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from skinflint.emulators.common import Clock, Tokenizer
from skinflint.emulators.openai_request import Segment

RETENTION_MAX_AGE = {"in_memory": 3600.0, "24h": 86_400.0}


@dataclass
class _Stored:
    segments: tuple[Segment, ...]
    created: float
    last_used: float
    retention: str


def common_prefix_tokens(a: Sequence[Segment], b: Sequence[Segment], tokenizer: Tokenizer) -> int:
    """Tokens of the longest common prefix of two segment lists (never over-counts)."""
    total = 0
    for x, y in zip(a, b, strict=False):
        if x == y:
            total += x.tokens
            continue
        if x.atomic or y.atomic or x.tokens != tokenizer.count(x.text):
            break
        n = _common_length(x.text, y.text)
        common = x.text[:n]
        clean = all(n == len(s) or s[n].isspace() for s in (x.text, y.text))
        if not clean:
            n = max(common.rfind(" "), common.rfind("\n"), 0)
        total += tokenizer.count(common[:n])
        break
    return total


def _common_length(a: str, b: str) -> int:
    n = 0
    for ca, cb in zip(a, b, strict=False):
        if ca != cb:
            break
        n += 1
    return n


class SegmentPrefixCache:
    """Longest-prefix cache over whole prompts, with OpenAI's 1024/128 reporting rule."""

    def __init__(
        self,
        clock: Clock,
        *,
        min_tokens: int = 1024,
        step: int = 128,
        idle_ttl: float = 600.0,
        max_entries: int = 512,
    ) -> None:
        self.clock = clock
        self.min_tokens = min_tokens
        self.step = step
        self.idle_ttl = idle_ttl
        self.max_entries = max_entries
        self._caches: dict[Hashable, OrderedDict[int, _Stored]] = {}

    def clear(self) -> None:
        self._caches.clear()

    def _alive(self, entry: _Stored, now: float) -> bool:
        if now - entry.created >= RETENTION_MAX_AGE[entry.retention]:
            return False
        return entry.retention == "24h" or now - entry.last_used < self.idle_ttl

    def lookup(self, key: Hashable, segments: Sequence[Segment], tokenizer: Tokenizer) -> int:
        """Cached tokens for this prompt (0 below the minimum); refreshes the entry used."""
        now = self.clock.now()
        cache = self._caches.get(key)
        if not cache:
            return 0
        best, best_id = 0, None
        for entry_id, entry in list(cache.items()):
            if not self._alive(entry, now):
                del cache[entry_id]
                continue
            shared = common_prefix_tokens(entry.segments, segments, tokenizer)
            if shared > best:
                best, best_id = shared, entry_id
        cached = min(best, sum(s.tokens for s in segments)) // self.step * self.step
        if cached < self.min_tokens:
            return 0
        if best_id is not None:
            cache[best_id].last_used = now
            cache.move_to_end(best_id)
        return cached

    def store(self, key: Hashable, segments: Sequence[Segment], retention: str) -> None:
        """Remember a prompt whose response has started (only if long enough to cache)."""
        if sum(s.tokens for s in segments) < self.min_tokens:
            return
        now = self.clock.now()
        cache = self._caches.setdefault(key, OrderedDict())
        entry_id = hash(tuple(segments))
        existing = cache.get(entry_id)
        if existing is not None and self._alive(existing, now):
            existing.last_used = now
            if retention == "24h":
                existing.retention = "24h"
        else:
            cache[entry_id] = _Stored(tuple(segments), now, now, retention)
        cache.move_to_end(entry_id)
        while len(cache) > self.max_entries:
            cache.popitem(last=False)
