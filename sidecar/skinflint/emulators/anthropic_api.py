"""Emulator of the Anthropic Messages API (PROVIDERS.md section 1).

Routes: ``POST /v1/messages`` (JSON or SSE stream) and ``POST /v1/messages/count_tokens``.

* Auth (1.1): ``x-api-key`` (or ``Authorization: Bearer``) is required, else
  ``401 authentication_error``; with ``api_keys`` given, only those keys are valid and each maps
  to its organization (cache isolation). ``anthropic-version`` is required and must be known.
* Every response carries ``request-id``; errors use the documented body
  ``{"type": "error", "error": {"type", "message"}, "request_id"}`` (1.7).
* Request validation and cache layout: ``anthropic_request``; prompt caching:
  ``anthropic_cache``.
* Usage (1.4): ``input_tokens`` excludes cache reads and writes; ``cache_creation`` splits the
  writes into 5m/1h and sums to ``cache_creation_input_tokens``; total prompt =
  ``input_tokens + cache_creation_input_tokens + cache_read_input_tokens``; ``output_tokens``
  is never 0 for a generated reply (``max_tokens: 0`` pre-warms the cache and generates none).
* Streaming (1.6): ``message_start`` (empty content, ``stop_reason: null``, usage with the
  input and cache counts and ``output_tokens: 1``) -> per block ``content_block_start`` /
  ``content_block_delta`` (``text_delta``, ``input_json_delta``, ``thinking_delta``,
  ``signature_delta``) / ``content_block_stop``, with a ``ping`` after the first block start ->
  ``message_delta`` with cumulative usage -> ``message_stop``. A scripted fault can send an
  ``error`` event after a 200 status, or cut the stream.
* ``create_message`` runs one call without HTTP, for batch processing (section 2) to reuse.
* Errors by status (1.7): 429 ``rate_limit_error``, 500 ``api_error``, 504 ``timeout_error``,
  529 ``overloaded_error`` ... with ``retry-after`` / ``retry-after-ms`` from the fault.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from skinflint.emulators.anthropic_cache import CacheUsage, PromptCache
from skinflint.emulators.anthropic_request import (
    DEFAULT_MODELS,
    ModelSpec,
    ParsedRequest,
    loads_body,
    parse_request,
)
from skinflint.emulators.common import (
    REQUEST_ID,
    Clock,
    Emulator,
    EmulatorError,
    Fault,
    Tokenizer,
    WordPieceTokenizer,
    dumps,
    first_words,
    random_id,
    sse_bytes,
)
from skinflint.emulators.generation import (
    ToolCall,
    choose_tool,
    complete_text,
    reply_text,
    sample_for_schema,
)

__all__ = ["DEFAULT_VERSIONS", "AnthropicEmulator", "ModelSpec"]

# 2023-06-01 is the documented version; the pinned SDK (2.12) sends 2026-10-21.
DEFAULT_VERSIONS = frozenset({"2023-01-01", "2023-06-01", "2026-10-21"})

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
ERROR_MESSAGES: dict[str, str] = {
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out",
}
_STOP_REASONS = {"end": "end_turn", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence"}


@dataclass
class _OutBlock:
    """A reply content block: its final form, its streaming start form and its deltas."""

    final: dict[str, Any]
    start: dict[str, Any]
    deltas: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Reply:
    blocks: list[_OutBlock]
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int
    thinking_tokens: int | None = None


def _misbehave(kind: str) -> _Reply:
    """The scripted bad reply of a ``Fault(reply=...)`` (see ``common.Fault``)."""
    if kind == "empty":
        return _Reply([], "end_turn", None, 1)
    text = "I can't help with that." if kind == "refusal" else "{not json"
    block = _OutBlock(
        final={"type": "text", "text": text},
        start={"type": "text", "text": ""},
        deltas=[{"type": "text_delta", "text": text}],
    )
    return _Reply([block], "refusal" if kind == "refusal" else "end_turn", None, 6)


class AnthropicEmulator(Emulator):
    """The Messages API on a local port. See the module docstring for the rules.

    ``models``: model-name prefix -> ``ModelSpec`` (minimum cacheable tokens, max output);
    ``api_keys``: key -> organization (``None``: any non-empty key, all in ``default_org``);
    ``versions``: accepted ``anthropic-version`` values; ``lookback``: cache lookback window.
    """

    request_id_header = "request-id"
    provider = "anthropic"

    def __init__(
        self,
        *,
        models: Mapping[str, ModelSpec] | None = None,
        api_keys: Mapping[str, str] | None = None,
        default_org: str = "org-default",
        versions: frozenset[str] = DEFAULT_VERSIONS,
        lookback: int = 20,
        tokenizer: Tokenizer | None = None,
        clock: Clock | None = None,
        latency: float = 0.0,
        token_latency: float = 0.0,
    ) -> None:
        super().__init__(clock=clock, latency=latency, token_latency=token_latency)
        self.models = dict(DEFAULT_MODELS if models is None else models)
        self.api_keys = dict(api_keys) if api_keys is not None else None
        self.default_org = default_org
        self.versions = versions
        self.tokenizer: Tokenizer = tokenizer or WordPieceTokenizer()
        self.cache = PromptCache(self.clock, lookback=lookback)

    # -- plumbing ----------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._create)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)

    def error_response(self, err: EmulatorError, request_id: str) -> web.Response:
        error_type = err.error_type
        if err.status in ERROR_TYPES and error_type not in ERROR_TYPES.values():
            error_type = ERROR_TYPES[err.status]
        body = {
            "type": "error",
            "error": {"type": error_type, "message": err.message},
            "request_id": request_id,
        }
        headers = {**err.headers, self.request_id_header: request_id}
        return web.json_response(body, status=err.status, headers=headers, dumps=dumps)

    def fault_error(self, fault: Fault) -> EmulatorError:
        status = fault.status or 500
        error_type = fault.error_type or ERROR_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        message = fault.message or ERROR_MESSAGES.get(error_type, error_type)
        return EmulatorError(status, error_type, message, headers=fault.response_headers())

    def _authenticate(self, request: web.Request) -> str:
        key = request.headers.get("x-api-key", "").strip()
        auth = request.headers.get("authorization", "")
        if not key and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        if not key:
            raise EmulatorError(401, "authentication_error", "x-api-key header is required")
        if self.api_keys is None:
            org = self.default_org
        elif key in self.api_keys:
            org = self.api_keys[key]
        else:
            raise EmulatorError(401, "authentication_error", "invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if not version:
            raise EmulatorError(
                400, "invalid_request_error", "anthropic-version: header is required"
            )
        if version not in self.versions:
            raise EmulatorError(
                400, "invalid_request_error", f"anthropic-version: invalid version '{version}'"
            )
        return org

    # -- handlers ----------------------------------------------------------------------------

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        body = loads_body(await request.read())
        await self.apply_fault(request, streaming=False)
        self._authenticate(request)
        parsed = parse_request(body, models=self.models, tokenizer=self.tokenizer, counting=True)
        return web.json_response(
            {"input_tokens": parsed.prompt_tokens}, headers=self.response_headers(request)
        )

    def _plan(self, org: str, parsed: ParsedRequest, writer: str) -> CacheUsage:
        return self.cache.plan(
            org=org,
            model=parsed.model,
            blocks=parsed.blocks,
            breakpoints=parsed.breakpoints,
            min_tokens=parsed.spec.min_cache_tokens,
            writer=writer,
        )

    def create_message(self, org: str, body: Any) -> dict[str, Any]:
        """One non-streaming Messages call without HTTP (same validation, caching, usage);
        raises ``EmulatorError``. For callers inside the emulator, e.g. batch processing."""
        parsed = parse_request(body, models=self.models, tokenizer=self.tokenizer)
        writer = random_id("batchreq_")
        usage = self._plan(org, parsed, writer)
        reply = self._generate(parsed)
        self.cache.publish(writer)
        return self._message(parsed, usage, reply, random_id("msg_01"))

    async def _create(self, request: web.Request) -> web.StreamResponse:
        body = loads_body(await request.read())
        streaming = isinstance(body, dict) and body.get("stream") is True
        fault = await self.apply_fault(request, streaming=streaming)
        org = self._authenticate(request)
        parsed = parse_request(body, models=self.models, tokenizer=self.tokenizer)
        writer = request[REQUEST_ID]
        usage = self._plan(org, parsed, writer)
        try:
            await self.pause(self.latency)  # "prefill": parallel requests all miss meanwhile
            reply = self._generate(parsed)
            if fault is not None and fault.reply is not None:
                reply = _misbehave(fault.reply)
        except BaseException:
            self.cache.abandon(writer)
            raise
        message_id = random_id("msg_01")
        if parsed.stream:
            return await self._stream(request, parsed, usage, reply, message_id, fault)
        self.cache.publish(writer)
        message = self._message(parsed, usage, reply, message_id)
        return web.json_response(message, headers=self.response_headers(request), dumps=dumps)

    def _message(
        self, parsed: ParsedRequest, usage: CacheUsage, reply: _Reply, message_id: str
    ) -> dict[str, Any]:
        return {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": parsed.model,
            "content": [b.final for b in reply.blocks],
            "stop_reason": reply.stop_reason,
            "stop_sequence": reply.stop_sequence,
            "usage": self._usage(usage, reply.output_tokens, reply.thinking_tokens),
        }

    # -- generation --------------------------------------------------------------------------

    def _generate(self, parsed: ParsedRequest) -> _Reply:
        if parsed.max_tokens == 0:  # pre-warm: cache written, nothing generated
            return _Reply([], "max_tokens", None, 0)
        tok = self.tokenizer
        text, after_tool_result = parsed.last_user_text()
        blocks: list[_OutBlock] = []
        used = 0
        thinking_tokens: int | None = None
        if parsed.thinking_budget:
            thought = complete_text(
                f"Considering the request: {first_words(text, 24)}",
                tok,
                min(parsed.thinking_budget, parsed.max_tokens),
            )
            signature = random_id("sig_", 32)
            deltas = [{"type": "thinking_delta", "thinking": p} for p in thought.pieces]
            deltas.append({"type": "signature_delta", "signature": signature})
            blocks.append(
                _OutBlock(
                    final={"type": "thinking", "thinking": thought.text, "signature": signature},
                    start={"type": "thinking", "thinking": "", "signature": ""},
                    deltas=deltas,
                )
            )
            used += thought.tokens
            thinking_tokens = thought.tokens
        remaining = parsed.max_tokens - used

        tool = choose_tool(
            parsed.tool_names,
            mode=parsed.tool_mode,
            forced=parsed.forced_tool,
            last_user_text=text,
            after_tool_result=after_tool_result,
        )
        if tool is not None:
            spec = next(t for t in parsed.tools if t.get("name") == tool)
            call = ToolCall(tool, sample_for_schema(spec.get("input_schema", {}), text))
            cost = call.tokens(tok)
            if cost > remaining:  # the call does not fit: cut before the block
                return _Reply(blocks, "max_tokens", None, max(used + remaining, 1), thinking_tokens)
            tool_id = random_id("toolu_01")
            chunks = [""] + [p for p, _ in tok.pieces(call.arguments_json)]
            blocks.append(
                _OutBlock(
                    final={
                        "type": "tool_use",
                        "id": tool_id,
                        "name": tool,
                        "input": call.arguments,
                    },
                    start={"type": "tool_use", "id": tool_id, "name": tool, "input": {}},
                    deltas=[{"type": "input_json_delta", "partial_json": c} for c in chunks],
                )
            )
            return _Reply(blocks, "tool_use", None, used + cost, thinking_tokens)

        if parsed.output_schema is not None:
            full = json.dumps(sample_for_schema(parsed.output_schema, text, all_properties=True))
        else:
            full = reply_text(text)
        done = complete_text(full, tok, remaining, parsed.stop_sequences)
        if done.text:
            blocks.append(
                _OutBlock(
                    final={"type": "text", "text": done.text},
                    start={"type": "text", "text": ""},
                    deltas=[{"type": "text_delta", "text": p} for p in done.pieces],
                )
            )
        return _Reply(
            blocks,
            _STOP_REASONS[done.stop],
            done.stop_sequence,
            max(used + done.tokens, 1),
            thinking_tokens,
        )

    @staticmethod
    def _usage(
        usage: CacheUsage, output_tokens: int, thinking_tokens: int | None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": usage.ephemeral_5m_input_tokens,
                "ephemeral_1h_input_tokens": usage.ephemeral_1h_input_tokens,
            },
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }
        if thinking_tokens is not None:
            out["output_tokens_details"] = {"thinking_tokens": thinking_tokens}
        return out

    # -- streaming ---------------------------------------------------------------------------

    def _events(
        self, parsed: ParsedRequest, usage: CacheUsage, reply: _Reply, message_id: str
    ) -> list[tuple[str, dict[str, Any]]]:
        start_usage = self._usage(usage, min(reply.output_tokens, 1), None)
        events: list[tuple[str, dict[str, Any]]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": message_id,
                        "type": "message",
                        "role": "assistant",
                        "model": parsed.model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            )
        ]
        for index, block in enumerate(reply.blocks):
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": block.start},
                )
            )
            if index == 0:
                events.append(("ping", {"type": "ping"}))
            events.extend(
                ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
                for d in block.deltas
            )
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        if not reply.blocks:
            events.append(("ping", {"type": "ping"}))
        final_usage: dict[str, Any] = {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "output_tokens": reply.output_tokens,
        }
        if reply.thinking_tokens is not None:
            final_usage["output_tokens_details"] = {"thinking_tokens": reply.thinking_tokens}
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": reply.stop_reason,
                        "stop_sequence": reply.stop_sequence,
                    },
                    "usage": final_usage,
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    async def _stream(
        self,
        request: web.Request,
        parsed: ParsedRequest,
        usage: CacheUsage,
        reply: _Reply,
        message_id: str,
        fault: Fault | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                **self.response_headers(request),
            },
        )
        await response.prepare(request)
        self.cache.publish(request[REQUEST_ID])  # the response has started
        for count, (name, data) in enumerate(self._events(parsed, usage, reply, message_id)):
            if fault is not None and fault.stream_error_after == count:
                error_type = fault.error_type or "overloaded_error"
                error = {
                    "type": "error",
                    "error": {
                        "type": error_type,
                        "message": fault.message or ERROR_MESSAGES.get(error_type, error_type),
                    },
                    "request_id": request[REQUEST_ID],
                }
                await response.write(sse_bytes(dumps(error), "error"))
                break
            if fault is not None and fault.stream_cut_after == count:
                return await cut_stream(request, response, abort=fault.cut_abort)
            await response.write(sse_bytes(dumps(data), name))
            if name == "content_block_delta":
                await self.pause(self.token_latency)
        await response.write_eof()
        return response


async def cut_stream(
    request: web.Request, response: web.StreamResponse, *, abort: bool
) -> web.StreamResponse:
    """End a stream early: reset the connection (``abort``) or end the body cleanly."""
    if abort and request.transport is not None:
        response.force_close()
        request.transport.abort()
        return response
    await response.write_eof()
    return response
