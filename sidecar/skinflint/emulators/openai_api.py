"""Emulator of the OpenAI Chat Completions API (PROVIDERS.md section 3).

Routes: ``POST /v1/chat/completions`` (JSON or SSE stream), ``GET /v1/models``.

* Auth: ``Authorization: Bearer <key>`` required (``401``, code ``invalid_api_key`` for an
  unknown key when ``api_keys`` is given; each key maps to an organization).
* Every response carries ``x-request-id``; errors use ``{"error": {"message", "type",
  "param", "code"}}`` (3.6). Scripted faults: 429 (``rate_limit_exceeded``, with
  ``retry-after``), 500 ``server_error``, 503 (overloaded), in-stream errors.
* Validation: ``openai_request``. Token counts: skinflint's exact o200k/cl100k tokenizer plus
  the documented per-message framing.
* Usage (3.3): ``total_tokens = prompt_tokens + completion_tokens``;
  ``prompt_tokens_details.cached_tokens`` is a subset of ``prompt_tokens`` (``openai_cache``);
  ``completion_tokens_details.reasoning_tokens`` is 0 for non-reasoning models and, for
  o-series/gpt-5, a fixed amount per ``reasoning_effort`` (``REASONING_TOKENS``; default
  ``medium``) that is part of ``completion_tokens`` and spends ``max_completion_tokens`` first
  (a budget used up by reasoning gives empty content and ``finish_reason: "length"``).
* Cache routing (3.4): requests are routed by (organization, model, ``prompt_cache_key``,
  hash of the prompt head). Above ``overflow_rpm`` (15) requests per minute for one route,
  extra requests spill over to ``overflow_machines`` other machines with their own caches, so
  hit rates drop. ``overflow_rpm=None`` turns this off.
* ``create_completion`` runs one call without HTTP, for batch processing (section 4) to reuse.
* Streaming (3.5): ``chat.completion.chunk`` objects; the first delta carries the role, the
  last chunk of each choice has an empty delta and the ``finish_reason``; with
  ``stream_options.include_usage`` every chunk has ``usage: null`` and one more chunk with
  ``choices: []`` carries the usage; ``obfuscation`` padding unless
  ``include_obfuscation: false``; then ``data: [DONE]``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from skinflint.emulators.anthropic_api import cut_stream
from skinflint.emulators.common import (
    Clock,
    Emulator,
    EmulatorError,
    Fault,
    NativeTokenizer,
    Tokenizer,
    dumps,
    random_id,
    sse_bytes,
)
from skinflint.emulators.generation import (
    ToolCall,
    choose_tool,
    complete_text,
    json_reply,
    reply_text,
    sample_for_schema,
)
from skinflint.emulators.openai_cache import SegmentPrefixCache
from skinflint.emulators.openai_request import (
    DEFAULT_MODELS,
    ChatRequest,
    ModelInfo,
    Segment,
    model_info,
    openai_frame,
    parse_chat,
)

__all__ = ["REASONING_TOKENS", "OpenAIEmulator"]

REASONING_TOKENS = {
    "none": 0,
    "minimal": 16,
    "low": 64,
    "medium": 192,
    "high": 512,
    "xhigh": 1024,
    "max": 2048,
}
FAULT_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request"),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided"),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden"),
    404: ("invalid_request_error", None, "Not found"),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests"),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later"),
}


@dataclass
class ChoiceOut:
    """One generated choice: final message fields, streaming deltas and token counts."""

    index: int
    content: str | None
    tool_call: dict[str, Any] | None
    finish_reason: str
    completion_tokens: int
    reasoning_tokens: int
    pieces: list[str] = field(default_factory=list)


class OpenAIEmulator(Emulator):
    """Chat Completions on a local port. See the module docstring for the rules.

    ``models``: model-name prefix -> ``ModelInfo``; ``api_keys``: key -> organization
    (``None``: any non-empty key, all in ``default_org``); ``default_retention``: cache
    retention when a request does not set ``prompt_cache_retention``.
    """

    request_id_header = "x-request-id"
    provider = "openai"
    integer_error_codes = False
    openai_rules = True

    def __init__(
        self,
        *,
        models: Mapping[str, ModelInfo] | None = None,
        api_keys: Mapping[str, str] | None = None,
        default_org: str = "org-default",
        default_retention: str = "in_memory",
        overflow_rpm: int | None = 15,
        overflow_machines: int = 3,
        clock: Clock | None = None,
        latency: float = 0.0,
        token_latency: float = 0.0,
    ) -> None:
        super().__init__(clock=clock, latency=latency, token_latency=token_latency)
        self.models = dict(DEFAULT_MODELS if models is None else models)
        self.api_keys = dict(api_keys) if api_keys is not None else None
        self.default_org = default_org
        self.default_retention = default_retention
        self.overflow_rpm = overflow_rpm
        self.overflow_machines = overflow_machines
        self.cache = SegmentPrefixCache(self.clock)
        self._tokenizers: dict[str, Tokenizer] = {}
        self._routes: dict[tuple[Any, ...], deque[float]] = {}

    # -- flavour hooks (overridden by the vLLM emulator) -------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._list_models)

    def served(self, model: str) -> ModelInfo | None:
        return model_info(model, self.models)

    def model_ids(self) -> list[str]:
        return sorted(self.models)

    def tokenizer_for(self, model: str) -> Tokenizer:
        if model not in self._tokenizers:
            self._tokenizers[model] = NativeTokenizer(model)
        return self._tokenizers[model]

    def frame(self, role: str, tokenizer: Tokenizer, named: bool) -> Segment:
        return openai_frame(role, tokenizer, named)

    def authenticate(self, request: web.Request) -> str:
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not key:
            raise EmulatorError(
                401,
                "invalid_request_error",
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if self.api_keys is None:
            return self.default_org
        if key not in self.api_keys:
            raise EmulatorError(
                401,
                "invalid_request_error",
                "Incorrect API key provided. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        return self.api_keys[key]

    def check_request(self, req: ChatRequest) -> None:
        """Flavour-specific checks after validation (vLLM: context length)."""

    def include_usage(self, req: ChatRequest) -> bool:
        return bool((req.stream_options or {}).get("include_usage"))

    def reasoning_tokens(self, req: ChatRequest) -> int:
        if not req.info.reasoning:
            return 0
        return REASONING_TOKENS.get(req.reasoning_effort or "medium", 192)

    @asynccontextmanager
    async def scheduled(self, req: ChatRequest) -> AsyncIterator[None]:
        """Where the request runs (vLLM: a bounded running set with a waiting queue)."""
        yield

    def lookup_cache(self, org: str, req: ChatRequest) -> tuple[int | None, Any]:
        """Cached prompt tokens (``None``: not reported) and the cache key to store under."""
        if not req.info.caching:
            return 0, None
        key = self._route_key(org, req)
        return self.cache.lookup(key, req.segments, self.tokenizer_for(req.model)), key

    def store_cache(self, key: Any, req: ChatRequest) -> None:
        if key is not None:
            self.cache.store(key, req.segments, req.retention or self.default_retention)

    def finish(self, req: ChatRequest, choices: list[ChoiceOut], cached: int | None) -> None:
        """Hook after a successful response (vLLM: metrics)."""

    # -- routing -----------------------------------------------------------------------------

    def _route_key(self, org: str, req: ChatRequest) -> tuple[Any, ...]:
        head = "".join(s.text for s in req.segments)[:1024]  # ~ the first 256 tokens
        route = (org, req.model, req.prompt_cache_key, hashlib.sha256(head.encode()).hexdigest())
        if self.overflow_rpm is None:
            return (*route, 0)
        window = self._routes.setdefault(route, deque())
        now = self.clock.now()
        while window and now - window[0] >= 60.0:
            window.popleft()
        window.append(now)
        n = len(window)
        if n <= self.overflow_rpm:
            return (*route, 0)
        return (*route, 1 + (n - self.overflow_rpm - 1) % self.overflow_machines)

    # -- errors ------------------------------------------------------------------------------

    def error_response(self, err: EmulatorError, request_id: str) -> web.Response:
        code: str | int | None = err.code
        if self.integer_error_codes:
            code = err.status
        error_type = err.error_type
        if error_type in ("authentication_error", "not_found_error", "api_error"):
            error_type = "invalid_request_error" if err.status < 500 else "server_error"
        body = {
            "error": {"message": err.message, "type": error_type, "param": err.param, "code": code}
        }
        headers = {**err.headers, self.request_id_header: request_id}
        return web.json_response(body, status=err.status, headers=headers, dumps=dumps)

    def fault_error(self, fault: Fault) -> EmulatorError:
        status = fault.status or 500
        default_type, default_code, default_message = FAULT_DEFAULTS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None, "Error")
        )
        return EmulatorError(
            status,
            fault.error_type or default_type,
            fault.message or default_message,
            code=fault.code if fault.code is not None else default_code,
            headers=fault.response_headers(),
        )

    # -- handlers ----------------------------------------------------------------------------

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        self.authenticate(request)
        data = [
            {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "system"}
            for m in self.model_ids()
        ]
        return web.json_response(
            {"object": "list", "data": data}, headers=self.response_headers(request)
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            raise EmulatorError(
                400,
                "invalid_request_error",
                "We could not parse the JSON body of your request.",
            ) from None
        streaming = isinstance(body, dict) and body.get("stream") is True
        fault = await self.apply_fault(request, streaming=streaming)
        org = self.authenticate(request)
        req = self._parse(body)
        async with self.scheduled(req):
            cached, cache_key = self.lookup_cache(org, req)
            await self.pause(self.latency)
            choices = [self._generate(req, i) for i in range(req.n)]
            self.store_cache(cache_key, req)  # the response starts now: the prefix is readable
            completion_id = "chatcmpl-" + random_id("", 29)
            if req.stream:
                response = await self._stream(request, req, choices, cached, completion_id, fault)
            else:
                response = web.json_response(
                    self._completion(req, choices, cached, completion_id),
                    headers=self._headers(request),
                    dumps=dumps,
                )
            self.finish(req, choices, cached)
            return response

    def _parse(self, body: Any) -> ChatRequest:
        req = parse_chat(
            body,
            served=self.served,
            tokenizer_for=self.tokenizer_for,
            frame=self.frame,
            openai_rules=self.openai_rules,
        )
        self.check_request(req)
        return req

    def create_completion(self, org: str, body: Any) -> dict[str, Any]:
        """One non-streaming chat completion without HTTP (same validation, caching, usage);
        raises ``EmulatorError``. For callers inside the emulator, e.g. batch processing."""
        req = self._parse(body)
        cached, cache_key = self.lookup_cache(org, req)
        choices = [self._generate(req, i) for i in range(req.n)]
        self.store_cache(cache_key, req)
        return self._completion(req, choices, cached, "chatcmpl-" + random_id("", 29))

    def _headers(self, request: web.Request) -> dict[str, str]:
        return {
            **self.response_headers(request),
            "openai-processing-ms": "1",
            "openai-version": "2020-10-01",
        }

    # -- generation --------------------------------------------------------------------------

    def _generate(self, req: ChatRequest, index: int) -> ChoiceOut:
        tok = self.tokenizer_for(req.model)
        reasoning = self.reasoning_tokens(req)
        if req.limit is not None and reasoning >= req.limit:  # reasoning used the whole budget
            return ChoiceOut(index, "", None, "length", req.limit, req.limit)
        remaining = None if req.limit is None else req.limit - reasoning
        text, after_tool = req.last_user_text()
        tool = choose_tool(
            req.tool_names,
            mode=req.tool_mode,
            forced=req.forced_tool,
            last_user_text=text,
            after_tool_result=after_tool,
        )
        if tool is not None:
            call = ToolCall(tool, sample_for_schema(req.tool_schema(tool), text))
            cost = call.tokens(tok)
            if remaining is not None and cost > remaining:
                return ChoiceOut(index, None, None, "length", req.limit or 0, reasoning)
            tool_call = {
                "id": random_id("call_"),
                "type": "function",
                "function": {"name": tool, "arguments": call.arguments_json},
            }
            pieces = [p for p, _ in tok.pieces(call.arguments_json)]
            return ChoiceOut(
                index, None, tool_call, "tool_calls", reasoning + cost, reasoning, pieces
            )
        if req.response_kind == "json_object":
            full = json_reply(text)
        elif req.response_kind == "json_schema":
            full = json.dumps(sample_for_schema(req.schema, text, all_properties=True))
        else:
            full = reply_text(text)
        done = complete_text(full, tok, remaining, req.stop)
        finish = "length" if done.stop == "max_tokens" else "stop"
        return ChoiceOut(
            index,
            done.text,
            None,
            finish,
            reasoning + done.tokens,
            reasoning,
            list(done.pieces),
        )

    def usage(
        self, req: ChatRequest, choices: list[ChoiceOut], cached: int | None
    ) -> dict[str, Any]:
        completion = sum(c.completion_tokens for c in choices)
        prompt = req.prompt_tokens
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached or 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": sum(c.reasoning_tokens for c in choices),
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        return usage

    def _completion(
        self, req: ChatRequest, choices: list[ChoiceOut], cached: int | None, completion_id: str
    ) -> dict[str, Any]:
        out_choices = []
        for c in choices:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": c.content,
                "refusal": None,
                "annotations": [],
            }
            if c.tool_call is not None:
                message["tool_calls"] = [c.tool_call]
            out_choices.append(
                {
                    "index": c.index,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": c.finish_reason,
                }
            )
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": out_choices,
            "usage": self.usage(req, choices, cached),
            "service_tier": "default",
            "system_fingerprint": "fp_emulator",
        }

    # -- streaming ---------------------------------------------------------------------------

    def _chunks(
        self, req: ChatRequest, choices: list[ChoiceOut], cached: int | None, completion_id: str
    ) -> list[dict[str, Any]]:
        include_usage = self.include_usage(req)
        obfuscate = self.openai_rules and (req.stream_options or {}).get(
            "include_obfuscation", True
        )
        created = int(time.time())

        def chunk(choice_list: list[dict[str, Any]]) -> dict[str, Any]:
            out: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": req.model,
                "service_tier": "default",
                "system_fingerprint": "fp_emulator",
                "choices": choice_list,
            }
            if include_usage:
                out["usage"] = None
            if obfuscate and choice_list:
                out["obfuscation"] = secrets.token_urlsafe(6)
            return out

        def delta(c: ChoiceOut, d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return chunk(
                [{"index": c.index, "delta": d, "logprobs": None, "finish_reason": finish}]
            )

        chunks: list[dict[str, Any]] = []
        for c in choices:
            if c.tool_call is not None:
                head = {
                    **c.tool_call,
                    "index": 0,
                    "function": {"name": c.tool_call["function"]["name"], "arguments": ""},
                }
                chunks.append(
                    delta(c, {"role": "assistant", "content": None, "tool_calls": [head]})
                )
                chunks.extend(
                    delta(c, {"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
                    for p in c.pieces
                )
            else:
                chunks.append(delta(c, {"role": "assistant", "content": "", "refusal": None}))
                chunks.extend(delta(c, {"content": p}) for p in c.pieces)
            chunks.append(delta(c, {}, c.finish_reason))
        if include_usage:
            final = chunk([])
            final["usage"] = self.usage(req, choices, cached)
            chunks.append(final)
        return chunks

    async def _stream(
        self,
        request: web.Request,
        req: ChatRequest,
        choices: list[ChoiceOut],
        cached: int | None,
        completion_id: str,
        fault: Fault | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                **self._headers(request),
            },
        )
        await response.prepare(request)
        for count, data in enumerate(self._chunks(req, choices, cached, completion_id)):
            if fault is not None and fault.stream_error_after == count:
                err = self.fault_error(
                    Fault(
                        status=500,
                        error_type=fault.error_type,
                        message=fault.message,
                        code=fault.code,
                    )
                )
                code: str | int | None = 500 if self.integer_error_codes else err.code
                error = {
                    "error": {
                        "message": err.message,
                        "type": err.error_type,
                        "param": None,
                        "code": code,
                    }
                }
                await response.write(sse_bytes(dumps(error)))
                await response.write_eof()
                return response
            if fault is not None and fault.stream_cut_after == count:
                return await cut_stream(request, response, abort=fault.cut_abort)
            await response.write(sse_bytes(dumps(data)))
            await self.pause(self.token_latency)
        await response.write(sse_bytes("[DONE]"))
        await response.write_eof()
        return response
