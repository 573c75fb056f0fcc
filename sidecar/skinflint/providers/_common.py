"""Pieces both SDK adapters share: status -> failure kind, retry hints, redaction, deadlines.

Kept private to the package: the public surface is ``base.Provider``. Each adapter has its
own ``*_error`` function (the SDKs' exception classes differ), and both end here so a status
code means the same ``FailureKind`` whichever provider sent it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import httpx2

from skinflint.accounting.usage import Usage, UsageError
from skinflint.providers.base import FailureKind, ProviderError
from skinflint.providers.credentials import SecretKey

#: Longest provider error text kept in a ``ProviderError`` (enough to fix a bad request).
MAX_MESSAGE_CHARS = 400
_REDACTED = "[redacted]"


def kind_for_status(status: int) -> FailureKind:
    """The failure kind of an HTTP error status (PROVIDERS.md sections 1.7 and 3.6)."""
    if status == 429:
        return FailureKind.RATE_LIMITED
    if status in (503, 529):
        return FailureKind.OVERLOADED
    if status in (408, 504):
        return FailureKind.TIMEOUT
    if status in (401, 403):
        return FailureKind.AUTH
    if status >= 500:
        return FailureKind.SERVER
    if 400 <= status < 500:
        # 400/404/413/422 and the rest of 4xx (409 conflict, 402 billing...): the request or
        # the account is wrong; the same request will not succeed by retrying it.
        return FailureKind.INVALID
    return FailureKind.OTHER


def retry_after_s(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """The server's retry hint: ``retry-after-ms`` first, then ``retry-after`` in seconds or
    as an HTTP date. Negative or unparseable values are ignored (no hint beats a wrong one)."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        with contextlib.suppress(ValueError):
            value = float(raw_ms) / 1000.0
            if value >= 0:
                return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    with contextlib.suppress(ValueError):
        value = float(raw)
        return value if value >= 0 else None
    with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
        when = email.utils.parsedate_to_datetime(raw)
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return None


def header_request_id(headers: Mapping[str, str] | None) -> str | None:
    """The provider's request id (Anthropic ``request-id``, OpenAI ``x-request-id``)."""
    if headers is None:
        return None
    return headers.get("request-id") or headers.get("x-request-id")


def clean_message(text: object, key: SecretKey | None) -> str:
    """A provider error text made safe to surface: the key (and any partial echo of it, as
    OpenAI's "Incorrect API key provided: sk-ab***yz" does) removed, one line, bounded."""
    message = " ".join(str(text).split())
    if key:
        secret = key.get_secret_value()
        message = message.replace(secret, _REDACTED)
        # A partially masked echo keeps the key's first characters: drop them as well.
        for n in (12, 8):
            if len(secret) > n:
                message = message.replace(secret[:n], _REDACTED)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return message


def body_error(body: object) -> tuple[str | None, str | None]:
    """``(error.type, error.message)`` of a provider error body (either SDK's shape)."""
    if not isinstance(body, Mapping):
        return None, None
    error = body.get("error", body)
    if not isinstance(error, Mapping):
        return None, None
    etype, message = error.get("type"), error.get("message")
    return (
        etype if isinstance(etype, str) else None,
        message if isinstance(message, str) else None,
    )


def disconnected(exc: BaseException) -> bool:
    """Whether ``exc`` was caused by the connection failing rather than by a timeout.

    With the aiohttp transport (``http_client``), httpx2's adapter maps every aiohttp
    connection error, a peer that hung up included, to ``ConnectTimeout``, which the SDKs
    report as a timeout. The aiohttp exception is kept as the cause: a connection error that
    is not one of aiohttp's timeouts is a lost connection, as it was with httpx2's own
    transport."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, aiohttp.ServerTimeoutError):
            return False
        if isinstance(seen, aiohttp.ClientConnectionError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def transport_error(
    exc: BaseException, provider: str, model: str, *, streaming: bool
) -> ProviderError | None:
    """A raw httpx2 transport failure (the Anthropic SDK lets these out of a stream)."""
    if isinstance(exc, httpx2.TimeoutException) and disconnected(exc):
        kind = FailureKind.STREAM_CUT if streaming else FailureKind.CONNECTION
        return ProviderError(provider, model, kind, "connection lost")
    if isinstance(exc, httpx2.TimeoutException):
        return ProviderError(provider, model, FailureKind.TIMEOUT, "timed out reading the response")
    if isinstance(exc, httpx2.TransportError):
        kind = FailureKind.STREAM_CUT if streaming else FailureKind.CONNECTION
        return ProviderError(provider, model, kind, f"connection failed ({type(exc).__name__})")
    return None


def checked_usage(
    normalize: Callable[..., Usage], raw: Any, provider: str, model: str, /, **kwargs: Any
) -> Usage:
    """``normalize(raw)``, with a usage report that breaks the provider's documented shape
    turned into a ``ProviderError`` (the answer cannot be billed, so it cannot be used)."""
    try:
        return normalize(raw, **kwargs)
    except UsageError as exc:
        raise ProviderError(provider, model, FailureKind.OTHER, str(exc)) from exc


def deadline_error(provider: str, model: str, timeout_s: float | None) -> ProviderError:
    return ProviderError(
        provider, model, FailureKind.TIMEOUT, f"no answer within the deadline ({timeout_s}s)"
    )


def stream_cut(provider: str, model: str, what: str) -> ProviderError:
    return ProviderError(provider, model, FailureKind.STREAM_CUT, what)


#: An SDK client's default read timeout: each call passes its own (``call_timeout``).
CLIENT_TIMEOUT_S = 600.0


def client_timeout(connect_s: float) -> httpx2.Timeout:
    """The timeout an SDK client is built with (the caller's deadline bounds each call)."""
    return httpx2.Timeout(CLIENT_TIMEOUT_S, connect=connect_s)


def call_timeout(timeout_s: float | None, connect_s: float, not_given: Any) -> Any:
    """One call's timeout from the caller's time left; ``not_given`` (the SDK's sentinel)
    keeps the client's default when there is no deadline."""
    if timeout_s is None:
        return not_given
    budget = max(timeout_s, 0.001)
    return httpx2.Timeout(budget, connect=min(budget, connect_s))


def deadline_at(timeout_s: float | None) -> float | None:
    """The loop time the caller's deadline falls at (None: no deadline)."""
    if timeout_s is None:
        return None
    return asyncio.get_running_loop().time() + max(0.0, timeout_s)


async def next_before(iterator: AsyncIterator[Any], deadline: float | None) -> Any:
    """``anext(iterator)`` bounded by the deadline, so a stalled stream cannot outlive the
    caller's deadline. Per-step rather than around the whole generator: a timeout scope that
    spans ``yield`` would cancel the *consumer's* code between events."""
    if deadline is None:
        return await anext(iterator)
    async with asyncio.timeout_at(deadline):
        return await anext(iterator)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


__all__ = [
    "MAX_MESSAGE_CHARS",
    "b64",
    "body_error",
    "checked_usage",
    "clean_message",
    "deadline_at",
    "deadline_error",
    "disconnected",
    "header_request_id",
    "kind_for_status",
    "next_before",
    "retry_after_s",
    "stream_cut",
    "transport_error",
]
