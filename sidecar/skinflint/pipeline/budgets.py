"""Budgets as domain objects: the spec, the scope grammar, window math and the worst case.

Pure functions only (no store, no I/O): ``pipeline.budget_guard`` uses them to reserve before a
call and commit after it; the transport and the config share one definition of a valid budget.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from skinflint.accounting import TOKENS_PER_RATE_UNIT, ModelPrice
from skinflint.call import (
    Attribution,
    CacheTtl,
    Call,
    ImagePart,
    TextPart,
    ToolResultPart,
    ToolUsePart,
    thaw_json,
)
from skinflint.providers.base import CachePlan

#: Budget ids: lowercase letters, digits, '-', '_', '.'; at most 64 characters.
BUDGET_ID_PATTERN = re.compile(r"[a-z0-9._-]{1,64}")
SCOPE_KINDS = ("tenant", "team", "feature", "user")
GLOBAL_SCOPE = "global"
SCOPE_VALUE_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")


class BudgetWindow(StrEnum):
    """Windows are aligned to UTC; ``TOTAL`` never resets."""

    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"
    TOTAL = "total"


class BudgetAction(StrEnum):
    """What happens when a call would cross the limit."""

    REJECT = "reject"
    DOWNGRADE = "downgrade"
    DEFER = "defer"


@dataclass(frozen=True, slots=True)
class BudgetScope:
    """A parsed scope: ``parts`` is empty for ``global``, else (kind, value) in kind order.

    Parts are kept in the canonical kind order (tenant, team, feature, user) so two spellings
    of one scope (``team:a+tenant:b`` and ``tenant:b+team:a``) are the same scope.
    """

    parts: tuple[tuple[str, str], ...]

    @property
    def is_global(self) -> bool:
        return not self.parts

    def __str__(self) -> str:
        if self.is_global:
            return GLOBAL_SCOPE
        return "+".join(f"{kind}:{value}" for kind, value in self.parts)


def parse_scope(text: str) -> BudgetScope:
    """Parse ``global`` or ``kind:value`` parts joined by '+'.

    Raises:
        ValueError: the text does not follow the grammar (the message says why and how).
    """
    if text == GLOBAL_SCOPE:
        return BudgetScope(parts=())
    if not text:
        raise ValueError(
            'required; use "global" or parts like "tenant:acme" joined by "+" '
            '(e.g. "team:search+feature:autocomplete")'
        )
    seen: dict[str, str] = {}
    for position, part in enumerate(text.split("+")):
        kind, sep, value = part.partition(":")
        if not sep:
            raise ValueError(
                f'part {position} ("{part}") is not "kind:value"; kinds are '
                f'{", ".join(SCOPE_KINDS)}, or use "global" alone'
            )
        if kind not in SCOPE_KINDS:
            raise ValueError(
                f'part {position} has unknown kind "{kind}"; use one of {", ".join(SCOPE_KINDS)}'
            )
        if kind in seen:
            raise ValueError(f'kind "{kind}" appears twice; a scope names each kind at most once')
        if not SCOPE_VALUE_PATTERN.fullmatch(value):
            raise ValueError(
                f'part {position} ("{part}") needs a value of 1-128 letters, digits, '
                f"'.', '_' or '-' after \"{kind}:\""
            )
        seen[kind] = value
    return BudgetScope(parts=tuple((kind, seen[kind]) for kind in SCOPE_KINDS if kind in seen))


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """A budget as set by a caller; at least one of the limits is non-zero."""

    id: str
    scope: BudgetScope
    window: BudgetWindow
    limit_nanousd: int = 0
    limit_tokens: int = 0
    soft_thresholds_percent: tuple[int, ...] = ()
    action: BudgetAction = BudgetAction.REJECT


@dataclass(frozen=True, slots=True)
class BudgetListQuery:
    scope_prefix: str = ""
    page_size: int = 100
    page_token: str = ""


# ---------------------------------------------------------------------------------------------
# Windows: UTC-aligned, [start, end) in unix seconds
# ---------------------------------------------------------------------------------------------


def window_bounds(window: BudgetWindow, at: datetime) -> tuple[int, int]:
    """The ``[start, end)`` of the window holding ``at``, in unix seconds (UTC-aligned).

    Minute, hour and day windows start on the UTC minute, hour and midnight; a month window
    is the calendar month (28-31 days, leap years included). A TOTAL window never resets:
    ``(0, 0)`` (start 0, no end).
    """
    if at.tzinfo is None:
        raise ValueError("window_bounds needs a timezone-aware datetime")
    at = at.astimezone(UTC)
    if window is BudgetWindow.TOTAL:
        return 0, 0
    if window is BudgetWindow.MONTH:
        start = datetime(at.year, at.month, 1, tzinfo=UTC)
        year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
        end = datetime(year, month, 1, tzinfo=UTC)
        return int(start.timestamp()), int(end.timestamp())
    size = _WINDOW_SECONDS[window]
    seconds = int(at.timestamp() // 1)
    start_s = seconds - seconds % size
    return start_s, start_s + size


_WINDOW_SECONDS = {
    BudgetWindow.MINUTE: 60,
    BudgetWindow.HOUR: 3600,
    BudgetWindow.DAY: 86_400,
}


# ---------------------------------------------------------------------------------------------
# Matching and the stored form
# ---------------------------------------------------------------------------------------------


def scope_matches(scope: BudgetScope, attribution: Attribution) -> bool:
    """Whether a call with ``attribution`` counts against ``scope`` (global matches all)."""
    return all(getattr(attribution, kind) == value for kind, value in scope.parts)


def spec_to_json(spec: BudgetSpec) -> str:
    """The stored form of a spec (the store keeps it opaque)."""
    return json.dumps(
        {
            "id": spec.id,
            "scope": str(spec.scope),
            "window": spec.window.value,
            "limit_nanousd": spec.limit_nanousd,
            "limit_tokens": spec.limit_tokens,
            "soft_thresholds_percent": list(spec.soft_thresholds_percent),
            "action": spec.action.value,
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def spec_from_json(text: str) -> BudgetSpec:
    """Parse a stored spec (raises ``ValueError`` when the document is not one)."""
    doc = json.loads(text)
    return BudgetSpec(
        id=str(doc["id"]),
        scope=parse_scope(str(doc["scope"])),
        window=BudgetWindow(doc["window"]),
        limit_nanousd=int(doc.get("limit_nanousd", 0)),
        limit_tokens=int(doc.get("limit_tokens", 0)),
        soft_thresholds_percent=tuple(int(p) for p in doc.get("soft_thresholds_percent", ())),
        action=BudgetAction(doc.get("action", BudgetAction.REJECT.value)),
    )


def validate_spec(spec: BudgetSpec) -> str | None:
    """What is wrong with ``spec`` (field: reason), or None. The transport checks the wire
    form field by field; this is the same rule for specs from config."""
    if not BUDGET_ID_PATTERN.fullmatch(spec.id):
        return "id: must be 1-64 lowercase letters, digits, '-', '_' or '.'"
    if spec.limit_nanousd < 0 or spec.limit_tokens < 0:
        return "limits must not be negative"
    if spec.limit_nanousd == 0 and spec.limit_tokens == 0:
        return "limit_nanousd: at least one limit is required (limit_nanousd and/or limit_tokens)"
    for percent in spec.soft_thresholds_percent:
        if not 1 <= percent <= 100:
            return f"soft_thresholds_percent: must be between 1 and 100 (got {percent})"
    if len(set(spec.soft_thresholds_percent)) != len(spec.soft_thresholds_percent):
        return "soft_thresholds_percent: a percentage is listed twice"
    return None


# ---------------------------------------------------------------------------------------------
# Worst case: the amount reserved before a call
# ---------------------------------------------------------------------------------------------

#: Tokens an image may cost, at most, on any supported provider (Anthropic caps images near
#: 1,600 tokens; OpenAI's high-detail tiling stays under 2,500): a deliberate over-estimate.
IMAGE_TOKENS_BOUND = 4096


def prompt_pieces(call: Call) -> list[tuple[str, str]]:
    """The prompt as ``(role, text)`` pieces for ``_native.count_chat_tokens``.

    Every tool, system block and content part is its own piece, so each pays the per-message
    framing (3 tokens): more framing than any provider bills, which keeps the count an upper
    bound. Tools and tool calls are counted as their JSON text. Images are not text: they are
    bounded separately (``IMAGE_TOKENS_BOUND`` each, see ``image_count``).
    """
    pieces: list[tuple[str, str]] = []
    for tool in call.tools:
        doc = {
            "name": tool.name,
            "description": tool.description,
            "input_schema": thaw_json(tool.input_schema),
        }
        pieces.append(("system", json.dumps(doc, separators=(",", ":"))))
    pieces += [("system", block.text) for block in call.system]
    for message in call.messages:
        role = message.role.value
        for part in message.parts:
            if isinstance(part, TextPart):
                pieces.append((role, part.text))
            elif isinstance(part, ToolUsePart):
                doc = {"id": part.id, "name": part.name, "input": thaw_json(part.input)}
                pieces.append((role, json.dumps(doc, separators=(",", ":"))))
            elif isinstance(part, ToolResultPart):
                pieces.append((role, f"{part.tool_use_id} {part.content}"))
            else:
                pieces.append((role, ""))  # an image: framing here, tokens in image_count
    return pieces


def image_count(call: Call) -> int:
    return sum(isinstance(p, ImagePart) for m in call.messages for p in m.parts)


def input_side_rate(price: ModelPrice, plan: CachePlan | None, *, automatic_writes: bool) -> int:
    """The highest per-1M rate any prompt token of this call can be billed at.

    With 1h breakpoints in the plan a token may be written at the 1h rate; with breakpoints,
    at the 5m rate; without, it is plain input (or a cheaper cache read). ``automatic_writes``
    (OpenAI-compatible providers cache on their own) adds the single write rate.
    ``plan=None`` (not planned yet) takes the highest of every input-side rate.
    """
    rates = [price.input, price.cache_read]
    if plan is None:
        rates += [price.cache_write_5m, price.cache_write_1h]
    else:
        ttls = {bp.ttl for bp in plan.breakpoints}
        if ttls or automatic_writes:
            rates.append(price.cache_write_5m)
        if CacheTtl.ONE_HOUR in ttls:
            rates.append(price.cache_write_1h)
    return max(rates)


def worst_case_nanousd(
    prompt_tokens: int, max_tokens: int, price: ModelPrice, input_rate: int
) -> int:
    """``prompt_tokens x input_rate + max_tokens x output rate`` per 1M tokens, rounded up
    (so the figure is never below the exact bill of any usage it bounds)."""
    exact = prompt_tokens * input_rate + max_tokens * price.output
    return -(-exact // TOKENS_PER_RATE_UNIT)
