"""Validation of OpenAI Chat Completions requests, and their prompt layout.

Rules (PROVIDERS.md section 3.1; OSDK ``types/chat/completion_create_params.py``), answered
with ``400 invalid_request_error`` and OpenAI's ``param``/``code`` fields:

* required ``model`` and a non-empty ``messages``; roles ``developer``, ``system``, ``user``,
  ``assistant``, ``tool`` (and legacy ``function``); a ``tool`` message must answer a preceding
  assistant ``tool_calls`` entry, and every ``tool_calls`` id must be answered;
* ``max_completion_tokens`` (preferred) or the deprecated ``max_tokens``, which reasoning
  models (o-series, gpt-5) reject; not both; at least 1 and at most the model's output limit;
* ``temperature`` 0..2 (reasoning models accept only the default 1), ``top_p`` 0..1, ``n``
  1..128, ``stop`` a string or at most 4 strings, ``reasoning_effort`` only for reasoning
  models;
* tools: ``{"type": "function", "function": {"name", "parameters"?, "strict"?}}`` with
  names matching ``^[a-zA-Z0-9_-]{1,64}$`` and ``parameters`` of type object; ``tool_choice``
  only with tools, and a named function must exist;
* ``response_format``: ``text``, ``json_object`` (the messages must mention "json") or
  ``json_schema`` (``name`` required; with ``strict`` every object must list all its
  properties in ``required`` and set ``additionalProperties: false``);
* ``stream_options`` only with ``stream: true``; unknown top-level fields are rejected
  ("Unrecognized request argument supplied") unless the flavour allows extras (vLLM).

The prompt is laid out as segments for token counting and prefix caching: the tool list and
the response schema first, then per message OpenAI's documented framing (3 tokens per
message, +1 with ``name``) and its content, then 3 tokens priming the reply.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from skinflint.emulators.common import EmulatorError, Tokenizer, dumps, is_int, is_number

ROLES = ("system", "assistant", "user", "function", "tool", "developer")
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
FIELDS = frozenset(
    {
        "messages",
        "model",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "moderation",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
IMAGE_TOKENS = {"low": 85, "high": 765, "auto": 765}


def bad(message: str, param: str | None = None, code: str | None = None) -> EmulatorError:
    return EmulatorError(400, "invalid_request_error", message, param=param, code=code)


@dataclass(frozen=True)
class ModelInfo:
    """Per-model facts: reasoning model?, automatic prompt caching?, max output tokens."""

    reasoning: bool = False
    caching: bool = True
    max_output_tokens: int = 16_384


# Caching: gpt-4o and newer (O-CACHE). Reasoning: o-series and gpt-5 (not gpt-5-chat).
DEFAULT_MODELS: dict[str, ModelInfo] = {
    "gpt-5": ModelInfo(reasoning=True, max_output_tokens=128_000),
    "gpt-5-chat": ModelInfo(reasoning=False, max_output_tokens=16_384),
    "gpt-4.1": ModelInfo(max_output_tokens=32_768),
    "gpt-4o": ModelInfo(max_output_tokens=16_384),
    "chatgpt-4o": ModelInfo(max_output_tokens=16_384),
    "o1": ModelInfo(reasoning=True, max_output_tokens=100_000),
    "o3": ModelInfo(reasoning=True, max_output_tokens=100_000),
    "o4": ModelInfo(reasoning=True, max_output_tokens=100_000),
    "gpt-4-turbo": ModelInfo(caching=False, max_output_tokens=4_096),
    "gpt-4": ModelInfo(caching=False, max_output_tokens=8_192),
    "gpt-3.5-turbo": ModelInfo(caching=False, max_output_tokens=4_096),
}


@dataclass(frozen=True)
class Segment:
    """A piece of the rendered prompt. ``atomic`` pieces (framing, images) match whole or not
    at all; text pieces can match partially (at a word boundary)."""

    text: str
    tokens: int
    atomic: bool = False


@dataclass
class ChatRequest:
    """A validated chat request: what generation, caching and usage need."""

    model: str
    info: ModelInfo
    messages: list[dict[str, Any]]
    n: int = 1
    limit: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_mode: Literal["auto", "any", "none"] = "auto"
    forced_tool: str | None = None
    response_kind: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    prompt_cache_key: str | None = None
    retention: str | None = None
    segments: list[Segment] = field(default_factory=list)

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools if t.get("type") == "function"]

    @property
    def prompt_tokens(self) -> int:
        return sum(s.tokens for s in self.segments)

    def tool_schema(self, name: str) -> dict[str, Any]:
        for tool in self.tools:
            function = tool.get("function") or {}
            if function.get("name") == name:
                return dict(function.get("parameters") or {"type": "object", "properties": {}})
        return {"type": "object", "properties": {}}

    def last_user_text(self) -> tuple[str, bool]:
        """The last user (or tool) text, and whether the conversation ends on tool results."""
        after_tool = bool(self.messages) and self.messages[-1].get("role") == "tool"
        for message in reversed(self.messages):
            if message.get("role") == "user" or (after_tool and message.get("role") == "tool"):
                return content_text(message.get("content")), after_tool
        return "", after_tool


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, Mapping) and p.get("type") in ("text", "refusal")
        )
    return ""


def model_info(model: str, models: Mapping[str, ModelInfo]) -> ModelInfo | None:
    best = max((p for p in models if model.startswith(p)), key=len, default=None)
    return models[best] if best is not None else None


def _check_number(
    body: Mapping[str, Any], name: str, low: float, high: float, *, integer: bool = False
) -> None:
    value = body.get(name)
    if value is None:
        return
    if not (is_int(value) if integer else is_number(value)):
        kind = "integer" if integer else "number"
        raise bad(f"Invalid type for '{name}': expected a {kind}.", name, "invalid_type")
    word = "integer" if integer else "decimal"
    if value < low:
        raise bad(
            f"Invalid '{name}': {word} below minimum value. Expected a value >= {low:g}, but got "
            f"{value} instead.",
            name,
            f"{word}_below_min_value",
        )
    if value > high:
        raise bad(
            f"Invalid '{name}': {word} above maximum value. Expected a value <= {high:g}, but got "
            f"{value} instead.",
            name,
            f"{word}_above_max_value",
        )


def strict_schema_problem(schema: Any, context: str = "()") -> str | None:
    """Why ``schema`` breaks the strict structured-output rules, or ``None``."""
    if not isinstance(schema, Mapping):
        return None
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return (
                f"In context={context}, 'additionalProperties' is required to be supplied and to "
                "be false."
            )
        missing = [k for k in props if k not in (schema.get("required") or [])]
        if missing:
            return (
                f"In context={context}, 'required' is required to be supplied and to be an array "
                f"including every key in properties. Missing '{missing[0]}'."
            )
        for name, sub in props.items():
            if problem := strict_schema_problem(sub, f"('properties', '{name}')"):
                return problem
    if isinstance(schema.get("items"), Mapping):
        return strict_schema_problem(schema["items"], f"{context}, 'items'")
    for key in ("$defs", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            if problem := strict_schema_problem(sub, f"('{key}', '{name}')"):
                return problem
    return None


def parse_chat(
    body: Any,
    *,
    served: Callable[[str], ModelInfo | None],
    tokenizer_for: Callable[[str], Tokenizer],
    frame: Callable[[str, Tokenizer, bool], Segment],
    openai_rules: bool = True,
) -> ChatRequest:
    """Validate a chat body. ``served(model)`` gives the model's info or ``None`` (-> 404).

    ``openai_rules=False`` (vLLM) accepts unknown fields, both token limits, and
    ``json_object`` without the word "json"."""
    if not isinstance(body, Mapping):
        raise bad("The request body must be a JSON object.")
    if openai_rules:
        for key in body:
            if key not in FIELDS:
                raise bad(f"Unrecognized request argument supplied: {key}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("you must provide a model parameter")
    info = served(model)
    if info is None:
        raise EmulatorError(
            404,
            "invalid_request_error",
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    messages = body.get("messages")
    if messages is None:
        raise bad(
            "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
        )
    if not isinstance(messages, list):
        raise bad("Invalid type for 'messages': expected an array.", "messages", "invalid_type")
    if not messages:
        raise bad(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
            "empty array instead.",
            "messages",
            "empty_array",
        )
    _check_messages(messages)

    limit = _check_limits(body, model, info, openai_rules)
    _check_number(body, "top_p", 0, 1)
    _check_number(body, "n", 1, 128, integer=True)
    _check_number(body, "presence_penalty", -2, 2)
    _check_number(body, "frequency_penalty", -2, 2)
    _check_number(body, "temperature", 0, 2)
    temperature = body.get("temperature")
    if info.reasoning and temperature is not None and temperature != 1:
        raise bad(
            f"Unsupported value: 'temperature' does not support {temperature} with this model. "
            "Only the default (1) value is supported.",
            "temperature",
            "unsupported_value",
        )
    effort = body.get("reasoning_effort")
    if effort is not None:
        if not info.reasoning:
            raise bad(
                "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                "reasoning_effort",
                "unsupported_parameter",
            )
        if effort not in EFFORTS:
            raise bad(
                f"Invalid value: '{effort}'. Supported values are: "
                f"{', '.join(map(repr, EFFORTS))}.",
                "reasoning_effort",
                "invalid_value",
            )
    stop = body.get("stop")
    stops: list[str] = []
    if isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list):
        if len(stop) > 4:
            raise bad(
                f"Invalid 'stop': array too long. Expected an array with maximum length 4, but got "
                f"{len(stop)} instead.",
                "stop",
                "array_above_max_length",
            )
        if not all(isinstance(s, str) for s in stop):
            raise bad("Invalid type for 'stop': expected a string or array of strings.", "stop")
        stops = list(stop)
    elif stop is not None:
        raise bad("Invalid type for 'stop': expected a string or array of strings.", "stop")

    stream = body.get("stream") is True
    stream_options = body.get("stream_options")
    if stream_options is not None and not stream:
        raise bad(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    tools = _check_tools(body.get("tools"))
    tool_mode, forced = _check_tool_choice(body.get("tool_choice"), tools)
    kind, schema = _check_response_format(body.get("response_format"), messages, openai_rules)
    if body.get("prompt_cache_retention") not in (None, "in_memory", "24h"):
        raise bad(
            f"Invalid value: '{body['prompt_cache_retention']}'. Supported values are: "
            "'in_memory' and '24h'.",
            "prompt_cache_retention",
            "invalid_value",
        )
    key = body.get("prompt_cache_key")
    if key is not None and not isinstance(key, str):
        raise bad("Invalid type for 'prompt_cache_key': expected a string.", "prompt_cache_key")

    request = ChatRequest(
        model=model,
        info=info,
        messages=[dict(m) for m in messages],
        n=int(body.get("n") or 1),
        limit=limit,
        stop=stops,
        stream=stream,
        stream_options=dict(stream_options) if isinstance(stream_options, Mapping) else None,
        tools=tools,
        tool_mode=tool_mode,
        forced_tool=forced,
        response_kind=kind,
        schema=schema,
        reasoning_effort=effort if effort is not None else ("medium" if info.reasoning else None),
        prompt_cache_key=key,
        retention=body.get("prompt_cache_retention"),
    )
    request.segments = layout(request, tokenizer_for(model), frame)
    return request


def _check_limits(
    body: Mapping[str, Any], model: str, info: ModelInfo, openai_rules: bool
) -> int | None:
    legacy = body.get("max_tokens")
    current = body.get("max_completion_tokens")
    if legacy is not None and info.reasoning:
        raise bad(
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
            "'max_completion_tokens' instead.",
            "max_tokens",
            "unsupported_parameter",
        )
    if openai_rules and legacy is not None and current is not None:
        raise bad(
            "max_tokens and max_completion_tokens cannot both be set; use max_completion_tokens.",
            "max_tokens",
            "invalid_value",
        )
    name = "max_completion_tokens" if current is not None else "max_tokens"
    value = current if current is not None else legacy
    if value is None:
        return None
    _check_number(body, name, 1, float("inf"), integer=True)
    if value > info.max_output_tokens:
        raise bad(
            f"{name} is too large: {value}. This model supports at most "
            f"{info.max_output_tokens} completion tokens, whereas you provided {value}.",
            name,
            "invalid_value",
        )
    return int(value)


def _check_messages(messages: list[Any]) -> None:
    pending: dict[str, int] = {}
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise bad(f"Invalid type for 'messages[{i}]': expected an object.", f"messages[{i}]")
        role = message.get("role")
        if role not in ROLES:
            raise bad(
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                "'function', 'tool', and 'developer'.",
                f"messages[{i}].role",
                "invalid_value",
            )
        content = message.get("content")
        if role in ("system", "developer", "user", "tool") and content is None:
            raise bad(
                f"Missing required parameter: 'messages[{i}].content'.",
                f"messages[{i}].content",
                "missing_required_parameter",
            )
        if content is not None and not isinstance(content, str | list):
            raise bad(
                f"Invalid type for 'messages[{i}].content': expected one of a string or array "
                "of objects.",
                f"messages[{i}].content",
                "invalid_type",
            )
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                raise bad(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    f"messages.[{i}].role",
                )
            del pending[call_id]
            continue
        if pending:
            raise _unanswered(pending)
        if role == "assistant":
            calls = message.get("tool_calls") or []
            if content is None and not calls and message.get("function_call") is None:
                raise bad(
                    f"Missing required parameter: 'messages[{i}].content'.",
                    f"messages[{i}].content",
                    "missing_required_parameter",
                )
            for call in calls:
                if not isinstance(call, Mapping) or not isinstance(call.get("id"), str):
                    raise bad(
                        f"Missing required parameter: 'messages[{i}].tool_calls[0].id'.",
                        f"messages[{i}].tool_calls",
                        "missing_required_parameter",
                    )
                pending[call["id"]] = i
    if pending:
        raise _unanswered(pending)


def _unanswered(pending: Mapping[str, int]) -> EmulatorError:
    index = min(pending.values())
    return bad(
        "An assistant message with 'tool_calls' must be followed by tool messages responding to "
        "each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(pending),
        f"messages.[{index}].role",
    )


def _check_tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise bad(
            "Invalid type for 'tools': expected an array of objects.", "tools", "invalid_type"
        )
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or tool.get("type") not in ("function", "custom"):
            raise bad(
                f"Invalid value for 'tools[{i}].type': expected 'function' or 'custom'.",
                f"tools[{i}].type",
                "invalid_value",
            )
        if tool["type"] == "custom":
            continue
        function = tool.get("function")
        if not isinstance(function, Mapping):
            raise bad(
                f"Missing required parameter: 'tools[{i}].function'.",
                f"tools[{i}].function",
                "missing_required_parameter",
            )
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise bad(
                f"Invalid 'tools[{i}].function.name': string does not match pattern. Expected a "
                "string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                f"tools[{i}].function.name",
                "invalid_value",
            )
        params = function.get("parameters")
        if params is not None:
            if not isinstance(params, Mapping) or params.get("type") != "object":
                got = params.get("type") if isinstance(params, Mapping) else type(params).__name__
                raise bad(
                    f"Invalid schema for function '{name}': schema must be a JSON Schema of "
                    f"'type: \"object\"', got 'type: \"{got}\"'.",
                    f"tools[{i}].function.parameters",
                    "invalid_function_parameters",
                )
            if function.get("strict") is True and (problem := strict_schema_problem(params)):
                raise bad(
                    f"Invalid schema for function '{name}': {problem}",
                    f"tools[{i}].function.parameters",
                    "invalid_function_parameters",
                )
    return [dict(t) for t in tools]


def _check_tool_choice(
    choice: Any, tools: list[dict[str, Any]]
) -> tuple[Literal["auto", "any", "none"], str | None]:
    if choice is None:
        return ("auto" if tools else "none"), None
    if not tools:
        raise bad(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            "tool_choice",
        )
    if choice == "none":
        return "none", None
    if choice == "auto":
        return "auto", None
    if choice == "required":
        return "any", None
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        names = {(t.get("function") or {}).get("name") for t in tools}
        if name not in names:
            raise bad(
                f"Invalid value for 'tool_choice': function '{name}' not found in 'tools'.",
                "tool_choice",
                "invalid_value",
            )
        return "any", str(name)
    raise bad(
        "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a function.",
        "tool_choice",
        "invalid_value",
    )


def _check_response_format(
    fmt: Any, messages: list[Any], openai_rules: bool
) -> tuple[Literal["text", "json_object", "json_schema"], dict[str, Any] | None]:
    if fmt is None:
        return "text", None
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    if kind == "text":
        return "text", None
    if kind == "json_object":
        if openai_rules and not any(
            "json" in content_text(m.get("content")).lower() for m in messages
        ):
            raise bad(
                "'messages' must contain the word 'json' in some form, to use 'response_format' "
                "of type 'json_object'.",
                "messages",
            )
        return "json_object", None
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, Mapping):
            raise bad(
                "Missing required parameter: 'response_format.json_schema'.",
                "response_format.json_schema",
                "missing_required_parameter",
            )
        name = spec.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise bad(
                "Missing required parameter: 'response_format.json_schema.name'.",
                "response_format.json_schema.name",
                "missing_required_parameter",
            )
        schema = spec.get("schema") or {"type": "object", "properties": {}}
        if spec.get("strict") is True and (problem := strict_schema_problem(schema)):
            raise bad(
                f"Invalid schema for response_format '{name}': {problem}",
                "response_format",
                "invalid_json_schema",
            )
        return "json_schema", dict(schema)
    raise bad(
        f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object', and 'json_schema'.",
        "response_format.type",
        "invalid_value",
    )


def layout(
    request: ChatRequest, tokenizer: Tokenizer, frame: Callable[[str, Tokenizer, bool], Segment]
) -> list[Segment]:
    """Prompt segments: tools, response schema, framed messages, reply priming."""
    segments: list[Segment] = []
    if request.tools:
        text = dumps(request.tools)
        segments.append(Segment(text, tokenizer.count(text)))
    if request.schema is not None:
        text = dumps(request.schema)
        segments.append(Segment(text, tokenizer.count(text)))
    for message in request.messages:
        role = str(message["role"])
        segments.append(frame(role, tokenizer, "name" in message))
        content = message.get("content")
        if isinstance(content, str):
            segments.append(Segment(content, tokenizer.count(content)))
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, Mapping):
                    continue
                if part.get("type") == "image_url":
                    detail = str((part.get("image_url") or {}).get("detail", "auto"))
                    segments.append(
                        Segment(dumps(part), IMAGE_TOKENS.get(detail, 765), atomic=True)
                    )
                else:
                    text = str(part.get("text", "")) or dumps(part)
                    segments.append(Segment(text, tokenizer.count(text)))
        if message.get("tool_calls"):
            text = dumps(message["tool_calls"])
            segments.append(Segment(text, tokenizer.count(text)))
    segments.append(frame("assistant-priming", tokenizer, False))
    return segments


def openai_frame(role: str, tokenizer: Tokenizer, named: bool) -> Segment:
    """OpenAI's documented framing (the cookbook's ``num_tokens_from_messages``): 3 tokens per
    message plus the role's own tokens (every value of the message is encoded; +1 with a
    name), and 3 to prime the reply."""
    if role == "assistant-priming":
        return Segment(f"<|start|>{role}", 3, atomic=True)
    role_tokens = tokenizer.count(role)
    return Segment(f"<|start|>{role}", 3 + role_tokens + (1 if named else 0), atomic=True)
