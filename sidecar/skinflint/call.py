"""The internal, provider-neutral form of one completion request (shared by every layer).

Transports build a ``Call`` after validating the wire message; stages and providers read it.
Every type here is a frozen dataclass and every JSON value inside is deep-frozen
(``Mapping`` proxies and tuples), so a stage can never change what another stage saw.
``Call.key_material()`` is the single definition of what goes into the response-cache key.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeAlias

#: A parsed JSON value, deep-frozen: objects are read-only mappings, arrays are tuples.
JsonValue: TypeAlias = (
    bool | int | float | str | tuple["JsonValue", ...] | Mapping[str, "JsonValue"] | None
)


def freeze_json(value: Any) -> JsonValue:
    """Deep-freeze a value from ``json.loads`` (dicts -> read-only mappings, lists -> tuples)."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze_json(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze_json(v) for v in value)
    return value


def thaw_json(value: JsonValue) -> Any:
    """The plain ``dict``/``list`` form of a frozen JSON value (what ``json`` and the core take)."""
    if isinstance(value, Mapping):
        return {k: thaw_json(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw_json(v) for v in value]
    return value


def _frozen_object(value: Mapping[str, Any]) -> Mapping[str, JsonValue]:
    frozen = freeze_json(dict(value))
    assert isinstance(frozen, Mapping)
    return frozen


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class CacheTtl(StrEnum):
    """TTL of a prompt-cache breakpoint placed by the caller."""

    FIVE_MINUTES = "5m"
    ONE_HOUR = "1h"


class Tier(StrEnum):
    """Model tiers, cheapest first; ``rank`` orders them for routing bounds."""

    LOCAL = "local"
    SMALL = "small"
    MID = "mid"
    FRONTIER = "frontier"

    @property
    def rank(self) -> int:
        return list(Tier).index(self)


class Lane(StrEnum):
    INTERACTIVE = "interactive"
    ASYNC = "async"
    LOCAL = "local"


class ModelKind(StrEnum):
    AUTO = "auto"  # the router picks the tier
    TIER = "tier"  # a tier name: the router picks the model within it
    PINNED = "pinned"  # an explicit provider/model, always honoured


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What the caller asked to run; ``requested`` is the text as sent (it goes in the key)."""

    requested: str
    kind: ModelKind
    tier: Tier | None = None
    provider: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str
    cache_ttl: CacheTtl | None = None


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image given inline (``data``, raw bytes) or by ``url``; exactly one is set."""

    media_type: str
    data: bytes | None = None
    url: str | None = None
    cache_ttl: CacheTtl | None = None


@dataclass(frozen=True, slots=True)
class ToolUsePart:
    id: str
    name: str
    input: Mapping[str, JsonValue]
    cache_ttl: CacheTtl | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input", _frozen_object(self.input))


@dataclass(frozen=True, slots=True)
class ToolResultPart:
    tool_use_id: str
    content: str
    is_error: bool = False
    cache_ttl: CacheTtl | None = None


Part: TypeAlias = TextPart | ImagePart | ToolUsePart | ToolResultPart


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class SystemBlock:
    text: str
    cache_ttl: CacheTtl | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    input_schema: Mapping[str, JsonValue]
    cache_ttl: CacheTtl | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_schema", _frozen_object(self.input_schema))


class ToolChoiceMode(StrEnum):
    AUTO = "auto"
    ANY = "any"
    NONE = "none"
    TOOL = "tool"


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: ToolChoiceMode
    name: str | None = None  # set only for ``ToolChoiceMode.TOOL``


class ResponseFormatType(StrEnum):
    JSON_OBJECT = "json_object"
    JSON_SCHEMA = "json_schema"


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """A structured-output request; plain text is ``None`` on ``GenerationParams``."""

    type: ResponseFormatType
    name: str = ""
    schema: Mapping[str, JsonValue] | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        if self.schema is not None:
            object.__setattr__(self, "schema", _frozen_object(self.schema))


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Generation parameters; ``None`` means "not sent" (the provider or feature default)."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: tuple[str, ...] = ()
    response_format: ResponseFormat | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    thinking_budget_tokens: int | None = None
    reasoning_effort: str | None = None
    provider_params: Mapping[str, JsonValue] | None = None

    def __post_init__(self) -> None:
        if self.provider_params is not None:
            object.__setattr__(self, "provider_params", _frozen_object(self.provider_params))


DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who the call is for. The tenant namespaces the response cache: never shared."""

    tenant: str = DEFAULT_TENANT
    team: str = ""
    feature: str = ""
    user: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    """Per-request policy; ``None`` fields defer to the feature's configuration."""

    no_store: bool = False
    no_lookup: bool = False
    cache_ttl_seconds: int | None = None
    lane: Lane | None = None
    min_tier: Tier | None = None
    max_tier: Tier | None = None
    max_cost_nanousd: int | None = None
    task_type: str | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """One completion request, validated, in provider-neutral terms."""

    model: ModelSpec
    messages: tuple[Message, ...]
    request_id: str
    system: tuple[SystemBlock, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    params: GenerationParams = field(default_factory=GenerationParams)
    attribution: Attribution = field(default_factory=Attribution)
    policy: Policy = field(default_factory=Policy)
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Values the pipeline derives from this call's parts (the response-cache decision),
    #: kept with it so a repeated request (the transport's kept ``Call`` under a new id, see
    #: ``with_request_id``) derives them once. Shared by those twins only: never compared,
    #: never passed to ``__init__``, so ``dataclasses.replace`` starts it empty.
    derived: dict[object, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    def with_request_id(self, request_id: str) -> Call:
        """This call under another id, sharing every other (frozen) part with this one.

        Performance: a field copy instead of ``dataclasses.replace``, which re-runs
        ``__init__`` and ``__post_init__`` (the labels are already a read-only copy). The
        twin shares ``derived``: the id changes nothing derived from the other parts.
        """
        twin = object.__new__(Call)
        for name in _CALL_FIELDS:
            object.__setattr__(twin, name, getattr(self, name))
        object.__setattr__(twin, "request_id", request_id)
        return twin

    @property
    def namespace(self) -> str:
        """The response-cache namespace: one per tenant, so no answer crosses tenants."""
        return f"tenant:{self.attribution.tenant}"

    def caller_cache_ttls(self) -> tuple[CacheTtl, ...]:
        """The TTLs of the caller-placed prompt-cache breakpoints, in prompt order."""
        placed: list[CacheTtl | None] = [tool.cache_ttl for tool in self.tools]
        placed += [block.cache_ttl for block in self.system]
        placed += [part.cache_ttl for message in self.messages for part in message.parts]
        return tuple(ttl for ttl in placed if ttl is not None)

    def key_material(self) -> dict[str, Any]:
        """The request as ``skinflint._native.cache_key`` takes it (shape in ``_native.pyi``).

        Only what changes the answer goes in: the tenant namespace, the *requested* model
        text, output-affecting parameters (``None`` dropped, tool choice included), tools,
        system texts and messages. Request id, labels, attribution other than the tenant,
        policy and cache breakpoints are left out: they never change the model's output.
        """
        return {
            "namespace": self.namespace,
            "model": self.model.requested,
            "params": _params_material(self.params, self.tool_choice),
            "tools": [_tool_material(tool) for tool in self.tools],
            "system": [block.text for block in self.system],
            "messages": [
                {"role": message.role.value, "content": [_part_material(p) for p in message.parts]}
                for message in self.messages
            ],
        }


_CALL_FIELDS = tuple(f.name for f in fields(Call))


def new_request_id() -> str:
    """A random (version 4) UUID in its usual text form, for a call sent without an id.

    Performance: ``str(uuid.uuid4())`` costs ~3.7 µs (a ``UUID`` object, and a ``getrandom``
    system call that releases the GIL and may wait to get it back, on every cache hit). An
    id only has to be unique, not unguessable, so the bits come from ``random`` (seeded from
    the OS at start and again in a forked child) and are formatted directly (~2.4 µs).
    """
    h = f"{random.getrandbits(128):032x}"
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


def _params_material(params: GenerationParams, choice: ToolChoice | None) -> dict[str, Any]:
    material: dict[str, Any] = {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "stop_sequences": list(params.stop_sequences) or None,
        "seed": params.seed,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "thinking_budget_tokens": params.thinking_budget_tokens,
        "reasoning_effort": params.reasoning_effort,
        "provider_params": (
            thaw_json(params.provider_params) if params.provider_params is not None else None
        ),
    }
    if params.response_format is not None:
        fmt = params.response_format
        response_format: dict[str, Any] = {"type": fmt.type.value, "strict": fmt.strict}
        if fmt.name:
            response_format["name"] = fmt.name
        if fmt.schema is not None:
            response_format["schema"] = thaw_json(fmt.schema)
        material["response_format"] = response_format
    if choice is not None:
        material["tool_choice"] = {"mode": choice.mode.value}
        if choice.name is not None:
            material["tool_choice"]["name"] = choice.name
    # Only absent parameters are dropped; JSON values inside keep their nulls.
    return {name: value for name, value in material.items() if value is not None}


def _tool_material(tool: Tool) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.description,
        "input_schema": thaw_json(tool.input_schema),
    }


def _part_material(part: Part) -> dict[str, Any]:
    match part:
        case TextPart(text=text):
            return {"type": "text", "text": text}
        case ImagePart(media_type=media_type, data=data, url=url):
            if data is not None:
                encoded = base64.b64encode(data).decode("ascii")
                return {"type": "image", "media_type": media_type, "data": encoded}
            return {"type": "image", "media_type": media_type, "url": url}
        case ToolUsePart(id=use_id, name=name, input=tool_input):
            return {"type": "tool_use", "id": use_id, "name": name, "input": thaw_json(tool_input)}
        case ToolResultPart(tool_use_id=use_id, content=content, is_error=is_error):
            return {
                "type": "tool_result",
                "tool_use_id": use_id,
                "content": content,
                "is_error": is_error,
            }
    raise TypeError(f"unknown content part type {type(part).__name__}")
