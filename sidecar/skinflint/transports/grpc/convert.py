"""Wire messages (``skinflint.v1``) -> domain objects, validating as it goes.

Every rule that makes a request invalid lives here, and every failure is an
``InvalidArgument`` naming the field path in proto terms (``messages[2].content[0].role``),
what is wrong, and what to send instead. Conversion stops at the first problem: one clear
message beats a list the caller must untangle. Nothing downstream re-validates wire input.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from typing import Any, NoReturn

from skinflint.call import (
    DEFAULT_TENANT,
    Attribution,
    CacheTtl,
    Call,
    GenerationParams,
    ImagePart,
    Lane,
    Message,
    ModelKind,
    ModelSpec,
    Part,
    Policy,
    ResponseFormat,
    ResponseFormatType,
    Role,
    SystemBlock,
    TextPart,
    Tier,
    Tool,
    ToolChoice,
    ToolChoiceMode,
    ToolResultPart,
    ToolUsePart,
    new_request_id,
)
from skinflint.errors import InvalidArgument
from skinflint.pipeline.budgets import (
    BUDGET_ID_PATTERN,
    SCOPE_VALUE_PATTERN,
    BudgetAction,
    BudgetListQuery,
    BudgetSpec,
    BudgetWindow,
    parse_scope,
)
from skinflint.pipeline.jobs import Submission
from skinflint.pipeline.projection import (
    DEFAULT_MONTHS,
    MAX_MONTHS,
    FeatureWorkload,
    LedgerHistory,
    ProjectionRequest,
    WorkloadModel,
)
from skinflint.v1 import skinflint_pb2 as pb

IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
TASK_TYPES = (
    "classification",
    "extraction",
    "formatting",
    "short_qa",
    "summarization",
    "generation",
    "code",
    "reasoning",
)
REASONING_EFFORTS = ("minimal", "low", "medium", "high")
MAX_CALLER_BREAKPOINTS = 4  # Anthropic's limit per request; skinflint honours caller ones
MAX_LABELS = 32
MAX_REQUEST_ID_CHARS = 128
MAX_OUTPUT_TOKENS = 1_000_000
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
MAX_LEDGER_DAYS = 366

_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PROVIDER = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
_MODEL_HINT = (
    'send "auto", a tier name (local, small, mid, frontier) or "provider/model" '
    'such as "anthropic/claude-haiku-4-5"'
)

_ROLES = {pb.ROLE_USER: Role.USER, pb.ROLE_ASSISTANT: Role.ASSISTANT}
_TTLS = {
    pb.CacheBreakpoint.TTL_5M: CacheTtl.FIVE_MINUTES,
    pb.CacheBreakpoint.TTL_1H: CacheTtl.ONE_HOUR,
}
_TIERS = {
    pb.TIER_LOCAL: Tier.LOCAL,
    pb.TIER_SMALL: Tier.SMALL,
    pb.TIER_MID: Tier.MID,
    pb.TIER_FRONTIER: Tier.FRONTIER,
}
_LANES = {
    pb.LANE_INTERACTIVE: Lane.INTERACTIVE,
    pb.LANE_ASYNC: Lane.ASYNC,
    pb.LANE_LOCAL: Lane.LOCAL,
}
_CHOICES = {
    pb.ToolChoice.MODE_AUTO: ToolChoiceMode.AUTO,
    pb.ToolChoice.MODE_ANY: ToolChoiceMode.ANY,
    pb.ToolChoice.MODE_NONE: ToolChoiceMode.NONE,
    pb.ToolChoice.MODE_TOOL: ToolChoiceMode.TOOL,
}
_WINDOWS = {
    pb.BUDGET_WINDOW_MINUTE: BudgetWindow.MINUTE,
    pb.BUDGET_WINDOW_HOUR: BudgetWindow.HOUR,
    pb.BUDGET_WINDOW_DAY: BudgetWindow.DAY,
    pb.BUDGET_WINDOW_MONTH: BudgetWindow.MONTH,
    pb.BUDGET_WINDOW_TOTAL: BudgetWindow.TOTAL,
}
_ACTIONS = {
    pb.BUDGET_ACTION_UNSPECIFIED: BudgetAction.REJECT,
    pb.BUDGET_ACTION_REJECT: BudgetAction.REJECT,
    pb.BUDGET_ACTION_DOWNGRADE: BudgetAction.DOWNGRADE,
    pb.BUDGET_ACTION_DEFER: BudgetAction.DEFER,
}


def _fail(field: str, reason: str) -> NoReturn:
    raise InvalidArgument(field, reason)


def _enum_names(enum: Any, values: Mapping[int, Any]) -> str:
    return " or ".join(enum.Name(v) for v in values)


def _enum(value: int, table: Mapping[int, Any], enum: Any, field: str) -> Any:
    """Map a wire enum value; unknown numbers (proto3 enums are open) are rejected."""
    if value in table:
        return table[value]
    try:
        label = enum.Name(value)
    except ValueError:
        label = f"unknown value {value}"
    _fail(field, f"must be {_enum_names(enum, table)} (got {label})")


def _json_kind(value: Any) -> str:
    kinds = [(dict, "an object"), (list, "a list"), (str, "a string"), (bool, "a boolean")]
    for kind, label in kinds:
        if isinstance(value, kind):
            return label
    return "null" if value is None else "a number"


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _json_object(text: str, field: str, what: str) -> dict[str, Any]:
    """Parse strict JSON (no NaN, no duplicate keys) that must be an object."""
    fix = f"send {what} as a JSON object"
    if not text:
        _fail(field, f"required; {fix}")
    try:
        value = json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys
        )
    except json.JSONDecodeError as exc:
        _fail(field, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); {fix}")
    except ValueError as exc:
        _fail(field, f"not valid JSON ({exc}); {fix}")
    if not isinstance(value, dict):
        _fail(field, f"not a JSON object (got {_json_kind(value)}); {fix}")
    return value


def _finite_in(
    value: float, low: float, high: float, field: str, *, low_open: bool = False
) -> float:
    ok = math.isfinite(value) and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        _fail(field, f"must be in {bracket}{low:g}, {high:g}] (got {value!r})")
    return value


def _ratio(value: float, field: str) -> float:
    return _finite_in(value, 0.0, 1.0, field)


def _visible_id(value: str, field: str, *, what: str, required: bool) -> str:
    if not value:
        if required:
            _fail(field, f"required; send the {what}")
        return value
    if len(value) > MAX_REQUEST_ID_CHARS:
        _fail(field, f"at most {MAX_REQUEST_ID_CHARS} characters (got {len(value)})")
    if not _VISIBLE_ASCII.fullmatch(value):
        _fail(field, "must be visible ASCII characters without spaces")
    return value


def check_request_size(message: Any, limit: int) -> None:
    """Reject a request whose serialized size is above ``server.max_request_bytes``.

    The server lets gRPC accept somewhat more than the limit, so this check answers with
    the size, the limit and the key to raise, instead of gRPC's terse RESOURCE_EXHAUSTED.
    """
    size = message.ByteSize()
    if size > limit:
        _fail(
            "request",
            f"serialized size {size} bytes exceeds the limit of {limit} bytes; send a smaller "
            "request (images by url rather than inline data), or raise server.max_request_bytes "
            "(SKINFLINT__SERVER__MAX_REQUEST_BYTES) on the sidecar",
        )


# ---------------------------------------------------------------------------------------------
# CompleteRequest -> Call
# ---------------------------------------------------------------------------------------------


def to_call(request: pb.CompleteRequest, *, prefix: str = "") -> Call:
    """Validate a ``CompleteRequest`` and build the ``Call``; ``prefix`` roots field paths
    (``"request."`` when the request is nested, as in ``EstimateRequest``)."""
    breakpoints: list[tuple[str, CacheTtl]] = []
    model = _model(request.model, f"{prefix}model")
    tools = _tools(request.tools, prefix, breakpoints)
    system = _system(request.system, prefix, breakpoints)
    messages = _messages(request.messages, prefix, breakpoints)
    if len(breakpoints) > MAX_CALLER_BREAKPOINTS:
        path = breakpoints[MAX_CALLER_BREAKPOINTS][0]
        others = ", ".join(p for p, _ in breakpoints[:MAX_CALLER_BREAKPOINTS])
        _fail(
            path,
            f"at most {MAX_CALLER_BREAKPOINTS} caller cache breakpoints per request (this is "
            f"number {MAX_CALLER_BREAKPOINTS + 1}; the others are at {others}); remove some, "
            "or set none and let skinflint place them",
        )
    choice = (
        _tool_choice(request.tool_choice, tools, f"{prefix}tool_choice")
        if request.HasField("tool_choice")
        else None
    )
    params = (
        _params(request.params, f"{prefix}params")
        if request.HasField("params")
        else GenerationParams()
    )
    attribution = (
        _attribution(request.attribution, f"{prefix}attribution")
        if request.HasField("attribution")
        else Attribution()
    )
    policy = _policy(request.policy, f"{prefix}policy") if request.HasField("policy") else Policy()
    request_id = _visible_id(
        request.request_id, f"{prefix}request_id", what="request id", required=False
    )
    labels = _labels(request.labels, f"{prefix}labels")
    return Call(
        model=model,
        messages=messages,
        request_id=request_id or new_request_id(),
        system=system,
        tools=tools,
        tool_choice=choice,
        params=params,
        attribution=attribution,
        policy=policy,
        labels=labels,
    )


def call_request_id(request: pb.CompleteRequest, *, prefix: str = "") -> str:
    """The request's id validated as ``to_call`` does ("" when none is sent; ``to_call``
    then generates one). For ``call_memo``, which reuses the rest of a converted request."""
    return _visible_id(request.request_id, f"{prefix}request_id", what="request id", required=False)


def _model(model: str, field: str) -> ModelSpec:
    if not model:
        _fail(field, f"required; {_MODEL_HINT}")
    if model == "auto":
        return ModelSpec(requested=model, kind=ModelKind.AUTO)
    if model in {tier.value for tier in Tier}:
        return ModelSpec(requested=model, kind=ModelKind.TIER, tier=Tier(model))
    provider, slash, name = model.partition("/")
    if not slash:
        _fail(field, f'"{model}" is not "auto", a tier name or "provider/model"; {_MODEL_HINT}')
    if not _PROVIDER.fullmatch(provider):
        _fail(field, f'provider "{provider}" must be lowercase letters, digits, "_" or "-"')
    if not name or any(ch.isspace() for ch in name):
        _fail(field, f'model name after "{provider}/" must be non-empty without spaces')
    return ModelSpec(requested=model, kind=ModelKind.PINNED, provider=provider, name=name)


def _breakpoint(holder: Any, path: str, breakpoints: list[tuple[str, CacheTtl]]) -> CacheTtl | None:
    if not holder.HasField("cache_breakpoint"):
        return None
    ttl_value = holder.cache_breakpoint.ttl
    if ttl_value == pb.CacheBreakpoint.TTL_UNSPECIFIED:
        return None
    ttl = _enum(ttl_value, _TTLS, pb.CacheBreakpoint.Ttl, f"{path}.cache_breakpoint.ttl")
    breakpoints.append((f"{path}.cache_breakpoint", ttl))
    return ttl


def _tools(tools: Any, prefix: str, breakpoints: list[tuple[str, CacheTtl]]) -> tuple[Tool, ...]:
    out: list[Tool] = []
    seen: dict[str, int] = {}
    for i, tool in enumerate(tools):
        path = f"{prefix}tools[{i}]"
        if not _TOOL_NAME.fullmatch(tool.name):
            _fail(
                f"{path}.name",
                f"must be 1-64 letters, digits, '_' or '-' (got {tool.name!r})",
            )
        if tool.name in seen:
            _fail(
                f"{path}.name",
                f'duplicate tool name "{tool.name}" (also {prefix}tools[{seen[tool.name]}].name); '
                "tool names must be unique",
            )
        seen[tool.name] = i
        schema = _json_object(
            tool.input_schema_json, f"{path}.input_schema_json", "the tool's input JSON Schema"
        )
        if schema.get("type") != "object":
            got = json.dumps(schema["type"]) if "type" in schema else "no type"
            _fail(
                f"{path}.input_schema_json",
                f'the schema must have "type": "object" (got {got}); tool inputs are objects',
            )
        ttl = _breakpoint(tool, path, breakpoints)
        out.append(Tool(tool.name, tool.description, schema, cache_ttl=ttl))
    return tuple(out)


def _system(
    blocks: Any, prefix: str, breakpoints: list[tuple[str, CacheTtl]]
) -> tuple[SystemBlock, ...]:
    out = []
    for i, block in enumerate(blocks):
        path = f"{prefix}system[{i}]"
        if not block.text.strip():
            _fail(f"{path}.text", "must not be empty or only whitespace; drop the block instead")
        out.append(SystemBlock(block.text, cache_ttl=_breakpoint(block, path, breakpoints)))
    return tuple(out)


def _messages(
    messages: Any, prefix: str, breakpoints: list[tuple[str, CacheTtl]]
) -> tuple[Message, ...]:
    if not messages:
        _fail(f"{prefix}messages", "required; send at least one message, the first a user turn")
    out: list[Message] = []
    tool_use_ids: dict[str, str] = {}
    for i, message in enumerate(messages):
        path = f"{prefix}messages[{i}]"
        role = _enum(message.role, _ROLES, pb.Role, f"{path}.role")
        if i == 0 and role is not Role.USER:
            _fail(f"{path}.role", "the first message must be a user turn (ROLE_USER)")
        if not message.content:
            _fail(f"{path}.content", "at least one content part is required")
        parts = tuple(
            _part(part, role, f"{path}.content[{j}]", tool_use_ids, breakpoints)
            for j, part in enumerate(message.content)
        )
        out.append(Message(role=role, parts=parts))
    return tuple(out)


def _part(
    part: pb.ContentPart,
    role: Role,
    path: str,
    tool_use_ids: dict[str, str],
    breakpoints: list[tuple[str, CacheTtl]],
) -> Part:
    kind = part.WhichOneof("part")
    if kind is None:
        _fail(path, "no part set; set one of text, image, tool_use, tool_result")
    converted: Part
    if kind == "text":
        if not part.text.text.strip():
            _fail(f"{path}.text.text", "must not be empty or only whitespace")
        converted = TextPart(part.text.text)
    elif kind == "image":
        converted = _image(part.image, f"{path}.image")
    elif kind == "tool_use":
        converted = _tool_use(part.tool_use, role, f"{path}.tool_use", tool_use_ids)
    else:
        converted = _tool_result(part.tool_result, role, f"{path}.tool_result", tool_use_ids)
    ttl = _breakpoint(part, path, breakpoints)
    return converted if ttl is None else dataclasses.replace(converted, cache_ttl=ttl)


def _image(image: pb.ImagePart, path: str) -> ImagePart:
    if image.media_type not in IMAGE_MEDIA_TYPES:
        _fail(
            f"{path}.media_type",
            f"must be one of {', '.join(IMAGE_MEDIA_TYPES)} (got {image.media_type!r})",
        )
    source = image.WhichOneof("source")
    if source is None:
        _fail(path, "no source; set data (raw image bytes) or url (https)")
    if source == "data":
        if not image.data:
            _fail(f"{path}.data", "empty; send the raw image bytes (not base64)")
        return ImagePart(image.media_type, data=image.data)
    if not image.url.startswith("https://") or len(image.url) <= len("https://"):
        _fail(f"{path}.url", f"must be an https:// URL (got {image.url[:80]!r})")
    return ImagePart(image.media_type, url=image.url)


def _tool_use(
    use: pb.ToolUsePart, role: Role, path: str, tool_use_ids: dict[str, str]
) -> ToolUsePart:
    if role is not Role.ASSISTANT:
        _fail(path, "tool_use parts belong in assistant turns (they are the model's calls)")
    if not use.id:
        _fail(f"{path}.id", "required; send the id the model gave this tool call")
    if use.id in tool_use_ids:
        _fail(f"{path}.id", f'"{use.id}" is already the id of {tool_use_ids[use.id]}')
    if not _TOOL_NAME.fullmatch(use.name):
        _fail(f"{path}.name", f"must be 1-64 letters, digits, '_' or '-' (got {use.name!r})")
    arguments = _json_object(use.input_json, f"{path}.input_json", "the arguments")
    tool_use_ids[use.id] = path
    return ToolUsePart(use.id, use.name, arguments)


def _tool_result(
    result: pb.ToolResultPart, role: Role, path: str, tool_use_ids: Mapping[str, str]
) -> ToolResultPart:
    if role is not Role.USER:
        _fail(path, "tool_result parts belong in user turns (they answer the model's calls)")
    if not result.tool_use_id:
        _fail(f"{path}.tool_use_id", "required; send the id of the tool_use this answers")
    if result.tool_use_id not in tool_use_ids:
        _fail(
            f"{path}.tool_use_id",
            f'"{result.tool_use_id}" is not the id of any earlier tool_use part',
        )
    return ToolResultPart(result.tool_use_id, result.content, is_error=result.is_error)


def _tool_choice(choice: pb.ToolChoice, tools: tuple[Tool, ...], path: str) -> ToolChoice | None:
    if choice.mode == pb.ToolChoice.MODE_UNSPECIFIED:
        if choice.name:
            _fail(f"{path}.name", "only used with MODE_TOOL; set mode to MODE_TOOL or drop name")
        return None
    mode = _enum(choice.mode, _CHOICES, pb.ToolChoice.Mode, f"{path}.mode")
    if mode in (ToolChoiceMode.ANY, ToolChoiceMode.TOOL) and not tools:
        _fail(f"{path}.mode", f"{pb.ToolChoice.Mode.Name(choice.mode)} needs at least one tool")
    if mode is not ToolChoiceMode.TOOL:
        if choice.name:
            _fail(f"{path}.name", "only used with MODE_TOOL; set mode to MODE_TOOL or drop name")
        return ToolChoice(mode)
    names = [tool.name for tool in tools]
    if choice.name not in names:
        _fail(
            f"{path}.name",
            f'"{choice.name}" is not one of the request\'s tools ({", ".join(names)}); '
            "name a tool from tools",
        )
    return ToolChoice(mode, name=choice.name)


def _params(params: pb.GenerationParams, path: str) -> GenerationParams:
    max_tokens = None
    if params.HasField("max_tokens"):
        max_tokens = params.max_tokens
        if not 0 < max_tokens <= MAX_OUTPUT_TOKENS:
            _fail(
                f"{path}.max_tokens",
                f"must be between 1 and {MAX_OUTPUT_TOKENS} (got {max_tokens}); "
                "omit it to use the feature's default cap",
            )
    temperature = (
        _finite_in(params.temperature, 0.0, 2.0, f"{path}.temperature")
        if params.HasField("temperature")
        else None
    )
    top_p = (
        _finite_in(params.top_p, 0.0, 1.0, f"{path}.top_p", low_open=True)
        if params.HasField("top_p")
        else None
    )
    top_k = None
    if params.HasField("top_k"):
        top_k = params.top_k
        if top_k <= 0:
            _fail(f"{path}.top_k", f"must be greater than 0 (got {top_k})")
    for i, stop in enumerate(params.stop_sequences):
        if not stop:
            _fail(f"{path}.stop_sequences[{i}]", "must not be empty")
    penalties = {}
    for name in ("presence_penalty", "frequency_penalty"):
        if params.HasField(name):
            penalties[name] = _finite_in(getattr(params, name), -2.0, 2.0, f"{path}.{name}")
    thinking = None
    if params.HasField("thinking_budget_tokens"):
        thinking = params.thinking_budget_tokens
        if thinking <= 0:
            _fail(f"{path}.thinking_budget_tokens", f"must be greater than 0 (got {thinking})")
        if max_tokens is not None and thinking >= max_tokens:
            _fail(
                f"{path}.thinking_budget_tokens",
                f"must be less than {path}.max_tokens ({max_tokens}); thinking tokens count "
                "toward max_tokens",
            )
    effort = params.reasoning_effort or None
    if effort is not None and effort not in REASONING_EFFORTS:
        _fail(
            f"{path}.reasoning_effort",
            f"must be one of {', '.join(REASONING_EFFORTS)} (got {effort!r})",
        )
    provider_params = (
        _json_object(
            params.provider_params_json,
            f"{path}.provider_params_json",
            "provider-specific parameters",
        )
        if params.provider_params_json
        else None
    )
    response_format = (
        _response_format(params.response_format, f"{path}.response_format")
        if params.HasField("response_format")
        else None
    )
    return GenerationParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        stop_sequences=tuple(params.stop_sequences),
        response_format=response_format,
        seed=params.seed if params.HasField("seed") else None,
        presence_penalty=penalties.get("presence_penalty"),
        frequency_penalty=penalties.get("frequency_penalty"),
        thinking_budget_tokens=thinking,
        reasoning_effort=effort,
        provider_params=provider_params,
    )


def _response_format(fmt: pb.ResponseFormat, path: str) -> ResponseFormat | None:
    kind = fmt.type
    if kind not in (
        pb.ResponseFormat.TYPE_UNSPECIFIED,
        pb.ResponseFormat.TYPE_TEXT,
        pb.ResponseFormat.TYPE_JSON_OBJECT,
        pb.ResponseFormat.TYPE_JSON_SCHEMA,
    ):
        _fail(
            f"{path}.type",
            f"unknown value {kind}; use TYPE_TEXT, TYPE_JSON_OBJECT or TYPE_JSON_SCHEMA",
        )
    if kind != pb.ResponseFormat.TYPE_JSON_SCHEMA:
        for name in ("schema_json", "name"):
            if getattr(fmt, name):
                _fail(f"{path}.{name}", "only used with TYPE_JSON_SCHEMA; drop it or change type")
        if kind == pb.ResponseFormat.TYPE_JSON_OBJECT:
            return ResponseFormat(ResponseFormatType.JSON_OBJECT, strict=fmt.strict)
        return None  # plain text, the same as not asking for a format
    schema = _json_object(fmt.schema_json, f"{path}.schema_json", "the response's JSON Schema")
    if fmt.name and not _TOOL_NAME.fullmatch(fmt.name):
        _fail(f"{path}.name", f"must be 1-64 letters, digits, '_' or '-' (got {fmt.name!r})")
    return ResponseFormat(ResponseFormatType.JSON_SCHEMA, fmt.name, schema, fmt.strict)


def _attribution(attribution: pb.Attribution, path: str) -> Attribution:
    values = {}
    for name in ("tenant", "team", "feature", "user"):
        value = getattr(attribution, name)
        if value and not SCOPE_VALUE_PATTERN.fullmatch(value):
            _fail(
                f"{path}.{name}",
                f"must be 1-128 letters, digits, '.', '_' or '-' (got {value[:140]!r})",
            )
        values[name] = value
    return Attribution(
        tenant=values["tenant"] or DEFAULT_TENANT,
        team=values["team"],
        feature=values["feature"],
        user=values["user"],
    )


def _policy(policy: pb.Policy, path: str) -> Policy:
    if policy.cache_ttl_seconds < 0:
        _fail(
            f"{path}.cache_ttl_seconds",
            f"must not be negative (got {policy.cache_ttl_seconds}); 0 means the feature's TTL",
        )
    if policy.max_cost_nanousd < 0:
        _fail(
            f"{path}.max_cost_nanousd",
            f"must not be negative (got {policy.max_cost_nanousd}); 0 means no ceiling",
        )
    lane = (
        _enum(policy.lane, _LANES, pb.Lane, f"{path}.lane")
        if policy.lane != pb.LANE_UNSPECIFIED
        else None
    )
    tiers: dict[str, Tier | None] = {}
    for name in ("min_tier", "max_tier"):
        value = getattr(policy, name)
        tiers[name] = (
            _enum(value, _TIERS, pb.Tier, f"{path}.{name}")
            if value != pb.TIER_UNSPECIFIED
            else None
        )
    low, high = tiers["min_tier"], tiers["max_tier"]
    if low is not None and high is not None and low.rank > high.rank:
        _fail(
            f"{path}.min_tier",
            f"{pb.Tier.Name(policy.min_tier)} is above {path}.max_tier "
            f"{pb.Tier.Name(policy.max_tier)}",
        )
    task_type = policy.task_type or None
    if task_type is not None and task_type not in TASK_TYPES:
        _fail(f"{path}.task_type", f"must be one of {', '.join(TASK_TYPES)} (got {task_type!r})")
    return Policy(
        no_store=policy.no_store,
        no_lookup=policy.no_lookup,
        cache_ttl_seconds=policy.cache_ttl_seconds or None,
        lane=lane,
        min_tier=low,
        max_tier=high,
        max_cost_nanousd=policy.max_cost_nanousd or None,
        task_type=task_type,
    )


def _labels(labels: Mapping[str, str], path: str) -> dict[str, str]:
    if len(labels) > MAX_LABELS:
        _fail(path, f"at most {MAX_LABELS} labels (got {len(labels)})")
    for key, value in labels.items():
        if not key or len(key) > 64 or any(ch.isspace() for ch in key):
            _fail(f"{path}[{key!r}]", "label keys are 1-64 characters without spaces")
        if len(value) > 256:
            _fail(f"{path}[{key!r}]", f"label values are at most 256 characters (got {len(value)})")
    return dict(labels)


# ---------------------------------------------------------------------------------------------
# The other requests
# ---------------------------------------------------------------------------------------------


def to_estimate_call(request: pb.EstimateRequest) -> Call:
    if not request.HasField("request"):
        _fail("request", "required; send the CompleteRequest to estimate")
    return to_call(request.request, prefix="request.")


def to_submission(request: pb.SubmitRequest) -> Submission:
    if not request.HasField("request"):
        _fail("request", "required; send the CompleteRequest to run on the async lane")
    call = to_call(request.request, prefix="request.")
    if call.policy.lane not in (None, Lane.ASYNC):
        _fail(
            "request.policy.lane",
            "Submit always uses the async lane; leave lane unset or LANE_ASYNC "
            "(use Complete for the other lanes)",
        )
    key = _visible_id(
        request.idempotency_key, "idempotency_key", what="idempotency key", required=False
    )
    return Submission(call=call, idempotency_key=key)


def to_job_id(request: pb.GetJobRequest | pb.CancelJobRequest) -> str:
    return _visible_id(request.job_id, "job_id", what="job id Submit returned", required=True)


def to_budget_id(value: str, field: str = "id") -> str:
    if not value:
        _fail(field, "required; send the budget's id")
    if not BUDGET_ID_PATTERN.fullmatch(value):
        _fail(
            field,
            f"must be 1-64 lowercase letters, digits, '-', '_' or '.' (got {value[:80]!r})",
        )
    return value


def to_budget_spec(request: pb.SetBudgetRequest) -> BudgetSpec:
    if not request.HasField("budget"):
        _fail("budget", "required; send the BudgetSpec to create or replace")
    spec = request.budget
    budget_id = to_budget_id(spec.id, "budget.id")
    try:
        scope = parse_scope(spec.scope)
    except ValueError as exc:
        _fail("budget.scope", str(exc))
    if spec.window == pb.BUDGET_WINDOW_UNSPECIFIED:
        _fail(
            "budget.window",
            f"required; set {_enum_names(pb.BudgetWindow, _WINDOWS)}",
        )
    window = _enum(spec.window, _WINDOWS, pb.BudgetWindow, "budget.window")
    for name in ("limit_nanousd", "limit_tokens"):
        if getattr(spec, name) < 0:
            _fail(f"budget.{name}", f"must not be negative (got {getattr(spec, name)})")
    if spec.limit_nanousd == 0 and spec.limit_tokens == 0:
        _fail(
            "budget.limit_nanousd",
            "at least one limit is required; set limit_nanousd and/or limit_tokens above 0",
        )
    seen: set[int] = set()
    for i, percent in enumerate(spec.soft_thresholds_percent):
        field = f"budget.soft_thresholds_percent[{i}]"
        if not 1 <= percent <= 100:
            _fail(field, f"must be between 1 and 100 (got {percent})")
        if percent in seen:
            _fail(field, f"{percent} is listed twice")
        seen.add(percent)
    action = _enum(spec.action, _ACTIONS, pb.BudgetAction, "budget.action")
    return BudgetSpec(
        id=budget_id,
        scope=scope,
        window=window,
        limit_nanousd=spec.limit_nanousd,
        limit_tokens=spec.limit_tokens,
        soft_thresholds_percent=tuple(sorted(seen)),
        action=action,
    )


def to_budget_query(request: pb.ListBudgetsRequest) -> BudgetListQuery:
    if request.page_size > MAX_PAGE_SIZE:
        _fail("page_size", f"at most {MAX_PAGE_SIZE} (got {request.page_size}); 0 means 100")
    return BudgetListQuery(
        scope_prefix=request.scope_prefix,
        page_size=request.page_size or DEFAULT_PAGE_SIZE,
        page_token=request.page_token,
    )


def to_projection(request: pb.ProjectRequest) -> ProjectionRequest:
    if request.months > MAX_MONTHS:
        _fail("months", f"must be between 1 and {MAX_MONTHS} (got {request.months}); 0 means 6")
    months = request.months or DEFAULT_MONTHS
    source = request.WhichOneof("source")
    if source is None:
        _fail("source", "required; set workload (a workload description) or ledger (history)")
    if source == "ledger":
        ledger = request.ledger
        if not 1 <= ledger.last_days <= MAX_LEDGER_DAYS:
            _fail(
                "ledger.last_days",
                f"must be between 1 and {MAX_LEDGER_DAYS} (got {ledger.last_days})",
            )
        growth = _growth(ledger.monthly_growth, "ledger.monthly_growth")
        return ProjectionRequest(LedgerHistory(ledger.last_days, growth), months)
    workload = request.workload
    if not workload.features:
        _fail("workload.features", "required; describe at least one feature's workload")
    features = []
    names: dict[str, int] = {}
    for i, feature in enumerate(workload.features):
        features.append(_feature_workload(feature, f"workload.features[{i}]", names, i))
    growth = _growth(workload.monthly_growth, "workload.monthly_growth")
    return ProjectionRequest(WorkloadModel(tuple(features), growth), months)


def _growth(value: float, field: str) -> float:
    if not math.isfinite(value) or not -1.0 < value <= 10.0:
        _fail(field, f"must be in (-1, 10] (got {value!r}); 0.58 means +58% a month")
    return value


def _feature_workload(
    feature: pb.FeatureWorkload, path: str, names: dict[str, int], index: int
) -> FeatureWorkload:
    if not SCOPE_VALUE_PATTERN.fullmatch(feature.feature):
        _fail(
            f"{path}.feature",
            f"must be 1-128 letters, digits, '.', '_' or '-' (got {feature.feature!r})",
        )
    if feature.feature in names:
        _fail(
            f"{path}.feature",
            f'"{feature.feature}" is also workload.features[{names[feature.feature]}]',
        )
    names[feature.feature] = index
    for name in ("requests_per_month", "avg_input_tokens", "avg_output_tokens"):
        if getattr(feature, name) < 0:
            _fail(f"{path}.{name}", f"must not be negative (got {getattr(feature, name)})")
    if not feature.tier_mix:
        _fail(
            f"{path}.tier_mix",
            "required; give the share of requests per tier (local, small, mid, frontier), "
            "summing to 1",
        )
    tier_names = [tier.value for tier in Tier]
    mix: dict[Tier, float] = {}
    for key, share in sorted(feature.tier_mix.items()):
        if key not in tier_names:
            _fail(f"{path}.tier_mix[{key!r}]", f"unknown tier; use {', '.join(tier_names)}")
        mix[Tier(key)] = _ratio(share, f"{path}.tier_mix[{key!r}]")
    total = math.fsum(mix.values())
    if abs(total - 1.0) > 1e-6:
        _fail(f"{path}.tier_mix", f"shares must sum to 1 (got {total:.6g})")
    return FeatureWorkload(
        feature=feature.feature,
        requests_per_month=feature.requests_per_month,
        avg_input_tokens=feature.avg_input_tokens,
        avg_output_tokens=feature.avg_output_tokens,
        tier_mix=mix,
        cache_hit_rate=_ratio(feature.cache_hit_rate, f"{path}.cache_hit_rate"),
        prompt_cache_share=_ratio(feature.prompt_cache_share, f"{path}.prompt_cache_share"),
        batchable_share=_ratio(feature.batchable_share, f"{path}.batchable_share"),
    )
