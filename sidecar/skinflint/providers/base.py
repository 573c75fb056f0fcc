"""The one narrow interface every provider implements, and the types that cross it.

The pipeline hands a provider a ``ProviderRequest`` (the neutral ``Call`` plus the decisions
already made for it: the concrete model, the effective ``max_tokens``, the prompt-cache plan
and the time left) and gets back a ``ProviderResponse`` with provider-neutral content, stop
reason and ``Usage``, or a stream of ``StreamEvent``s ending in one. Providers never retry,
fall back or price anything: the SDKs run with ``max_retries=0`` and every failure becomes a
``ProviderError`` that says whether and when a retry may succeed, so the dispatch stage owns
resilience in one place for every provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from skinflint.accounting.usage import Usage
from skinflint.call import CacheTtl, Call, TextPart, ToolUsePart
from skinflint.errors import SkinflintError


class StopReason(StrEnum):
    END_TURN = "end_turn"
    MAX_TOKENS = "max_tokens"
    STOP_SEQUENCE = "stop_sequence"
    TOOL_USE = "tool_use"
    REFUSAL = "refusal"
    CONTENT_FILTER = "content_filter"
    PAUSE_TURN = "pause_turn"


class BreakpointSite(StrEnum):
    """Where a prompt-cache breakpoint goes, in provider prompt order."""

    TOOL = "tool"  # after tools[index]
    SYSTEM = "system"  # after system[index]
    MESSAGE = "message"  # after messages[index].parts[part]


@dataclass(frozen=True, slots=True)
class Breakpoint:
    site: BreakpointSite
    index: int
    part: int = 0
    ttl: CacheTtl = CacheTtl.FIVE_MINUTES


@dataclass(frozen=True, slots=True)
class CachePlan:
    """Provider prompt-caching decisions for one request (made by the pipeline, applied by
    the provider). Anthropic reads ``breakpoints`` (at most 4, caller-placed ones included);
    OpenAI-compatible providers read ``openai_cache_key``. ``reason`` ends up in the route
    reason of the response."""

    breakpoints: tuple[Breakpoint, ...] = ()
    openai_cache_key: str | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    call: Call
    #: The provider's own model id (no ``provider/`` prefix).
    model: str
    #: Effective output cap: the caller's, or the feature default.
    max_tokens: int
    cache_plan: CachePlan = field(default_factory=CachePlan)
    #: Seconds left before the caller's deadline; None = no deadline.
    timeout_s: float | None = None


Content = TextPart | ToolUsePart


@dataclass(frozen=True, slots=True)
class ProviderResponse:
    provider: str
    model: str
    content: tuple[Content, ...]
    stop_reason: StopReason
    usage: Usage
    #: The provider's request id (for support tickets), when it sent one.
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolUseDelta:
    index: int
    partial_json: str
    id: str = ""  # set on the first delta of a tool call
    name: str = ""  # set on the first delta of a tool call


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last event of a stream that ended properly; carries the assembled response."""

    response: ProviderResponse


StreamEvent = TextDelta | ToolUseDelta | StreamEnd


class FailureKind(StrEnum):
    RATE_LIMITED = "rate_limited"  # 429
    OVERLOADED = "overloaded"  # 529 / 503
    SERVER = "server"  # other 5xx
    TIMEOUT = "timeout"  # 408 / 504 / client-side timeout
    CONNECTION = "connection"  # could not connect / connection reset
    STREAM_CUT = "stream_cut"  # the stream ended without its proper end
    AUTH = "auth"  # 401 / 403: the key is wrong; no retry, no fallback to the same provider
    INVALID = "invalid"  # 400 / 404 / 413 / 422: the request itself is wrong
    OTHER = "other"


RETRYABLE = frozenset(
    {
        FailureKind.RATE_LIMITED,
        FailureKind.OVERLOADED,
        FailureKind.SERVER,
        FailureKind.TIMEOUT,
        FailureKind.CONNECTION,
        FailureKind.STREAM_CUT,
    }
)


class ProviderError(SkinflintError):
    """One failed attempt at one provider. Never carries a key or prompt text."""

    def __init__(
        self,
        provider: str,
        model: str,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        request_id: str | None = None,
    ) -> None:
        status_text = f" HTTP {status}" if status is not None else ""
        super().__init__(f"{provider}/{model}:{status_text} {kind.value}: {message}")
        self.provider = provider
        self.model = model
        self.kind = kind
        self.status = status
        self.retry_after_s = retry_after_s
        self.request_id = request_id

    @property
    def attempt_retryable(self) -> bool:
        """Whether trying again (same or next model) may succeed."""
        return self.kind in RETRYABLE


@runtime_checkable
class Provider(Protocol):
    """A configured provider endpoint (one API key, one base URL, one client)."""

    #: The config name ("anthropic", "openai", "vllm", or any configured OpenAI-compatible).
    name: str

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        """One non-streaming call. Raises ProviderError."""
        ...

    def stream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        """Deltas as they arrive, then exactly one StreamEnd. A stream that stops without its
        proper end raises ProviderError(kind=STREAM_CUT), never ends quietly."""
        ...

    async def aclose(self) -> None: ...
