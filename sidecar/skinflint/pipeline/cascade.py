"""Cascade mode: the checks that decide whether a cheap tier's answer is good enough.

A feature with ``cascade: true`` runs a request the classifier keeps cheap on its
``default_tier`` first (``routing.resolve`` returns that route with an ``escalation``); the
Complete path then asks ``failed_check`` about the answer and, when a check fails, calls the
escalation route and returns the strong answer. Both attempts are billed (``combine``: cost is
the sum; the failed attempt counts against the routing lever, so savings stay honest) and both
are reserved up front (``complete`` reserves the cheap and the strong worst case together).

Checks (``features.<f>.cascade_checks``; the first four are on by default):

* ``refusal``: the provider stopped for a refusal or its content filter;
* ``truncated``: it stopped at ``max_tokens``;
* ``empty``: no tool call and no non-blank text;
* ``schema``: the request asked for JSON (``response_format``) and the text is not JSON, or
  not valid against the JSON schema it gave (``jsonschema``, the schema's own draft);
* ``verifier`` (opt-in): the learned answer verifier (``verifier``) gives the text answer to
  the last user turn a P(wrong) above the feature's ``cascade_verifier_threshold`` (default:
  the shipped model's). Trained on math word problems (GSM8K); it runs last, after the cheap
  checks, and never on a tool call. Without a loaded verifier the check is skipped.

A caller-supplied validator (regex or schema in the request) needs a proto field that does not
exist yet; the response-format schema covers the structured case.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

import jsonschema

from skinflint.call import Call, ResponseFormatType, TextPart, ToolUsePart, thaw_json
from skinflint.pipeline.pricing import Bill, Savings
from skinflint.pipeline.routing import last_user_text
from skinflint.pipeline.verifier import AnswerVerifier
from skinflint.providers.base import ProviderResponse, StopReason


@dataclass(frozen=True, slots=True)
class VerifierCheck:
    """The answer verifier and the threshold one feature uses (for the ``verifier`` check)."""

    model: AnswerVerifier
    threshold: float
    #: Where the threshold came from, for the route reason.
    source: str = "default"


def failed_check(
    call: Call,
    response: ProviderResponse,
    checks: Iterable[str],
    verifier: VerifierCheck | None = None,
) -> str | None:
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
    if "verifier" in enabled and verifier is not None and not tool_called:
        return _verify(call, text, verifier)
    return None


def _verify(call: Call, text: str, check: VerifierCheck) -> str | None:
    verdict = check.model.score(last_user_text(call), text)
    if verdict.probability <= check.threshold:
        return None
    steps = ""
    if verdict.wrong_steps:
        first = verdict.wrong_steps[0]
        computed = min(first.computed, key=lambda v: abs(v - first.value))
        steps = (
            f"; {len(verdict.wrong_steps)} step(s) do not hold, e.g. {first.expression[:60]} = "
            f"{_show(first.value)} (recomputed {_show(computed)})"
        )
    return (
        f"verifier (answer score {verdict.probability:.3f} > threshold {check.threshold:.3f}, "
        f"{check.source}{steps})"
    )


def _show(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.4g}"


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


__all__ = ["VerifierCheck", "combine", "failed_check"]
