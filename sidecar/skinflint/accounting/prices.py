"""The versioned price table: load, validate, look up the price in force for a call.

Prices are written in the data file as decimal strings in USD per 1M tokens and held here as
integer **nano-USD per 1M tokens** ($0.075/M -> 75_000_000), so cost arithmetic never sees a
float. A price that cannot be held exactly at that resolution is rejected, not rounded: a
silently rounded rate would bias every call priced with it.

A model may have several entries with non-overlapping effective periods (UTC dates, until
exclusive); ``lookup`` picks the one in force at the call's time. Config can replace or add
models with ``PriceTable.with_overrides``; overrides go through the same validation.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from skinflint.errors import ConfigError, ConfigIssue, InvalidArgument

#: nano-USD in one USD: the resolution of every stored price and cost.
NANO_PER_USD = 10**9
#: Basis points in 100 %: batch discounts are held as integer basis points (50 % = 5000).
BASIS_POINTS = 10_000
#: Model id of a provider-wide default entry (any model name of that provider).
WILDCARD = "*"
#: Providers whose entries must carry cache read/write prices and a cacheable minimum.
_CACHE_PRICED_PROVIDERS = frozenset({"anthropic"})
_SHIPPED = "prices.yaml"


# --- field parsers (run by pydantic; errors carry a message naming the rule) -----------------


def _exact_decimal(value: object, *, what: str) -> Decimal:
    """A str or int as an exact Decimal; floats are refused because they are not exact."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PydanticCustomError(
            "decimal_string",
            '{what} must be a quoted decimal string such as "0.075", not {kind} {value}',
            {"what": what, "kind": type(value).__name__, "value": repr(value)},
        )
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise PydanticCustomError(
            "decimal_string",
            "{what} is not a decimal number: {value}",
            {"what": what, "value": repr(value)},
        ) from None
    if not number.is_finite():
        raise PydanticCustomError("decimal_string", "{what} must be finite", {"what": what})
    if number < 0:
        raise PydanticCustomError(
            "decimal_string",
            "{what} must not be negative (got {value})",
            {"what": what, "value": repr(value)},
        )
    return number


def _usd_per_mtok_to_nano(value: object) -> int | None:
    """``"0.075"`` (USD per 1M tokens) -> ``75_000_000`` (nano-USD per 1M tokens), exactly."""
    if value is None:
        return None  # optional rates; required ones are refused by their type below
    scaled = Fraction(_exact_decimal(value, what="a price")) * NANO_PER_USD
    if scaled.denominator != 1:
        raise PydanticCustomError(
            "price_precision",
            "{value} is more precise than 1 nano-USD per 1M tokens; use at most 9 decimal places",
            {"value": repr(value)},
        )
    return int(scaled)


def _percent_to_basis_points(value: object) -> int:
    """``50`` or ``"12.5"`` (percent) -> basis points, exactly; 0..100 %."""
    scaled = Fraction(_exact_decimal(value, what="batch_discount")) * 100
    if scaled.denominator != 1:
        raise PydanticCustomError(
            "percent_precision",
            "batch_discount {value} has more than 2 decimal places",
            {"value": repr(value)},
        )
    if scaled > BASIS_POINTS:
        raise PydanticCustomError(
            "percent_range",
            "batch_discount must be between 0 and 100 (got {value})",
            {"value": repr(value)},
        )
    return int(scaled)


def _iso_date(value: object) -> object:
    """Accept a date (YAML) or an ISO ``YYYY-MM-DD`` string (env/JSON); nothing else."""
    if isinstance(value, datetime):
        raise PydanticCustomError("iso_date", "must be a date (YYYY-MM-DD), not a date-time", {})
    if isinstance(value, date) or value is None:
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise PydanticCustomError(
        "iso_date", "must be a date written YYYY-MM-DD (got {value})", {"value": repr(value)}
    )


_UsdPerMTok = Annotated[int, BeforeValidator(_usd_per_mtok_to_nano)]
_Percent = Annotated[int, BeforeValidator(_percent_to_basis_points)]
_Date = Annotated[date, BeforeValidator(_iso_date)]
_ModelId = Annotated[StrictStr, Field(min_length=1, max_length=256, pattern=r"^\S+$")]


class _Entry(BaseModel):
    """One entry of the file as written (prices already converted to nano-USD per 1M)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
    model: _ModelId
    aliases: tuple[_ModelId, ...] = ()
    effective_from: _Date
    effective_until: _Date | None = None
    input: _UsdPerMTok
    output: _UsdPerMTok
    cache_read: _UsdPerMTok | None = None
    cache_write_5m: _UsdPerMTok | None = None
    cache_write_1h: _UsdPerMTok | None = None
    cache_write: _UsdPerMTok | None = None
    batch_discount: _Percent
    min_cacheable_tokens: Annotated[StrictInt, Field(ge=0)] | None = None


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: StrictStr | None = None
    models: list[Any] = []


# --- public types --------------------------------------------------------------------------


class PriceTableError(ConfigError):
    """The price table or a price override is invalid; each issue names the model and field."""


class UnknownModel(InvalidArgument):
    """No price for the model; the message names it and the known models closest to it."""

    def __init__(self, name: str, reason: str, suggestions: Sequence[str] = ()) -> None:
        super().__init__("model", reason)
        self.model_name = name
        self.suggestions = tuple(suggestions)


class PriceNotEffective(UnknownModel):
    """The model is known but none of its entries is in force at the requested time."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """The price of one model over one effective period, in integer nano-USD per 1M tokens.

    Missing optional rates are already resolved here (cache reads and writes a provider does
    not bill separately cost the input rate), so cost code reads every rate unconditionally.
    """

    provider: str
    model: str
    aliases: tuple[str, ...]
    effective_from: date
    effective_until: date | None
    input: int
    output: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int
    #: Discount in the provider's batch API, in basis points (5000 = 50 %).
    batch_discount_bp: int
    #: Shortest prefix the provider caches, where known.
    min_cacheable_tokens: int | None = None

    @property
    def qualified_name(self) -> str:
        """``provider/model``: the name used in messages, ledgers and overrides."""
        return f"{self.provider}/{self.model}"

    def in_force_at(self, at: datetime) -> bool:
        """Whether this entry applies to a call made at ``at`` (timezone-aware)."""
        start = datetime.combine(self.effective_from, time.min, tzinfo=UTC)
        if at < start:
            return False
        return self.effective_until is None or at < datetime.combine(
            self.effective_until, time.min, tzinfo=UTC
        )


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where an entry was written, for messages: ``prices.yaml.models[3]``."""

    source: str
    index: int

    def key(self, field_name: str | None = None) -> str:
        base = f"{self.source}.models[{self.index}]"
        return f"{base}.{field_name}" if field_name else base


@dataclass(frozen=True, slots=True)
class _Row:
    entry: _Entry
    origin: _Origin


@dataclass(frozen=True, eq=False)
class PriceTable:
    """An immutable, validated price table. Build with ``load_price_table`` or ``from_mapping``."""

    version: str
    _rows: tuple[_Row, ...] = field(repr=False)
    _by_model: Mapping[tuple[str, str], tuple[ModelPrice, ...]] = field(repr=False)
    _names: Mapping[tuple[str, str], str] = field(repr=False)

    # -- construction --

    @classmethod
    def from_mapping(cls, data: object, *, source: str = "prices") -> PriceTable:
        """Validate a parsed price document (``{version, models: [...]}``)."""
        version, rows = _parse_document(data, source=source, require_version=True)
        assert version is not None
        return _build(version, rows)

    @classmethod
    def load(cls, path: Path | str) -> PriceTable:
        """Read and validate a price file."""
        path = Path(path)
        return cls.from_mapping(
            _read_yaml(path.read_text(encoding="utf-8"), path.name), source=path.name
        )

    def with_overrides(
        self, overrides: Mapping[str, Any], *, source: str = "prices.overrides"
    ) -> PriceTable:
        """A new table with config's entries replacing or adding models (same schema).

        ``overrides`` is a document like the data file (``models: [...]``, ``version``
        optional). An overridden model loses **all** its shipped entries, so list every period
        you need; an override naming a shipped alias (a dated snapshot) overrides that model and
        keeps its aliases. The result's version is ``<shipped>+<override version or "local">``.
        """
        over_version, over_rows = _parse_document(overrides, source=source, require_version=False)
        replaced: set[tuple[str, str]] = set()
        rewritten: list[_Row] = []
        for row in over_rows:
            entry = row.entry
            canonical = self._names.get((entry.provider, entry.model))
            if canonical is not None:
                shipped_aliases = {
                    a for p in self._by_model[(entry.provider, canonical)] for a in p.aliases
                }
                aliases = (set(entry.aliases) | shipped_aliases | {entry.model}) - {canonical}
                entry = entry.model_copy(
                    update={"model": canonical, "aliases": tuple(sorted(aliases))}
                )
                replaced.add((entry.provider, canonical))
            rewritten.append(_Row(entry, row.origin))
        kept = [r for r in self._rows if (r.entry.provider, r.entry.model) not in replaced]
        return _build(f"{self.version}+{over_version or 'local'}", [*kept, *rewritten])

    # -- queries --

    def lookup(self, provider: str | None, model: str, at: datetime | None = None) -> ModelPrice:
        """The price in force for ``provider``/``model`` at ``at`` (default: now).

        ``model`` may be an alias or ``provider/model``; with ``provider=None`` it must be the
        latter. A provider with a ``*`` entry prices any model name it does not list.
        """
        when = datetime.now(UTC) if at is None else at
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(
                "lookup(at=...) needs a timezone-aware datetime (prices change at UTC dates)"
            )
        provider, name = self._split(provider, model)
        canonical = self._names.get((provider, name))
        if canonical is None and (provider, WILDCARD) in self._by_model:
            canonical = WILDCARD
        if canonical is None:
            raise self._unknown(provider, name)
        periods = self._by_model[(provider, canonical)]
        for price in periods:
            if price.in_force_at(when):
                return price
        spans = ", ".join(
            f"{p.effective_from} to {p.effective_until}"
            if p.effective_until
            else f"from {p.effective_from}"
            for p in periods
        )
        raise PriceNotEffective(
            f"{provider}/{name}",
            f"no price for {provider}/{name} in force at {when.isoformat()} (price table "
            f"{self.version} has prices {spans}); add an entry under prices overrides",
        )

    def models(self) -> list[str]:
        """Every ``provider/model`` the table prices (canonical ids, sorted)."""
        return sorted(f"{p}/{m}" for p, m in self._by_model)

    def aliases(self) -> dict[str, str]:
        """Every ``provider/alias`` -> ``provider/model``."""
        return {f"{p}/{n}": f"{p}/{m}" for (p, n), m in self._names.items() if n != m}

    def entries(self) -> tuple[ModelPrice, ...]:
        """Every entry, grouped by model and ordered by ``effective_from``."""
        return tuple(p for key in sorted(self._by_model) for p in self._by_model[key])

    def providers(self) -> list[str]:
        """Every provider with at least one priced model."""
        return sorted({p for p, _ in self._by_model})

    # -- helpers --

    def _split(self, provider: str | None, model: str) -> tuple[str, str]:
        if provider is None or provider == "":
            head, sep, tail = model.partition("/")
            if not sep or not tail:
                raise UnknownModel(
                    model, f"model {model!r} needs a provider: write it as provider/model", ()
                )
            return head, tail
        if model.startswith(provider + "/"):
            return provider, model[len(provider) + 1 :]
        return provider, model

    def _unknown(self, provider: str, name: str) -> UnknownModel:
        known = self.providers()
        if provider not in known:
            close = difflib.get_close_matches(provider, known, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            return UnknownModel(
                f"{provider}/{name}",
                f"unknown provider {provider!r} for model {name!r}; {hint}the price table "
                f"{self.version} knows providers {', '.join(known)}",
                [f"{p}/{name}" for p in close],
            )
        candidates = sorted(n for p, n in self._names if p == provider and n != WILDCARD)
        close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
        suggestions = [f"{provider}/{c}" for c in close]
        if suggestions:
            hint = f"close matches: {', '.join(suggestions)}"
        else:
            listed = sorted(m for p, m in self._by_model if p == provider)
            hint = f"no close match; known {provider} models: {', '.join(listed)}"
        return UnknownModel(
            f"{provider}/{name}",
            f"unknown model {provider}/{name} (price table {self.version}); {hint}; "
            "a model the table lacks can be added under prices overrides",
            suggestions,
        )


# --- loading ---------------------------------------------------------------------------------


@cache
def default_price_table() -> PriceTable:
    """The table shipped in ``skinflint/data/prices.yaml`` (parsed once per process)."""
    text = (resources.files("skinflint") / "data" / _SHIPPED).read_text(encoding="utf-8")
    return PriceTable.from_mapping(_read_yaml(text, _SHIPPED), source=_SHIPPED)


def load_price_table(path: Path | str | None = None) -> PriceTable:
    """The shipped table, or the price file at ``path``."""
    return default_price_table() if path is None else PriceTable.load(path)


def _read_yaml(text: str, source: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PriceTableError([ConfigIssue(key=source, problem=f"not valid YAML: {exc}")]) from exc


def _parse_document(
    data: object, *, source: str, require_version: bool
) -> tuple[str | None, list[_Row]]:
    """Validate the document shape, then every entry on its own so all problems are reported."""
    if not isinstance(data, Mapping):
        raise PriceTableError(
            [
                ConfigIssue(
                    key=source,
                    problem=f"must be a mapping (version, models), not {type(data).__name__}",
                )
            ]
        )
    try:
        doc = _Document.model_validate(dict(data))
    except ValidationError as exc:
        raise PriceTableError(
            [
                ConfigIssue(key=_join(source, err["loc"]), problem=_message(err))
                for err in exc.errors()
            ]
        ) from None
    if require_version and not doc.version:
        raise PriceTableError(
            [ConfigIssue(key=f"{source}.version", problem="is required (a quoted string)")]
        )
    issues: list[ConfigIssue] = []
    rows: list[_Row] = []
    for index, raw in enumerate(doc.models):
        origin = _Origin(source, index)
        name = _name_of(raw)
        if not isinstance(raw, Mapping):
            issues.append(
                ConfigIssue(
                    key=origin.key(), problem=f"must be a mapping, got {type(raw).__name__}"
                )
            )
            continue
        try:
            entry = _Entry.model_validate(dict(raw))
        except ValidationError as exc:
            issues.extend(
                ConfigIssue(key=_join(origin.key(), err["loc"]), problem=f"{name}: {_message(err)}")
                for err in exc.errors()
            )
            continue
        problems = list(_entry_problems(entry))
        issues.extend(ConfigIssue(key=origin.key(f), problem=f"{name}: {p}") for f, p in problems)
        if not problems:
            rows.append(_Row(entry, origin))
    if issues:
        raise PriceTableError(issues)
    return doc.version, rows


def _entry_problems(entry: _Entry) -> Iterable[tuple[str, str]]:
    """Rules that involve more than one field: ``(field, problem)`` pairs."""
    if entry.effective_until is not None and entry.effective_until <= entry.effective_from:
        yield "effective_until", f"must be after effective_from ({entry.effective_from})"
    if entry.cache_write is not None and (
        entry.cache_write_5m is not None or entry.cache_write_1h is not None
    ):
        yield "cache_write", "give either cache_write or cache_write_5m/cache_write_1h, not both"
    if entry.provider in _CACHE_PRICED_PROVIDERS:
        for name in ("cache_read", "cache_write_5m", "cache_write_1h", "min_cacheable_tokens"):
            if getattr(entry, name) is None:
                yield (
                    name,
                    f"is required for {entry.provider} models (prompt caching is billed per TTL)",
                )
    for name in (entry.model, *entry.aliases):
        if name.startswith(entry.provider + "/"):
            yield (
                "aliases" if name != entry.model else "model",
                (f"{name!r} repeats the provider; write the id the provider's API takes"),
            )
    if entry.model == WILDCARD and entry.aliases:
        yield "aliases", "a `*` (any model) entry cannot have aliases"
    if entry.model in entry.aliases:
        yield "aliases", f"lists the model id {entry.model!r} itself"
    if len(set(entry.aliases)) != len(entry.aliases):
        yield "aliases", "lists an alias twice"


def _build(version: str, rows: Sequence[_Row]) -> PriceTable:
    """Cross-entry checks (overlapping periods, clashing names), then the lookup indexes."""
    issues: list[ConfigIssue] = []
    groups: dict[tuple[str, str], list[_Row]] = {}
    for row in rows:
        groups.setdefault((row.entry.provider, row.entry.model), []).append(row)

    by_model: dict[tuple[str, str], tuple[ModelPrice, ...]] = {}
    names: dict[tuple[str, str], str] = {}
    name_origin: dict[tuple[str, str], _Origin] = {}
    for (provider, model), group in sorted(groups.items()):
        group.sort(key=lambda r: r.entry.effective_from)
        for before, after in itertools.pairwise(group):
            end = before.entry.effective_until
            if end is None or end > after.entry.effective_from:
                issues.append(
                    ConfigIssue(
                        key=after.origin.key("effective_from"),
                        problem=(
                            f"{provider}/{model}: the period from {after.entry.effective_from} "
                            f"overlaps {before.origin.key()} (from {before.entry.effective_from} "
                            f"until {end or 'open-ended'})"
                        ),
                        fix="set effective_until on the earlier entry",
                    )
                )
        aliases = sorted({a for r in group for a in r.entry.aliases})
        for name in (model, *aliases):
            other = names.get((provider, name))
            if other is not None and other != model:
                origin = group[0].origin
                issues.append(
                    ConfigIssue(
                        key=origin.key("aliases" if name != model else "model"),
                        problem=(
                            f"{provider}/{model}: {name!r} already names {provider}/{other} "
                            f"({name_origin[(provider, name)].key()})"
                        ),
                    )
                )
                continue
            names[(provider, name)] = model
            name_origin[(provider, name)] = group[0].origin
        by_model[(provider, model)] = tuple(_to_price(r.entry, tuple(aliases)) for r in group)
    if issues:
        raise PriceTableError(issues)
    return PriceTable(
        version=version,
        _rows=tuple(rows),
        _by_model=MappingProxyType(by_model),
        _names=MappingProxyType(names),
    )


def _to_price(entry: _Entry, aliases: tuple[str, ...]) -> ModelPrice:
    """Resolve optional rates: unbilled cache reads/writes cost the plain input rate."""
    write_5m = entry.cache_write_5m if entry.cache_write_5m is not None else entry.cache_write
    write_1h = entry.cache_write_1h if entry.cache_write_1h is not None else entry.cache_write
    return ModelPrice(
        provider=entry.provider,
        model=entry.model,
        aliases=aliases,
        effective_from=entry.effective_from,
        effective_until=entry.effective_until,
        input=entry.input,
        output=entry.output,
        cache_read=entry.input if entry.cache_read is None else entry.cache_read,
        cache_write_5m=entry.input if write_5m is None else write_5m,
        cache_write_1h=entry.input if write_1h is None else write_1h,
        batch_discount_bp=entry.batch_discount,
        min_cacheable_tokens=entry.min_cacheable_tokens,
    )


def _name_of(raw: object) -> str:
    if isinstance(raw, Mapping):
        return f"{raw.get('provider', '?')}/{raw.get('model', '?')}"
    return "?/?"


def _join(base: str, loc: tuple[int | str, ...]) -> str:
    out = base
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _message(err: Any) -> str:
    """A pydantic error in the file's terms."""
    if err["type"] == "extra_forbidden":
        return "unknown key (check the spelling against the price file's schema)"
    if err["type"] == "missing":
        return "is required"
    if err.get("input", "") is None:
        return "is required (got null)"
    if err["type"] == "string_pattern_mismatch":
        if err["loc"][-1] == "provider":
            return "must be a lower-case name (a-z, 0-9, '_', '.', '-')"
        return "must be a non-empty id without spaces"
    return str(err["msg"])


__all__ = [
    "BASIS_POINTS",
    "NANO_PER_USD",
    "WILDCARD",
    "ModelPrice",
    "PriceNotEffective",
    "PriceTable",
    "PriceTableError",
    "UnknownModel",
    "default_price_table",
    "load_price_table",
]
