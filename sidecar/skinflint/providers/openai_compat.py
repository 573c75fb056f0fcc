"""OpenAI Chat Completions provider, shared by OpenAI, vLLM and any OpenAI-compatible server.

One adapter on the official ``openai`` SDK (as tensorzero's vLLM provider reuses its OpenAI
helpers); the flavours differ only in a few flags (``_Flavour``): which ``max_tokens`` field,
whether ``prompt_cache_key``/``reasoning_effort``/``top_k`` are sent, which usage normalizer,
and whether a key is needed.

Translation decisions (``Call`` -> Chat Completions):

* All system blocks become **one** ``system`` message (texts joined by a blank line). Not
  ``developer``: OpenAI's reasoning models treat ``system`` as ``developer``, and every
  OpenAI-compatible server (vLLM chat templates, Gemini, OpenRouter) understands ``system``,
  while several reject ``developer``.
* User turns: text and ``image_url`` parts (inline bytes as ``data:`` URLs). Tool results in a
  user turn become ``role: tool`` messages, placed first (they must directly follow the
  assistant's ``tool_calls``). Assistant turns: text joined into ``content``, tool uses as
  ``tool_calls`` (arguments serialized as JSON text).
* ``tool_choice``: auto -> ``"auto"``, any -> ``"required"``, none -> ``"none"``, a named tool
  -> ``{"type": "function", "function": {"name": ...}}``.
* ``response_format``: ``json_object``, or ``json_schema`` with name (default ``"response"``),
  ``strict`` and schema.
* ``max_completion_tokens`` for OpenAI (``max_tokens`` is rejected by reasoning models);
  ``max_tokens`` for vLLM and other compatible servers, many of which only know that one.
* Attribution stays local: neither ``user`` nor ``safety_identifier`` is sent. OpenAI gets
  ``prompt_cache_key`` from the cache plan (routing hint for its prefix cache).
* Not sent (no equivalent): ``thinking_budget_tokens``; ``top_k`` except to vLLM.
* ``provider_params`` go through ``extra_body`` and win over everything above.

OpenAI reports ``finish_reason: "stop"`` both for a natural end and a stop sequence, so a stop
sequence reads as ``END_TURN`` here; vLLM's extra ``stop_reason`` field (the matched string)
turns it into ``STOP_SEQUENCE``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai

from skinflint.accounting.usage import Usage, from_openai, from_vllm
from skinflint.call import (
    Call,
    ImagePart,
    Message,
    ResponseFormatType,
    Role,
    TextPart,
    ToolChoiceMode,
    ToolResultPart,
    ToolUsePart,
    thaw_json,
)
from skinflint.providers import _common
from skinflint.providers.base import (
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

#: Sent as the bearer when an endpoint takes no key: the SDK insists on one, and this is the
#: placeholder vLLM's own docs use. Never the real ``OPENAI_API_KEY`` (which the SDK would
#: otherwise pick up from the environment and send to a third-party server).
NO_KEY = "EMPTY"

_FINISH: dict[str, StopReason] = {
    "stop": StopReason.END_TURN,
    "length": StopReason.MAX_TOKENS,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
    "content_filter": StopReason.CONTENT_FILTER,
}
_TOOL_CHOICE: dict[ToolChoiceMode, str] = {
    ToolChoiceMode.AUTO: "auto",
    ToolChoiceMode.ANY: "required",
    ToolChoiceMode.NONE: "none",
}


@dataclass(frozen=True, slots=True)
class _Flavour:
    """What differs between OpenAI itself, vLLM and other compatible servers."""

    max_tokens_field: str
    send_cache_key: bool
    send_top_k: bool
    usage: Callable[..., Usage]
    vllm_stop_reason: bool


def _openai_usage(usage: Any, *, provider: str) -> Usage:
    return from_openai(usage, provider=provider)


def _vllm_usage(usage: Any, *, provider: str) -> Usage:
    return from_vllm(usage)


FLAVOURS: dict[str, _Flavour] = {
    "openai": _Flavour("max_completion_tokens", True, False, _openai_usage, False),
    "openai_compatible": _Flavour("max_tokens", False, False, _openai_usage, False),
    "vllm": _Flavour("max_tokens", False, True, _vllm_usage, True),
}


# --- request translation ------------------------------------------------------------------------


def build_request(request: ProviderRequest, kind: str) -> dict[str, Any]:
    """The keyword arguments of ``chat.completions.create`` (without ``stream``)."""
    flavour = FLAVOURS[kind]
    call = request.call
    params = call.params
    body: dict[str, Any] = {
        "model": request.model,
        "messages": _messages(call),
        flavour.max_tokens_field: request.max_tokens,
    }
    if call.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": thaw_json(tool.input_schema),
                },
            }
            for tool in call.tools
        ]
    if call.tool_choice is not None:
        mode = call.tool_choice.mode
        if mode is ToolChoiceMode.TOOL:
            body["tool_choice"] = {"type": "function", "function": {"name": call.tool_choice.name}}
        else:
            body["tool_choice"] = _TOOL_CHOICE[mode]
    fmt = params.response_format
    if fmt is not None:
        if fmt.type is ResponseFormatType.JSON_OBJECT:
            body["response_format"] = {"type": "json_object"}
        else:
            schema: dict[str, Any] = {"name": fmt.name or "response", "strict": fmt.strict}
            if fmt.schema is not None:
                schema["schema"] = thaw_json(fmt.schema)
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
    for name, value in (
        ("temperature", params.temperature),
        ("top_p", params.top_p),
        ("seed", params.seed),
        ("presence_penalty", params.presence_penalty),
        ("frequency_penalty", params.frequency_penalty),
        ("reasoning_effort", params.reasoning_effort),
    ):
        if value is not None:
            body[name] = value
    if params.stop_sequences:
        body["stop"] = list(params.stop_sequences)
    if flavour.send_cache_key and request.cache_plan.openai_cache_key:
        body["prompt_cache_key"] = request.cache_plan.openai_cache_key
    extra: dict[str, Any] = {}
    if flavour.send_top_k and params.top_k is not None:
        extra["top_k"] = params.top_k
    if params.provider_params is not None:
        extra.update(thaw_json(params.provider_params))
    if extra:
        body["extra_body"] = extra
    return body


def _messages(call: Call) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if call.system:
        out.append({"role": "system", "content": "\n\n".join(b.text for b in call.system)})
    for message in call.messages:
        if message.role is Role.ASSISTANT:
            out.append(_assistant(message))
        else:
            out.extend(_user(message))
    return out


def _assistant(message: Message) -> dict[str, Any]:
    texts = [p.text for p in message.parts if isinstance(p, TextPart)]
    calls = [
        {
            "id": p.id,
            "type": "function",
            "function": {"name": p.name, "arguments": json.dumps(thaw_json(p.input))},
        }
        for p in message.parts
        if isinstance(p, ToolUsePart)
    ]
    turn: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        turn["tool_calls"] = calls
    return turn


def _user(message: Message) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = [
        {"role": "tool", "tool_call_id": p.tool_use_id, "content": p.content}
        for p in message.parts
        if isinstance(p, ToolResultPart)
    ]
    content: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            url = (
                f"data:{part.media_type};base64,{_common.b64(part.data)}"
                if part.data is not None
                else part.url
            )
            content.append({"type": "image_url", "image_url": {"url": url}})
    if content:
        turns.append({"role": "user", "content": content})
    return turns


# --- response translation -----------------------------------------------------------------------


def finish_reason(value: str | None, vllm_stop: object = None) -> StopReason:
    if value == "stop" and isinstance(vllm_stop, str):
        return StopReason.STOP_SEQUENCE
    return _FINISH.get(value or "stop", StopReason.END_TURN)


def _tool_input(arguments: str | None, provider: str, model: str) -> dict[str, Any]:
    try:
        parsed = json.loads(arguments) if arguments else {}
    except json.JSONDecodeError:
        raise ProviderError(
            provider, model, FailureKind.OTHER, "tool call arguments are not valid JSON"
        ) from None
    if not isinstance(parsed, dict):
        raise ProviderError(provider, model, FailureKind.OTHER, "tool call arguments not an object")
    return parsed


def _get(obj: Any, name: str) -> Any:
    """A field of a JSON object; ``None`` when absent or when ``obj`` is not an object."""
    return obj.get(name) if isinstance(obj, dict) else None


# --- errors -------------------------------------------------------------------------------------


def openai_error(
    exc: BaseException,
    provider: str,
    model: str,
    key: SecretKey | None,
    *,
    streaming: bool = False,
) -> ProviderError:
    """One ``ProviderError`` for anything the OpenAI SDK raises.

    An error object inside a stream arrives as a bare ``APIError`` (no status): it is a
    ``STREAM_CUT`` unless the body carries an HTTP status as its ``code`` (vLLM does).
    """
    if isinstance(exc, openai.APIStatusError):
        headers = exc.response.headers
        etype, message = _common.body_error(exc.body)
        text = _common.clean_message(f"{etype or 'error'}: {message or exc.message}", key)
        return ProviderError(
            provider,
            model,
            _common.kind_for_status(exc.status_code),
            text,
            status=exc.status_code,
            retry_after_s=_common.retry_after_s(headers),
            request_id=exc.request_id or _common.header_request_id(headers),
        )
    if isinstance(exc, openai.APITimeoutError) and not _common.disconnected(exc):
        return ProviderError(provider, model, FailureKind.TIMEOUT, "request timed out")
    if isinstance(exc, openai.APITimeoutError):  # the aiohttp transport's lost connection
        kind = FailureKind.STREAM_CUT if streaming else FailureKind.CONNECTION
        return ProviderError(provider, model, kind, "connection error")
    if isinstance(exc, openai.APIConnectionError):
        kind = FailureKind.STREAM_CUT if streaming else FailureKind.CONNECTION
        return ProviderError(provider, model, kind, "connection error")
    if isinstance(exc, openai.APIError):
        etype, message = _common.body_error(exc.body)
        code = exc.body.get("code") if isinstance(exc.body, Mapping) else None
        kind = FailureKind.STREAM_CUT
        if isinstance(code, int) and not isinstance(code, bool) and code >= 400:
            kind = _common.kind_for_status(code)
        text = f"error in the stream: {etype or 'error'}: {message or exc.message}"
        return ProviderError(provider, model, kind, _common.clean_message(text, key))
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
class _Slot:
    """One content block being assembled from stream chunks (text, or one tool call)."""

    out_index: int
    parts: list[str] = field(default_factory=list)
    id: str = ""
    name: str = ""


class OpenAICompatProvider:
    """One OpenAI-compatible endpoint (``kind`` openai, openai_compatible or vllm): one key
    (or none), one base URL, one ``AsyncOpenAI`` client created on first use and reused.
    The SDK never retries (``max_retries=0``); dispatch owns retries and fallback."""

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        if settings.kind not in FLAVOURS:
            raise ValueError(f"OpenAICompatProvider cannot serve kind {settings.kind!r}")
        self.name = name
        self.settings = settings
        self.kind = settings.kind
        self._flavour = FLAVOURS[settings.kind]
        self._source = settings.key_source(name)
        self._key: SecretKey | None = None
        self._client: openai.AsyncOpenAI | None = None

    def __repr__(self) -> str:
        return (
            f"OpenAICompatProvider(name={self.name!r}, kind={self.kind!r}, "
            f"base_url={self.settings.base_url!r})"
        )

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            key = self._source.resolve()
            self._key = key
            kwargs: dict[str, Any] = {}
            if self.settings.base_url is not None:
                kwargs["base_url"] = self.settings.base_url
            timeout = _common.client_timeout(self.settings.connect_timeout_s)
            self._client = openai.AsyncOpenAI(
                api_key=key.get_secret_value() if key is not None else NO_KEY,
                max_retries=0,
                timeout=timeout,
                default_headers=self.settings.default_headers or None,
                # Performance: the SDK's aiohttp transport costs less CPU per call than
                # httpx2's own (bench/overhead.py); lost connections: _common.disconnected.
                http_client=openai.DefaultAioHttpClient(timeout=timeout),
                **kwargs,
            )
        return self._client

    def _timeout(self, request: ProviderRequest) -> Any:
        return _common.call_timeout(
            request.timeout_s, self.settings.connect_timeout_s, openai.NOT_GIVEN
        )

    def _error(self, exc: BaseException, model: str, *, streaming: bool = False) -> ProviderError:
        return openai_error(exc, self.name, model, self._key, streaming=streaming)

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        """One unary call through the SDK's generic ``post`` (hot path, see ``_post_raw``)."""
        client = self._get_client()
        body = build_request(request, self.kind)
        deadline = _common.deadline_at(request.timeout_s)
        try:
            async with asyncio.timeout_at(deadline):
                raw = await self._post_raw(client, body, request)
            data = json.loads(raw.content)
        except TimeoutError:
            raise _common.deadline_error(self.name, request.model, request.timeout_s) from None
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            raise self._error(exc, request.model) from exc
        except ValueError:  # json.JSONDecodeError and UnicodeDecodeError
            raise ProviderError(
                self.name, request.model, FailureKind.OTHER, "the response body is not JSON"
            ) from None
        return self._response(data, request.model, _common.header_request_id(raw.headers))

    async def _post_raw(
        self, client: openai.AsyncOpenAI, body: dict[str, Any], request: ProviderRequest
    ) -> httpx2.Response:
        """``POST /chat/completions`` with the body as built, answered as the raw HTTP response.

        Performance (bench/overhead.py): ``chat.completions.create`` runs its TypedDict
        transform over the body and builds pydantic models of the answer, about a third of the
        sidecar's CPU per call. Both are skipped here; ``build_request`` already produces the
        wire shape, and ``_response`` reads the JSON directly. Everything else is still the
        official SDK's: auth, headers, timeouts, connection pool, and its status errors
        (``APIStatusError`` with the body and headers), so errors classify exactly as before.
        """
        body = dict(body)
        extra = body.pop("extra_body", None)
        options: dict[str, Any] = {"security": {"bearer_auth": True}}
        if extra is not None:
            options["extra_json"] = extra
        timeout = self._timeout(request)
        if timeout is not openai.NOT_GIVEN:
            options["timeout"] = timeout
        return await client.post(
            "/chat/completions",
            body=body,
            cast_to=httpx2.Response,
            options=options,  # type: ignore[arg-type]
        )

    def _response(self, data: Any, model: str, request_id: str | None) -> ProviderResponse:
        """A Chat Completions JSON body as a ``ProviderResponse`` (same rules as the SDK's
        models: a missing field reads as absent, a custom tool call is skipped)."""
        choices = _get(data, "choices")
        if not choices or not isinstance(choices, list):
            raise ProviderError(self.name, model, FailureKind.OTHER, "no choices returned")
        choice = choices[0]
        message = _get(choice, "message") or {}
        content: list[Content] = []
        refusal = _get(message, "refusal")
        text = _get(message, "content") or refusal or ""
        if text:
            content.append(TextPart(text=text))
        for tool_call in _get(message, "tool_calls") or ():
            function = _get(tool_call, "function")
            if function is None:
                continue  # custom (non-function) tools are not part of the Call model
            content.append(
                ToolUsePart(
                    id=_get(tool_call, "id"),
                    name=_get(function, "name"),
                    input=_tool_input(_get(function, "arguments"), self.name, model),
                )
            )
        vllm_stop = _get(choice, "stop_reason") if self._flavour.vllm_stop_reason else None
        reason = finish_reason(_get(choice, "finish_reason"), vllm_stop)
        if refusal and reason is StopReason.END_TURN:
            reason = StopReason.REFUSAL
        return ProviderResponse(
            provider=self.name,
            model=_get(data, "model") or model,
            content=tuple(content),
            stop_reason=reason,
            usage=_common.checked_usage(
                self._flavour.usage, _get(data, "usage"), self.name, model, provider=self.name
            ),
            request_id=request_id,
        )

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        client = self._get_client()
        body = build_request(request, self.kind)
        model = request.model
        deadline = _common.deadline_at(request.timeout_s)
        try:
            async with asyncio.timeout_at(deadline):
                raw = await client.chat.completions.create(
                    **body,
                    stream=True,
                    stream_options={"include_usage": True},
                    timeout=self._timeout(request),
                )
        except TimeoutError:
            raise _common.deadline_error(self.name, model, request.timeout_s) from None
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            raise self._error(exc, model) from exc
        request_id = _common.header_request_id(raw.response.headers)
        chunks = raw.__aiter__()
        try:
            text_slot: _Slot | None = None
            tool_slots: dict[int, _Slot] = {}
            count = 0
            finish: str | None = None
            vllm_stop: object = None
            refused = False
            usage: Any = None
            while True:
                try:
                    chunk = await _common.next_before(chunks, deadline)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise _common.deadline_error(self.name, model, request.timeout_s) from None
                except (openai.OpenAIError, httpx2.HTTPError) as exc:
                    raise self._error(exc, model, streaming=True) from exc
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices[:1] if chunk.choices else ():
                    delta = choice.delta
                    refusal = getattr(delta, "refusal", None)
                    refused = refused or bool(refusal)
                    piece = delta.content or refusal
                    if piece:
                        if text_slot is None:
                            text_slot = _Slot(count)
                            count += 1
                        text_slot.parts.append(piece)
                        yield TextDelta(index=text_slot.out_index, text=piece)
                    for tc in delta.tool_calls or ():
                        slot = tool_slots.get(tc.index)
                        first = slot is None
                        if slot is None:
                            slot = tool_slots[tc.index] = _Slot(count)
                            count += 1
                        fn = tc.function
                        if tc.id:
                            slot.id = tc.id
                        if fn is not None and fn.name:
                            slot.name = fn.name
                        args = (fn.arguments if fn is not None else None) or ""
                        slot.parts.append(args)
                        if first or args:
                            yield ToolUseDelta(
                                index=slot.out_index,
                                partial_json=args,
                                id=slot.id if first else "",
                                name=slot.name if first else "",
                            )
                    if choice.finish_reason is not None:
                        finish = choice.finish_reason
                        if self._flavour.vllm_stop_reason:
                            vllm_stop = (choice.model_extra or {}).get("stop_reason")
            if finish is None or usage is None:
                missing = "finish_reason" if finish is None else "the usage chunk"
                raise _common.stream_cut(self.name, model, f"the stream ended without {missing}")
            content: list[tuple[int, Content]] = []
            if text_slot is not None:
                content.append((text_slot.out_index, TextPart(text="".join(text_slot.parts))))
            for slot in tool_slots.values():
                tool_input = _tool_input("".join(slot.parts), self.name, model)
                content.append(
                    (slot.out_index, ToolUsePart(id=slot.id, name=slot.name, input=tool_input))
                )
            content.sort(key=lambda item: item[0])
            reason = finish_reason(finish, vllm_stop)
            if refused and reason is StopReason.END_TURN:
                reason = StopReason.REFUSAL
            yield StreamEnd(
                ProviderResponse(
                    provider=self.name,
                    model=model,
                    content=tuple(c for _, c in content),
                    stop_reason=reason,
                    usage=_common.checked_usage(
                        self._flavour.usage, usage, self.name, model, provider=self.name
                    ),
                    request_id=request_id,
                )
            )
        finally:
            await raw.close()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


__all__ = ["FLAVOURS", "NO_KEY", "OpenAICompatProvider", "build_request", "openai_error"]
