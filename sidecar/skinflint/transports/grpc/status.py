"""``SkinflintError`` -> gRPC status with ``google.rpc`` rich details.

The one place that picks a wire status: the code comes from the error class, the message
is the error's message, and the details let a client act without parsing text
(``BadRequest`` names the field, ``QuotaFailure`` the budget, ``PreconditionFailure`` the
variable to set, ``RetryInfo`` when to retry).
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from skinflint.errors import (
    CostCeilingExceeded,
    InvalidArgument,
    ProviderNotConfigured,
    ResourceExhausted,
    SkinflintError,
    Unavailable,
)


def _details(error: SkinflintError) -> list[Message]:
    if isinstance(error, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.reason
        )
        return [error_details_pb2.BadRequest(field_violations=[violation])]
    if isinstance(error, ResourceExhausted):
        quota = error_details_pb2.QuotaFailure.Violation(
            subject=f"budget:{error.budget_id}", description=error.reason
        )
        details: list[Message] = [error_details_pb2.QuotaFailure(violations=[quota])]
        if error.retry_after_seconds is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(round(error.retry_after_seconds * 1e9))
            details.append(error_details_pb2.RetryInfo(retry_delay=delay))
        return details
    if isinstance(error, CostCeilingExceeded):
        quota = error_details_pb2.QuotaFailure.Violation(
            subject="policy.max_cost_nanousd", description=error.reason
        )
        return [error_details_pb2.QuotaFailure(violations=[quota])]
    if isinstance(error, ProviderNotConfigured):
        precondition = error_details_pb2.PreconditionFailure.Violation(
            type="PROVIDER_NOT_CONFIGURED",
            subject=error.provider,
            description=f"set the environment variable {error.variable}",
        )
        return [error_details_pb2.PreconditionFailure(violations=[precondition])]
    if isinstance(error, Unavailable) and error.retry_after_seconds is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(error.retry_after_seconds * 1e9))
        return [error_details_pb2.RetryInfo(retry_delay=delay)]
    return []


def to_rpc_status(error: SkinflintError) -> status_pb2.Status:
    """The ``google.rpc.Status`` for ``error`` (code, message, packed details)."""
    packed = []
    for detail in _details(error):
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return status_pb2.Status(code=int(error.code), message=error.message, details=packed)


def to_grpc_status(error: SkinflintError) -> grpc.Status:
    """What ``ServicerContext.abort_with_status`` sends for ``error``."""
    return rpc_status.to_status(to_rpc_status(error))
