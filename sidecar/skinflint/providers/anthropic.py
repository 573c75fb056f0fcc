"""Anthropic Messages API provider, on the official ``anthropic`` SDK.

Translation decisions (``Call`` -> Messages API):

* System blocks become a list of text blocks (so a breakpoint can sit on any one of them).
* Images: inline bytes as a ``base64`` source, URLs as a ``url`` source.
* ``temperature``/``top_p``/``top_k`` go in the body via ``extra_body``: the pinned SDK no
  longer takes them as named arguments. ``seed`` and the penalties have no Anthropic
  equivalent and are not sent (as tensorzero does: an unsupported knob never fails a call).
* JSON: ``JSON_SCHEMA`` uses the documented structured-output option,
  ``output_config.format = {"type": "json_schema", "schema": ...}``, which constrains the
  output to the schema. ``JSON_OBJECT`` (any object, no schema) has no native mode: a schema of
  ``{"type": "object"}`` would be over- or under-constrained depending on the model, so a
  short instruction is appended as the *last* system block. It comes after every caller
  block, so the plan's ``system[i]`` breakpoints still point at the caller's blocks and the
  cached prefix is unchanged.
* ``reasoning_effort`` maps to ``output_config.effort`` when it is one of Anthropic's levels;
  ``thinking_budget_tokens`` to ``thinking: {type: enabled, budget_tokens}``.
* ``metadata.user_id`` is the attribution user (an opaque id Anthropic uses for abuse
  detection); ``provider_params`` are merged last into the body and win.
* Prompt caching: exactly the plan's breakpoints get ``cache_control`` (the plan already
  includes caller-marked parts; nothing else is marked).

Streaming reads the SDK's raw event stream (``stream=True``) rather than the
``messages.stream`` helper, so every event is seen once and usage is normalized by
``from_anthropic_stream`` from ``message_start`` + the last ``message_delta``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2

from skinflint.accounting.usage import from_anthropic, from_anthropic_stream
from skinflint.call import (
    ImagePart,
    Part,
    ResponseFormatType,
    TextPart,
    ToolResultPart,
    ToolUsePart,
    thaw_json,
)
from skinflint.errors import InternalError
from skinflint.providers import _common
from skinflint.providers.base import (
    Breakpoint,
    BreakpointSite,
    Content,
    FailureKind,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    StopReason,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolUseDelta,
)
from skinflint.providers.credentials import SecretKey
from skinflint.providers.settings import ProviderSettings

#: Appended as the last system block for ``JSON_OBJECT`` (Anthropic has no JSON mode).
JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose, no code fences."
)
_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})
_STOP_REASONS: dict[str, StopReason] = {
    "end_turn": StopReason.END_TURN,
    "max_tokens": StopReason.MAX_TOKENS,
    "model_context_window_exceeded": StopReason.MAX_TOKENS,
    "stop_sequence": StopReason.STOP_SEQUENCE,
    "tool_use": StopReason.TOOL_USE,
    "pause_turn": StopReason.PAUSE_TURN,
    "refusal": StopReason.REFUSAL,
}
# error.type of an in-stream ``error`` event (sent after a 200, so there is no status).
_ERROR_TYPES: dict[str, FailureKind] = {
    "overloaded_error": FailureKind.OVERLOADED,
    "rate_limit_error": FailureKind.RATE_LIMITED,
    "api_error": FailureKind.SERVER,
    "timeout_error": FailureKind.TIMEOUT,
    "authentication_error": FailureKind.AUTH,
    "permission_error": FailureKind.AUTH,
    "invalid_request_error": FailureKind.INVALID,
    "not_found_error": FailureKind.INVALID,
    "request_too_large": FailureKind.INVALID,
}


# --- request translation ------------------------------------------------------------------------


def build_request(request: ProviderRequest) -> dict[str, Any]:
    """The keyword arguments of ``messages.create`` for ``request`` (without ``stream``)."""
    call = request.call
    params = call.params
    marks = _cache_marks(request)
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": [
            {
                "role": message.role.value,
                "content": [
                    _with_mark(_part(part), marks.get((BreakpointSite.MESSAGE, i, j)))
                    for j, part in enumerate(message.parts)
                ],
            }
            for i, message in enumerate(call.messages)
        ],
    }
    system = [
        _with_mark({"type": "text", "text": block.text}, marks.get((BreakpointSite.SYSTEM, i, 0)))
        for i, block in enumerate(call.system)
    ]
    fmt = params.response_format
    if fmt is not None and fmt.type is ResponseFormatType.JSON_OBJECT:
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
    if system:
        body["system"] = system
    if call.tools:
        body["tools"] = [
            _with_mark(
                {
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": thaw_json(tool.input_schema),
                },
                marks.get((BreakpointSite.TOOL, i, 0)),
            )
            for i, tool in enumerate(call.tools)
        ]
    if call.tool_choice is not None:
        choice: dict[str, Any] = {"type": call.tool_choice.mode.value}
        if call.tool_choice.name is not None:
            choice["name"] = call.tool_choice.name
        body["tool_choice"] = choice
    if params.stop_sequences:
        body["stop_sequences"] = list(params.stop_sequences)
    if params.thinking_budget_tokens is not None:
        body["thinking"] = {"type": "enabled", "budget_tokens": params.thinking_budget_tokens}
    output_config: dict[str, Any] = {}
    if fmt is not None and fmt.type is ResponseFormatType.JSON_SCHEMA and fmt.schema is not None:
        output_config["format"] = {"type": "json_schema", "schema": thaw_json(fmt.schema)}
    if params.reasoning_effort in _EFFORTS:
        output_config["effort"] = params.reasoning_effort
    if output_config:
        body["output_config"] = output_config
    if call.attribution.user:
        body["metadata"] = {"user_id": call.attribution.user}
    extra: dict[str, Any] = {
        name: value
        for name, value in (
            ("temperature", params.temperature),
            ("top_p", params.top_p),
            ("top_k", params.top_k),
        )
        if value is not None
    }
    if params.provider_params is not None:
        extra.update(thaw_json(params.provider_params))
    if extra:
        body["extra_body"] = extra
    return body


def _cache_marks(request: ProviderRequest) -> dict[tuple[BreakpointSite, int, int], Breakpoint]:
    """The plan's breakpoints by site, checked against the call (a bad index is a bug in the
    planner, and silently dropping it would silently lose the cache discount)."""
    call = request.call
    marks: dict[tuple[BreakpointSite, int, int], Breakpoint] = {}
    for bp in request.cache_plan.breakpoints:
        if bp.site is BreakpointSite.TOOL:
            valid = 0 <= bp.index < len(call.tools) and bp.part == 0
        elif bp.site is BreakpointSite.SYSTEM:
            valid = 0 <= bp.index < len(call.system) and bp.part == 0
        else:
            valid = 0 <= bp.index < len(call.messages) and 0 <= bp.part < len(
                call.messages[bp.index].parts
            )
        if not valid:
            raise InternalError(f"cache plan breakpoint {bp} does not exist in the call")
        marks[(bp.site, bp.index, bp.part)] = bp
    return marks


def _with_mark(block: dict[str, Any], bp: Breakpoint | None) -> dict[str, Any]:
    if bp is not None:
        block["cache_control"] = {"type": "ephemeral", "ttl": bp.ttl.value}
    return block


def _part(part: Part) -> dict[str, Any]:
    match part:
        case TextPart(text=text):
            return {"type": "text", "text": text}
        case ImagePart(media_type=media_type, data=data, url=url):
            if data is not None:
                source = {"type": "base64", "media_type": media_type, "data": _common.b64(data)}
            else:
                source = {"type": "url", "url": url}
            return {"type": "image", "source": source}
        case ToolUsePart(id=use_id, name=name, input=tool_input):
            return {"type": "tool_use", "id": use_id, "name": name, "input": thaw_json(tool_input)}
        case ToolResultPart(tool_use_id=use_id, content=content, is_error=is_error):
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": use_id}
            block["content"] = content
            if is_error:
                block["is_error"] = True
            return block
    raise TypeError(f"unknown content part type {type(part).__name__}")


# --- response translation -----------------------------------------------------------------------


def stop_reason(value: str | None) -> StopReason:
    return _STOP_REASONS.get(value or "end_turn", StopReason.END_TURN)


def _content(blocks: Any) -> tuple[Content, ...]:
    """Text and tool-use blocks, in order; thinking blocks are not part of the answer."""
    out: list[Content] = []
    for block in blocks:
        if block.type == "text":
            out.append(TextPart(text=block.text))
        elif block.type == "tool_use":
            out.append(ToolUsePart(id=block.id, name=block.name, input=dict(block.input or {})))
    return tuple(out)


# --- errors -------------------------------------------------------------------------------------


def anthropic_error(
    exc: BaseException,
    provider: str,
    model: str,
    key: SecretKey | None,
    *,
    streaming: bool = False,
) -> ProviderError:
    """One ``ProviderError`` for anything the Anthropic SDK (or its HTTP client) raises.

    An ``error`` event inside a stream arrives as an ``APIStatusError`` carrying the 200 of
    the stream, so its kind comes from ``error.type`` instead of the status.
    """
    if isinstance(exc, anthropic.APIStatusError):
        headers = exc.response.headers
        etype, message = _common.body_error(exc.body)
        status: int | None = exc.status_code
        if status is not None and status < 400:
            kind = _ERROR_TYPES.get(etype or "", FailureKind.STREAM_CUT)
            status = None
            prefix = "error event in the stream"
        else:
            kind = _common.kind_for_status(exc.status_code)
            prefix = etype or "error"
        text = _common.clean_message(f"{prefix}: {message or exc.api_message or ''}", key)
        return ProviderError(
            provider,
            model,
            kind,
            text,
            status=status,
            retry_after_s=_common.retry_after_s(headers),
            request_id=exc.request_id or _common.header_request_id(headers),
        )
    if isinstance(exc, anthropic.APITimeoutError) and not _common.disconnected(exc):
        return ProviderError(provider, model, FailureKind.TIMEOUT, "request timed out")
    if isinstance(exc, anthropic.APIConnectionError):  # a lost connection (any transport)
        kind = FailureKind.STREAM_CUT if streaming else FailureKind.CONNECTION
        return ProviderError(provider, model, kind, "connection error")
    found = _common.transport_error(exc, provider, model, streaming=streaming)
    if found is not None:
        return found
    return ProviderError(
        provider,
        model,
        FailureKind.OTHER,
        _common.clean_message(f"{type(exc).__name__}: {exc}", key),
    )


# --- provider -----------------------------------------------------------------------------------


@dataclass
class _Block:
    """A content block being assembled from stream deltas."""

    kind: str  # "text" | "tool_use"
    out_index: int
    text: list[str] = field(default_factory=list)
    id: str = ""
    name: str = ""


class AnthropicProvider:
    """One Anthropic endpoint: one key, one base URL, one ``AsyncAnthropic`` client.

    The client is created on first use (so a missing key fails that call, not the boot) and
    reused for every call after (connection pooling). The SDK never retries
    (``max_retries=0``): retries, backoff and fallback belong to the dispatch stage.
    """

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        if settings.kind != "anthropic":
            raise ValueError(f"AnthropicProvider needs kind 'anthropic', got {settings.kind!r}")
        self.name = name
        self.settings = settings
        self._source = settings.key_source(name)
        self._key: SecretKey | None = None
        self._client: anthropic.AsyncAnthropic | None = None

    def __repr__(self) -> str:
        return f"AnthropicProvider(name={self.name!r}, base_url={self.settings.base_url!r})"

    def _get_client(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            key = self._source.resolve()
            assert key is not None  # Anthropic keys are always required
            self._key = key
            timeout = _common.client_timeout(self.settings.connect_timeout_s)
            self._client = anthropic.AsyncAnthropic(
                api_key=key.get_secret_value(),
                base_url=self.settings.base_url,
                max_retries=0,
                timeout=timeout,
                default_headers=self.settings.default_headers or None,
                # Performance: the SDK's aiohttp transport costs less CPU per call than
                # httpx2's own (bench/overhead.py); lost connections: _common.disconnected.
                http_client=anthropic.DefaultAioHttpClient(timeout=timeout),
            )
        return self._client

    def _timeout(self, request: ProviderRequest) -> Any:
        return _common.call_timeout(
            request.timeout_s, self.settings.connect_timeout_s, anthropic.NOT_GIVEN
        )

    def _error(self, exc: BaseException, model: str, *, streaming: bool = False) -> ProviderError:
        return anthropic_error(exc, self.name, model, self._key, streaming=streaming)

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        client = self._get_client()
        body = build_request(request)
        deadline = _common.deadline_at(request.timeout_s)
        try:
            async with asyncio.timeout_at(deadline):
                message = await client.messages.create(**body, timeout=self._timeout(request))
        except TimeoutError:
            raise _common.deadline_error(self.name, request.model, request.timeout_s) from None
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise self._error(exc, request.model) from exc
        return ProviderResponse(
            provider=self.name,
            model=message.model or request.model,
            content=_content(message.content),
            stop_reason=stop_reason(message.stop_reason),
            usage=_common.checked_usage(
                from_anthropic, message.usage, self.name, request.model, provider=self.name
            ),
            request_id=getattr(message, "_request_id", None),
        )

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        client = self._get_client()
        body = build_request(request)
        model = request.model
        deadline = _common.deadline_at(request.timeout_s)
        try:
            async with asyncio.timeout_at(deadline):
                raw = await client.messages.create(
                    **body, stream=True, timeout=self._timeout(request)
                )
        except TimeoutError:
            raise _common.deadline_error(self.name, model, request.timeout_s) from None
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise self._error(exc, model) from exc
        request_id = _common.header_request_id(raw.response.headers)
        events = raw.__aiter__()
        try:
            start_usage: Any = None
            last_usage: Any = None
            reason: str | None = None
            blocks: dict[int, _Block] = {}
            done: list[Content | None] = []
            while True:
                try:
                    event = await _common.next_before(events, deadline)
                except StopAsyncIteration:
                    raise _common.stream_cut(
                        self.name, model, "the stream ended before message_stop"
                    ) from None
                except TimeoutError:
                    raise _common.deadline_error(self.name, model, request.timeout_s) from None
                except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
                    raise self._error(exc, model, streaming=True) from exc
                etype = event.type
                if etype == "message_start":
                    start_usage = event.message.usage
                    model = event.message.model or model
                elif etype == "content_block_start":
                    cb = event.content_block
                    if cb.type == "text":
                        blocks[event.index] = _Block("text", len(done))
                        done.append(None)
                        if cb.text:
                            blocks[event.index].text.append(cb.text)
                            yield TextDelta(index=blocks[event.index].out_index, text=cb.text)
                    elif cb.type == "tool_use":
                        block = _Block("tool_use", len(done), id=cb.id, name=cb.name)
                        blocks[event.index] = block
                        done.append(None)
                        yield ToolUseDelta(
                            index=block.out_index, partial_json="", id=cb.id, name=cb.name
                        )
                elif etype == "content_block_delta":
                    block = blocks.get(event.index)
                    delta = event.delta
                    if block is None:
                        continue  # thinking and other blocks are not part of the answer
                    if delta.type == "text_delta":
                        block.text.append(delta.text)
                        yield TextDelta(index=block.out_index, text=delta.text)
                    elif delta.type == "input_json_delta":
                        block.text.append(delta.partial_json)
                        yield ToolUseDelta(index=block.out_index, partial_json=delta.partial_json)
                elif etype == "content_block_stop":
                    block = blocks.get(event.index)
                    if block is not None:
                        done[block.out_index] = self._finish_block(block, model)
                elif etype == "message_delta":
                    reason = event.delta.stop_reason or reason
                    last_usage = event.usage
                elif etype == "message_stop":
                    break
            if start_usage is None or any(c is None for c in done):
                raise _common.stream_cut(self.name, model, "the stream skipped events")
            usage = _common.checked_usage(
                from_anthropic_stream,
                start_usage,
                self.name,
                model,
                final_message_delta_usage=last_usage,
            )
            yield StreamEnd(
                ProviderResponse(
                    provider=self.name,
                    model=model,
                    content=tuple(c for c in done if c is not None),
                    stop_reason=stop_reason(reason),
                    usage=usage,
                    request_id=request_id,
                )
            )
        finally:
            await raw.close()

    def _finish_block(self, block: _Block, model: str) -> Content:
        if block.kind == "text":
            return TextPart(text="".join(block.text))
        raw = "".join(block.text)
        try:
            parsed = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            raise _common.stream_cut(self.name, model, "tool input JSON is incomplete") from None
        if not isinstance(parsed, Mapping):
            raise ProviderError(self.name, model, FailureKind.OTHER, "tool input is not an object")
        return ToolUsePart(id=block.id, name=block.name, input=parsed)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


__all__ = ["JSON_OBJECT_INSTRUCTION", "AnthropicProvider", "anthropic_error", "build_request"]
