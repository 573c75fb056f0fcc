"""The spend ledger: an append-only SQLite table of finished calls in the data dir.

**Durability.** WAL mode with ``synchronous=NORMAL``: a transaction is in the WAL file when
its ``COMMIT`` returns, so a crash of the process (``kill -9``) loses nothing committed; only
a power loss or OS crash can drop the last transactions, which ``synchronous=FULL`` would
prevent at one fsync per commit. A record is *acknowledged* once committed (``flush``
returns then).

**Off the hot path.** ``append`` only puts the record on a queue (well under a microsecond);
one writer thread wakes for the first record, lets ``LINGER_S`` pass, then commits everything
queued by then in one transaction. So the writer takes the GIL and commits at most ~20 times
a second however busy the sidecar is (waking per record took the GIL from the event loop
once per answer), and the event loop never waits on SQLite. The price is a window of up to
``LINGER_S`` plus a commit in which an answered call is not yet committed: a crash inside it
loses those records (``bench/ledger.py`` measures both figures). ``flush`` and ``close`` do
not linger.

**Retention.** Records older than ``ledger.retention_days`` are deleted at open and then
hourly by the writer.

Reads (``History`` for Estimate/Project, ``skinflint report``) use their own connection: WAL
lets them run beside the writer, in this process or another.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

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
_ROW_PARAMS = f"({', '.join('?' * len(COLUMNS))})"
#: Rows per INSERT statement (fewer when the SQLite build allows fewer parameters).
ROWS_PER_INSERT = 256


def _insert(rows: int) -> str:
    return f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES {', '.join([_ROW_PARAMS] * rows)}"


def connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode with ``synchronous=NORMAL`` (see the module docstring)."""
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


@dataclass(frozen=True, slots=True)
class _Flush:
    done: threading.Event


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
        self._queue: queue.SimpleQueue[LedgerRecord | _Flush | None] = queue.SimpleQueue()
        self._stats: dict[str, tuple[float, OutputStats | None]] = {}
        self._closed = False
        self.prune()
        self._writer = threading.Thread(target=self._run, name="skinflint-ledger", daemon=True)
        self._writer.start()

    @classmethod
    def open(cls, data_dir: Path, *, retention_days: int) -> Self:
        return cls(data_dir / FILENAME, retention_days=retention_days)

    # -- writing --------------------------------------------------------------------------

    def append(self, record: LedgerRecord) -> None:
        """Queue ``record`` for the writer thread (never blocks; see the module docstring)."""
        if self._closed:
            _log.error("ledger_closed_append", request_id=record.request_id)
            return
        self._queue.put(record)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything appended so far is committed; False on timeout."""
        if self._closed:
            return True
        done = threading.Event()
        self._queue.put(_Flush(done))
        return done.wait(timeout_s)

    def close(self) -> None:
        """Commit what is queued, stop the writer and close; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._writer.join()
        with self._read_lock:
            self._reader.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        conn = connect(self.path)
        last_prune = time.monotonic()
        try:
            stop = backlog = False
            while not stop:
                item = self._queue.get()
                if isinstance(item, LedgerRecord) and not backlog:
                    time.sleep(LINGER_S)  # let the records of the next ~50 ms join this commit
                batch: list[LedgerRecord] = []
                waiting: list[_Flush] = []
                while True:
                    if item is None:
                        stop = True
                    elif isinstance(item, _Flush):
                        waiting.append(item)
                    else:
                        batch.append(item)
                    if len(batch) >= MAX_BATCH:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                # A full batch means more are waiting: take them at once, without lingering.
                backlog = len(batch) >= MAX_BATCH
                if batch:
                    self._write(conn, batch)
                for flush in waiting:
                    flush.done.set()
                if time.monotonic() - last_prune >= PRUNE_EVERY_S:
                    last_prune = time.monotonic()
                    self._prune(conn)
        finally:
            conn.close()

    def _write(self, conn: sqlite3.Connection, batch: Sequence[LedgerRecord]) -> None:
        """One transaction, in as few SQLite calls as possible.

        Each call into SQLite releases the GIL and then has to take it back from the busy
        event loop (a forced switch that stalls the loop for a moment). ``executemany`` does
        that once per record, and an explicit BEGIN/COMMIT twice more: bench/cache.py showed
        that hand-off, not the SQLite work, to be most of what the ledger cost a
        response-cache hit, in throughput and in its p99. So the batch goes in multi-row
        INSERTs, and a batch that fits one INSERT (the usual case: ``ROWS_PER_INSERT``
        records in ``LINGER_S``) is that one statement, its own transaction.
        """
        limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(COLUMNS)
        step = max(1, min(ROWS_PER_INSERT, limit))
        try:
            if len(batch) <= step:
                conn.execute(_insert(len(batch)), list(itertools.chain.from_iterable(batch)))
                return
            with conn:
                conn.execute("BEGIN")
                for start in range(0, len(batch), step):
                    rows = batch[start : start + step]
                    conn.execute(_insert(len(rows)), list(itertools.chain.from_iterable(rows)))
        except sqlite3.Error as exc:
            # The answers were already given; losing their records is logged, never raised.
            _log.error("ledger_write_failed", records=len(batch), error=str(exc))

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
