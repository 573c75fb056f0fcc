"""Typed surface of the Rust core (``skinflint._native``).

This file is part of the contract: ``tests/test_native_stub.py`` checks that every name here
exists at runtime with the same kind (class or function). The core is pure Rust; errors are
mapped to the exception classes below at the binding boundary, and a Rust panic surfaces as
``NativePanic`` (a ``RuntimeError``), never as a process abort.

Request shape accepted by ``cache_key`` and ``prefix_fingerprints`` (a plain dict, the same
shape the pipeline's ``Call`` produces with ``Call.key_material()``)::

    {
      "namespace": "tenant:acme",                 # required, str (the tenant is always here)
      "model": "anthropic/claude-haiku-4-5",      # required, str (the *requested* model)
      "params": {"temperature": 0.0, ...},        # output-affecting params, JSON object
      "tools": [{...json schema tool...}],        # list of JSON objects, order kept
      "system": ["...", ...],                     # list of system text blocks
      "messages": [                               # list of turns, order kept
        {"role": "user", "content": [
            {"type": "text", "text": "..."},
            {"type": "image", "media_type": "image/png", "data": "<base64>" },
            {"type": "tool_use", "id": "...", "name": "...", "input": {...}},
            {"type": "tool_result", "tool_use_id": "...", "content": ..., "is_error": false},
        ]},
      ],
    }

Unknown top-level keys are rejected (``KeyInputError``) so a new output-affecting field can
never be silently left out of the key.
"""

import os
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, final

__version__: Final[str]

class NativeError(Exception):
    """Base class of every error raised by the Rust core."""

class KeyInputError(NativeError, ValueError):
    """The request dict does not have the documented shape (names the path and the fix)."""

class RuleSetError(NativeError, ValueError):
    """A rule set is invalid (unknown name, bad regex: names the pattern and the reason)."""

class BudgetLedgerError(NativeError, OSError):
    """The budget ledger's LMDB could not be opened or written, or holds a value that does
    not decode (names the path, the key and the LMDB error)."""

class CacheError(NativeError, OSError):
    """LMDB could not be opened or written (names the path and the LMDB error)."""

class TokenizerError(NativeError, ValueError):
    """Token counting failed (for example an unknown encoding name)."""

class EmbeddingError(NativeError, OSError):
    """The embedding model could not be loaded or run (names the directory and the fix)."""

class LedgerError(NativeError, OSError):
    """The spend ledger's SQLite file could not be opened for writing (names the path and
    the SQLite error)."""

class NativePanic(NativeError, RuntimeError):
    """A Rust panic caught at the boundary; the process keeps running."""

@final
class RuleSet:
    """A named, immutable canonicalization rule set.

    Rules applied to every text, in this order: NFC normalization (``nfc``), volatile-field
    stripping (each match replaced by a fixed placeholder such as ``<ts>``, ``<date>``,
    ``<uuid>``, ``<v>`` for custom patterns), case folding (``case_fold``), whitespace
    collapse (runs of Unicode whitespace -> one space, ``collapse_whitespace``) and trimming
    (``trim``). JSON parts (tool inputs, schemas, structured tool results) get their object
    keys sorted (``sort_json_keys``) and their string values canonicalized with the same text
    rules; numbers are written in a canonical form. Canonicalization is idempotent.

    Built-in names: ``"exact"`` (nothing changes; used for provider prefix fingerprints),
    ``"conservative"`` (default: NFC, whitespace collapse + trim, JSON key order),
    ``"volatile"`` (conservative + timestamps, dates, UUIDs stripped),
    ``"aggressive"`` (volatile + case folding).
    """

    def __init__(
        self,
        *,
        name: str = "custom",
        nfc: bool = True,
        collapse_whitespace: bool = True,
        trim: bool = True,
        sort_json_keys: bool = True,
        case_fold: bool = False,
        strip_timestamps: bool = False,
        strip_dates: bool = False,
        strip_uuids: bool = False,
        strip_patterns: Sequence[str] = (),
    ) -> None:
        """Raises:
        RuleSetError: a pattern in ``strip_patterns`` does not compile (names it and why).
        """

    @staticmethod
    def named(name: str) -> RuleSet:
        """One of the built-in rule sets. Raises RuleSetError naming the valid names."""

    @staticmethod
    def builtin_names() -> list[str]: ...
    @property
    def name(self) -> str: ...
    def describe(self) -> dict[str, Any]:
        """The rule set's flags and patterns, for logs and config dumps."""

    def canonicalize_text(self, text: str) -> str: ...
    def canonicalize_json(self, json_text: str) -> str:
        """Canonical compact JSON. Raises KeyInputError if ``json_text`` is not JSON."""

@final
class CacheKey:
    """A 128-bit xxh3 key. Equal requests (after canonicalization) give equal keys."""

    @property
    def hex(self) -> str:
        """32 lowercase hex digits."""

    @property
    def bytes(self) -> bytes:
        """16 bytes, big-endian; what the response cache stores under."""

    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

def cache_key(request: Mapping[str, Any], rules: RuleSet) -> CacheKey:
    """Key = xxh3-128 over a length-prefixed, tagged encoding of (namespace, model, params,
    tools, system, messages) after canonicalization, so no two different requests collide by
    concatenation. Hashing runs with the GIL released.

    Raises:
        KeyInputError: the dict does not have the documented shape (names the path).
    """

def cache_key_json(request_json: str | bytes, rules: RuleSet) -> CacheKey:
    """Same as ``cache_key`` for the request as a JSON document."""

@final
class PrefixFingerprint:
    """A hash of the request up to one cacheable prefix boundary (provider prompt caching).

    ``kind`` is ``"tools"`` (after the tool definitions), ``"system"`` (after the system
    blocks) or ``"message"`` (after message ``index``). Hashes are cumulative in the order
    providers build their prompt caches (tools, then system, then messages) and include the
    model but not the namespace (the provider cache is shared across tenants of one key).
    ``cumulative_chars`` counts the characters of canonical text up to the boundary.
    """

    @property
    def kind(self) -> Literal["tools", "system", "message"]: ...
    @property
    def index(self) -> int: ...
    @property
    def hex(self) -> str: ...
    @property
    def cumulative_chars(self) -> int: ...

def prefix_fingerprints(request: Mapping[str, Any], rules: RuleSet) -> list[PrefixFingerprint]:
    """One fingerprint per boundary present, in prompt order. Use ``RuleSet.named("exact")``:
    a provider cache hit needs byte-identical prefixes."""

@final
class CacheStats:
    entries: int
    bytes: int
    hits: int
    misses: int
    evictions: int
    expired: int
    map_size: int
    max_bytes: int

@final
class ResponseCache:
    """Response cache on LMDB: per-entry TTL, size bound with eviction, crash-safe.

    Many threads and several processes may open the same ``path`` at once. ``entries``,
    ``bytes`` and ``evictions`` are stored in the environment (shared by all processes);
    ``hits``, ``misses`` and ``expired`` count this process's lookups. Every value carries a
    header (magic, format version, expiry, checksum); a value that does not decode is a miss
    and is removed on the next write, never an error. When the size bound or the LMDB map is
    reached, the oldest entries are evicted until the new one fits.
    """

    def __init__(self, path: str, *, max_bytes: int = 1 << 30, durable: bool = False) -> None:
        """Raises CacheError (path, reason) if the directory cannot be created or opened."""

    @property
    def path(self) -> str: ...
    def get(self, key: bytes) -> bytes | None:
        """The stored value, or None when absent, expired or undecodable."""

    def peek(self, key: bytes) -> bytes | None:
        """As ``get`` without side effects: counted in no statistic (a dry-run lookup)."""

    def put(self, key: bytes, value: bytes, *, ttl_seconds: float) -> None:
        """Store ``value`` for ``ttl_seconds`` (> 0). Evicts the oldest entries when full.

        Raises:
            ValueError: ttl_seconds <= 0, or the value alone exceeds max_bytes.
            CacheError: LMDB failed for a reason other than a full map.
        """

    def delete(self, key: bytes) -> bool: ...
    def purge_expired(self) -> int:
        """Remove expired entries; returns how many."""

    def clear(self) -> None: ...
    def stats(self) -> CacheStats: ...
    def sync(self) -> None:
        """Flush to disk (useful when ``durable=False``)."""

@final
class RowAppender:
    """Rows appended from any thread, committed to one SQLite table by a writer thread of the
    core that never takes the GIL (the spend ledger's writer).

    The writer wakes for the first row, lets ``linger_s`` pass (unless a flush or close is
    waiting, or ``max_batch`` rows are queued), then commits up to ``max_batch`` rows in one
    transaction of multi-row INSERTs. A batch SQLite refuses is dropped, counted in
    ``failed`` and described in ``last_error``; it is never retried or raised. At most
    262,144 rows wait for the writer; past that a row is dropped and counted the same way.
    The caller owns the schema: ``table`` must exist with ``columns``. WAL mode,
    ``synchronous=NORMAL``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        table: str,
        columns: Sequence[str],
        *,
        linger_s: float,
        max_batch: int = 1024,
        rows_per_insert: int = 256,
    ) -> None:
        """Raises ValueError (a name that is not a plain identifier, linger_s outside
        [0, 60], a zero batch) or LedgerError (the file cannot be opened)."""

    @property
    def path(self) -> str: ...
    def append(self, row: tuple[bool | int | float | str | None, ...]) -> int:
        """Queue one row (values in column order); returns how many rows have failed so far.

        Raises:
            ValueError: the row's length is not the column count, an int does not fit 64
                bits, or the appender is closed.
            TypeError: a value of another type.
        """

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every row appended before the call is processed; False on timeout."""

    def close(self) -> None:
        """Commit what is queued and stop the writer; safe to call twice."""

    @property
    def appended(self) -> int: ...
    @property
    def processed(self) -> int:
        """Rows committed or given up on."""

    @property
    def failed(self) -> int: ...
    @property
    def commits(self) -> int: ...
    @property
    def last_error(self) -> str | None: ...

class Embedder:
    """A sentence-embedding model directory (all-MiniLM-L6-v2: ``config.json``,
    ``model.safetensors``, ``tokenizer.json``). The model loads on the first ``embed`` (or
    ``load``), once per process per directory; embedding runs with the GIL released."""

    def __init__(self, model_dir: str) -> None:
        """Raises EmbeddingError naming the missing file (nothing is loaded yet)."""

    @property
    def model_dir(self) -> str: ...
    def load(self) -> None: ...
    def embed(self, text: str) -> list[float]:
        """The unit-length embedding (mean pooling, as sentence-transformers)."""

class SemanticIndex:
    """Persistent vector index on LMDB: per namespace, unit vectors pointing at cache keys;
    brute-force cosine search over an in-memory copy refreshed from LMDB on every call, so
    processes sharing ``path`` see each other's rows."""

    def __init__(
        self, path: str, *, dim: int = 384, max_entries: int = 1_000_000, durable: bool = False
    ) -> None: ...
    @property
    def path(self) -> str: ...
    @property
    def dim(self) -> int: ...
    def add(
        self, namespace: bytes, key: bytes, vector: Sequence[float], *, ttl_seconds: float
    ) -> None: ...
    def search(
        self, namespace: bytes, vector: Sequence[float], *, k: int = 1, min_score: float = -1.0
    ) -> list[tuple[float, bytes]]:
        """The ``k`` best unexpired ``(score, key)`` with score >= ``min_score``, best first."""

    def purge_expired(self) -> int: ...
    def count(self, namespace: bytes) -> int: ...

#: ``(budget_id, window_start, limit_nanousd, limit_tokens, nanousd, tokens, window_end)``
_LedgerCharge = tuple[str, int, int, int, int, int, int]
#: ``(spent_nanousd, reserved_nanousd, spent_tokens, reserved_tokens, requests)``
_LedgerState = tuple[int, int, int, int, int]

@final
class BudgetLedger:
    """Budget ledger on LMDB: atomic reserve / commit / release over budget windows.

    The rule of ``skinflint.budget_store.base``: a reservation is admitted on all of its
    charges or none, and only if ``spent + reserved + charge <= limit`` for each non-zero
    limit. Each operation is one LMDB write transaction, so threads and processes sharing
    ``path`` are serialized (the directory must not also hold a ``ResponseCache``). Every
    operation first releases expired reservations (``expires <= now_ms``, at most 1024 per
    call; ``purge_expired`` releases all). An expired reservation's charges are kept for an
    hour past its expiry, so a late ``commit`` still records the spend.

    Amounts are non-negative integers below 2**64; a counter that would overflow is refused
    (``ValueError``, nothing changed). A stored value that does not decode raises
    ``BudgetLedgerError`` naming its key: spend is never silently dropped.

    ``durable=False`` (default) commits without fsync: a killed process loses nothing, an OS
    crash may lose the last transactions. ``durable=True`` syncs every commit.
    """

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = False) -> None:
        """Raises BudgetLedgerError (path, reason) if the directory cannot be opened."""

    @property
    def path(self) -> str: ...
    @property
    def durable(self) -> bool: ...
    def reserve(
        self, reservation_id: str, charges: Sequence[_LedgerCharge], *, ttl_ms: int, now_ms: int
    ) -> tuple[str, int, int, int, _LedgerState, Literal["nanousd", "tokens"]] | None:
        """Hold every charge or none. None = admitted; else the denial
        ``(budget_id, window_start, limit_nanousd, limit_tokens, state, limit_kind)`` of the
        first charge that does not fit.

        Raises:
            ValueError: the id is already reserved, an id is empty, longer than 256 bytes or
                contains NUL, ``ttl_ms`` is 0, or a counter would overflow.
        """

    def commit(
        self, reservation_id: str, *, nanousd: int, tokens: int, now_ms: int
    ) -> list[tuple[str, int, _LedgerState, _LedgerState]]:
        """Release the holds and add the spend (one request) to every charged window; returns
        ``(budget_id, window_start, before, after)`` per window. An unknown id returns []."""

    def release(self, reservation_id: str, *, now_ms: int) -> None:
        """Drop the holds. Idempotent; an unknown id is ignored."""

    def record(
        self, charges: Sequence[_LedgerCharge], *, nanousd: int, tokens: int, now_ms: int
    ) -> list[tuple[str, int, _LedgerState, _LedgerState]]:
        """Add spend (one request per window) without a reservation or a limit check."""

    def state(self, budget_id: str, window_start: int, *, now_ms: int) -> _LedgerState:
        """Counters of one window (all zero when unknown), expired holds released first."""

    def purge_expired(self, *, now_ms: int) -> int:
        """Release every expired reservation (returns how many); also drops windows that
        ended more than a day ago and hold nothing."""

    def put_spec(self, budget_id: str, spec_json: str) -> None: ...
    def get_spec(self, budget_id: str) -> str | None: ...
    def list_specs(self) -> list[tuple[str, str]]:
        """Every ``(budget_id, spec_json)``, sorted by budget id."""

    def delete_spec(self, budget_id: str) -> bool:
        """Delete the spec (returns whether it existed), every window of the budget and its
        charges in pending reservations."""

@final
class TokenCount:
    count: int
    exact: bool
    method: str
    """``"o200k_base"``, ``"cl100k_base"`` or ``"anthropic-estimate"``."""

def encoding_for_model(model: str) -> str:
    """The tokenizer used for ``model`` (provider prefix ignored): ``"o200k_base"``,
    ``"cl100k_base"`` or ``"anthropic-estimate"`` (Claude models; any unknown model falls back
    to ``"o200k_base"`` counted as an estimate)."""

def count_tokens(model: str, text: str) -> TokenCount:
    """Exact for OpenAI models (tiktoken-rs); a documented over-estimate for Anthropic."""

def count_chat_tokens(model: str, messages: Sequence[tuple[str, str]]) -> TokenCount:
    """Prompt tokens of a chat request: per-message framing included (OpenAI's documented
    3 tokens per message + 3 to prime the reply)."""

def _panic_for_test() -> None:
    """Panics inside Rust; the binding turns it into NativePanic (tests prove it)."""

__all__ = [
    "BudgetLedger",
    "BudgetLedgerError",
    "CacheError",
    "CacheKey",
    "CacheStats",
    "Embedder",
    "EmbeddingError",
    "KeyInputError",
    "LedgerError",
    "NativeError",
    "NativePanic",
    "PrefixFingerprint",
    "ResponseCache",
    "RowAppender",
    "RuleSet",
    "RuleSetError",
    "SemanticIndex",
    "TokenCount",
    "TokenizerError",
    "_panic_for_test",
    "cache_key",
    "cache_key_json",
    "count_chat_tokens",
    "count_tokens",
    "encoding_for_model",
    "prefix_fingerprints",
]
