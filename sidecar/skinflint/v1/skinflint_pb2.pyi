import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_USER: _ClassVar[Role]
    ROLE_ASSISTANT: _ClassVar[Role]

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    TIER_LOCAL: _ClassVar[Tier]
    TIER_SMALL: _ClassVar[Tier]
    TIER_MID: _ClassVar[Tier]
    TIER_FRONTIER: _ClassVar[Tier]

class Lane(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LANE_UNSPECIFIED: _ClassVar[Lane]
    LANE_INTERACTIVE: _ClassVar[Lane]
    LANE_ASYNC: _ClassVar[Lane]
    LANE_LOCAL: _ClassVar[Lane]

class StopReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STOP_REASON_UNSPECIFIED: _ClassVar[StopReason]
    STOP_REASON_END_TURN: _ClassVar[StopReason]
    STOP_REASON_MAX_TOKENS: _ClassVar[StopReason]
    STOP_REASON_STOP_SEQUENCE: _ClassVar[StopReason]
    STOP_REASON_TOOL_USE: _ClassVar[StopReason]
    STOP_REASON_REFUSAL: _ClassVar[StopReason]
    STOP_REASON_CONTENT_FILTER: _ClassVar[StopReason]
    STOP_REASON_PAUSE_TURN: _ClassVar[StopReason]

class CacheStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_STATUS_UNSPECIFIED: _ClassVar[CacheStatus]
    CACHE_STATUS_MISS: _ClassVar[CacheStatus]
    CACHE_STATUS_EXACT: _ClassVar[CacheStatus]
    CACHE_STATUS_SEMANTIC: _ClassVar[CacheStatus]
    CACHE_STATUS_COALESCED: _ClassVar[CacheStatus]
    CACHE_STATUS_BYPASS: _ClassVar[CacheStatus]

class Lever(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEVER_UNSPECIFIED: _ClassVar[Lever]
    LEVER_RESPONSE_CACHE: _ClassVar[Lever]
    LEVER_ROUTING: _ClassVar[Lever]
    LEVER_PROMPT_CACHING: _ClassVar[Lever]
    LEVER_BATCHING: _ClassVar[Lever]
    LEVER_LOCAL_TIER: _ClassVar[Lever]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_SUBMITTED: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
    JOB_STATE_EXPIRED: _ClassVar[JobState]

class BudgetWindow(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_WINDOW_UNSPECIFIED: _ClassVar[BudgetWindow]
    BUDGET_WINDOW_MINUTE: _ClassVar[BudgetWindow]
    BUDGET_WINDOW_HOUR: _ClassVar[BudgetWindow]
    BUDGET_WINDOW_DAY: _ClassVar[BudgetWindow]
    BUDGET_WINDOW_MONTH: _ClassVar[BudgetWindow]
    BUDGET_WINDOW_TOTAL: _ClassVar[BudgetWindow]

class BudgetAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_ACTION_UNSPECIFIED: _ClassVar[BudgetAction]
    BUDGET_ACTION_REJECT: _ClassVar[BudgetAction]
    BUDGET_ACTION_DOWNGRADE: _ClassVar[BudgetAction]
    BUDGET_ACTION_DEFER: _ClassVar[BudgetAction]
ROLE_UNSPECIFIED: Role
ROLE_USER: Role
ROLE_ASSISTANT: Role
TIER_UNSPECIFIED: Tier
TIER_LOCAL: Tier
TIER_SMALL: Tier
TIER_MID: Tier
TIER_FRONTIER: Tier
LANE_UNSPECIFIED: Lane
LANE_INTERACTIVE: Lane
LANE_ASYNC: Lane
LANE_LOCAL: Lane
STOP_REASON_UNSPECIFIED: StopReason
STOP_REASON_END_TURN: StopReason
STOP_REASON_MAX_TOKENS: StopReason
STOP_REASON_STOP_SEQUENCE: StopReason
STOP_REASON_TOOL_USE: StopReason
STOP_REASON_REFUSAL: StopReason
STOP_REASON_CONTENT_FILTER: StopReason
STOP_REASON_PAUSE_TURN: StopReason
CACHE_STATUS_UNSPECIFIED: CacheStatus
CACHE_STATUS_MISS: CacheStatus
CACHE_STATUS_EXACT: CacheStatus
CACHE_STATUS_SEMANTIC: CacheStatus
CACHE_STATUS_COALESCED: CacheStatus
CACHE_STATUS_BYPASS: CacheStatus
LEVER_UNSPECIFIED: Lever
LEVER_RESPONSE_CACHE: Lever
LEVER_ROUTING: Lever
LEVER_PROMPT_CACHING: Lever
LEVER_BATCHING: Lever
LEVER_LOCAL_TIER: Lever
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_SUBMITTED: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
JOB_STATE_EXPIRED: JobState
BUDGET_WINDOW_UNSPECIFIED: BudgetWindow
BUDGET_WINDOW_MINUTE: BudgetWindow
BUDGET_WINDOW_HOUR: BudgetWindow
BUDGET_WINDOW_DAY: BudgetWindow
BUDGET_WINDOW_MONTH: BudgetWindow
BUDGET_WINDOW_TOTAL: BudgetWindow
BUDGET_ACTION_UNSPECIFIED: BudgetAction
BUDGET_ACTION_REJECT: BudgetAction
BUDGET_ACTION_DOWNGRADE: BudgetAction
BUDGET_ACTION_DEFER: BudgetAction

class CompleteRequest(_message.Message):
    __slots__ = ("model", "system", "messages", "tools", "tool_choice", "params", "attribution", "policy", "request_id", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    model: str
    system: _containers.RepeatedCompositeFieldContainer[SystemBlock]
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    tool_choice: ToolChoice
    params: GenerationParams
    attribution: Attribution
    policy: Policy
    request_id: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, model: _Optional[str] = ..., system: _Optional[_Iterable[_Union[SystemBlock, _Mapping]]] = ..., messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ..., tool_choice: _Optional[_Union[ToolChoice, _Mapping]] = ..., params: _Optional[_Union[GenerationParams, _Mapping]] = ..., attribution: _Optional[_Union[Attribution, _Mapping]] = ..., policy: _Optional[_Union[Policy, _Mapping]] = ..., request_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SystemBlock(_message.Message):
    __slots__ = ("text", "cache_breakpoint")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CACHE_BREAKPOINT_FIELD_NUMBER: _ClassVar[int]
    text: str
    cache_breakpoint: CacheBreakpoint
    def __init__(self, text: _Optional[str] = ..., cache_breakpoint: _Optional[_Union[CacheBreakpoint, _Mapping]] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: Role
    content: _containers.RepeatedCompositeFieldContainer[ContentPart]
    def __init__(self, role: _Optional[_Union[Role, str]] = ..., content: _Optional[_Iterable[_Union[ContentPart, _Mapping]]] = ...) -> None: ...

class ContentPart(_message.Message):
    __slots__ = ("text", "image", "tool_use", "tool_result", "cache_breakpoint")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TOOL_USE_FIELD_NUMBER: _ClassVar[int]
    TOOL_RESULT_FIELD_NUMBER: _ClassVar[int]
    CACHE_BREAKPOINT_FIELD_NUMBER: _ClassVar[int]
    text: TextPart
    image: ImagePart
    tool_use: ToolUsePart
    tool_result: ToolResultPart
    cache_breakpoint: CacheBreakpoint
    def __init__(self, text: _Optional[_Union[TextPart, _Mapping]] = ..., image: _Optional[_Union[ImagePart, _Mapping]] = ..., tool_use: _Optional[_Union[ToolUsePart, _Mapping]] = ..., tool_result: _Optional[_Union[ToolResultPart, _Mapping]] = ..., cache_breakpoint: _Optional[_Union[CacheBreakpoint, _Mapping]] = ...) -> None: ...

class TextPart(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class ImagePart(_message.Message):
    __slots__ = ("media_type", "data", "url")
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    media_type: str
    data: bytes
    url: str
    def __init__(self, media_type: _Optional[str] = ..., data: _Optional[bytes] = ..., url: _Optional[str] = ...) -> None: ...

class ToolUsePart(_message.Message):
    __slots__ = ("id", "name", "input_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    input_json: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., input_json: _Optional[str] = ...) -> None: ...

class ToolResultPart(_message.Message):
    __slots__ = ("tool_use_id", "content", "is_error")
    TOOL_USE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    tool_use_id: str
    content: str
    is_error: bool
    def __init__(self, tool_use_id: _Optional[str] = ..., content: _Optional[str] = ..., is_error: _Optional[bool] = ...) -> None: ...

class CacheBreakpoint(_message.Message):
    __slots__ = ("ttl",)
    class Ttl(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TTL_UNSPECIFIED: _ClassVar[CacheBreakpoint.Ttl]
        TTL_5M: _ClassVar[CacheBreakpoint.Ttl]
        TTL_1H: _ClassVar[CacheBreakpoint.Ttl]
    TTL_UNSPECIFIED: CacheBreakpoint.Ttl
    TTL_5M: CacheBreakpoint.Ttl
    TTL_1H: CacheBreakpoint.Ttl
    TTL_FIELD_NUMBER: _ClassVar[int]
    ttl: CacheBreakpoint.Ttl
    def __init__(self, ttl: _Optional[_Union[CacheBreakpoint.Ttl, str]] = ...) -> None: ...

class Tool(_message.Message):
    __slots__ = ("name", "description", "input_schema_json", "cache_breakpoint")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    CACHE_BREAKPOINT_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    input_schema_json: str
    cache_breakpoint: CacheBreakpoint
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., input_schema_json: _Optional[str] = ..., cache_breakpoint: _Optional[_Union[CacheBreakpoint, _Mapping]] = ...) -> None: ...

class ToolChoice(_message.Message):
    __slots__ = ("mode", "name")
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODE_UNSPECIFIED: _ClassVar[ToolChoice.Mode]
        MODE_AUTO: _ClassVar[ToolChoice.Mode]
        MODE_ANY: _ClassVar[ToolChoice.Mode]
        MODE_NONE: _ClassVar[ToolChoice.Mode]
        MODE_TOOL: _ClassVar[ToolChoice.Mode]
    MODE_UNSPECIFIED: ToolChoice.Mode
    MODE_AUTO: ToolChoice.Mode
    MODE_ANY: ToolChoice.Mode
    MODE_NONE: ToolChoice.Mode
    MODE_TOOL: ToolChoice.Mode
    MODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    mode: ToolChoice.Mode
    name: str
    def __init__(self, mode: _Optional[_Union[ToolChoice.Mode, str]] = ..., name: _Optional[str] = ...) -> None: ...

class GenerationParams(_message.Message):
    __slots__ = ("max_tokens", "temperature", "top_p", "top_k", "stop_sequences", "response_format", "seed", "presence_penalty", "frequency_penalty", "thinking_budget_tokens", "reasoning_effort", "provider_params_json")
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    STOP_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_PENALTY_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_PENALTY_FIELD_NUMBER: _ClassVar[int]
    THINKING_BUDGET_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_EFFORT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    stop_sequences: _containers.RepeatedScalarFieldContainer[str]
    response_format: ResponseFormat
    seed: int
    presence_penalty: float
    frequency_penalty: float
    thinking_budget_tokens: int
    reasoning_effort: str
    provider_params_json: str
    def __init__(self, max_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., top_k: _Optional[int] = ..., stop_sequences: _Optional[_Iterable[str]] = ..., response_format: _Optional[_Union[ResponseFormat, _Mapping]] = ..., seed: _Optional[int] = ..., presence_penalty: _Optional[float] = ..., frequency_penalty: _Optional[float] = ..., thinking_budget_tokens: _Optional[int] = ..., reasoning_effort: _Optional[str] = ..., provider_params_json: _Optional[str] = ...) -> None: ...

class ResponseFormat(_message.Message):
    __slots__ = ("type", "name", "schema_json", "strict")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[ResponseFormat.Type]
        TYPE_TEXT: _ClassVar[ResponseFormat.Type]
        TYPE_JSON_OBJECT: _ClassVar[ResponseFormat.Type]
        TYPE_JSON_SCHEMA: _ClassVar[ResponseFormat.Type]
    TYPE_UNSPECIFIED: ResponseFormat.Type
    TYPE_TEXT: ResponseFormat.Type
    TYPE_JSON_OBJECT: ResponseFormat.Type
    TYPE_JSON_SCHEMA: ResponseFormat.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    type: ResponseFormat.Type
    name: str
    schema_json: str
    strict: bool
    def __init__(self, type: _Optional[_Union[ResponseFormat.Type, str]] = ..., name: _Optional[str] = ..., schema_json: _Optional[str] = ..., strict: _Optional[bool] = ...) -> None: ...

class Attribution(_message.Message):
    __slots__ = ("tenant", "team", "feature", "user")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    team: str
    feature: str
    user: str
    def __init__(self, tenant: _Optional[str] = ..., team: _Optional[str] = ..., feature: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("no_store", "no_lookup", "cache_ttl_seconds", "lane", "min_tier", "max_tier", "max_cost_nanousd", "task_type")
    NO_STORE_FIELD_NUMBER: _ClassVar[int]
    NO_LOOKUP_FIELD_NUMBER: _ClassVar[int]
    CACHE_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LANE_FIELD_NUMBER: _ClassVar[int]
    MIN_TIER_FIELD_NUMBER: _ClassVar[int]
    MAX_TIER_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    no_store: bool
    no_lookup: bool
    cache_ttl_seconds: int
    lane: Lane
    min_tier: Tier
    max_tier: Tier
    max_cost_nanousd: int
    task_type: str
    def __init__(self, no_store: _Optional[bool] = ..., no_lookup: _Optional[bool] = ..., cache_ttl_seconds: _Optional[int] = ..., lane: _Optional[_Union[Lane, str]] = ..., min_tier: _Optional[_Union[Tier, str]] = ..., max_tier: _Optional[_Union[Tier, str]] = ..., max_cost_nanousd: _Optional[int] = ..., task_type: _Optional[str] = ...) -> None: ...

class ServedBy(_message.Message):
    __slots__ = ("provider", "model", "tier", "lane", "cache_status", "route_reason", "attempts")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    LANE_FIELD_NUMBER: _ClassVar[int]
    CACHE_STATUS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    tier: Tier
    lane: Lane
    cache_status: CacheStatus
    route_reason: str
    attempts: int
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ..., lane: _Optional[_Union[Lane, str]] = ..., cache_status: _Optional[_Union[CacheStatus, str]] = ..., route_reason: _Optional[str] = ..., attempts: _Optional[int] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "reasoning_tokens")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_5M_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_1H_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    reasoning_tokens: int
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cache_read_tokens: _Optional[int] = ..., cache_write_5m_tokens: _Optional[int] = ..., cache_write_1h_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ...) -> None: ...

class Savings(_message.Message):
    __slots__ = ("response_cache_nanousd", "routing_nanousd", "prompt_caching_nanousd", "batching_nanousd", "local_tier_nanousd", "total_nanousd")
    RESPONSE_CACHE_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    ROUTING_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    PROMPT_CACHING_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    BATCHING_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    LOCAL_TIER_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    TOTAL_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    response_cache_nanousd: int
    routing_nanousd: int
    prompt_caching_nanousd: int
    batching_nanousd: int
    local_tier_nanousd: int
    total_nanousd: int
    def __init__(self, response_cache_nanousd: _Optional[int] = ..., routing_nanousd: _Optional[int] = ..., prompt_caching_nanousd: _Optional[int] = ..., batching_nanousd: _Optional[int] = ..., local_tier_nanousd: _Optional[int] = ..., total_nanousd: _Optional[int] = ...) -> None: ...

class BudgetTouch(_message.Message):
    __slots__ = ("budget_id", "scope", "remaining_nanousd", "remaining_tokens", "resets_at")
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REMAINING_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    REMAINING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    RESETS_AT_FIELD_NUMBER: _ClassVar[int]
    budget_id: str
    scope: str
    remaining_nanousd: int
    remaining_tokens: int
    resets_at: _timestamp_pb2.Timestamp
    def __init__(self, budget_id: _Optional[str] = ..., scope: _Optional[str] = ..., remaining_nanousd: _Optional[int] = ..., remaining_tokens: _Optional[int] = ..., resets_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ("request_id", "content", "stop_reason", "served_by", "usage", "cost_nanousd", "baseline_cost_nanousd", "savings", "budgets")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    BASELINE_COST_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    SAVINGS_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    content: _containers.RepeatedCompositeFieldContainer[ContentPart]
    stop_reason: StopReason
    served_by: ServedBy
    usage: Usage
    cost_nanousd: int
    baseline_cost_nanousd: int
    savings: Savings
    budgets: _containers.RepeatedCompositeFieldContainer[BudgetTouch]
    def __init__(self, request_id: _Optional[str] = ..., content: _Optional[_Iterable[_Union[ContentPart, _Mapping]]] = ..., stop_reason: _Optional[_Union[StopReason, str]] = ..., served_by: _Optional[_Union[ServedBy, _Mapping]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., cost_nanousd: _Optional[int] = ..., baseline_cost_nanousd: _Optional[int] = ..., savings: _Optional[_Union[Savings, _Mapping]] = ..., budgets: _Optional[_Iterable[_Union[BudgetTouch, _Mapping]]] = ...) -> None: ...

class CompleteStreamEvent(_message.Message):
    __slots__ = ("started", "delta", "done")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    started: StreamStarted
    delta: ContentDelta
    done: CompleteResponse
    def __init__(self, started: _Optional[_Union[StreamStarted, _Mapping]] = ..., delta: _Optional[_Union[ContentDelta, _Mapping]] = ..., done: _Optional[_Union[CompleteResponse, _Mapping]] = ...) -> None: ...

class StreamStarted(_message.Message):
    __slots__ = ("request_id", "served_by")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    served_by: ServedBy
    def __init__(self, request_id: _Optional[str] = ..., served_by: _Optional[_Union[ServedBy, _Mapping]] = ...) -> None: ...

class ContentDelta(_message.Message):
    __slots__ = ("index", "text", "tool_use")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOOL_USE_FIELD_NUMBER: _ClassVar[int]
    index: int
    text: str
    tool_use: ToolUseDelta
    def __init__(self, index: _Optional[int] = ..., text: _Optional[str] = ..., tool_use: _Optional[_Union[ToolUseDelta, _Mapping]] = ...) -> None: ...

class ToolUseDelta(_message.Message):
    __slots__ = ("id", "name", "partial_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    partial_json: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., partial_json: _Optional[str] = ...) -> None: ...

class EstimateRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: CompleteRequest
    def __init__(self, request: _Optional[_Union[CompleteRequest, _Mapping]] = ...) -> None: ...

class CostRange(_message.Message):
    __slots__ = ("low_nanousd", "expected_nanousd", "high_nanousd")
    LOW_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    HIGH_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    low_nanousd: int
    expected_nanousd: int
    high_nanousd: int
    def __init__(self, low_nanousd: _Optional[int] = ..., expected_nanousd: _Optional[int] = ..., high_nanousd: _Optional[int] = ...) -> None: ...

class LeverEstimate(_message.Message):
    __slots__ = ("lever", "without_lever", "applies", "reason", "with_lever")
    LEVER_FIELD_NUMBER: _ClassVar[int]
    WITHOUT_LEVER_FIELD_NUMBER: _ClassVar[int]
    APPLIES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WITH_LEVER_FIELD_NUMBER: _ClassVar[int]
    lever: Lever
    without_lever: CostRange
    applies: bool
    reason: str
    with_lever: CostRange
    def __init__(self, lever: _Optional[_Union[Lever, str]] = ..., without_lever: _Optional[_Union[CostRange, _Mapping]] = ..., applies: _Optional[bool] = ..., reason: _Optional[str] = ..., with_lever: _Optional[_Union[CostRange, _Mapping]] = ...) -> None: ...

class TokenRange(_message.Message):
    __slots__ = ("low", "expected", "high")
    LOW_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    low: int
    expected: int
    high: int
    def __init__(self, low: _Optional[int] = ..., expected: _Optional[int] = ..., high: _Optional[int] = ...) -> None: ...

class BudgetAdmission(_message.Message):
    __slots__ = ("budget_id", "scope", "admitted", "remaining_nanousd", "resets_at", "reason")
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ADMITTED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    RESETS_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    budget_id: str
    scope: str
    admitted: bool
    remaining_nanousd: int
    resets_at: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, budget_id: _Optional[str] = ..., scope: _Optional[str] = ..., admitted: _Optional[bool] = ..., remaining_nanousd: _Optional[int] = ..., resets_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class EstimateResponse(_message.Message):
    __slots__ = ("route", "input_tokens", "input_tokens_exact", "tokenizer", "cost", "baseline_cost", "levers", "predicted_cache_status", "budgets", "output_tokens", "method")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_EXACT_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    BASELINE_COST_FIELD_NUMBER: _ClassVar[int]
    LEVERS_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_CACHE_STATUS_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    route: ServedBy
    input_tokens: int
    input_tokens_exact: bool
    tokenizer: str
    cost: CostRange
    baseline_cost: CostRange
    levers: _containers.RepeatedCompositeFieldContainer[LeverEstimate]
    predicted_cache_status: CacheStatus
    budgets: _containers.RepeatedCompositeFieldContainer[BudgetAdmission]
    output_tokens: TokenRange
    method: str
    def __init__(self, route: _Optional[_Union[ServedBy, _Mapping]] = ..., input_tokens: _Optional[int] = ..., input_tokens_exact: _Optional[bool] = ..., tokenizer: _Optional[str] = ..., cost: _Optional[_Union[CostRange, _Mapping]] = ..., baseline_cost: _Optional[_Union[CostRange, _Mapping]] = ..., levers: _Optional[_Iterable[_Union[LeverEstimate, _Mapping]]] = ..., predicted_cache_status: _Optional[_Union[CacheStatus, str]] = ..., budgets: _Optional[_Iterable[_Union[BudgetAdmission, _Mapping]]] = ..., output_tokens: _Optional[_Union[TokenRange, _Mapping]] = ..., method: _Optional[str] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("request", "idempotency_key")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    request: CompleteRequest
    idempotency_key: str
    def __init__(self, request: _Optional[_Union[CompleteRequest, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class JobError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "state", "created_at", "updated_at", "provider_batch_id", "result", "error", "attribution")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    provider_batch_id: str
    result: CompleteResponse
    error: JobError
    attribution: Attribution
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., provider_batch_id: _Optional[str] = ..., result: _Optional[_Union[CompleteResponse, _Mapping]] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., attribution: _Optional[_Union[Attribution, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class BudgetSpec(_message.Message):
    __slots__ = ("id", "scope", "window", "limit_nanousd", "limit_tokens", "soft_thresholds_percent", "action")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    LIMIT_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SOFT_THRESHOLDS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    id: str
    scope: str
    window: BudgetWindow
    limit_nanousd: int
    limit_tokens: int
    soft_thresholds_percent: _containers.RepeatedScalarFieldContainer[int]
    action: BudgetAction
    def __init__(self, id: _Optional[str] = ..., scope: _Optional[str] = ..., window: _Optional[_Union[BudgetWindow, str]] = ..., limit_nanousd: _Optional[int] = ..., limit_tokens: _Optional[int] = ..., soft_thresholds_percent: _Optional[_Iterable[int]] = ..., action: _Optional[_Union[BudgetAction, str]] = ...) -> None: ...

class BudgetState(_message.Message):
    __slots__ = ("spent_nanousd", "reserved_nanousd", "remaining_nanousd", "spent_tokens", "reserved_tokens", "remaining_tokens", "requests", "window_start", "resets_at")
    SPENT_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    RESERVED_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    REMAINING_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    SPENT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    RESETS_AT_FIELD_NUMBER: _ClassVar[int]
    spent_nanousd: int
    reserved_nanousd: int
    remaining_nanousd: int
    spent_tokens: int
    reserved_tokens: int
    remaining_tokens: int
    requests: int
    window_start: _timestamp_pb2.Timestamp
    resets_at: _timestamp_pb2.Timestamp
    def __init__(self, spent_nanousd: _Optional[int] = ..., reserved_nanousd: _Optional[int] = ..., remaining_nanousd: _Optional[int] = ..., spent_tokens: _Optional[int] = ..., reserved_tokens: _Optional[int] = ..., remaining_tokens: _Optional[int] = ..., requests: _Optional[int] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resets_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("spec", "state")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    spec: BudgetSpec
    state: BudgetState
    def __init__(self, spec: _Optional[_Union[BudgetSpec, _Mapping]] = ..., state: _Optional[_Union[BudgetState, _Mapping]] = ...) -> None: ...

class GetBudgetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class SetBudgetRequest(_message.Message):
    __slots__ = ("budget",)
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    budget: BudgetSpec
    def __init__(self, budget: _Optional[_Union[BudgetSpec, _Mapping]] = ...) -> None: ...

class ListBudgetsRequest(_message.Message):
    __slots__ = ("scope_prefix", "page_size", "page_token")
    SCOPE_PREFIX_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scope_prefix: str
    page_size: int
    page_token: str
    def __init__(self, scope_prefix: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBudgetsResponse(_message.Message):
    __slots__ = ("budgets", "next_page_token")
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[Budget]
    next_page_token: str
    def __init__(self, budgets: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteBudgetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteBudgetResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class FeatureWorkload(_message.Message):
    __slots__ = ("feature", "requests_per_month", "avg_input_tokens", "avg_output_tokens", "tier_mix", "cache_hit_rate", "prompt_cache_share", "batchable_share")
    class TierMixEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_MONTH_FIELD_NUMBER: _ClassVar[int]
    AVG_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    AVG_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TIER_MIX_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_RATE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_CACHE_SHARE_FIELD_NUMBER: _ClassVar[int]
    BATCHABLE_SHARE_FIELD_NUMBER: _ClassVar[int]
    feature: str
    requests_per_month: int
    avg_input_tokens: int
    avg_output_tokens: int
    tier_mix: _containers.ScalarMap[str, float]
    cache_hit_rate: float
    prompt_cache_share: float
    batchable_share: float
    def __init__(self, feature: _Optional[str] = ..., requests_per_month: _Optional[int] = ..., avg_input_tokens: _Optional[int] = ..., avg_output_tokens: _Optional[int] = ..., tier_mix: _Optional[_Mapping[str, float]] = ..., cache_hit_rate: _Optional[float] = ..., prompt_cache_share: _Optional[float] = ..., batchable_share: _Optional[float] = ...) -> None: ...

class WorkloadModel(_message.Message):
    __slots__ = ("features", "monthly_growth")
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_GROWTH_FIELD_NUMBER: _ClassVar[int]
    features: _containers.RepeatedCompositeFieldContainer[FeatureWorkload]
    monthly_growth: float
    def __init__(self, features: _Optional[_Iterable[_Union[FeatureWorkload, _Mapping]]] = ..., monthly_growth: _Optional[float] = ...) -> None: ...

class LedgerHistory(_message.Message):
    __slots__ = ("last_days", "monthly_growth")
    LAST_DAYS_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_GROWTH_FIELD_NUMBER: _ClassVar[int]
    last_days: int
    monthly_growth: float
    def __init__(self, last_days: _Optional[int] = ..., monthly_growth: _Optional[float] = ...) -> None: ...

class ProjectRequest(_message.Message):
    __slots__ = ("workload", "ledger", "months")
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    LEDGER_FIELD_NUMBER: _ClassVar[int]
    MONTHS_FIELD_NUMBER: _ClassVar[int]
    workload: WorkloadModel
    ledger: LedgerHistory
    months: int
    def __init__(self, workload: _Optional[_Union[WorkloadModel, _Mapping]] = ..., ledger: _Optional[_Union[LedgerHistory, _Mapping]] = ..., months: _Optional[int] = ...) -> None: ...

class MonthProjection(_message.Message):
    __slots__ = ("month", "requests", "cost_nanousd", "baseline_cost_nanousd", "savings")
    MONTH_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    COST_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    BASELINE_COST_NANOUSD_FIELD_NUMBER: _ClassVar[int]
    SAVINGS_FIELD_NUMBER: _ClassVar[int]
    month: int
    requests: int
    cost_nanousd: int
    baseline_cost_nanousd: int
    savings: Savings
    def __init__(self, month: _Optional[int] = ..., requests: _Optional[int] = ..., cost_nanousd: _Optional[int] = ..., baseline_cost_nanousd: _Optional[int] = ..., savings: _Optional[_Union[Savings, _Mapping]] = ...) -> None: ...

class ProjectResponse(_message.Message):
    __slots__ = ("months", "method")
    MONTHS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    months: _containers.RepeatedCompositeFieldContainer[MonthProjection]
    method: str
    def __init__(self, months: _Optional[_Iterable[_Union[MonthProjection, _Mapping]]] = ..., method: _Optional[str] = ...) -> None: ...
