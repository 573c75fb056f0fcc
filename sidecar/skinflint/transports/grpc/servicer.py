"""The gRPC servicer: thin by design. Each method checks the request's size, converts and
validates it (``convert``), calls the ``App`` with the call's deadline (the time left,
``timeout_s``), and converts the answer back (``responses``). RPCs whose features are not
built yet end in UNIMPLEMENTED from the App, saying what is missing. Every
``SkinflintError`` becomes a status in one place (``_Errors``); anything else is a bug,
logged with its traceback and answered INTERNAL without internals in the message.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, NoReturn

import grpc

from skinflint.app import App
from skinflint.errors import InternalError, SkinflintError
from skinflint.logs import get_logger
from skinflint.transports.grpc import convert, responses
from skinflint.transports.grpc.call_memo import CallMemo
from skinflint.transports.grpc.status import to_grpc_status
from skinflint.transports.grpc.tracing import caller_trace
from skinflint.v1 import skinflint_pb2 as pb
from skinflint.v1 import skinflint_pb2_grpc as pb_grpc

_log = get_logger("grpc")
Context = grpc.aio.ServicerContext[Any, Any]


class SkinflintServicer(pb_grpc.SkinflintServicer):
    """``skinflint.v1.Skinflint`` over the ``App``."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._limit = app.settings.server.max_request_bytes
        # Performance: repeated requests skip re-validation (same Call as convert.to_call).
        self._calls = CallMemo()
        self._complete_response = responses.CompleteResponses()

    async def CompleteStream(
        self, request: pb.CompleteRequest, context: Context
    ) -> AsyncIterator[pb.CompleteStreamEvent]:
        async with _Errors(context, "CompleteStream"), _Traced(context, self._app):
            convert.check_request_size(request, self._limit)
            call = self._calls.to_call(request)
            items = self._app.complete_stream(call, timeout_s=context.time_remaining())
            async with contextlib.aclosing(items):  # type: ignore[type-var]
                async for item in items:
                    yield responses.stream_event(item)

    async def Complete(self, request: pb.CompleteRequest, context: Context) -> pb.CompleteResponse:
        async with _Errors(context, "Complete"), _Traced(context, self._app):
            convert.check_request_size(request, self._limit)
            call = self._calls.to_call(request)
            result = await self._app.complete(call, timeout_s=context.time_remaining())
            return self._complete_response(result)

    async def Estimate(self, request: pb.EstimateRequest, context: Context) -> pb.EstimateResponse:
        async with _Errors(context, "Estimate"), _Traced(context, self._app, "estimate"):
            convert.check_request_size(request, self._limit)
            estimate = await self._app.estimate(convert.to_estimate_call(request))
            return responses.estimate_response(estimate)

    async def Submit(self, request: pb.SubmitRequest, context: Context) -> pb.Job:
        async with _Errors(context, "Submit"), _Traced(context, self._app, "submit"):
            convert.check_request_size(request, self._limit)
            return await self._app.submit(convert.to_submission(request))

    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.Job:
        async with _Errors(context, "GetJob"), _Traced(context, self._app, "get_job"):
            convert.check_request_size(request, self._limit)
            return await self._app.get_job(convert.to_job_id(request))

    async def CancelJob(self, request: pb.CancelJobRequest, context: Context) -> pb.Job:
        async with _Errors(context, "CancelJob"), _Traced(context, self._app, "cancel_job"):
            convert.check_request_size(request, self._limit)
            return await self._app.cancel_job(convert.to_job_id(request))

    async def GetBudget(self, request: pb.GetBudgetRequest, context: Context) -> pb.Budget:
        async with _Errors(context, "GetBudget"), _Traced(context, self._app, "get_budget"):
            convert.check_request_size(request, self._limit)
            return responses.budget(await self._app.get_budget(convert.to_budget_id(request.id)))

    async def SetBudget(self, request: pb.SetBudgetRequest, context: Context) -> pb.Budget:
        async with _Errors(context, "SetBudget"), _Traced(context, self._app, "set_budget"):
            convert.check_request_size(request, self._limit)
            return responses.budget(await self._app.set_budget(convert.to_budget_spec(request)))

    async def ListBudgets(
        self, request: pb.ListBudgetsRequest, context: Context
    ) -> pb.ListBudgetsResponse:
        async with _Errors(context, "ListBudgets"), _Traced(context, self._app, "list_budgets"):
            convert.check_request_size(request, self._limit)
            budgets, token = await self._app.list_budgets(convert.to_budget_query(request))
            return pb.ListBudgetsResponse(
                budgets=[responses.budget(b) for b in budgets], next_page_token=token
            )

    async def DeleteBudget(
        self, request: pb.DeleteBudgetRequest, context: Context
    ) -> pb.DeleteBudgetResponse:
        async with _Errors(context, "DeleteBudget"), _Traced(context, self._app, "delete_budget"):
            convert.check_request_size(request, self._limit)
            deleted = await self._app.delete_budget(convert.to_budget_id(request.id))
            return pb.DeleteBudgetResponse(deleted=deleted)

    async def Project(self, request: pb.ProjectRequest, context: Context) -> pb.ProjectResponse:
        async with _Errors(context, "Project"), _Traced(context, self._app, "project"):
            convert.check_request_size(request, self._limit)
            projection = await self._app.project(convert.to_projection(request))
            return responses.projection_response(projection)


class _Traced:
    """The caller's trace as the current context; with ``operation``, also a span
    ``skinflint.<operation>`` (Complete and CompleteStream get theirs from the App). With
    tracing off (the default exporter) there is no span to parent: nothing is attached.

    Performance: a class, not an ``asynccontextmanager`` generator, because it wraps every
    call (the generator form costs several microseconds a call on a cache hit).
    """

    __slots__ = ("_inner",)

    def __init__(self, context: Context, app: App, operation: str = "") -> None:
        self._inner: contextlib.AbstractContextManager[Any] | None = None
        if operation:
            self._inner = _spanned(context, app, operation)
        elif app.telemetry.tracing:
            self._inner = caller_trace(context)

    async def __aenter__(self) -> None:
        if self._inner is not None:
            self._inner.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return None if self._inner is None else self._inner.__exit__(exc_type, exc, tb)


@contextlib.contextmanager
def _spanned(context: Context, app: App, operation: str) -> Iterator[None]:
    caller = caller_trace(context) if app.telemetry.tracing else contextlib.nullcontext()
    with caller, app.telemetry.observe(f"skinflint.{operation}"):
        yield


class _Errors:
    """Turn what the body raises into the RPC's status (a class for the reason ``_Traced``
    is one)."""

    __slots__ = ("_context", "_rpc")

    def __init__(self, context: Context, rpc: str) -> None:
        self._context = context
        self._rpc = rpc

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None:
            return False
        if isinstance(exc, SkinflintError):
            await _abort(self._context, self._rpc, exc)
        if isinstance(exc, grpc.aio.AbortError) or not isinstance(exc, Exception):
            return False
        _log.exception("rpc_internal_error", rpc=self._rpc, exc_info=exc)
        message = f"{self._rpc}: internal error; see the sidecar logs"
        await _abort(self._context, self._rpc, InternalError(message))
        return False  # pragma: no cover (``_abort`` raises)


async def _abort(context: Context, rpc: str, error: SkinflintError) -> NoReturn:
    # Log the outcome, never the request: messages may quote field values but not prompts.
    _log.info("rpc_rejected", rpc=rpc, code=error.code.name, error=error.message)
    await context.abort_with_status(to_grpc_status(error))
    raise AssertionError("abort_with_status returned")  # pragma: no cover
