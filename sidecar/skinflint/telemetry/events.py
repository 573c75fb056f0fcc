"""Span events the pipeline emits on the current span (a no-op when there is none).

Called from deep inside dispatch, which must not know about the telemetry set-up: the OTel API
finds the span of the call through the context. Attributes never hold provider keys or text.
"""

from __future__ import annotations

from opentelemetry import trace

ATTEMPT_FAILED = "skinflint.provider.attempt_failed"
RETRY = "skinflint.retry"
FALLBACK = "skinflint.fallback"
BUDGET_REJECTED = "skinflint.budget.rejected"


def attempt_failed(model: str, kind: str, status: int | None, attempt: int) -> None:
    attributes: dict[str, str | int] = {
        "skinflint.model": model,
        "skinflint.failure.kind": kind,
        "skinflint.attempt": attempt,
    }
    if status is not None:
        attributes["http.response.status_code"] = status
    trace.get_current_span().add_event(ATTEMPT_FAILED, attributes)


def retrying(model: str, attempt: int, delay_s: float) -> None:
    trace.get_current_span().add_event(
        RETRY,
        {"skinflint.model": model, "skinflint.attempt": attempt, "skinflint.delay_s": delay_s},
    )


def fell_back(first: str, served: str, attempts: int) -> None:
    trace.get_current_span().add_event(
        FALLBACK,
        {
            "skinflint.fallback.from": first,
            "skinflint.fallback.to": served,
            "skinflint.attempts": attempts,
        },
    )
