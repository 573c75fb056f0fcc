"""Validated ``Call``s of recently seen ``CompleteRequest``s, by the request's bytes.

Performance (bench/cache.py): ``convert.to_call`` validates and converts every field of a
request, about a tenth of the sidecar's CPU on a response-cache hit. Applications send the
same request shapes over and over (that is what makes the cache hit), and ``to_call`` is a
pure function of the message, so its result is kept by the deterministic serialization of
the request **without** its ``request_id``; the id (validated the same way) or a fresh one is
put back into the kept ``Call`` on each use. Only requests that converted successfully are
kept (an invalid one fails in ``to_call`` every time, with the same message), and only small
ones (at most ``max_request_bytes``), at most ``max_entries`` of them (oldest dropped first).
One memo per servicer; nothing is shared between processes or tenants beyond the bytes
themselves (the tenant is part of the request, so of the key).
"""

from __future__ import annotations

from skinflint.call import Call, new_request_id
from skinflint.transports.grpc import convert
from skinflint.v1 import skinflint_pb2 as pb

#: Requests kept (a few hot shapes are what matters; 1024 x 16 KiB bounds the memory).
MAX_ENTRIES = 1024
#: Largest serialized request kept; bigger ones (long prompts) are converted every time.
MAX_REQUEST_BYTES = 16 * 1024


class CallMemo:
    """``to_call`` with the results of recent identical requests reused (see module doc)."""

    def __init__(
        self, *, max_entries: int = MAX_ENTRIES, max_request_bytes: int = MAX_REQUEST_BYTES
    ) -> None:
        self._max_entries = max_entries
        self._max_request_bytes = max_request_bytes
        self._calls: dict[bytes, Call] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def to_call(self, request: pb.CompleteRequest) -> Call:
        """The same ``Call`` as ``convert.to_call(request)`` (a fresh id when none is sent)."""
        if request.ByteSize() > self._max_request_bytes:
            return convert.to_call(request)
        request_id = request.request_id
        if request_id:
            request.ClearField("request_id")
            key = request.SerializeToString(deterministic=True)
            request.request_id = request_id
        else:
            key = request.SerializeToString(deterministic=True)
        kept = self._calls.get(key)
        if kept is None:
            call = convert.to_call(request)
            if len(self._calls) >= self._max_entries:
                del self._calls[next(iter(self._calls))]
            self._calls[key] = call
            return call
        request_id = convert.call_request_id(request)
        return kept.with_request_id(request_id or new_request_id())


__all__ = ["MAX_ENTRIES", "MAX_REQUEST_BYTES", "CallMemo"]
