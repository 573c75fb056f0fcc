"""The one exception tree of skinflint, and the single place native errors map into it.

Every error a caller can see is a ``SkinflintError``. Each class knows its canonical status
code (``google.rpc.Code`` numbering, so this module needs no gRPC import and the HTTP facade
can reuse it) and whether retrying the same request may succeed. Transports turn these into
wire statuses (``transports/grpc/status.py``); nothing else decides a status code.

::

    SkinflintError
    ├── InvalidArgument        INVALID_ARGUMENT     bad input: "field: reason"
    ├── NotFound               NOT_FOUND            a named resource does not exist
    ├── NotImplementedYet      UNIMPLEMENTED        a feature this build does not have yet
    ├── ConfigError            FAILED_PRECONDITION  invalid configuration (boot time)
    ├── ProviderNotConfigured  FAILED_PRECONDITION  which variable to set
    ├── ResourceExhausted      RESOURCE_EXHAUSTED   a budget hard stop
    ├── Unavailable            UNAVAILABLE          every provider failed (retryable)
    ├── DeadlineExceeded       DEADLINE_EXCEEDED    the caller's deadline ran out
    └── InternalError          INTERNAL             a bug or a broken native call
        └── StorageError       INTERNAL             LMDB failed (path and reason)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from types import TracebackType
from typing import ClassVar

from skinflint import _native


class Code(IntEnum):
    """Canonical status codes (the ``google.rpc.Code`` values) that skinflint uses."""

    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16


class SkinflintError(Exception):
    """Base of every error skinflint reports; ``str(err)`` is the caller-facing message."""

    code: ClassVar[Code] = Code.INTERNAL
    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(SkinflintError):
    """The request is malformed; ``field`` is the path in wire terms (``messages[2].role``)."""

    code = Code.INVALID_ARGUMENT

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(SkinflintError):
    """A resource named in the request (a budget id) does not exist; ``field`` names it."""

    code = Code.NOT_FOUND

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotImplementedYet(SkinflintError):
    """A valid request for a feature this build does not have; says exactly what is missing."""

    code = Code.UNIMPLEMENTED

    def __init__(self, feature: str, detail: str) -> None:
        super().__init__(f"{feature}: {detail}")
        self.feature = feature
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in the configuration: the dotted key, what is wrong, and how to fix it."""

    key: str
    problem: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.key}: {self.problem}" + (f"; {self.fix}" if self.fix else "")


class ConfigError(SkinflintError):
    """The configuration (file, environment, flags or data dir) cannot be used; boot stops."""

    code = Code.FAILED_PRECONDITION

    def __init__(self, issues: Sequence[ConfigIssue] | str) -> None:
        if isinstance(issues, str):
            issues = [ConfigIssue(key="config", problem=issues)]
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        if len(self.issues) == 1:
            message = str(self.issues[0])
        else:
            lines = "\n".join(f"  - {issue}" for issue in self.issues)
            message = f"{len(self.issues)} configuration problems:\n{lines}"
        super().__init__(message)


class ProviderNotConfigured(SkinflintError):
    """A provider the request needs has no credentials; names the variable to set."""

    code = Code.FAILED_PRECONDITION

    def __init__(self, provider: str, variable: str) -> None:
        super().__init__(
            f"provider {provider!r} is not configured; set the environment variable {variable}"
        )
        self.provider = provider
        self.variable = variable


class ResourceExhausted(SkinflintError):
    """A budget's hard limit stops the call: the budget, why, and when its window resets.

    ``reason`` names the limit and what is spent; ``resets_at`` (unix seconds, None for a
    TOTAL window that never resets) becomes the RetryInfo delay on the wire.
    """

    code = Code.RESOURCE_EXHAUSTED

    def __init__(
        self,
        budget_id: str,
        reason: str,
        *,
        scope: str = "",
        resets_at: int | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(f"budget {budget_id!r}: {reason}")
        self.budget_id = budget_id
        self.reason = reason
        self.scope = scope
        self.resets_at = resets_at
        self.retry_after_seconds = retry_after_seconds


class CostCeilingExceeded(SkinflintError):
    """The request's own ceiling (``policy.max_cost_nanousd``) is below the worst case of
    every model it may run on: a hard stop like a budget's, so RESOURCE_EXHAUSTED; retrying
    the same request cannot help (no RetryInfo)."""

    code = Code.RESOURCE_EXHAUSTED

    def __init__(self, reason: str) -> None:
        super().__init__(f"policy.max_cost_nanousd: {reason}")
        self.reason = reason


class Unavailable(SkinflintError):
    """Every provider in the fallback chain failed; the same request may succeed later."""

    code = Code.UNAVAILABLE
    retryable = True

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class DeadlineExceeded(SkinflintError):
    """The caller's deadline ran out before an answer arrived (says what was under way)."""

    code = Code.DEADLINE_EXCEEDED

    def __init__(self, message: str) -> None:
        super().__init__(message)


class InternalError(SkinflintError):
    """Something that should not happen (a bug, or a native call that broke its contract)."""

    code = Code.INTERNAL


class StorageError(InternalError):
    """An embedded store (the LMDB cache, the SQLite ledger) failed (the message names the
    path and the reason)."""


def from_native(exc: _native.NativeError, *, context: str) -> SkinflintError:
    """Translate a Rust-core exception into the tree; ``context`` says what was being done.

    This is the only place that knows the native exception classes. Errors the pipeline
    cannot cause through caller input (a key-material shape error means our own dict is
    wrong) become ``InternalError``; rule-set errors can only come from configuration.
    """
    detail = f"{context}: {exc}"
    if isinstance(exc, _native.RuleSetError):
        return ConfigError([ConfigIssue(key="rule_sets", problem=detail)])
    if isinstance(exc, _native.CacheError | _native.LedgerError):
        return StorageError(detail)
    if isinstance(exc, _native.NativePanic):
        return InternalError(f"{context}: the native core panicked ({exc})")
    return InternalError(detail)


class native_errors:  # lower case like contextlib.suppress: used as a context manager
    """Run a native call and re-raise its errors as ``SkinflintError`` (original chained).

    A class rather than a ``contextmanager`` generator: it wraps the native calls on a
    response-cache hit, where the generator's few microseconds showed (bench/cache.py).
    """

    __slots__ = ("_context",)

    def __init__(self, context: str) -> None:
        self._context = context

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if isinstance(exc, _native.NativeError):
            raise from_native(exc, context=self._context) from exc
        return False


__all__ = [
    "Code",
    "ConfigError",
    "ConfigIssue",
    "DeadlineExceeded",
    "InternalError",
    "InvalidArgument",
    "NotFound",
    "NotImplementedYet",
    "ProviderNotConfigured",
    "ResourceExhausted",
    "SkinflintError",
    "StorageError",
    "Unavailable",
    "from_native",
    "native_errors",
]
