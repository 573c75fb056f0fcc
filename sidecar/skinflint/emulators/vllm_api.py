"""Emulator of vLLM's OpenAI-compatible server (PROVIDERS.md section 5).

Reuses the OpenAI emulator with vLLM's differences:

* Routes: ``/v1/chat/completions``, ``/v1/models``, ``/tokenize``, ``/health`` (200, empty
  body), ``/version``, ``/metrics``.
* No auth unless started with ``api_key`` (then ``Authorization: Bearer`` must match).
  Unknown request fields are accepted (vLLM takes many extra sampling parameters).
* Errors: ``{"error": {"message", "type", "param", "code"}}`` with ``code`` = the integer
  HTTP status and ``type`` the exception name (``BadRequestError``, ``NotFoundError``...).
* One served model (``model``), its emulated tokenizer (``WordPieceTokenizer``) and a
  ChatML-style template; prompts longer than ``max_model_len`` minus the completion budget
  are rejected as vLLM does.
* Automatic prefix caching (on by default): hash-chained KV blocks of ``block_size`` (16)
  tokens, only full blocks are reused, and the last prompt token is always recomputed; LRU
  over ``num_gpu_blocks`` blocks. ``usage.prompt_tokens_details.cached_tokens`` is reported
  only when started with ``enable_prompt_tokens_details=True`` (default off).
* Streaming usage: with ``stream_options`` the final usage chunk is sent unless
  ``include_usage`` is false (vLLM's default is true); ``continuous_usage_stats`` adds usage to
  every chunk; ``enable_force_include_usage`` sends it without ``stream_options``.
* Continuous batching: at most ``max_num_seqs`` requests run at once, the rest wait. Metrics
  (``/metrics``, Prometheus text, labels ``engine`` and ``model_name``):
  ``vllm:num_requests_running``, ``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc``,
  ``vllm:prefix_cache_queries`` / ``vllm:prefix_cache_hits`` (token counters),
  ``vllm:prompt_tokens``, ``vllm:generation_tokens``, ``vllm:request_success{finished_reason}``,
  ``vllm:num_preemptions``, ``vllm:e2e_request_latency_seconds`` (histogram).
  Saturation knobs: ``simulate_waiting`` (extra queued requests reported) and
  ``simulate_kv_usage`` (a fixed KV usage fraction).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from skinflint.emulators.common import (
    Clock,
    EmulatorError,
    Fault,
    Tokenizer,
    WordPieceTokenizer,
    dumps,
)
from skinflint.emulators.openai_api import ChoiceOut, OpenAIEmulator
from skinflint.emulators.openai_request import ChatRequest, ModelInfo, Segment, content_text

__all__ = ["BlockPrefixCache", "VLLMEmulator"]

VLLM_VERSION = "0.11.0"
ERROR_TYPES = {
    400: "BadRequestError",
    401: "Unauthorized",
    404: "NotFoundError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}
_LATENCY_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
)


class BlockPrefixCache:
    """vLLM-style automatic prefix caching over token ids.

    Block ``i`` is identified by the hash of (block ``i-1``'s hash, its ``block_size`` token
    ids); a request reuses the leading run of cached full blocks, never covering its last
    token. Blocks are kept in LRU order up to ``capacity_blocks``.
    """

    def __init__(self, *, block_size: int = 16, capacity_blocks: int = 4096) -> None:
        self.block_size = block_size
        self.capacity_blocks = capacity_blocks
        self._blocks: OrderedDict[bytes, None] = OrderedDict()

    def _hashes(self, ids: list[int]) -> list[bytes]:
        out: list[bytes] = []
        parent = b""
        for start in range(0, len(ids) - len(ids) % self.block_size, self.block_size):
            block = ids[start : start + self.block_size]
            parent = hashlib.sha256(parent + json.dumps(block).encode()).digest()
            out.append(parent)
        return out

    def lookup(self, ids: list[int]) -> int:
        """Tokens served from cache for a prompt with these ids."""
        usable = self._hashes(ids[: max(len(ids) - 1, 0)])
        hit = 0
        for h in usable:
            if h not in self._blocks:
                break
            self._blocks.move_to_end(h)
            hit += 1
        return hit * self.block_size

    def insert(self, ids: list[int]) -> None:
        for h in self._hashes(ids):
            self._blocks[h] = None
            self._blocks.move_to_end(h)
        while len(self._blocks) > self.capacity_blocks:
            self._blocks.popitem(last=False)

    def clear(self) -> None:
        self._blocks.clear()


class VLLMEmulator(OpenAIEmulator):
    """A vLLM server for one model. See the module docstring for the rules and knobs."""

    request_id_header = "x-request-id"
    provider = "vllm"
    integer_error_codes = True
    openai_rules = False

    def __init__(
        self,
        *,
        model: str = "emulated/llama-3-8b-instruct",
        api_key: str | None = None,
        max_model_len: int = 8192,
        block_size: int = 16,
        num_gpu_blocks: int = 4096,
        max_num_seqs: int = 256,
        enable_prefix_caching: bool = True,
        enable_prompt_tokens_details: bool = False,
        enable_force_include_usage: bool = False,
        clock: Clock | None = None,
        latency: float = 0.0,
        token_latency: float = 0.0,
    ) -> None:
        super().__init__(
            models={
                model: ModelInfo(caching=enable_prefix_caching, max_output_tokens=max_model_len)
            },
            overflow_rpm=None,
            clock=clock,
            latency=latency,
            token_latency=token_latency,
        )
        self.model = model
        self.api_key = api_key
        self.max_model_len = max_model_len
        self.block_size = block_size
        self.num_gpu_blocks = num_gpu_blocks
        self.max_num_seqs = max_num_seqs
        self.enable_prefix_caching = enable_prefix_caching
        self.enable_prompt_tokens_details = enable_prompt_tokens_details
        self.enable_force_include_usage = enable_force_include_usage
        self.simulate_waiting = 0
        self.simulate_kv_usage: float | None = None
        self.blocks = BlockPrefixCache(block_size=block_size, capacity_blocks=num_gpu_blocks)
        self.tokenizer = WordPieceTokenizer()
        self._slots = asyncio.Semaphore(max_num_seqs)
        self.running = 0
        self.waiting = 0
        self._running_tokens: dict[int, int] = {}
        self.counters: dict[str, float] = {
            "prefix_cache_queries": 0,
            "prefix_cache_hits": 0,
            "prompt_tokens": 0,
            "generation_tokens": 0,
            "num_preemptions": 0,
        }
        self.finished: dict[str, int] = {"stop": 0, "length": 0, "abort": 0}
        self._latencies: list[float] = []

    # -- routes ------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        super().add_routes(app)
        app.router.add_post("/tokenize", self._tokenize)
        app.router.add_get("/health", self._health)
        app.router.add_get("/version", self._version)
        app.router.add_get("/metrics", self._metrics)

    def served(self, model: str) -> ModelInfo | None:
        if model not in self.models:
            raise EmulatorError(404, "NotFoundError", f"The model `{model}` does not exist.")
        return self.models[model]

    def model_ids(self) -> list[str]:
        return [self.model]

    def tokenizer_for(self, model: str) -> Tokenizer:
        return self.tokenizer

    def frame(self, role: str, tokenizer: Tokenizer, named: bool) -> Segment:
        text = "<|im_start|>assistant\n" if role == "assistant-priming" else f"<|im_start|>{role}\n"
        return Segment(text, tokenizer.count(text))

    def authenticate(self, request: web.Request) -> str:
        if self.api_key is None:
            return "local"
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            raise EmulatorError(401, "Unauthorized", "Unauthorized")
        return "local"

    def check_request(self, req: ChatRequest) -> None:
        prompt = req.prompt_tokens
        completion = req.limit or 0
        if prompt + completion > self.max_model_len:
            raise EmulatorError(
                400,
                "BadRequestError",
                f"This model's maximum context length is {self.max_model_len} tokens. However, "
                f"you requested {prompt + completion} tokens ({prompt} in the messages, "
                f"{completion} in the completion). Please reduce the length of the messages or "
                "completion.",
            )

    def include_usage(self, req: ChatRequest) -> bool:
        if req.stream_options is None:
            return self.enable_force_include_usage
        return bool(req.stream_options.get("include_usage", True))

    def reasoning_tokens(self, req: ChatRequest) -> int:
        return 0

    def _ids(self, req: ChatRequest) -> list[int]:
        return self.tokenizer.encode("".join(s.text for s in req.segments))

    def lookup_cache(self, org: str, req: ChatRequest) -> tuple[int | None, Any]:
        ids = self._ids(req)
        hit = self.blocks.lookup(ids) if self.enable_prefix_caching else 0
        self.counters["prefix_cache_queries"] += len(ids)
        self.counters["prefix_cache_hits"] += hit
        return (hit if self.enable_prompt_tokens_details else None), ids

    def store_cache(self, key: Any, req: ChatRequest) -> None:
        if self.enable_prefix_caching and key is not None:
            self.blocks.insert(key)

    @asynccontextmanager
    async def scheduled(self, req: ChatRequest) -> AsyncIterator[None]:
        started = time.monotonic()
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        slot = id(req)
        self._running_tokens[slot] = req.prompt_tokens + (req.limit or 0)
        try:
            yield
        except BaseException:
            self.finished["abort"] += 1
            raise
        finally:
            self.running -= 1
            del self._running_tokens[slot]
            self._slots.release()
            self._latencies.append(time.monotonic() - started)

    def finish(self, req: ChatRequest, choices: list[ChoiceOut], cached: int | None) -> None:
        self.counters["prompt_tokens"] += req.prompt_tokens
        self.counters["generation_tokens"] += sum(c.completion_tokens for c in choices)
        for c in choices:
            reason = c.finish_reason if c.finish_reason in ("stop", "length") else "stop"
            self.finished[reason] += 1

    def usage(
        self, req: ChatRequest, choices: list[ChoiceOut], cached: int | None
    ) -> dict[str, Any]:
        completion = sum(c.completion_tokens for c in choices)
        usage: dict[str, Any] = {
            "prompt_tokens": req.prompt_tokens,
            "total_tokens": req.prompt_tokens + completion,
            "completion_tokens": completion,
            "prompt_tokens_details": None,
        }
        if cached is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        return usage

    def fault_error(self, fault: Fault) -> EmulatorError:
        status = fault.status or 500
        return EmulatorError(
            status,
            fault.error_type or ERROR_TYPES.get(status, "InternalServerError"),
            fault.message or ERROR_TYPES.get(status, "error"),
            headers=fault.response_headers(),
        )

    def error_response(self, err: EmulatorError, request_id: str) -> web.Response:
        error_type = err.error_type
        if not error_type[:1].isupper():  # a generic type from shared code: use vLLM's name
            error_type = ERROR_TYPES.get(err.status, "BadRequestError")
        body = {
            "error": {
                "message": err.message,
                "type": error_type,
                "param": err.param,
                "code": err.status,
            }
        }
        headers = {**err.headers, self.request_id_header: request_id}
        return web.json_response(body, status=err.status, headers=headers, dumps=dumps)

    # -- extra endpoints ---------------------------------------------------------------------

    async def _tokenize(self, request: web.Request) -> web.StreamResponse:
        self.authenticate(request)
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise EmulatorError(400, "BadRequestError", "Invalid JSON body") from None
        if not isinstance(body, dict):
            raise EmulatorError(400, "BadRequestError", "Request body must be an object")
        if "model" in body and body["model"] is not None and body["model"] != self.model:
            raise EmulatorError(
                404, "NotFoundError", f"The model `{body['model']}` does not exist."
            )
        if isinstance(body.get("prompt"), str):
            text = body["prompt"]
        elif isinstance(body.get("messages"), list):
            parts = []
            for m in body["messages"]:
                if isinstance(m, dict):
                    parts.append(f"<|im_start|>{m.get('role')}\n{content_text(m.get('content'))}")
            if body.get("add_generation_prompt", True):
                parts.append("<|im_start|>assistant\n")
            text = "".join(parts)
        else:
            raise EmulatorError(400, "BadRequestError", "Either `prompt` or `messages` is required")
        tokens = self.tokenizer.encode(text)
        return web.json_response(
            {
                "count": len(tokens),
                "max_model_len": self.max_model_len,
                "tokens": tokens,
                "token_strs": self.tokenizer.split(text) if body.get("return_token_strs") else None,
            },
            headers=self.response_headers(request),
        )

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=200, headers=self.response_headers(request))

    async def _version(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"version": VLLM_VERSION}, headers=self.response_headers(request))

    def kv_cache_usage(self) -> float:
        if self.simulate_kv_usage is not None:
            return self.simulate_kv_usage
        used = sum(math.ceil(t / self.block_size) for t in self._running_tokens.values())
        return min(1.0, used / self.num_gpu_blocks)

    def metrics_text(self) -> str:
        labels = f'engine="0",model_name="{self.model}"'
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{sample} {float(value)!r}" for sample, value in samples)

        metric(
            "vllm:num_requests_running",
            "gauge",
            "Number of requests in model execution batches.",
            [(f"vllm:num_requests_running{{{labels}}}", self.running)],
        )
        metric(
            "vllm:num_requests_waiting",
            "gauge",
            "Number of requests waiting to be processed.",
            [(f"vllm:num_requests_waiting{{{labels}}}", self.waiting + self.simulate_waiting)],
        )
        metric(
            "vllm:kv_cache_usage_perc",
            "gauge",
            "KV-cache usage. 1 means 100 percent usage.",
            [(f"vllm:kv_cache_usage_perc{{{labels}}}", self.kv_cache_usage())],
        )
        helps = {
            "prefix_cache_queries": "Prefix cache queries, in terms of number of queried tokens.",
            "prefix_cache_hits": "Prefix cache hits, in terms of number of cached tokens.",
            "prompt_tokens": "Number of prefill tokens processed.",
            "generation_tokens": "Number of generation tokens processed.",
            "num_preemptions": "Cumulative number of preemption from the engine.",
        }
        for name, help_text in helps.items():
            metric(
                f"vllm:{name}",
                "counter",
                help_text,
                [(f"vllm:{name}_total{{{labels}}}", self.counters[name])],
            )
        metric(
            "vllm:request_success",
            "counter",
            "Count of successfully processed requests.",
            [
                (f'vllm:request_success_total{{{labels},finished_reason="{reason}"}}', count)
                for reason, count in self.finished.items()
            ],
        )
        buckets = [
            (
                f'vllm:e2e_request_latency_seconds_bucket{{{labels},le="{le}"}}',
                sum(1 for x in self._latencies if x <= le),
            )
            for le in _LATENCY_BUCKETS
        ]
        buckets.append(
            (f'vllm:e2e_request_latency_seconds_bucket{{{labels},le="+Inf"}}', len(self._latencies))
        )
        buckets.append((f"vllm:e2e_request_latency_seconds_sum{{{labels}}}", sum(self._latencies)))
        buckets.append(
            (f"vllm:e2e_request_latency_seconds_count{{{labels}}}", len(self._latencies))
        )
        metric(
            "vllm:e2e_request_latency_seconds",
            "histogram",
            "Histogram of e2e request latency in seconds.",
            buckets,
        )
        return "\n".join(lines) + "\n"

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=self.metrics_text().encode(),
            headers={
                **self.response_headers(request),
                "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
            },
        )
