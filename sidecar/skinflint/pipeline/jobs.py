"""The async lane's request types (the durable queue and batch flushing come later)."""

from __future__ import annotations

from dataclasses import dataclass

from skinflint.call import Call


@dataclass(frozen=True, slots=True)
class Submission:
    """A call for the async lane; the same non-empty ``idempotency_key`` gives the same job."""

    call: Call
    idempotency_key: str = ""
