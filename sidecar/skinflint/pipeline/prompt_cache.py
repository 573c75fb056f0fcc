"""Provider prompt caching, placed automatically: a ``CachePlan`` per request and model.

**Anthropic.** The stable prefix is cached at up to 4 ``cache_control`` breakpoints, counted
together with the caller's own (``cache_ttl`` on tools, system blocks and content parts are
always honoured and never moved). skinflint considers the prompt's natural boundaries, in
prompt order: the end of the tool definitions, the end of the system blocks, and the end of
each *earlier* turn (the last message is the new question: it changes every call). A boundary
qualifies when the prefix up to it reaches the model's minimum cacheable length from the price
table (tokens counted with ``_native.count_tokens``, which over-estimates Claude's count: a
breakpoint the provider finds too short is simply not cached, and costs nothing). With slots
left, the latest qualifying earlier turn goes first (it covers the most), then the end of the
system blocks, then the tools, then older turns. Content is never reordered or changed.

**TTL.** ``PrefixTracker`` remembers, per prefix fingerprint
(``_native.prefix_fingerprints`` with the ``exact`` rules, the concrete model in place of the
requested one), when it was last seen and the gap before that. A prefix reused after a gap
between ``one_hour_min_gap_s`` (5 min) and ``one_hour_max_gap_s`` (60 min) gets the 1-hour TTL:
a 5-minute entry would have expired in between, and one 2x write beats repeated 1.25x writes.
Anything else (first sight, quicker reuse, rarer reuse) gets 5 minutes. Anthropic requires
longer TTLs to come before shorter ones, so a breakpoint before a caller's 1h one is 1h too and
one after a 5m one is 5m. The choice and why are in ``CachePlan.reason`` (the route reason).

**OpenAI-compatible.** Caching is automatic; ``prompt_cache_key`` (feature + the fingerprint
of the stable prefix: tools and system, else the first turn) keeps requests that share a
prefix on the same cache machines.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from skinflint import _native
from skinflint.call import (
    CacheTtl,
    Call,
    ImagePart,
    TextPart,
    ToolResultPart,
    ToolUsePart,
    thaw_json,
)
from skinflint.config import PromptCacheConfig
from skinflint.providers.base import Breakpoint, BreakpointSite, CachePlan

#: Anthropic's limit of cache breakpoints per request (caller-placed ones included).
MAX_BREAKPOINTS = 4
_EXACT = _native.RuleSet.named("exact")


@dataclass(frozen=True, slots=True)
class Reuse:
    """What the tracker knew about a prefix before this sighting."""

    seen_before: bool
    gap_s: float | None  # seconds since the previous sighting (None: first sighting)


class PrefixTracker:
    """Fingerprint -> when it was last seen, bounded (least recently seen dropped first).

    In memory and per process: reuse intervals are a hint for the TTL, so losing them on a
    restart only means one call may choose 5m where 1h would have been better.
    """

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_entries
        self._clock = clock
        self._last_seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last_seen)

    def observe(self, fingerprint: str) -> Reuse:
        """Record a sighting now; return what was known before it."""
        now = self._clock()
        previous = self._last_seen.pop(fingerprint, None)
        self._last_seen[fingerprint] = now
        while len(self._last_seen) > self._max:
            self._last_seen.popitem(last=False)
        if previous is None:
            return Reuse(seen_before=False, gap_s=None)
        return Reuse(seen_before=True, gap_s=max(0.0, now - previous))

    def peek(self, fingerprint: str) -> Reuse:
        """What ``observe`` would return now, recording nothing (Estimate's dry run)."""
        previous = self._last_seen.get(fingerprint)
        if previous is None:
            return Reuse(seen_before=False, gap_s=None)
        return Reuse(seen_before=True, gap_s=max(0.0, self._clock() - previous))


@dataclass(frozen=True, slots=True)
class _Boundary:
    site: BreakpointSite
    index: int
    part: int
    tokens: int  # cumulative prompt tokens up to this boundary (an estimate)
    fingerprint: str

    @property
    def label(self) -> str:
        if self.site is BreakpointSite.TOOL:
            return f"tools[{self.index}]"
        if self.site is BreakpointSite.SYSTEM:
            return f"system[{self.index}]"
        return f"messages[{self.index}]"


class PromptCachePlanner:
    """Builds the ``CachePlan`` for one request on one concrete model."""

    def __init__(self, config: PromptCacheConfig, tracker: PrefixTracker) -> None:
        self._config = config
        self._tracker = tracker

    def plan(
        self,
        call: Call,
        *,
        provider_kind: str,
        provider: str,
        model: str,
        min_cacheable_tokens: int | None,
    ) -> CachePlan:
        caller = _caller_breakpoints(call)
        if not self._config.enabled:
            return CachePlan(breakpoints=caller, reason="prompt cache: automatic placement off")
        material = call.key_material()
        material["model"] = f"{provider}/{model}"
        fingerprints = _native.prefix_fingerprints(material, _EXACT)
        if provider_kind == "anthropic":
            return self._anthropic(call, model, min_cacheable_tokens, fingerprints, caller)
        if provider_kind == "openai":
            return self._openai(call, fingerprints)
        return CachePlan(reason="prompt cache: automatic at the server (prefix caching)")

    # -- OpenAI ---------------------------------------------------------------------------

    def _openai(self, call: Call, fingerprints: Sequence[_native.PrefixFingerprint]) -> CachePlan:
        stable = [f for f in fingerprints if f.kind in ("tools", "system")]
        anchor = stable[-1] if stable else next(iter(fingerprints), None)
        if anchor is None:
            return CachePlan(reason="prompt cache: automatic (no stable prefix)")
        feature = call.attribution.feature or "default"
        key = f"sf:{feature[:40]}:{anchor.hex[:16]}"
        return CachePlan(
            openai_cache_key=key,
            reason=f"prompt cache: automatic; prompt_cache_key from feature {feature!r} and the "
            f"{anchor.kind} prefix fingerprint",
        )

    # -- Anthropic ------------------------------------------------------------------------

    def _anthropic(
        self,
        call: Call,
        model: str,
        minimum: int | None,
        fingerprints: Sequence[_native.PrefixFingerprint],
        caller: tuple[Breakpoint, ...],
    ) -> CachePlan:
        boundaries = _boundaries(call, model, fingerprints)
        reuse = {b.fingerprint: self._tracker.observe(b.fingerprint) for b in boundaries}
        slots = MAX_BREAKPOINTS - len(caller)
        notes: list[str] = []
        if caller:
            notes.append(f"{len(caller)} caller breakpoint(s) honoured")
        if minimum is None:
            notes.append("no automatic breakpoints: the model's cacheable minimum is unknown")
            return CachePlan(breakpoints=caller, reason=_reason(notes))
        if not boundaries:
            notes.append("nothing to cache (no tools, system blocks or earlier turns)")
            return CachePlan(breakpoints=caller, reason=_reason(notes))
        taken = {(b.site, b.index, b.part) for b in caller}
        eligible = [
            b for b in boundaries if b.tokens >= minimum and (b.site, b.index, b.part) not in taken
        ]
        if slots <= 0 or not eligible:
            if slots > 0:
                longest = max((b.tokens for b in boundaries), default=0)
                notes.append(
                    f"no automatic breakpoints: the stable prefix (~{longest} tokens) is below "
                    f"{model}'s minimum of {minimum}"
                )
            else:
                notes.append("no automatic breakpoints: the caller used all 4")
            return CachePlan(breakpoints=caller, reason=_reason(notes))
        chosen = _choose(eligible, slots)
        placed: list[tuple[_Boundary, CacheTtl, str]] = []
        for boundary in chosen:
            ttl, why = self._ttl(reuse[boundary.fingerprint])
            placed.append((boundary, ttl, why))
        auto = _order_ttls(placed, caller)
        notes.extend(
            f"{b.label} {ttl.value} ({why}; prefix ~{b.tokens} tokens >= {minimum})"
            for b, ttl, why in auto
        )
        breakpoints = sorted(
            [*caller, *(Breakpoint(b.site, b.index, b.part, ttl) for b, ttl, _ in auto)],
            key=_prompt_order,
        )
        return CachePlan(breakpoints=tuple(breakpoints), reason=_reason(notes))

    def _ttl(self, reuse: Reuse) -> tuple[CacheTtl, str]:
        low, high = self._config.one_hour_min_gap_s, self._config.one_hour_max_gap_s
        if reuse.gap_s is None:
            return CacheTtl.FIVE_MINUTES, "first sighting of this prefix"
        gap = _duration(reuse.gap_s)
        if low <= reuse.gap_s <= high:
            return (
                CacheTtl.ONE_HOUR,
                f"reused after {gap}, between {_duration(low)} and {_duration(high)}: a 5m "
                "entry would have expired",
            )
        if reuse.gap_s < low:
            return CacheTtl.FIVE_MINUTES, f"reused after {gap}, within 5m"
        return CacheTtl.FIVE_MINUTES, f"reused after {gap}, beyond 1h: even 1h would expire"


def _reason(notes: list[str]) -> str:
    return "prompt cache: " + "; ".join(notes)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _prompt_order(bp: Breakpoint) -> tuple[int, int, int]:
    rank = {BreakpointSite.TOOL: 0, BreakpointSite.SYSTEM: 1, BreakpointSite.MESSAGE: 2}
    return (rank[bp.site], bp.index, bp.part)


def _choose(eligible: list[_Boundary], slots: int) -> list[_Boundary]:
    """Latest qualifying earlier turn, then the system end, the tools end, older turns."""
    messages = [b for b in eligible if b.site is BreakpointSite.MESSAGE]
    statics = [b for b in eligible if b.site is not BreakpointSite.MESSAGE]
    preference = messages[-1:] + statics[::-1] + messages[:-1][::-1]
    return preference[:slots]


def _order_ttls(
    placed: list[tuple[_Boundary, CacheTtl, str]], caller: tuple[Breakpoint, ...]
) -> list[tuple[_Boundary, CacheTtl, str]]:
    """Longer TTLs must precede shorter ones (Anthropic's rule); adjust automatic ones only."""
    placed = sorted(placed, key=lambda item: _prompt_order(_as_bp(item[0], item[1])))
    out: list[tuple[_Boundary, CacheTtl, str]] = []
    for boundary, ttl, why in placed:
        here = _prompt_order(_as_bp(boundary, ttl))
        later_1h = any(
            c.ttl is CacheTtl.ONE_HOUR and _prompt_order(c) > here for c in caller
        ) or any(
            t is CacheTtl.ONE_HOUR and _prompt_order(_as_bp(b, t)) > here for b, t, _ in placed
        )
        earlier_5m = any(
            c.ttl is CacheTtl.FIVE_MINUTES and _prompt_order(c) < here for c in caller
        ) or any(t is CacheTtl.FIVE_MINUTES for _, t, _ in out)
        if later_1h and ttl is CacheTtl.FIVE_MINUTES:
            ttl, why = CacheTtl.ONE_HOUR, why + "; 1h because a later breakpoint is 1h"
        elif earlier_5m and ttl is CacheTtl.ONE_HOUR:
            ttl, why = CacheTtl.FIVE_MINUTES, why + "; 5m because an earlier breakpoint is 5m"
        out.append((boundary, ttl, why))
    return out


def _as_bp(boundary: _Boundary, ttl: CacheTtl) -> Breakpoint:
    return Breakpoint(boundary.site, boundary.index, boundary.part, ttl)


def _caller_breakpoints(call: Call) -> tuple[Breakpoint, ...]:
    out: list[Breakpoint] = []
    for i, tool in enumerate(call.tools):
        if tool.cache_ttl is not None:
            out.append(Breakpoint(BreakpointSite.TOOL, i, 0, tool.cache_ttl))
    for i, block in enumerate(call.system):
        if block.cache_ttl is not None:
            out.append(Breakpoint(BreakpointSite.SYSTEM, i, 0, block.cache_ttl))
    for i, message in enumerate(call.messages):
        for j, part in enumerate(message.parts):
            if part.cache_ttl is not None:
                out.append(Breakpoint(BreakpointSite.MESSAGE, i, j, part.cache_ttl))
    return tuple(out)


def _boundaries(
    call: Call, model: str, fingerprints: Sequence[_native.PrefixFingerprint]
) -> list[_Boundary]:
    """The prompt's cacheable boundaries with cumulative token estimates, in prompt order."""

    def tokens(text: str) -> int:
        return _native.count_tokens(model, text).count if text else 0

    by_kind = {(f.kind, f.index): f.hex for f in fingerprints}
    out: list[_Boundary] = []
    total = 0
    if call.tools:
        for tool in call.tools:
            schema = json.dumps(thaw_json(tool.input_schema), separators=(",", ":"))
            total += tokens(f"{tool.name}\n{tool.description}\n{schema}")
        last = len(call.tools) - 1
        out.append(_Boundary(BreakpointSite.TOOL, last, 0, total, by_kind.get(("tools", last), "")))
    if call.system:
        total += sum(tokens(block.text) for block in call.system)
        last = len(call.system) - 1
        out.append(
            _Boundary(BreakpointSite.SYSTEM, last, 0, total, by_kind.get(("system", last), ""))
        )
    for i, message in enumerate(call.messages[:-1]):  # the last turn is the new question
        total += sum(tokens(_part_text(p)) for p in message.parts)
        out.append(
            _Boundary(
                BreakpointSite.MESSAGE,
                i,
                len(message.parts) - 1,
                total,
                by_kind.get(("message", i), ""),
            )
        )
    return [b for b in out if b.fingerprint]


def _part_text(part: object) -> str:
    match part:
        case TextPart(text=text):
            return text
        case ToolUsePart(name=name, input=tool_input):
            return name + json.dumps(thaw_json(tool_input))
        case ToolResultPart(content=content):
            return content
        case ImagePart():
            return ""  # images are priced by the provider; not counted toward the minimum
    return ""


__all__ = ["MAX_BREAKPOINTS", "PrefixTracker", "PromptCachePlanner", "Reuse"]
