"""Span and metric attribute names, and the attributes of one call and its answer.

``gen_ai.*`` follow the OpenTelemetry GenAI semantic conventions (``gen_ai.provider.name``, with
the older ``gen_ai.system`` kept for collectors that still read it; ``gen_ai.usage.input_tokens``
includes the cache read and write tokens, as the conventions ask). ``skinflint.*`` carry what
the conventions have no name for: money (integer nano-USD), savings per lever, cache status,
tier, lane, route reason and attribution. Nothing here reads prompt or answer text: that is
``content.py``'s job and only when ``telemetry.capture_content`` is on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skinflint.call import Call

if TYPE_CHECKING:
    from skinflint.pipeline.complete import Completion

AttributeValue = str | int | float | bool

GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_PROVIDER = "gen_ai.provider.name"
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_CACHE_CREATION_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
ERROR_TYPE = "error.type"

TENANT = "skinflint.tenant"
TEAM = "skinflint.team"
FEATURE = "skinflint.feature"
REQUEST_ID = "skinflint.request_id"
MODEL = "skinflint.model"  # provider/model as served (metrics' model dimension)
TIER = "skinflint.tier"
LANE = "skinflint.lane"
CACHE_STATUS = "skinflint.cache.status"
ROUTE_REASON = "skinflint.route.reason"
ATTEMPTS = "skinflint.attempts"
COST = "skinflint.cost_nanousd"
BASELINE_COST = "skinflint.baseline_cost_nanousd"
SAVINGS_TOTAL = "skinflint.savings.total_nanousd"
SAVINGS_PREFIX = "skinflint.savings."  # + lever + "_nanousd"
PRICE_VERSION = "skinflint.price_version"
CACHE_WRITE_5M_TOKENS = "skinflint.usage.cache_write_5m_tokens"
CACHE_WRITE_1H_TOKENS = "skinflint.usage.cache_write_1h_tokens"
REASONING_TOKENS = "skinflint.usage.reasoning_tokens"
OUTCOME = "skinflint.outcome"  # metrics: "ok" or the status code name
TOKEN_KIND = "skinflint.token.kind"
SAVINGS_LEVER = "skinflint.savings.lever"

LEVERS = ("response_cache", "routing", "prompt_caching", "batching", "local_tier")

#: What a lever-less wire value means on a metric (an empty string is not a useful label).
UNKNOWN = "unknown"


def call_attributes(call: Call) -> dict[str, AttributeValue]:
    """What is known before the call runs (set when the span starts)."""
    who = call.attribution
    attributes: dict[str, AttributeValue] = {
        GEN_AI_OPERATION: "chat",
        GEN_AI_REQUEST_MODEL: call.model.requested,
        REQUEST_ID: call.request_id,
        TENANT: who.tenant,
        TEAM: who.team,
        FEATURE: who.feature,
    }
    if call.params.max_tokens is not None:
        attributes[GEN_AI_REQUEST_MAX_TOKENS] = call.params.max_tokens
    return attributes


def completion_attributes(completion: Completion) -> dict[str, AttributeValue]:
    """The answer: who served it, the usage, the money."""
    served, usage, bill = completion.served, completion.usage, completion.bill
    attributes: dict[str, AttributeValue] = {
        GEN_AI_PROVIDER: served.provider,
        GEN_AI_SYSTEM: served.provider,
        GEN_AI_RESPONSE_MODEL: served.model,
        GEN_AI_FINISH_REASONS: completion.stop_reason.value,
        GEN_AI_INPUT_TOKENS: usage.prompt_tokens,
        GEN_AI_OUTPUT_TOKENS: usage.output_tokens,
        GEN_AI_CACHE_READ_TOKENS: usage.cache_read_tokens,
        GEN_AI_CACHE_CREATION_TOKENS: usage.cache_write_tokens,
        CACHE_WRITE_5M_TOKENS: usage.cache_write_5m_tokens,
        CACHE_WRITE_1H_TOKENS: usage.cache_write_1h_tokens,
        REASONING_TOKENS: usage.reasoning_tokens,
        MODEL: f"{served.provider}/{served.model}",
        TIER: served.tier.value if served.tier is not None else UNKNOWN,
        LANE: served.lane.value,
        CACHE_STATUS: served.cache_status.value,
        ROUTE_REASON: served.route_reason,
        ATTEMPTS: served.attempts,
        COST: bill.cost_nanousd,
        BASELINE_COST: bill.baseline_cost_nanousd,
        SAVINGS_TOTAL: bill.savings.total,
        PRICE_VERSION: bill.price_version,
    }
    for lever in LEVERS:
        attributes[f"{SAVINGS_PREFIX}{lever}_nanousd"] = getattr(bill.savings, lever)
    return attributes


def metric_attributes(
    call: Call, completion: Completion | None, outcome: str
) -> dict[str, AttributeValue]:
    """The low-cardinality dimensions every metric point carries."""
    who = call.attribution
    attributes: dict[str, AttributeValue] = {
        FEATURE: who.feature or UNKNOWN,
        TEAM: who.team or UNKNOWN,
        TENANT: who.tenant,
        OUTCOME: outcome,
    }
    if completion is None:
        attributes.update({MODEL: call.model.requested, TIER: UNKNOWN, LANE: UNKNOWN})
        attributes[CACHE_STATUS] = UNKNOWN
    else:
        served = completion.served
        attributes[MODEL] = f"{served.provider}/{served.model}"
        attributes[TIER] = served.tier.value if served.tier is not None else UNKNOWN
        attributes[LANE] = served.lane.value
        attributes[CACHE_STATUS] = served.cache_status.value
    return attributes
