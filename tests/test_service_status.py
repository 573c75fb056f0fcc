"""Domain errors -> gRPC statuses with rich details, and native errors -> the error tree."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from skinflint import _native
from skinflint.errors import (
    ConfigError,
    InternalError,
    InvalidArgument,
    NotImplementedYet,
    ProviderNotConfigured,
    ResourceExhausted,
    SkinflintError,
    StorageError,
    Unavailable,
    from_native,
    native_errors,
)
from skinflint.transports.grpc.status import to_grpc_status, to_rpc_status


@pytest.mark.parametrize(
    ("error", "code", "retryable"),
    [
        (
            InvalidArgument("params.max_tokens", "must be > 0"),
            grpc.StatusCode.INVALID_ARGUMENT,
            False,
        ),
        (NotImplementedYet("Complete", "later"), grpc.StatusCode.UNIMPLEMENTED, False),
        (ConfigError("bad"), grpc.StatusCode.FAILED_PRECONDITION, False),
        (
            ProviderNotConfigured("openai", "OPENAI_API_KEY"),
            grpc.StatusCode.FAILED_PRECONDITION,
            False,
        ),
        (ResourceExhausted("daily", "limit reached"), grpc.StatusCode.RESOURCE_EXHAUSTED, False),
        (Unavailable("all providers failed"), grpc.StatusCode.UNAVAILABLE, True),
        (InternalError("bug"), grpc.StatusCode.INTERNAL, False),
    ],
)
def test_each_error_maps_to_its_code(
    error: SkinflintError, code: grpc.StatusCode, retryable: bool
) -> None:
    status = to_grpc_status(error)
    assert status.code == code
    assert status.details == error.message
    assert error.retryable is retryable


def _detail(error: SkinflintError, kind: type) -> object:
    details = to_rpc_status(error).details
    assert len(details) == 1 and details[0].Is(kind.DESCRIPTOR)
    found = kind()
    details[0].Unpack(found)
    return found


def test_invalid_argument_carries_a_bad_request() -> None:
    found = _detail(InvalidArgument("messages[0].role", "required"), error_details_pb2.BadRequest)
    assert isinstance(found, error_details_pb2.BadRequest)
    assert found.field_violations[0].field == "messages[0].role"
    assert found.field_violations[0].description == "required"


def test_budget_stop_carries_a_quota_failure() -> None:
    found = _detail(ResourceExhausted("daily", "spent 5 of 5"), error_details_pb2.QuotaFailure)
    assert isinstance(found, error_details_pb2.QuotaFailure)
    assert found.violations[0].subject == "budget:daily"


def test_missing_provider_names_the_variable() -> None:
    error = ProviderNotConfigured("anthropic", "ANTHROPIC_API_KEY")
    found = _detail(error, error_details_pb2.PreconditionFailure)
    assert isinstance(found, error_details_pb2.PreconditionFailure)
    assert "ANTHROPIC_API_KEY" in found.violations[0].description
    assert "ANTHROPIC_API_KEY" in error.message


def test_unavailable_carries_retry_info() -> None:
    found = _detail(Unavailable("busy", retry_after_seconds=1.5), error_details_pb2.RetryInfo)
    assert isinstance(found, error_details_pb2.RetryInfo)
    assert found.retry_delay.ToNanoseconds() == 1_500_000_000


def test_native_errors_map_into_the_tree() -> None:
    assert isinstance(from_native(_native.RuleSetError("bad"), context="x"), ConfigError)
    assert isinstance(from_native(_native.CacheError("io"), context="x"), StorageError)
    assert isinstance(from_native(_native.KeyInputError("shape"), context="x"), InternalError)
    panic = from_native(_native.NativePanic("boom"), context="hashing")
    assert isinstance(panic, InternalError) and "panicked" in panic.message


def test_native_errors_context_manager_chains_the_original() -> None:
    with pytest.raises(InternalError) as info, native_errors("hashing the request"):
        _native.cache_key({"namespace": "tenant:a"}, _native.RuleSet.named("conservative"))
    assert info.value.message.startswith("hashing the request: ")
    assert isinstance(info.value.__cause__, _native.KeyInputError)
