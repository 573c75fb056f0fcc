"""The gRPC servicer: thin by design. Each method checks the request's size, converts and
validates it (``convert``), calls the ``App`` with the call's deadline (the time left,
``timeout_s``), and converts the answer back (``responses``). RPCs whose features are not
built yet end in UNIMPLEMENTED from the App, saying what is missing. Every
``SkinflintError`` becomes a status in one place (``_errors``); anything else is a bug,
logged with its traceback and answered INTERNAL without internals in the message.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
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

    async def CompleteStream(
        self, request: pb.CompleteRequest, context: Context
    ) -> AsyncIterator[pb.CompleteStreamEvent]:
        async with _errors(context, "CompleteStream"), _traced(context, self._app):
            convert.check_request_size(request, self._limit)
            call = self._calls.to_call(request)
            items = self._app.complete_stream(call, timeout_s=context.time_remaining())
            async with contextlib.aclosing(items):  # type: ignore[type-var]
                async for item in items:
                    yield responses.stream_event(item)

    async def Complete(self, request: pb.CompleteRequest, context: Context) -> pb.CompleteResponse:
        async with _errors(context, "Complete"), _traced(context, self._app):
            convert.check_request_size(request, self._limit)
            call = self._calls.to_call(request)
            result = await self._app.complete(call, timeout_s=context.time_remaining())
            return responses.complete_response(result)

    async def Estimate(self, request: pb.EstimateRequest, context: Context) -> pb.EstimateResponse:
        async with _errors(context, "Estimate"), _traced(context, self._app, "estimate"):
            convert.check_request_size(request, self._limit)
            estimate = await self._app.estimate(convert.to_estimate_call(request))
            return responses.estimate_response(estimate)

    async def Submit(self, request: pb.SubmitRequest, context: Context) -> pb.Job:
        async with _errors(context, "Submit"), _traced(context, self._app, "submit"):
            convert.check_request_size(request, self._limit)
            return await self._app.submit(convert.to_submission(request))

    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.Job:
        async with _errors(context, "GetJob"), _traced(context, self._app, "get_job"):
            convert.check_request_size(request, self._limit)
            return await self._app.get_job(convert.to_job_id(request))

    async def CancelJob(self, request: pb.CancelJobRequest, context: Context) -> pb.Job:
        async with _errors(context, "CancelJob"), _traced(context, self._app, "cancel_job"):
            convert.check_request_size(request, self._limit)
            return await self._app.cancel_job(convert.to_job_id(request))

    async def GetBudget(self, request: pb.GetBudgetRequest, context: Context) -> pb.Budget:
        async with _errors(context, "GetBudget"), _traced(context, self._app, "get_budget"):
            convert.check_request_size(request, self._limit)
            return responses.budget(await self._app.get_budget(convert.to_budget_id(request.id)))

    async def SetBudget(self, request: pb.SetBudgetRequest, context: Context) -> pb.Budget:
        async with _errors(context, "SetBudget"), _traced(context, self._app, "set_budget"):
            convert.check_request_size(request, self._limit)
            return responses.budget(await self._app.set_budget(convert.to_budget_spec(request)))

    async def ListBudgets(
        self, request: pb.ListBudgetsRequest, context: Context
    ) -> pb.ListBudgetsResponse:
        async with _errors(context, "ListBudgets"), _traced(context, self._app, "list_budgets"):
            convert.check_request_size(request, self._limit)
            budgets, token = await self._app.list_budgets(convert.to_budget_query(request))
            return pb.ListBudgetsResponse(
                budgets=[responses.budget(b) for b in budgets], next_page_token=token
            )

    async def DeleteBudget(
        self, request: pb.DeleteBudgetRequest, context: Context
    ) -> pb.DeleteBudgetResponse:
        async with _errors(context, "DeleteBudget"), _traced(context, self._app, "delete_budget"):
            convert.check_request_size(request, self._limit)
            deleted = await self._app.delete_budget(convert.to_budget_id(request.id))
            return pb.DeleteBudgetResponse(deleted=deleted)

    async def Project(self, request: pb.ProjectRequest, context: Context) -> pb.ProjectResponse:
        async with _errors(context, "Project"), _traced(context, self._app, "project"):
            convert.check_request_size(request, self._limit)
            projection = await self._app.project(convert.to_projection(request))
            return responses.projection_response(projection)


@contextlib.asynccontextmanager
async def _traced(context: Context, app: App, operation: str = "") -> AsyncIterator[None]:
    """The caller's trace as the current context; with ``operation``, also a span
    ``skinflint.<operation>`` (Complete and CompleteStream get theirs from the App). With
    tracing off (the default exporter) there is no span to parent: nothing is attached."""
    with caller_trace(context) if app.telemetry.tracing else contextlib.nullcontext():
        if not operation:
            yield
        else:
            with app.telemetry.observe(f"skinflint.{operation}"):
                yield


@contextlib.asynccontextmanager
async def _errors(context: Context, rpc: str) -> AsyncIterator[None]:
    """Turn what the body raises into the RPC's status."""
    try:
        yield
    except SkinflintError as exc:
        await _abort(context, rpc, exc)
    except grpc.aio.AbortError:
        raise
    except Exception:
        _log.exception("rpc_internal_error", rpc=rpc)
        await _abort(context, rpc, InternalError(f"{rpc}: internal error; see the sidecar logs"))


async def _abort(context: Context, rpc: str, error: SkinflintError) -> NoReturn:
    # Log the outcome, never the request: messages may quote field values but not prompts.
    _log.info("rpc_rejected", rpc=rpc, code=error.code.name, error=error.message)
    await context.abort_with_status(to_grpc_status(error))
    raise AssertionError("abort_with_status returned")  # pragma: no cover
