"""Shared machinery of the provider emulators.

The emulators are real aiohttp HTTP servers (``127.0.0.1``, port 0 by default) that follow the
providers' documented wire formats (``shared/PROVIDERS.md`` sections 1, 3 and 5). This module
holds what every emulator needs:

* clocks (``SystemClock``, and ``ManualClock`` that tests advance to expire caches);
* tokenizers (``WordPieceTokenizer``: a deterministic GPT-2 style word-piece split, one piece =
  one token; ``NativeTokenizer``: skinflint's exact o200k/cl100k counts for OpenAI models);
* scripted faults (``Fault``/``FaultQueue``): an error status with ``retry-after`` /
  ``retry-after-ms`` headers N times, extra latency, or a stream cut / ``error`` event after K
  events;
* a request log (``RequestLog``) the tests inspect: bodies and headers as received, with
  credentials redacted (they are never printed either: aiohttp's access log is off);
* the ``Emulator`` base class (routing, error rendering, request ids) and ``EmulatorServer``
  (start/stop, ``base_url``, async context manager).

Provider modules add routes in ``Emulator.add_routes``; batch endpoints (PROVIDERS.md sections
2 and 4) can be added later the same way, next to the existing routes, and run each batch item
through the emulator's non-HTTP entry point (``AnthropicEmulator.create_message``,
``OpenAIEmulator.create_completion``) so items get the same validation, caching and usage.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import string
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, Self

from aiohttp import web

__all__ = [
    "LOG_ENTRY",
    "REQUEST_ID",
    "Clock",
    "Emulator",
    "EmulatorError",
    "EmulatorServer",
    "Fault",
    "FaultQueue",
    "LoggedRequest",
    "ManualClock",
    "NativeTokenizer",
    "RequestLog",
    "SystemClock",
    "Tokenizer",
    "WordPieceTokenizer",
    "key_id",
    "random_id",
]

# --------------------------------------------------------------------------------------------
# Clocks


class Clock(Protocol):
    """Seconds on a monotonic scale; only differences matter (cache TTLs, rate windows)."""

    def now(self) -> float: ...


class SystemClock:
    """The real monotonic clock."""

    def now(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to (``advance``): lets tests expire caches exactly."""

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds


# --------------------------------------------------------------------------------------------
# Tokenizers

# GPT-2 style pre-tokenizer: contractions, optional-space + letters, 1-3 digits, optional-space +
# punctuation run, whitespace. Lossless: "".join(findall(text)) == text.
_PIECE_RE = re.compile(
    r"""'(?:s|t|re|ve|m|ll|d)| ?[^\W\d_]+| ?\d{1,3}| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""
)
_VOCAB = 200_000


class Tokenizer(Protocol):
    """What the emulators need from a tokenizer."""

    name: str

    def count(self, text: str) -> int:
        """Tokens in ``text``."""
        ...

    def pieces(self, text: str) -> list[tuple[str, int]]:
        """``text`` split into streamable pieces with their token counts (lossless split)."""
        ...


class WordPieceTokenizer:
    """Deterministic emulator tokenizer: each GPT-2 style pre-token piece is one token.

    Used for Anthropic models (whose tokenizer is not public) and for the vLLM emulator's model.
    Token ids (``encode``) are a stable hash of the piece, so equal text gives equal ids.
    """

    name = "emulator-wordpiece"

    def count(self, text: str) -> int:
        return len(_PIECE_RE.findall(text))

    def pieces(self, text: str) -> list[tuple[str, int]]:
        return [(p, 1) for p in _PIECE_RE.findall(text)]

    def split(self, text: str) -> list[str]:
        return _PIECE_RE.findall(text)

    def encode(self, text: str) -> list[int]:
        return [zlib.crc32(p.encode()) % _VOCAB for p in _PIECE_RE.findall(text)]


class NativeTokenizer:
    """Exact OpenAI token counts (o200k_base / cl100k_base) from skinflint's Rust core.

    Streaming pieces are the word-piece split of the text, each counted with the real encoding,
    so a reply's usage is the sum of the pieces streamed.
    """

    def __init__(self, model: str) -> None:
        from skinflint import _native

        self._native = _native
        self.model = model
        self.name = _native.encoding_for_model(model)

    def count(self, text: str) -> int:
        return self._native.count_tokens(self.model, text).count if text else 0

    def pieces(self, text: str) -> list[tuple[str, int]]:
        return [(p, max(1, self.count(p))) for p in _PIECE_RE.findall(text)]


# --------------------------------------------------------------------------------------------
# Ids

_ALNUM = string.ascii_letters + string.digits


def random_id(prefix: str, length: int = 24) -> str:
    """``prefix`` + ``length`` random base62 characters (e.g. ``msg_01...``, ``toolu_...``)."""
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def key_id(api_key: str) -> str:
    """A short, non-reversible fingerprint of an API key (what the request log keeps)."""
    return "key_" + hashlib.sha256(api_key.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Errors


class EmulatorError(Exception):
    """A provider error: rendered by the emulator in its provider's documented body shape."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        param: str | None = None,
        code: str | int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})


# --------------------------------------------------------------------------------------------
# Faults


@dataclass
class Fault:
    """One scripted fault, applied to the next ``times`` matching requests.

    Exactly one kind per fault:

    * ``status``: answer with this HTTP error instead (``error_type``/``message``/``code``
      default per provider; ``retry_after`` -> ``retry-after`` seconds header,
      ``retry_after_ms`` -> ``retry-after-ms``; ``headers`` adds more, e.g. ``x-should-retry``);
    * ``stream_error_after=K``: a streaming response sends K events, then an in-stream error
      (Anthropic ``event: error``, OpenAI ``data: {"error": ...}``) and ends;
    * ``stream_cut_after=K``: a streaming response sends K events and ends without its
      terminal event (``cut_abort=True`` resets the connection; ``False`` ends the body cleanly);
    * ``reply``: answer 200 with a misbehaving reply instead of the generated one (the
      Anthropic emulator): ``"refusal"`` (stop reason ``refusal``, a short refusal text),
      ``"empty"`` (no content, ``end_turn``) or ``"invalid_json"`` (text that is not JSON).
      Used to exercise cascade checks;
    * only ``latency``: delay the response by that many seconds.

    ``latency`` also applies before an error. ``path`` limits the fault to one route.
    Stream faults are only consumed by streaming requests.
    """

    status: int | None = None
    error_type: str | None = None
    message: str | None = None
    code: str | int | None = None
    retry_after: float | None = None
    retry_after_ms: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    times: int = 1
    latency: float = 0.0
    stream_error_after: int | None = None
    stream_cut_after: int | None = None
    cut_abort: bool = True
    path: str | None = None
    reply: Literal["refusal", "empty", "invalid_json"] | None = None

    def __post_init__(self) -> None:
        kinds = [
            self.status is not None,
            self.stream_error_after is not None,
            self.stream_cut_after is not None,
            self.reply is not None,
        ]
        if sum(kinds) > 1:
            raise ValueError(
                "a Fault is one of: status, stream_error_after, stream_cut_after, reply"
            )
        if self.times < 1:
            raise ValueError("Fault.times must be >= 1")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError("Fault.status must be an HTTP error status (4xx/5xx)")

    @property
    def is_stream_fault(self) -> bool:
        return self.stream_error_after is not None or self.stream_cut_after is not None

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.retry_after is not None:
            value = self.retry_after
            headers["retry-after"] = str(int(value)) if value == int(value) else str(value)
        if self.retry_after_ms is not None:
            headers["retry-after-ms"] = str(self.retry_after_ms)
        return headers


class FaultQueue:
    """Faults in the order they were scripted; each request takes the first that matches."""

    def __init__(self) -> None:
        self._faults: deque[Fault] = deque()
        self.fired: list[Fault] = []

    def add(self, *faults: Fault) -> None:
        self._faults.extend(faults)

    def clear(self) -> None:
        self._faults.clear()

    @property
    def pending(self) -> int:
        return sum(f.times for f in self._faults)

    def take(self, path: str, *, streaming: bool) -> Fault | None:
        for fault in self._faults:
            if fault.path is not None and fault.path != path:
                continue
            if fault.is_stream_fault and not streaming:
                continue
            fault.times -= 1
            if fault.times == 0:
                self._faults.remove(fault)
            self.fired.append(fault)
            return fault
        return None


# --------------------------------------------------------------------------------------------
# Request log

_SECRET_HEADERS = frozenset({"x-api-key", "authorization", "api-key", "proxy-authorization"})


@dataclass
class LoggedRequest:
    """A request as the emulator received it (credentials replaced by ``<redacted>``)."""

    request_id: str
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    key_id: str | None
    status: int | None = None
    error: str | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class RequestLog:
    """Every request received, oldest first. Nothing here is ever printed."""

    def __init__(self) -> None:
        self.entries: list[LoggedRequest] = []

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[LoggedRequest]:
        return iter(self.entries)

    @property
    def last(self) -> LoggedRequest:
        return self.entries[-1]

    def for_path(self, path: str) -> list[LoggedRequest]:
        return [e for e in self.entries if e.path == path]

    def clear(self) -> None:
        self.entries.clear()

    def record(self, request: web.Request, raw: bytes, request_id: str) -> LoggedRequest:
        headers: dict[str, str] = {}
        secret: str | None = None
        for name, value in request.headers.items():
            lname = name.lower()
            if lname in _SECRET_HEADERS:
                token = value.removeprefix("Bearer ").removeprefix("bearer ").strip()
                secret = secret or token or None
                value = "<redacted>"
            headers[lname] = value
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        entry = LoggedRequest(
            request_id=request_id,
            method=request.method,
            path=request.path,
            headers=headers,
            body=body,
            key_id=key_id(secret) if secret else None,
        )
        self.entries.append(entry)
        return entry


# --------------------------------------------------------------------------------------------
# Emulator base and server


REQUEST_ID = web.RequestKey("request_id", str)
LOG_ENTRY = web.RequestKey("log_entry", LoggedRequest)


class Emulator:
    """Base of the provider emulators: middleware, faults, request log, clock, latency.

    Subclasses implement ``add_routes``, ``new_request_id`` and ``error_response``.

    Knobs: ``latency`` (seconds before every response starts, i.e. simulated prefill),
    ``token_latency`` (seconds between streamed events), ``faults`` (scripted ``Fault``s).
    """

    request_id_header: ClassVar[str] = "request-id"
    provider: ClassVar[str] = "emulator"

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        latency: float = 0.0,
        token_latency: float = 0.0,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.latency = latency
        self.token_latency = token_latency
        self.faults = FaultQueue()
        self.requests = RequestLog()
        self._server: EmulatorServer | None = None

    # -- to implement ------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def new_request_id(self) -> str:
        return random_id("req_")

    def error_response(self, err: EmulatorError, request_id: str) -> web.Response:
        raise NotImplementedError

    def fault_error(self, fault: Fault) -> EmulatorError:
        """The error a status fault produces (provider-specific defaults)."""
        raise NotImplementedError

    # -- app ---------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=32 * 1024 * 1024)
        self.add_routes(app)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        request_id = self.new_request_id()
        request[REQUEST_ID] = request_id
        raw = await request.read()
        entry = self.requests.record(request, raw, request_id)
        request[LOG_ENTRY] = entry
        try:
            response: web.StreamResponse = await handler(request)
        except EmulatorError as err:
            response = self.error_response(err, request_id)
        except (ConnectionError, asyncio.CancelledError):  # the client went away mid-stream
            entry.error = "client disconnected"
            raise
        except web.HTTPException as exc:
            err = EmulatorError(exc.status, _http_error_type(exc.status), exc.reason)
            response = self.error_response(err, request_id)
        except Exception as exc:  # an emulator bug: answer 500 like a server would, keep why
            entry.error = f"{type(exc).__name__}: {exc}"
            err = EmulatorError(500, "api_error", "Internal server error")
            response = self.error_response(err, request_id)
        if not response.prepared:
            response.headers[self.request_id_header] = request_id
        entry.status = response.status
        return response

    async def apply_fault(self, request: web.Request, *, streaming: bool) -> Fault | None:
        """Take the next matching fault: sleep its latency, raise a status fault's error.

        Returns a stream fault (for the handler to apply), or ``None``.
        """
        fault = self.faults.take(request.path, streaming=streaming)
        if fault is None:
            return None
        if fault.latency:
            await asyncio.sleep(fault.latency)
        if fault.status is not None:
            raise self.fault_error(fault)
        return fault if fault.is_stream_fault or fault.reply is not None else None

    def response_headers(self, request: web.Request) -> dict[str, str]:
        return {self.request_id_header: request[REQUEST_ID]}

    async def pause(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._server.base_url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> EmulatorServer:
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        server = EmulatorServer(self, host=host, port=port)
        await server.start()
        self._server = server
        return server

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class EmulatorServer:
    """Serves one emulator over HTTP on ``host:port`` (port 0 picks a free port).

    ``async with EmulatorServer(AnthropicEmulator()) as server: server.base_url``.
    """

    def __init__(self, emulator: Emulator, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("server is not started")
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        runner = web.AppRunner(
            self.emulator.build_app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=0.5,
            # Like a real API server, stop work when the client goes away, so tests can see
            # that a cancelled call really closed its connection.
            handler_cancellation=True,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _http_error_type(status: int) -> str:
    return {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error"}.get(
        status, "invalid_request_error" if status < 500 else "api_error"
    )


# --------------------------------------------------------------------------------------------
# Small helpers shared by the provider modules


def sse_bytes(data: str, event: str | None = None) -> bytes:
    """One server-sent event (``event:`` line optional), terminated by a blank line."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


def dumps(obj: Any) -> str:
    """Compact JSON, as the providers send it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def first_words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def unknown_keys(body: Mapping[str, Any], allowed: Iterable[str]) -> list[str]:
    allowed_set = set(allowed)
    return [k for k in body if k not in allowed_set]
