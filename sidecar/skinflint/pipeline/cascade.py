"""Cascade mode: the checks that decide whether a cheap tier's answer is good enough.

A feature with ``cascade: true`` runs a request the classifier keeps cheap on its
``default_tier`` first (``routing.resolve`` returns that route with an ``escalation``); the
Complete path then asks ``failed_check`` about the answer and, when a check fails, calls the
escalation route and returns the strong answer. Both attempts are billed (``combine``: cost is
the sum; the failed attempt counts against the routing lever, so savings stay honest) and both
are reserved up front (``complete`` reserves the cheap and the strong worst case together).

Checks (``features.<f>.cascade_checks``; all on by default):

* ``refusal``: the provider stopped for a refusal or its content filter;
* ``truncated``: it stopped at ``max_tokens``;
* ``empty``: no tool call and no non-blank text;
* ``schema``: the request asked for JSON (``response_format``) and the text is not JSON, or
  not valid against the JSON schema it gave (``jsonschema``, the schema's own draft).

A caller-supplied validator (regex or schema in the request) needs a proto field that does not
exist yet; the response-format schema covers the structured case.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import jsonschema

from skinflint.call import Call, ResponseFormatType, TextPart, ToolUsePart, thaw_json
from skinflint.pipeline.pricing import Bill, Savings
from skinflint.providers.base import ProviderResponse, StopReason


def failed_check(call: Call, response: ProviderResponse, checks: Iterable[str]) -> str | None:
    """The first check ``response`` fails, described for the route reason; None: it passes."""
    enabled = set(checks)
    reason = response.stop_reason
    if "refusal" in enabled and reason in (StopReason.REFUSAL, StopReason.CONTENT_FILTER):
        return f"refusal (stop reason {reason.value})"
    if "truncated" in enabled and reason is StopReason.MAX_TOKENS:
        return "truncated (stopped at max_tokens)"
    text = "".join(p.text for p in response.content if isinstance(p, TextPart))
    tool_called = any(isinstance(p, ToolUsePart) for p in response.content)
    if "empty" in enabled and not tool_called and not text.strip():
        return "empty (no text and no tool call)"
    fmt = call.params.response_format
    if "schema" in enabled and fmt is not None and not tool_called:
        try:
            value = json.loads(text)
        except ValueError as exc:
            return f"schema (the answer is not JSON: {exc.msg} at char {exc.pos})"
        if fmt.type is ResponseFormatType.JSON_OBJECT and not isinstance(value, dict):
            return "schema (the answer is JSON but not an object)"
        if fmt.type is ResponseFormatType.JSON_SCHEMA and fmt.schema is not None:
            schema = thaw_json(fmt.schema)
            validator = jsonschema.validators.validator_for(schema)(schema)
            error = jsonschema.exceptions.best_match(validator.iter_errors(value))
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                return f"schema (invalid at {where}: {error.message[:120]})"
    return None


def combine(first: Bill, final: Bill) -> Bill:
    """One bill for a cascade: both attempts' cost against the baseline of one naive call.

    ``total`` stays ``baseline - cost``: the failed attempt is charged to the routing lever
    (routing chose it), and its prompt-caching saving, if any, is kept on that lever.
    """
    first_uncached = first.cost_nanousd + first.savings.prompt_caching
    savings = Savings(
        response_cache=final.savings.response_cache,
        routing=final.savings.routing - first_uncached,
        prompt_caching=final.savings.prompt_caching + first.savings.prompt_caching,
        batching=final.savings.batching,
        local_tier=final.savings.local_tier,
    )
    return Bill(
        cost_nanousd=first.cost_nanousd + final.cost_nanousd,
        baseline_cost_nanousd=final.baseline_cost_nanousd,
        savings=savings,
        price_version=final.price_version,
    )


__all__ = ["combine", "failed_check"]
