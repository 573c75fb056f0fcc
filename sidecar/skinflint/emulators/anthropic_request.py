"""Validation of Anthropic Messages requests and their cache layout.

Implements the documented request rules (PROVIDERS.md sections 1.2 and 1.5; ASDK
``types/message_create_params.py``), answering violations with ``400 invalid_request_error``
(``404 not_found_error`` for an unknown model) and messages modelled on the API's:

* required ``model``, ``max_tokens`` (``0`` pre-warms the cache), ``messages``; unknown
  top-level fields are rejected ("Extra inputs are not permitted");
* roles ``user``/``assistant`` only (a ``system`` role points at the top-level parameter);
  non-empty content except a final assistant turn; text blocks must be non-empty; a final
  assistant (prefill) turn cannot end with whitespace; every ``tool_use`` is answered by a
  ``tool_result`` in the next turn and every ``tool_result`` answers one;
* ``temperature`` and ``top_p`` in 0..1, ``top_k`` >= 0, ``max_tokens`` <= the model's limit;
* tools: unique names matching ``^[a-zA-Z0-9_-]{1,128}$``, ``input_schema`` of type object;
  ``tool_choice`` ``auto|any|tool|none`` and a named tool must exist;
* thinking: ``budget_tokens`` >= 1024 and < ``max_tokens``; no forced tool use and only the
  default temperature while thinking;
* caching: ``cache_control`` is ``{"type": "ephemeral", "ttl": "5m"|"1h"}``; not on empty text
  or thinking blocks; at most 4 breakpoints including the automatic one (top-level
  ``cache_control``, placed on the last cacheable block); 1h breakpoints must come before 5m
  ones.

Token counts per block use the emulator tokenizer on the block's text (text, tool JSON, tool
results); an image or a non-text document counts a flat ``IMAGE_TOKENS``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from skinflint.emulators.anthropic_cache import Block, Ttl
from skinflint.emulators.common import EmulatorError, Tokenizer, dumps, is_int, is_number

IMAGE_TOKENS = 1_600
MAX_BREAKPOINTS = 4
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")

CREATE_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "tools",
        "tool_choice",
        "stream",
        "metadata",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "thinking",
        "service_tier",
        "cache_control",
        "output_config",
        "inference_geo",
        "container",
        "diagnostics",
        "speed",
        "user_profile_id",
        "workspace_id",
        "mcp_servers",
        "context_management",
    }
)
COUNT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "cache_control",
        "output_config",
        "speed",
        "user_profile_id",
        "workspace_id",
        "mcp_servers",
        "context_management",
    }
)
_USER_BLOCKS = frozenset({"text", "image", "document", "tool_result", "search_result"})
_ASSISTANT_BLOCKS = frozenset(
    {"text", "tool_use", "thinking", "redacted_thinking", "server_tool_use"}
)
_ANY_BLOCKS = _USER_BLOCKS | _ASSISTANT_BLOCKS | {"web_search_tool_result", "container_upload"}


@dataclass(frozen=True)
class ModelSpec:
    """Per-model limits: minimum cacheable prompt length and maximum ``max_tokens``."""

    min_cache_tokens: int
    max_output_tokens: int = 64_000


# Minimums from PROVIDERS.md section 1.5 (latest doc text; configurable because they moved).
# Other "claude-" models (newer families) fall back to the last entry.
DEFAULT_MODELS: dict[str, ModelSpec] = {
    "claude-opus-5": ModelSpec(512, 128_000),
    "claude-opus-4-8": ModelSpec(1024, 128_000),
    "claude-opus-4-7": ModelSpec(2048, 128_000),
    "claude-opus-4-6": ModelSpec(4096, 128_000),
    "claude-opus-4-5": ModelSpec(4096, 64_000),
    "claude-opus-4-1": ModelSpec(1024, 32_000),
    "claude-opus-4": ModelSpec(1024, 32_000),
    "claude-sonnet-4-6": ModelSpec(1024, 64_000),
    "claude-sonnet-4-5": ModelSpec(1024, 64_000),
    "claude-sonnet-4": ModelSpec(1024, 64_000),
    "claude-3-7-sonnet": ModelSpec(1024, 64_000),
    "claude-haiku-4-5": ModelSpec(4096, 64_000),
    "claude-3-5-haiku": ModelSpec(2048, 8_192),
    "claude-3-haiku": ModelSpec(2048, 4_096),
    "claude-": ModelSpec(1024, 64_000),
}


def model_spec(model: str, models: Mapping[str, ModelSpec]) -> ModelSpec:
    """The spec of the longest matching model-name prefix, else ``404 not_found_error``."""
    best = max((p for p in models if model.startswith(p)), key=len, default=None)
    if best is None:
        raise EmulatorError(404, "not_found_error", f"model: {model}")
    return models[best]


def bad(message: str) -> EmulatorError:
    return EmulatorError(400, "invalid_request_error", message)


@dataclass
class Turn:
    role: Literal["user", "assistant"]
    blocks: list[dict[str, Any]]


@dataclass
class ParsedRequest:
    """A validated request: what generation and caching need."""

    model: str
    spec: ModelSpec
    max_tokens: int
    turns: list[Turn]
    system: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    tool_mode: Literal["auto", "any", "none"] = "auto"
    forced_tool: str | None = None
    stop_sequences: list[str] = field(default_factory=list)
    stream: bool = False
    thinking_budget: int | None = None
    output_schema: dict[str, Any] | None = None
    blocks: list[Block] = field(default_factory=list)
    breakpoints: list[tuple[int, Ttl]] = field(default_factory=list)

    @property
    def tool_names(self) -> list[str]:
        return [t["name"] for t in self.tools if "name" in t]

    @property
    def prompt_tokens(self) -> int:
        return sum(b.tokens for b in self.blocks)

    def last_user_text(self) -> tuple[str, bool]:
        """Text of the last user turn, and whether that turn is tool results only."""
        for turn in reversed(self.turns):
            if turn.role != "user":
                continue
            texts = [b["text"] for b in turn.blocks if b.get("type") == "text"]
            if texts:
                return " ".join(texts), False
            results = [_result_text(b) for b in turn.blocks if b.get("type") == "tool_result"]
            return " ".join(results), bool(results)
        return "", False


def _result_text(block: Mapping[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(c.get("text", "")) for c in content if isinstance(c, Mapping))
    return ""


def _check_cache_control(value: Any, where: str) -> Ttl:
    if not isinstance(value, Mapping) or value.get("type") != "ephemeral":
        raise bad(f"{where}.cache_control.type: Input should be 'ephemeral'")
    extra = [k for k in value if k not in ("type", "ttl")]
    if extra:
        raise bad(f"{where}.cache_control.{extra[0]}: Extra inputs are not permitted")
    ttl = value.get("ttl", "5m")
    if ttl not in ("5m", "1h"):
        raise bad(f"{where}.cache_control.ephemeral.ttl: Input should be '5m' or '1h'")
    return cast(Ttl, ttl)


def _check_range(body: Mapping[str, Any], name: str, low: float, high: float | None) -> None:
    if name not in body or body[name] is None:
        return
    value = body[name]
    if not is_number(value):
        raise bad(f"{name}: Input should be a valid number")
    if value < low:
        raise bad(f"{name}: Input should be greater than or equal to {low:g}")
    if high is not None and value > high:
        raise bad(f"{name}: Input should be less than or equal to {high:g}")


def _block_text(block: Mapping[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_use":
        return f"{block.get('name', '')} {dumps(block.get('input', {}))}"
    if kind == "tool_result":
        return _result_text(block)
    if kind == "thinking":
        return str(block.get("thinking", ""))
    if kind == "document" and isinstance(block.get("source"), Mapping):
        source = block["source"]
        if source.get("type") == "text":
            return str(source.get("data", ""))
    return ""


def _block_tokens(block: Mapping[str, Any], tokenizer: Tokenizer) -> int:
    kind = block.get("type")
    if kind == "image" or (kind == "document" and not _block_text(block)):
        return IMAGE_TOKENS
    return max(1, tokenizer.count(_block_text(block)))


def _strip_cc(block: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if k != "cache_control"}


def parse_request(
    body: Any,
    *,
    models: Mapping[str, ModelSpec],
    tokenizer: Tokenizer,
    counting: bool = False,
) -> ParsedRequest:
    """Validate a create (or, with ``counting``, a count_tokens) body; build cache blocks."""
    if not isinstance(body, Mapping):
        raise bad("Request body must be a JSON object")
    allowed = COUNT_FIELDS if counting else CREATE_FIELDS
    for key in body:
        if key not in allowed:
            raise bad(f"{key}: Extra inputs are not permitted")
    for name in ("model", "messages") if counting else ("model", "max_tokens", "messages"):
        if name not in body:
            raise bad(f"{name}: Field required")
    model = body["model"]
    if not isinstance(model, str) or not model:
        raise bad("model: Input should be a valid string")
    spec = model_spec(model, models)

    max_tokens = 0
    if not counting:
        max_tokens = body["max_tokens"]
        if not is_int(max_tokens):
            raise bad("max_tokens: Input should be a valid integer")
        if max_tokens < 0:
            raise bad("max_tokens: Input should be greater than or equal to 0")
        if max_tokens > spec.max_output_tokens:
            raise bad(
                f"max_tokens: {max_tokens} > {spec.max_output_tokens}, which is the maximum "
                f"allowed number of output tokens for {model}"
            )
    _check_range(body, "temperature", 0.0, 1.0)
    _check_range(body, "top_p", 0.0, 1.0)
    top_k = body.get("top_k")
    if top_k is not None and (not is_int(top_k) or top_k < 0):
        raise bad("top_k: Input should be greater than or equal to 0")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise bad("stream: Input should be a valid boolean")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise bad("metadata: Input should be a valid dictionary")
        for key in metadata:
            if key != "user_id":
                raise bad(f"metadata.{key}: Extra inputs are not permitted")
        user_id = metadata.get("user_id")
        if user_id is not None and (not isinstance(user_id, str) or len(user_id) > 256):
            raise bad("metadata.user_id: String should have at most 256 characters")
    if body.get("service_tier") not in (None, "auto", "standard_only"):
        raise bad("service_tier: Input should be 'auto' or 'standard_only'")

    stop_sequences = body.get("stop_sequences") or []
    if not isinstance(stop_sequences, list) or not all(isinstance(s, str) for s in stop_sequences):
        raise bad("stop_sequences: Input should be a valid list of strings")
    if any(not s.strip() for s in stop_sequences):
        raise bad("stop_sequences: each stop sequence must contain non-whitespace")

    tools = _parse_tools(body.get("tools"))
    tool_mode, forced = _parse_tool_choice(body.get("tool_choice"), tools)
    thinking_budget = _parse_thinking(body, max_tokens, tool_mode, forced, counting)
    output_schema = _parse_output_config(body.get("output_config"))
    system = _parse_system(body.get("system"))
    turns = _parse_messages(body["messages"])

    parsed = ParsedRequest(
        model=model,
        spec=spec,
        max_tokens=max_tokens,
        turns=turns,
        system=system,
        tools=tools,
        tool_mode=tool_mode,
        forced_tool=forced,
        stop_sequences=list(stop_sequences),
        stream=body.get("stream") is True,
        thinking_budget=thinking_budget,
        output_schema=output_schema,
    )
    _layout(parsed, body, tokenizer)
    return parsed


def _parse_tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise bad("tools: Input should be a valid list")
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise bad(f"tools.{i}: Input should be a valid dictionary")
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise bad(
                f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            )
        if name in seen:
            raise bad("tools: Tool names must be unique.")
        seen.add(name)
        if tool.get("type") in (None, "custom"):
            schema = tool.get("input_schema")
            if schema is None:
                raise bad(f"tools.{i}.custom.input_schema: Field required")
            if not isinstance(schema, Mapping) or schema.get("type") != "object":
                raise bad(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
    return [dict(t) for t in tools]


def _parse_tool_choice(
    choice: Any, tools: list[dict[str, Any]]
) -> tuple[Literal["auto", "any", "none"], str | None]:
    if choice is None:
        return "auto", None
    if not isinstance(choice, Mapping) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise bad("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    kind = choice["type"]
    if kind in ("any", "tool") and not tools:
        raise bad("tool_choice: tool_choice may only be specified while providing tools.")
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str):
            raise bad("tool_choice.tool.name: Field required")
        if name not in {t["name"] for t in tools}:
            raise bad(f"tool_choice.name: Tool '{name}' not found in the provided tools")
        return "any", name
    return cast(Literal["auto", "any", "none"], kind), None


def _parse_thinking(
    body: Mapping[str, Any],
    max_tokens: int,
    tool_mode: str,
    forced: str | None,
    counting: bool,
) -> int | None:
    thinking = body.get("thinking")
    if thinking is None:
        return None
    if not isinstance(thinking, Mapping) or thinking.get("type") not in (
        "enabled",
        "disabled",
        "adaptive",
    ):
        raise bad("thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
    if thinking["type"] == "disabled":
        return None
    if tool_mode == "any" or forced:
        raise bad("Thinking may not be enabled when tool_choice forces tool use.")
    if body.get("temperature") not in (None, 1, 1.0):
        raise bad("`temperature` may only be set to 1 when thinking is enabled.")
    if thinking["type"] == "adaptive":
        return max(1, max_tokens // 4) if not counting else None
    budget = thinking.get("budget_tokens")
    if not is_int(budget):
        raise bad("thinking.enabled.budget_tokens: Field required")
    if budget < 1024:
        raise bad("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    if not counting and budget >= max_tokens:
        raise bad("`max_tokens` must be greater than `thinking.budget_tokens`.")
    return int(budget)


def _parse_output_config(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    if not isinstance(config, Mapping):
        raise bad("output_config: Input should be a valid dictionary")
    fmt = config.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, Mapping) or fmt.get("type") != "json_schema":
        raise bad("output_config.format.type: Input should be 'json_schema'")
    schema = fmt.get("schema")
    if not isinstance(schema, Mapping):
        raise bad("output_config.format.schema: Field required")
    return dict(schema)


def _parse_system(system: Any) -> list[dict[str, Any]]:
    if system is None or system == "":
        return []
    if isinstance(system, str):
        return [{"type": "text", "text": system}]
    if not isinstance(system, list):
        raise bad("system: Input should be a valid string or list of text blocks")
    for i, block in enumerate(system):
        if not isinstance(block, Mapping) or block.get("type") != "text":
            raise bad(f"system.{i}.type: Input should be 'text'")
        if not isinstance(block.get("text"), str):
            raise bad(f"system.{i}.text: Field required")
        if not block["text"]:
            if "cache_control" in block:
                raise bad(f"system.{i}: cache_control cannot be set for empty text blocks")
            raise bad("system: text content blocks must be non-empty")
    return [dict(b) for b in system]


def _parse_messages(messages: Any) -> list[Turn]:
    if not isinstance(messages, list):
        raise bad("messages: Input should be a valid list")
    if not messages:
        raise bad("messages: at least one message is required")
    if len(messages) > 100_000:
        raise bad("messages: too many messages (limit 100000)")
    turns: list[Turn] = []
    last = len(messages) - 1
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise bad(f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role == "system":
            raise bad(
                'messages: Unexpected role "system". The Messages API accepts a top-level '
                '`system` parameter, not "system" as an input message role.'
            )
        if role not in ("user", "assistant"):
            raise bad(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        final_assistant = i == last and role == "assistant"
        if isinstance(content, str):
            blocks = [{"type": "text", "text": content}] if content else []
        elif isinstance(content, list):
            blocks = [dict(b) if isinstance(b, Mapping) else b for b in content]
        else:
            raise bad(f"messages.{i}.content: Input should be a valid string or list")
        if not blocks and not final_assistant:
            raise bad(
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        for j, block in enumerate(blocks):
            _check_block(block, i, j, role)
        tail = blocks[-1] if final_assistant and blocks else {}
        if tail.get("type") == "text" and tail["text"] != tail["text"].rstrip():
            raise bad("messages: final assistant content cannot end with trailing whitespace")
        turns.append(Turn(role=role, blocks=blocks))
    _check_tool_pairs(turns)
    return turns


def _check_block(block: Any, i: int, j: int, role: str) -> None:
    where = f"messages.{i}.content.{j}"
    if not isinstance(block, Mapping):
        raise bad(f"{where}: Input should be a valid dictionary")
    kind = block.get("type")
    if kind not in _ANY_BLOCKS:
        raise bad(
            f"{where}: Input tag '{kind}' found using 'type' does not match any of the "
            "expected tags"
        )
    allowed = _USER_BLOCKS if role == "user" else _ASSISTANT_BLOCKS
    if kind not in allowed and kind not in ("web_search_tool_result", "container_upload"):
        raise bad(f"{where}: `{kind}` blocks are not allowed in `{role}` messages")
    if "cache_control" in block:
        if kind in ("thinking", "redacted_thinking"):
            raise bad(f"{where}.{kind}.cache_control: Extra inputs are not permitted")
        if kind == "text" and block.get("text") == "":
            raise bad(f"{where}: cache_control cannot be set for empty text blocks")
        _check_cache_control(block["cache_control"], where)
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise bad(f"{where}.text: Field required")
        if not block["text"]:
            raise bad("messages: text content blocks must be non-empty")
    if kind == "tool_use":
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
            raise bad(f"{where}.tool_use: `id` and `name` are required")
        if not isinstance(block.get("input"), Mapping):
            raise bad(f"{where}.tool_use.input: Input should be a valid dictionary")
    if kind == "tool_result" and not isinstance(block.get("tool_use_id"), str):
        raise bad(f"{where}.tool_result.tool_use_id: Field required")


def _check_tool_pairs(turns: list[Turn]) -> None:
    """Every ``tool_use`` is answered in the next turn; every ``tool_result`` answers one."""
    for i, turn in enumerate(turns):
        results = [b["tool_use_id"] for b in turn.blocks if b.get("type") == "tool_result"]
        if results:
            prev = turns[i - 1] if i > 0 else None
            uses = (
                {b["id"] for b in prev.blocks if b.get("type") == "tool_use"}
                if prev is not None and prev.role == "assistant"
                else set()
            )
            stray = [r for r in results if r not in uses]
            if stray:
                raise bad(
                    f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` "
                    f"blocks: {stray[0]}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message."
                )
        if turn.role == "assistant" and i + 1 < len(turns):
            uses_here = [b["id"] for b in turn.blocks if b.get("type") == "tool_use"]
            answered = {
                b.get("tool_use_id") for b in turns[i + 1].blocks if b.get("type") == "tool_result"
            }
            missing = [u for u in uses_here if u not in answered]
            if missing:
                raise bad(
                    f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                    "corresponding `tool_result` block in the next message."
                )


def _layout(parsed: ParsedRequest, body: Mapping[str, Any], tokenizer: Tokenizer) -> None:
    """Blocks in cache order (tools -> system -> messages) and the breakpoints."""
    blocks: list[Block] = []
    for i, tool in enumerate(parsed.tools):
        ttl = (
            _check_cache_control(tool["cache_control"], f"tools.{i}")
            if "cache_control" in tool
            else None
        )
        schema = dumps(tool.get("input_schema", {}))
        text = f"{tool.get('name', '')} {tool.get('description', '')} {schema}"
        key = dumps(_strip_cc(tool)).encode()
        blocks.append(Block("tools", key, max(1, tokenizer.count(text)), ttl, f"tools.{i}"))
    for i, sblock in enumerate(parsed.system):
        ttl = (
            _check_cache_control(sblock["cache_control"], f"system.{i}")
            if "cache_control" in sblock
            else None
        )
        key = dumps(_strip_cc(sblock)).encode()
        blocks.append(
            Block("system", key, max(1, tokenizer.count(sblock["text"])), ttl, f"system.{i}")
        )
    # tool_choice and thinking settings invalidate the messages level only (A-CACHE table).
    context = dumps({"tool_choice": body.get("tool_choice"), "thinking": body.get("thinking")})
    for i, turn in enumerate(parsed.turns):
        for j, mblock in enumerate(turn.blocks):
            ttl = (
                _check_cache_control(mblock["cache_control"], f"messages.{i}.content.{j}")
                if "cache_control" in mblock
                else None
            )
            key = f"{context}\x00{turn.role}\x00{dumps(_strip_cc(mblock))}".encode()
            tokens = _block_tokens(mblock, tokenizer)
            blocks.append(Block("messages", key, tokens, ttl, f"messages.{i}.content.{j}"))

    breakpoints: list[tuple[int, Ttl]] = [(i, b.marker) for i, b in enumerate(blocks) if b.marker]
    automatic = body.get("cache_control")
    if automatic is not None:
        ttl = _check_cache_control(automatic, "")
        target = _last_cacheable(parsed, blocks)
        # It takes one of the 4 slots unless that block already carries a marker.
        if target is not None and all(p != target for p, _ in breakpoints):
            breakpoints.append((target, ttl))
            breakpoints.sort()
    if len(breakpoints) > MAX_BREAKPOINTS:
        raise bad(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(breakpoints)}."
        )
    seen_5m = False
    for _position, ttl in breakpoints:
        if ttl == "5m":
            seen_5m = True
        elif seen_5m:
            raise bad(
                "A cache_control block with ttl='1h' must not come after a cache_control block "
                "with ttl='5m'. Place all 1h breakpoints before 5m breakpoints."
            )
    parsed.blocks = blocks
    parsed.breakpoints = breakpoints


def _last_cacheable(parsed: ParsedRequest, blocks: list[Block]) -> int | None:
    """Index of the last block that may carry ``cache_control`` (not thinking)."""
    flat = [b for t in parsed.turns for b in t.blocks]
    offset = len(blocks) - len(flat)
    for k in range(len(flat) - 1, -1, -1):
        if flat[k].get("type") not in ("thinking", "redacted_thinking"):
            return offset + k
    return len(blocks) - 1 if blocks else None


def loads_body(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError as exc:
        raise bad(f"There was an error parsing the body: {exc}") from None
