"""The interactive lane's dispatch: one place owns resilience for every provider.

For an ordered list of candidate models (``routing.Route``), ``Dispatcher`` tries each in
turn:

* **Concurrency.** One ``asyncio.Semaphore(max_concurrency)`` per provider; waiting for a slot
  counts against the caller's deadline.
* **Deadline.** The gRPC deadline becomes ``timeout_s`` on every attempt (the time left), and
  the whole wait is bounded by it; when it runs out the call fails ``DeadlineExceeded``.
* **Retries.** A retryable failure (rate limited, server error, timeout, connection) is tried
  again on the same model after exponential backoff with full jitter
  (``backoff_initial_s * 2^n``, capped at ``backoff_max_s``), and never sooner than the
  provider's ``retry-after``; at most ``max_retries`` times. A wait that would pass the
  deadline, or a ``retry-after`` above ``max_retry_after_s``, is not waited for: the next
  model is tried instead.
* **Fallback.** ``OVERLOADED`` moves straight to the next model (the provider asked for less
  load; retrying the same model only adds to it) unless it is the last; retries exhausted
  move on too. ``AUTH`` (a wrong key) and a missing key skip every model of that provider.
  ``INVALID`` stops the chain: the request itself is wrong, and another model would only
  cost another call (it surfaces as INVALID_ARGUMENT with the provider's reason). ``OTHER``
  (an answer that could not be read) moves to the next model without a retry.
* **Circuit breaker.** Per provider+model: ``breaker_failures`` consecutive failures open it
  (invalid requests and timeouts of an expired caller deadline do not count);
  while open the model is skipped (no call is made); after ``breaker_cooldown_s`` one trial
  call is let through (half-open): success closes it, failure opens it again.
* **Cancellation.** Nothing here catches ``CancelledError``: a client that cancels the RPC
  cancels the task, and with it the provider's HTTP request.

Every attempt's error is kept in order; when all fail the call raises ``Unavailable`` whose
message lists each attempt, with the soonest ``retry-after`` or circuit cooldown as its
retry hint (RetryInfo on the wire). Streams are committed only after their first event, so a
provider that fails before sending anything still falls back; after that a cut stream is an
error for the caller (``StreamBroken``), never a clean end.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from skinflint.config import DispatchConfig
from skinflint.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ProviderNotConfigured,
    SkinflintError,
    Unavailable,
)
from skinflint.logs import get_logger
from skinflint.pipeline.routing import Candidate
from skinflint.providers.base import (
    FailureKind,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    StreamEnd,
    StreamEvent,
)
from skinflint.telemetry import events as span_events

_log = get_logger("dispatch")
_T = TypeVar("_T")

#: Builds the request for one candidate (the prompt-cache plan depends on the model).
Prepare = Callable[[Candidate, float | None], ProviderRequest]


class StreamBroken(Unavailable):
    """A stream failed after content had reached the caller: the answer is incomplete."""


class Deadline:
    """The caller's deadline on the event loop's clock (``None``: no deadline)."""

    def __init__(self, timeout_s: float | None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.at = None if timeout_s is None else loop.time() + max(0.0, timeout_s)

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - self._loop.time()

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class _Circuit:
    failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False


class CircuitBreakers:
    """One circuit per provider/model (see the module docstring)."""

    def __init__(
        self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = threshold
        self._cooldown = cooldown_s
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def state(self, name: str) -> BreakerState:
        circuit = self._circuits.get(name)
        if circuit is None or circuit.opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - circuit.opened_at >= self._cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def retry_in(self, name: str) -> float | None:
        """Seconds until an open circuit lets a trial call through (None: not open)."""
        circuit = self._circuits.get(name)
        if circuit is None or circuit.opened_at is None:
            return None
        return max(0.0, circuit.opened_at + self._cooldown - self._clock())

    def allow(self, name: str) -> bool:
        """Whether a call may go out now (claims the half-open trial when it is one)."""
        state = self.state(name)
        if state is BreakerState.CLOSED:
            return True
        circuit = self._circuits[name]
        if state is BreakerState.HALF_OPEN and not circuit.trial_in_flight:
            circuit.trial_in_flight = True
            return True
        return False

    def success(self, name: str) -> None:
        self._circuits.pop(name, None)

    def failure(self, name: str) -> None:
        circuit = self._circuits.setdefault(name, _Circuit())
        circuit.failures += 1
        if circuit.trial_in_flight or circuit.failures >= self._threshold:
            if circuit.opened_at is None or circuit.trial_in_flight:
                _log.warning("circuit_opened", model=name, failures=circuit.failures)
            circuit.opened_at = self._clock()
        circuit.trial_in_flight = False

    def release(self, name: str) -> None:
        """The trial call ended without a verdict (cancelled): let another one try."""
        circuit = self._circuits.get(name)
        if circuit is not None:
            circuit.trial_in_flight = False


@dataclass
class Outcome:
    """How the dispatch went: the model that answered and every failed attempt before it."""

    candidate: Candidate
    #: Provider calls made, the successful one included.
    attempts: int
    errors: list[str] = field(default_factory=list)
    fell_back: bool = False

    def reason(self, first: Candidate) -> str:
        if not self.fell_back:
            return "" if not self.errors else f"served after {len(self.errors)} retried failure(s)"
        return (
            f"fallback: {self.candidate.qualified} after {first.qualified} failed "
            f"({'; '.join(self.errors)})"
        )


@dataclass
class _Chain:
    """Book-keeping of one dispatch across its attempts."""

    candidates: tuple[Candidate, ...]
    deadline: Deadline
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    skip_providers: set[str] = field(default_factory=set)
    not_configured: list[ProviderNotConfigured] = field(default_factory=list)
    #: The soonest a retry of the whole call may succeed, from providers' hints and open
    #: circuits' cooldowns (the RetryInfo of the final UNAVAILABLE).
    retry_after_s: float | None = None

    def hint(self, seconds: float | None) -> None:
        if seconds is not None:
            current = self.retry_after_s
            self.retry_after_s = seconds if current is None else min(current, seconds)


class Dispatcher:
    """Calls providers for the interactive lane (see the module docstring)."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        concurrency: Mapping[str, int],
        config: DispatchConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._providers = providers
        self._slots = {name: asyncio.Semaphore(n) for name, n in concurrency.items()}
        self._in_flight: dict[str, int] = dict.fromkeys(concurrency, 0)
        self._config = config
        self.breakers = CircuitBreakers(config.breaker_failures, config.breaker_cooldown_s, clock)
        self._rng = rng or random.Random()
        #: How backoff waits are taken (tests observe the waits through it).
        self.sleep = sleep

    def in_flight(self, provider: str) -> int:
        """Calls to ``provider`` holding a concurrency slot right now."""
        return self._in_flight.get(provider, 0)

    # -- unary ----------------------------------------------------------------------------

    async def complete(
        self, candidates: tuple[Candidate, ...], prepare: Prepare, deadline: Deadline
    ) -> tuple[ProviderResponse, Outcome]:
        chain = _Chain(candidates, deadline)
        for position, candidate in enumerate(candidates):
            retries = 0
            while True:
                provider = self._usable(chain, candidate)
                if provider is None:
                    break
                request = prepare(candidate, self._time_left(chain, candidate))
                name = candidate.qualified
                chain.attempts += 1
                try:
                    async with self._slot(candidate.provider, chain):
                        response = await self._bounded(provider.complete(request), chain, name)
                except ProviderNotConfigured as exc:
                    chain.attempts -= 1  # no call went out
                    self._not_configured(chain, candidate, exc)
                    break
                except ProviderError as exc:
                    self._judge(chain, name, exc)
                    decision = self._after_failure(chain, candidate, position, exc, retries)
                    if decision is None:
                        break
                    span_events.retrying(name, chain.attempts, decision)
                    retries += 1
                    await self.sleep(decision)
                    continue
                except BaseException:
                    self.breakers.release(name)
                    raise
                self.breakers.success(name)
                if position > 0:
                    span_events.fell_back(candidates[0].qualified, name, chain.attempts)
                return response, Outcome(
                    candidate, chain.attempts, chain.errors, fell_back=position > 0
                )
        raise self._exhausted(chain)

    # -- streaming ------------------------------------------------------------------------

    async def stream(
        self, candidates: tuple[Candidate, ...], prepare: Prepare, deadline: Deadline
    ) -> AsyncIterator[Outcome | StreamEvent]:
        """Yields one ``Outcome`` (the model committed to), then that model's events.

        The first event is awaited before committing, so a provider that fails before it
        sends anything falls back like a unary call. Close it with ``aclose`` (or
        ``contextlib.aclosing``): the provider slot is held until then.
        """
        chain = _Chain(candidates, deadline)
        for position, candidate in enumerate(candidates):
            retries = 0
            while True:
                provider = self._usable(chain, candidate)
                if provider is None:
                    break
                request = prepare(candidate, self._time_left(chain, candidate))
                name = candidate.qualified
                chain.attempts += 1
                retry_in: float | None = None
                committed = False
                try:
                    async with (
                        self._slot(candidate.provider, chain),
                        contextlib.aclosing(provider.stream(request)) as events,
                    ):
                        event = await self._next(events, chain, candidate)
                        committed = True
                        if position > 0:
                            span_events.fell_back(candidates[0].qualified, name, chain.attempts)
                        yield Outcome(
                            candidate, chain.attempts, list(chain.errors), fell_back=position > 0
                        )
                        while not isinstance(event, StreamEnd):
                            yield event
                            event = await self._next(events, chain, candidate)
                        self.breakers.success(name)
                        yield event
                        return
                except ProviderNotConfigured as exc:
                    chain.attempts -= 1
                    self._not_configured(chain, candidate, exc)
                    break
                except ProviderError as exc:
                    self._judge(chain, name, exc)
                    if committed:
                        raise StreamBroken(
                            f"the answer from {name} was cut after content was sent: "
                            f"{exc.message}; retry the request"
                        ) from exc
                    retry_in = self._after_failure(chain, candidate, position, exc, retries)
                    if retry_in is None:
                        break
                    span_events.retrying(name, chain.attempts, retry_in)
                except BaseException:
                    self.breakers.release(name)
                    raise
                retries += 1
                await self.sleep(retry_in or 0.0)
        raise self._exhausted(chain)

    # -- helpers --------------------------------------------------------------------------

    def _usable(self, chain: _Chain, candidate: Candidate) -> Provider | None:
        """The provider to call for ``candidate``, or None to skip it (reason recorded)."""
        if chain.deadline.expired():
            raise self._deadline(chain)
        if candidate.provider in chain.skip_providers:
            return None
        provider = self._providers.get(candidate.provider)
        if provider is None:
            chain.errors.append(f"{candidate.qualified}: provider not built")
            return None
        if not self.breakers.allow(candidate.qualified):
            chain.hint(self.breakers.retry_in(candidate.qualified))
            chain.errors.append(
                f"{candidate.qualified}: circuit open after repeated failures (not called)"
            )
            return None
        return provider

    async def _next(
        self, events: AsyncIterator[StreamEvent], chain: _Chain, candidate: Candidate
    ) -> StreamEvent:
        """The stream's next event; an end without ``StreamEnd`` is a cut stream."""
        try:
            return await self._bounded(anext(events), chain, candidate.qualified)
        except StopAsyncIteration:
            raise ProviderError(
                candidate.provider,
                candidate.model,
                FailureKind.STREAM_CUT,
                "the stream ended without its final event",
            ) from None

    def _judge(self, chain: _Chain, name: str, exc: ProviderError) -> None:
        """Count a failure against the model's circuit, unless the model is not to blame:
        a request the provider rejected as invalid, or a timeout of a caller deadline that
        ran out (a short deadline says nothing about the provider's health)."""
        if exc.kind is FailureKind.INVALID or chain.deadline.expired():
            self.breakers.release(name)
        else:
            self.breakers.failure(name)

    def _time_left(self, chain: _Chain, candidate: Candidate) -> float | None:
        left = chain.deadline.remaining()
        if left is not None and left <= 0:
            self.breakers.release(candidate.qualified)
            raise self._deadline(chain)
        return left

    @contextlib.asynccontextmanager
    async def _slot(self, provider: str, chain: _Chain) -> AsyncIterator[None]:
        slots = self._slots.get(provider)
        if slots is None:
            yield
            return
        try:
            async with asyncio.timeout(chain.deadline.remaining()):
                await slots.acquire()
        except TimeoutError:
            raise self._deadline(chain, f"waiting for a {provider} slot") from None
        self._in_flight[provider] = self._in_flight.get(provider, 0) + 1
        try:
            yield
        finally:
            self._in_flight[provider] -= 1
            slots.release()

    async def _bounded(self, awaitable: Awaitable[_T], chain: _Chain, name: str) -> _T:
        """Await under the caller's deadline (a guard: providers honour ``timeout_s`` too)."""
        try:
            async with asyncio.timeout(chain.deadline.remaining()):
                return await awaitable
        except TimeoutError:
            raise self._deadline(chain, f"waiting for {name}") from None

    def _after_failure(
        self,
        chain: _Chain,
        candidate: Candidate,
        position: int,
        exc: ProviderError,
        retries: int,
    ) -> float | None:
        """Record the failure; the seconds to wait before retrying this model, or None."""
        chain.errors.append(f"attempt {chain.attempts} {exc.message}")
        chain.hint(exc.retry_after_s)
        span_events.attempt_failed(candidate.qualified, exc.kind.value, exc.status, chain.attempts)
        _log.info(
            "provider_attempt_failed",
            model=candidate.qualified,
            kind=exc.kind.value,
            status=exc.status,
            attempt=chain.attempts,
        )
        if chain.deadline.expired() or (
            exc.kind is FailureKind.TIMEOUT and _near(chain.deadline.remaining())
        ):
            raise self._deadline(chain)
        if exc.kind is FailureKind.INVALID:
            raise InvalidArgument(
                "request",
                f"{candidate.qualified} rejected the request: {exc.message}; fix the request "
                "(no other model was tried: the same request would fail there too)",
            ) from exc
        if exc.kind is FailureKind.AUTH:
            chain.skip_providers.add(candidate.provider)
            return None
        last = position == len(chain.candidates) - 1
        if not exc.attempt_retryable or retries >= self._config.max_retries:
            return None
        if exc.kind is FailureKind.OVERLOADED and not last:
            return None
        delay = self._backoff(retries)
        if exc.retry_after_s is not None:
            if exc.retry_after_s > self._config.max_retry_after_s:
                return None
            delay = max(delay, exc.retry_after_s)
        left = chain.deadline.remaining()
        if left is not None and delay >= left:
            return None
        return delay

    def _backoff(self, retries: int) -> float:
        cap = min(self._config.backoff_max_s, self._config.backoff_initial_s * (2**retries))
        return self._rng.uniform(0, cap)

    def _not_configured(
        self, chain: _Chain, candidate: Candidate, exc: ProviderNotConfigured
    ) -> None:
        chain.skip_providers.add(candidate.provider)
        chain.not_configured.append(exc)
        chain.errors.append(f"{candidate.qualified}: {exc.message}")

    def _deadline(self, chain: _Chain, doing: str = "") -> DeadlineExceeded:
        tried = f" after {chain.attempts} attempt(s)" if chain.attempts else ""
        history = f" ({'; '.join(chain.errors)})" if chain.errors else ""
        during = f" while {doing}" if doing else ""
        return DeadlineExceeded(f"the call's deadline ran out{during}{tried}{history}")

    def _exhausted(self, chain: _Chain) -> SkinflintError:
        if chain.not_configured and len(chain.not_configured) == len(
            {c.provider for c in chain.candidates}
        ):
            return chain.not_configured[0]
        names = ", ".join(c.qualified for c in chain.candidates)
        listed = "; ".join(chain.errors) or "no attempt could be made"
        return Unavailable(
            f"every model in the fallback chain failed ({names}) after {chain.attempts} "
            f"attempt(s): {listed}",
            retry_after_seconds=chain.retry_after_s,
        )


def _near(left: float | None) -> bool:
    return left is not None and left <= 0.05


__all__ = [
    "BreakerState",
    "CircuitBreakers",
    "Deadline",
    "Dispatcher",
    "Outcome",
    "Prepare",
    "StreamBroken",
]
