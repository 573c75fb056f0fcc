"""Budgets as domain objects: the spec a caller sets, and the scope grammar.

The budget guard stage (reserve before the call, commit after) lands in a later issue; the
spec and its validation live here already so the transport and, later, the config share one
definition of what a valid budget is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

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
