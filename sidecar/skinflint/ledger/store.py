"""The spend ledger: an append-only SQLite table of finished calls in the data dir.

**Durability.** WAL mode with ``synchronous=NORMAL``: a transaction is in the WAL file when
its ``COMMIT`` returns, so a crash of the process (``kill -9``) loses nothing committed; only
a power loss or OS crash can drop the last transactions, which ``synchronous=FULL`` would
prevent at one fsync per commit. A record is *acknowledged* once committed (``flush``
returns then).

**Off the hot path.** ``append`` copies the record's values into the Rust core's
``RowAppender`` (about a microsecond, never blocking on SQLite); the core's writer thread
wakes for the first record, lets ``LINGER_S`` pass, then commits everything queued by then in
one transaction of multi-row INSERTs, at most ~20 commits a second however busy the sidecar
is. That thread never takes the GIL: a Python writer had to take it from the event loop to
bind every value and to return from every SQLite call, and those hand-offs were most of what
the ledger cost a response-cache hit (bench/cache.py). The price of lingering is a window of
up to ``LINGER_S`` plus a commit in which an answered call is not yet committed: a crash
inside it loses those records (``bench/ledger.py`` measures both figures). ``flush`` and
``close`` do not linger. A batch SQLite refuses is dropped and logged
(``ledger_write_failed``), never raised at a caller whose answer was already given; so is a
record that finds 262,144 others still waiting (SQLite stalled), rather than memory growing
without bound.

**Retention.** Records older than ``ledger.retention_days`` are deleted at open and then
hourly by a small maintenance thread (on the readers' connection).

Reads (``History`` for Estimate/Project, ``skinflint report``) use their own connection: WAL
lets them run beside the writer, in this process or another.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from skinflint import _native
from skinflint.ledger import queries
from skinflint.ledger.record import COLUMNS, LedgerRecord
from skinflint.logs import get_logger
from skinflint.pipeline.history import OutputStats
from skinflint.pipeline.projection import WorkloadModel

_log = get_logger("ledger")

FILENAME = "ledger.sqlite3"
SCHEMA_VERSION = 1
DAY_MS = 86_400_000
#: How many queued records one transaction takes at most.
MAX_BATCH = 1024
#: How long the writer lets records gather after the first before it commits them.
LINGER_S = 0.05
PRUNE_EVERY_S = 3600.0
#: How long ``History.output_tokens`` answers from memory before reading the ledger again.
STATS_TTL_S = 30.0

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    team TEXT NOT NULL,
    feature TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    tier TEXT,
    lane TEXT NOT NULL,
    cache_status TEXT NOT NULL,
    stream INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_5m_tokens INTEGER NOT NULL,
    cache_write_1h_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_nanousd INTEGER NOT NULL,
    baseline_nanousd INTEGER NOT NULL,
    saved_response_cache INTEGER NOT NULL,
    saved_routing INTEGER NOT NULL,
    saved_prompt_caching INTEGER NOT NULL,
    saved_batching INTEGER NOT NULL,
    saved_local_tier INTEGER NOT NULL,
    price_version TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_ts ON calls (ts_ms);
CREATE INDEX IF NOT EXISTS calls_feature_ts ON calls (feature, ts_ms);
PRAGMA user_version = {SCHEMA_VERSION};
"""


def connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode with ``synchronous=NORMAL`` (see the module docstring)."""
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class Ledger:
    """Append records (any thread), read them back; implements ``pipeline.history.History``."""

    def __init__(
        self,
        path: Path,
        *,
        retention_days: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.retention_days = retention_days
        self._clock = clock
        conn = connect(path)
        with conn:
            conn.executescript(_SCHEMA)
        self._reader = conn
        self._read_lock = threading.Lock()
        self._stats: dict[str, tuple[float, OutputStats | None]] = {}
        self._closed = False
        self._failed_seen = 0
        self.prune()
        try:
            self._appender = _native.RowAppender(
                str(path), "calls", list(COLUMNS), linger_s=LINGER_S, max_batch=MAX_BATCH
            )
        except _native.LedgerError as exc:  # one failure type for "cannot open the ledger"
            conn.close()
            raise sqlite3.OperationalError(str(exc)) from exc
        self._stop = threading.Event()
        self._maintainer = threading.Thread(
            target=self._maintain, name="skinflint-ledger-prune", daemon=True
        )
        self._maintainer.start()

    @classmethod
    def open(cls, data_dir: Path, *, retention_days: int) -> Self:
        return cls(data_dir / FILENAME, retention_days=retention_days)

    # -- writing --------------------------------------------------------------------------

    def append(self, record: LedgerRecord) -> None:
        """Queue ``record`` for the core's writer (never blocks; see the module docstring)."""
        if self._closed:
            _log.error("ledger_closed_append", request_id=record.request_id)
            return
        failed = self._appender.append(record)
        if failed != self._failed_seen:
            self._report_failures(failed)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything appended so far is committed; False on timeout."""
        if self._closed:
            return True
        done = bool(self._appender.flush(timeout_s))
        self._report_failures(self._appender.failed)
        return done

    def close(self) -> None:
        """Commit what is queued, stop the writer and close; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._appender.close()
        self._report_failures(self._appender.failed)
        self._stop.set()
        self._maintainer.join()
        with self._read_lock:
            self._reader.close()

    @property
    def commits(self) -> int:
        """Transactions the writer has committed (tests and benchmarks read it)."""
        return int(self._appender.commits)

    @property
    def processed(self) -> int:
        """Records the writer has committed or given up on (tests and benchmarks read it)."""
        return int(self._appender.processed)

    def _report_failures(self, failed: int) -> None:
        # The answers were already given; losing their records is logged, never raised.
        if failed > self._failed_seen:
            _log.error(
                "ledger_write_failed",
                records=failed - self._failed_seen,
                error=self._appender.last_error,
            )
            self._failed_seen = failed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _maintain(self) -> None:
        while not self._stop.wait(PRUNE_EVERY_S):
            self.prune()

    def prune(self) -> int:
        """Delete records past the retention; how many went."""
        with self._read_lock:
            return self._prune(self._reader)

    def _prune(self, conn: sqlite3.Connection) -> int:
        cutoff = int(self._clock() * 1000) - self.retention_days * DAY_MS
        try:
            with conn:
                deleted = conn.execute("DELETE FROM calls WHERE ts_ms < ?", (cutoff,)).rowcount
        except sqlite3.Error as exc:
            _log.error("ledger_prune_failed", error=str(exc))
            return 0
        if deleted:
            _log.info("ledger_pruned", records=deleted, retention_days=self.retention_days)
        return deleted

    # -- reading --------------------------------------------------------------------------

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self._read_lock:
            yield self._reader

    def records(self, since_ms: int = 0, until_ms: int | None = None) -> list[LedgerRecord]:
        with self.reading() as conn:
            return queries.records(conn, since_ms, until_ms)

    def output_tokens(self, feature: str) -> OutputStats | None:
        now = time.monotonic()
        cached = self._stats.get(feature)
        if cached is not None and now - cached[0] < STATS_TTL_S:
            return cached[1]
        with self.reading() as conn:
            stats = queries.output_stats(conn, feature)
        self._stats[feature] = (now, stats)
        return stats

    def workload(self, last_days: int, *, now: datetime | None = None) -> WorkloadModel | None:
        at = now.timestamp() if now is not None else self._clock()
        with self.reading() as conn:
            return queries.workload(conn, last_days, int(at * 1000))
