"""The ``App``: the one object that holds state, and the entry point of every operation.

It owns the compiled configuration, the named rule sets, the embedded response cache (looked
up first on every Complete, with in-process single flight: ``pipeline.response_cache``), the
price table, the providers, the dispatcher (concurrency slots, circuit breakers), the
prompt-cache prefix tracker, the routing classifier, the optional fleet L2 (``cache.l2``), the
budget guard over the budget store chosen by ``budgets.backend``, and the Estimator; the
async lane's queues are still to come. Every Complete and CompleteStream
runs inside a ``telemetry`` span (spans and metrics, ``skinflint.telemetry``) and its answer is
appended to the spend ``ledger`` (``skinflint.ledger``), which is also ``history`` for Estimate
and Project.
Transports call its methods with validated domain objects and get domain results back; it
never sees a wire message. ``aclose`` closes the provider clients and the budget store
(then ``close``).

Features that are not built yet raise ``NotImplementedYet`` saying what is missing, never a
made-up answer. Callers only reach them after their request has been fully validated.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import NoReturn, Self

from skinflint import _native
from skinflint.accounting import PriceTable
from skinflint.budget_store import open_budget_store
from skinflint.budget_store.base import BudgetStore
from skinflint.call import Call
from skinflint.config import Settings, compile_price_table, compile_rule_sets, prepare_data_dir
from skinflint.errors import (
    ConfigError,
    ConfigIssue,
    InternalError,
    NotImplementedYet,
    StorageError,
    native_errors,
)
from skinflint.ledger import Ledger, record_of
from skinflint.logs import get_logger
from skinflint.pipeline.budget_guard import Budget, BudgetGuard
from skinflint.pipeline.budgets import BudgetListQuery, BudgetSpec
from skinflint.pipeline.cache_l2 import open_cache_l2
from skinflint.pipeline.complete import CompletePipeline, Completion, StreamItem
from skinflint.pipeline.dispatch import Dispatcher
from skinflint.pipeline.estimate import Estimate, Estimator
from skinflint.pipeline.history import History
from skinflint.pipeline.jobs import Submission
from skinflint.pipeline.projection import Projection, ProjectionRequest, project
from skinflint.pipeline.prompt_cache import PrefixTracker, PromptCachePlanner
from skinflint.pipeline.response_cache import ResponseCacheLayer
from skinflint.pipeline.router_model import RouterModel
from skinflint.pipeline.semantic_cache import open_semantic_cache
from skinflint.pipeline.verifier import AnswerVerifier
from skinflint.providers.base import Provider
from skinflint.providers.registry import aclose_all, build_providers
from skinflint.telemetry import Telemetry

_log = get_logger("app")
_VALID = "the request was valid"


class App:
    """Compiled configuration plus the long-lived resources built from it."""

    def __init__(
        self,
        settings: Settings,
        rule_sets: Mapping[str, _native.RuleSet],
        cache: _native.ResponseCache,
        *,
        prices: PriceTable | None = None,
        providers: Mapping[str, Provider] | None = None,
        budget_store: BudgetStore | None = None,
        telemetry: Telemetry | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.settings = settings
        #: Spans and metrics (``telemetry``); the no-op API unless ``telemetry.exporter`` is set.
        self.telemetry = telemetry if telemetry is not None else Telemetry.disabled()
        #: The spend ledger (None: ``ledger.enabled: false``); also the History of past calls.
        self.ledger = ledger
        self.history: History | None = ledger
        self.rule_sets = rule_sets
        self._cache: _native.ResponseCache | None = cache
        self.prices = prices if prices is not None else compile_price_table(settings)
        self.providers: Mapping[str, Provider] = (
            providers if providers is not None else build_providers(settings.providers)
        )
        #: Prefix fingerprint -> last sighting: reuse intervals choose prompt-cache TTLs.
        self.prefix_tracker = PrefixTracker(settings.prompt_cache.tracker_entries)
        self.dispatcher = Dispatcher(
            self.providers,
            {name: p.max_concurrency for name, p in settings.providers.items()},
            settings.dispatch,
        )
        store = budget_store if budget_store is not None else open_budget_store(settings)
        self.budgets = BudgetGuard(
            store, seed=settings.budgets.seed, meter_provider=self.telemetry.meter_provider
        )
        #: The fleet L2 behind the local cache (``cache.l2``), or None.
        self.cache_l2 = open_cache_l2(settings.cache.l2)
        #: The semantic tier (features that enable ``semantic``), or None.
        self.semantic_cache = open_semantic_cache(settings)
        self._complete = CompletePipeline(
            settings,
            self.prices,
            PromptCachePlanner(settings.prompt_cache, self.prefix_tracker),
            self.dispatcher,
            self.budgets,
            ResponseCacheLayer(settings, cache, rule_sets, self.cache_l2, self.semantic_cache),
            router=RouterModel.load(),
            verifier=AnswerVerifier.load(),
        )
        self._estimator = Estimator(
            settings,
            self.prices,
            ResponseCacheLayer(settings, cache, rule_sets),
            self.prefix_tracker,
            self.budgets,
            functools.partial(self._complete.route_for, cascade=True),
        )

    @classmethod
    def open(cls, settings: Settings) -> Self:
        """Build everything the sidecar needs at boot, failing early with a clear error.

        Raises:
            ConfigError: the data dir is not usable, a rule set does not compile, or the
                response cache cannot be opened (each names the key to change).
        """
        data_dir = prepare_data_dir(settings)
        rule_sets = compile_rule_sets(settings)
        prices = compile_price_table(settings)
        cache_path = data_dir / "cache"
        try:
            with native_errors(f"opening the response cache at {cache_path}"):
                cache = _native.ResponseCache(
                    str(cache_path),
                    max_bytes=settings.cache.max_bytes,
                    durable=settings.cache.durable,
                )
        except StorageError as exc:
            raise ConfigError(
                [
                    ConfigIssue(
                        "data_dir",
                        str(exc),
                        "point data_dir (SKINFLINT_DATA_DIR, --data-dir) at a writable local "
                        "directory, or check cache.max_bytes against the free space",
                    )
                ]
            ) from exc
        _log.info(
            "app_opened",
            data_dir=str(data_dir),
            cache_max_bytes=settings.cache.max_bytes,
            rule_sets=sorted(rule_sets),
        )
        store = open_budget_store(settings)
        ledger = _open_ledger(settings, data_dir)
        return cls(
            settings,
            rule_sets,
            cache,
            prices=prices,
            budget_store=store,
            telemetry=Telemetry.from_config(settings.telemetry),
            ledger=ledger,
        )

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def cache(self) -> _native.ResponseCache:
        if self._cache is None:
            raise InternalError("the App is closed; its response cache is no longer open")
        return self._cache

    def rule_set_for(self, feature: str) -> _native.RuleSet:
        """The canonicalization rules for ``feature`` (config validated the name at boot)."""
        return self.rule_sets[self.settings.rule_set_name(feature)]

    async def aclose(self) -> None:
        """Close the provider clients, then everything ``close`` releases; safe to call twice."""
        providers, self.providers = self.providers, {}
        try:
            await aclose_all(providers)
            await self.budgets.store.aclose()
            if self.cache_l2 is not None:
                await self.cache_l2.aclose()
        finally:
            self.close()

    def close(self) -> None:
        """Flush and release resources; safe to call twice (provider clients: ``aclose``)."""
        cache, self._cache = self._cache, None
        if self.ledger is not None:
            self.ledger.close()
        self.telemetry.shutdown()
        if cache is not None:
            with native_errors(f"flushing the response cache at {cache.path}"):
                cache.sync()
            _log.info("app_closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- operations (one per RPC); each lands with its issue -----------------------------

    async def complete(self, call: Call, *, timeout_s: float | None = None) -> Completion:
        """Run ``call`` on the interactive lane; ``timeout_s`` is the caller's time left.

        Raises:
            ProviderNotConfigured: the only providers that could serve it have no key.
            Unavailable: every model in the fallback chain failed (lists each attempt).
            DeadlineExceeded: the time ran out first.
            InvalidArgument: the model is unknown, or the provider rejected the request.
        """
        if not self.telemetry.active:  # nothing would record a span or a metric: no observation
            completion = await self._complete.complete(call, timeout_s=timeout_s)
            self._record(call, completion, stream=False)
            return completion
        with self.telemetry.observe("skinflint.complete", call) as observation:
            completion = await self._complete.complete(call, timeout_s=timeout_s)
            observation.completion = completion
            self._record(call, completion, stream=False)
            return completion

    def complete_stream(
        self, call: Call, *, timeout_s: float | None = None
    ) -> AsyncIterator[StreamItem]:
        """As ``complete``, as ``Started``, deltas, then the ``Completion``; a stream cut
        after content was sent raises (``StreamBroken``), never ends quietly."""
        return self._observed_stream(call, timeout_s)

    async def _observed_stream(
        self, call: Call, timeout_s: float | None
    ) -> AsyncIterator[StreamItem]:
        with self.telemetry.observe("skinflint.complete_stream", call) as observation:
            items = self._complete.stream(call, timeout_s=timeout_s)
            async with contextlib.aclosing(items):
                async for item in items:
                    if isinstance(item, Completion):
                        observation.completion = item
                        self._record(call, item, stream=True)
                    yield item

    def _record(self, call: Call, completion: Completion, *, stream: bool) -> None:
        """The ledger's record of a finished call (queued: the core's writer commits it)."""
        if self.ledger is not None:
            self.ledger.append(record_of(call, completion, stream=stream))

    async def estimate(self, call: Call) -> Estimate:
        """Everything Complete would decide for ``call`` except the provider call; changes
        nothing (no cache statistic, no reservation, no prefix sighting)."""
        return await self._estimator.estimate(call, self.history)

    async def submit(self, submission: Submission) -> NoReturn:
        raise NotImplementedYet(
            "Submit",
            "the async lane is not available in this build yet (the durable queue and "
            f"provider Batch APIs land with the lanes issue); {_VALID}",
        )

    async def get_job(self, job_id: str) -> NoReturn:
        raise NotImplementedYet(
            "GetJob",
            "the async lane is not available in this build yet (it lands with the lanes "
            f"issue), so there are no jobs to read; {_VALID}",
        )

    async def cancel_job(self, job_id: str) -> NoReturn:
        raise NotImplementedYet(
            "CancelJob",
            "the async lane is not available in this build yet (it lands with the lanes "
            f"issue), so there are no jobs to cancel; {_VALID}",
        )

    async def start(self) -> None:
        """Work that needs the event loop at boot: upsert the budgets seeded from config
        (otherwise done before the first budget operation)."""
        await self.budgets.start()

    async def get_budget(self, budget_id: str) -> Budget:
        """The budget with its current window's state. Raises ``NotFound``."""
        return await self.budgets.get_budget(budget_id)

    async def set_budget(self, spec: BudgetSpec) -> Budget:
        """Create or replace a budget (its window's spend is kept)."""
        return await self.budgets.set_budget(spec)

    async def list_budgets(self, query: BudgetListQuery) -> tuple[list[Budget], str]:
        """One page of budgets and the next page token ("" when there is none)."""
        return await self.budgets.list_budgets(query)

    async def delete_budget(self, budget_id: str) -> bool:
        """Delete the budget and its windows; False when there was none."""
        return await self.budgets.delete_budget(budget_id)

    async def project(self, request: ProjectionRequest) -> Projection:
        """A month-by-month cost projection (``pipeline.projection``).

        Raises:
            FailedPrecondition: ``--from-ledger`` without a ledger, or no calls in the period.
        """
        return project(request, self.settings, self.prices, self.history)


def _open_ledger(settings: Settings, data_dir: Path) -> Ledger | None:
    """The spend ledger in the data dir, or None when ``ledger.enabled`` is false."""
    if not settings.ledger.enabled:
        return None
    try:
        return Ledger.open(data_dir, retention_days=settings.ledger.retention_days)
    except sqlite3.Error as exc:
        raise ConfigError(
            [
                ConfigIssue(
                    "ledger",
                    f"cannot open the spend ledger in {data_dir}: {exc}",
                    "point data_dir at a writable local directory, or set ledger.enabled: false",
                )
            ]
        ) from exc
