//! `RowAppender`: rows appended from any thread, committed to one SQLite table by a
//! background thread of the core (the spend ledger's writer, `skinflint.ledger.store`).
//!
//! Why in the core: a Python writer thread has to take the GIL to bind every value and to
//! come back from every SQLite call, and each time it takes it from a busy event loop (a
//! forced switch that stalls the loop); on a response-cache hit that hand-off was most of
//! what the ledger cost (bench/cache.py). Here the caller's thread only copies the row's
//! values (a microsecond) and the writer never touches Python.
//!
//! Behaviour, as the ledger documents it: the writer wakes for the first row, lets
//! `linger` pass (unless a flush or close is waiting, or a full batch is ready), then commits
//! up to `max_batch` rows in one transaction of multi-row INSERTs. `flush` waits until
//! every row appended before it is processed (committed, or counted in `failed` with the
//! error kept in `last_error`: a failed batch is dropped, never retried, never raised at the
//! caller). At most [`MAX_PENDING`] rows wait; past that a row is dropped and counted in
//! `failed` instead of letting memory grow while SQLite is stalled. The schema belongs to the caller: it creates the table; this only inserts into
//! the named columns. WAL mode with `synchronous=NORMAL`, as the ledger's readers use.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

use crate::error::{CoreError, Result};

/// Rows per INSERT statement (a transaction holds as many statements as the batch needs).
pub const ROWS_PER_INSERT: usize = 256;
/// Rows that may wait for the writer. Beyond this (SQLite stalled for minutes, or cannot keep
/// up) a row is dropped and counted in `failed` rather than let memory grow without bound:
/// at ~1 KB a row, this is about 256 MB, several minutes of a busy sidecar's records.
pub const MAX_PENDING: usize = 1 << 18;
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// One row: its values in column order.
pub type Row = Vec<Value>;

#[derive(Default)]
struct State {
    pending: VecDeque<Row>,
    /// Rows appended so far (a flush waits for `processed` to reach this).
    appended: u64,
    /// Rows committed or given up on.
    processed: u64,
    failed: u64,
    commits: u64,
    last_error: Option<String>,
    flushes_waiting: usize,
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The writer waits on this for rows (or a flush, or close).
    wake: Condvar,
    /// Flushes wait on this for `processed` to move.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-updated in a way that
        // matters (counters only), so a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counters of one appender (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppenderStats {
    pub appended: u64,
    pub processed: u64,
    pub failed: u64,
    pub commits: u64,
    pub last_error: Option<String>,
}

/// A batched, lingering row writer for one SQLite table (see the module docs).
pub struct RowAppender {
    path: PathBuf,
    columns: usize,
    max_pending: usize,
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl RowAppender {
    /// Opens `path` (which must already hold `table`) and starts the writer thread.
    pub fn open(
        path: &Path,
        table: &str,
        columns: &[String],
        linger: Duration,
        max_batch: usize,
        rows_per_insert: usize,
    ) -> Result<Self> {
        let bad = |what: String| Err(CoreError::InvalidArgument(what));
        if columns.is_empty() {
            return bad("columns must name at least one column".into());
        }
        for name in std::iter::once(table).chain(columns.iter().map(String::as_str)) {
            let ok = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !ok {
                return bad(format!(
                    "{name:?} is not a plain SQL identifier (letters, digits and _)"
                ));
            }
        }
        if max_batch == 0 || rows_per_insert == 0 {
            return bad("max_batch and rows_per_insert must be at least 1".into());
        }
        let conn = connect(path)?;
        let limit = conn
            .limit(rusqlite::limits::Limit::SQLITE_LIMIT_VARIABLE_NUMBER)
            .map_err(|e| CoreError::ledger(path, format!("cannot read its limits: {e}")))?;
        let limit = usize::try_from(limit).unwrap_or(0);
        let per_insert = rows_per_insert.min((limit / columns.len()).max(1));
        let sql = InsertSql::new(table, columns);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            done: Condvar::new(),
        });
        let writer = Writer {
            shared: Arc::clone(&shared),
            conn,
            sql,
            linger,
            max_batch,
            per_insert,
        };
        let handle = std::thread::Builder::new()
            .name("skinflint-ledger".into())
            .spawn(move || writer.run())
            .map_err(|e| CoreError::ledger(path, format!("cannot start the writer: {e}")))?;
        Ok(RowAppender {
            path: path.to_path_buf(),
            columns: columns.len(),
            max_pending: MAX_PENDING,
            shared,
            writer: Mutex::new(Some(handle)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues one row (never blocks on SQLite). Returns the failed-row count so far, so the
    /// caller notices failures without another call.
    pub fn append(&self, row: Row) -> Result<u64> {
        if row.len() != self.columns {
            return Err(CoreError::InvalidArgument(format!(
                "a row has {} values, the appender writes {} columns",
                row.len(),
                self.columns
            )));
        }
        let mut state = self.shared.lock();
        if state.closing {
            return Err(CoreError::InvalidArgument(format!(
                "the appender for {} is closed",
                self.path.display()
            )));
        }
        if state.pending.len() >= self.max_pending {
            // Not queued, so not part of what a flush waits for: counted as failed only.
            state.failed += 1;
            state.last_error = Some(format!(
                "the writer is {} records behind (SQLite stalled or too slow); \
                 records are being dropped",
                state.pending.len()
            ));
            return Ok(state.failed);
        }
        state.pending.push_back(row);
        state.appended += 1;
        let failed = state.failed;
        // The writer only sleeps on an empty queue (or lingers, which times out by itself):
        // wake it for the first row only, not for every row.
        let first = state.pending.len() == 1;
        drop(state);
        if first {
            self.shared.wake.notify_one();
        }
        Ok(failed)
    }

    /// Waits until every row appended before the call is processed; false on timeout.
    pub fn flush(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = self.shared.lock();
        let target = state.appended;
        if state.processed >= target {
            return true;
        }
        state.flushes_waiting += 1;
        self.shared.wake.notify_one();
        let reached = loop {
            if state.processed >= target {
                break true;
            }
            let wait = match deadline {
                None => Duration::from_secs(3600),
                Some(at) => match at.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => break false,
                },
            };
            state = match self.shared.done.wait_timeout(state, wait) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        };
        state.flushes_waiting -= 1;
        reached
    }

    /// Commits what is queued, stops the writer; safe to call twice. Rows appended after
    /// close are refused.
    pub fn close(&self) {
        {
            let mut state = self.shared.lock();
            state.closing = true;
        }
        self.shared.wake.notify_one();
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    pub fn stats(&self) -> AppenderStats {
        let s = self.shared.lock();
        AppenderStats {
            appended: s.appended,
            processed: s.processed,
            failed: s.failed,
            commits: s.commits,
            last_error: s.last_error.clone(),
        }
    }
}

impl Drop for RowAppender {
    fn drop(&mut self) {
        self.close();
    }
}

fn connect(path: &Path) -> Result<Connection> {
    let fail = |e: rusqlite::Error| CoreError::ledger(path, format!("cannot open it: {e}"));
    let conn = Connection::open(path).map_err(fail)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(fail)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(fail)?;
    Ok(conn)
}

/// `INSERT INTO t (c1, c2) VALUES (?, ?), (?, ?), …` for any row count.
struct InsertSql {
    head: String,
    one_row: String,
}

impl InsertSql {
    fn new(table: &str, columns: &[String]) -> Self {
        InsertSql {
            head: format!("INSERT INTO {table} ({}) VALUES ", columns.join(", ")),
            one_row: format!("({})", vec!["?"; columns.len()].join(", ")),
        }
    }

    fn for_rows(&self, rows: usize) -> String {
        let mut sql = self.head.clone();
        sql.push_str(&vec![self.one_row.as_str(); rows].join(", "));
        sql
    }
}

struct Writer {
    shared: Arc<Shared>,
    conn: Connection,
    sql: InsertSql,
    linger: Duration,
    max_batch: usize,
    per_insert: usize,
}

/// The writer's scheduling niceness (Linux): it is background work, so the request path's
/// threads (and, on a small machine, the caller's other processes) get the cores first; at
/// 10 it still gets about a tenth of a busy core, far more than a sidecar's records need.
pub const WRITER_NICE: i32 = 10;

fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on this thread's own id; a failure only leaves the priority.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, WRITER_NICE);
    }
}

impl Writer {
    fn run(mut self) {
        lower_priority();
        let mut backlog = false;
        let mut state = self.shared.lock();
        loop {
            while state.pending.is_empty() && !state.closing {
                state = match self.shared.wake.wait(state) {
                    Ok(guard) => guard,
                    Err(p) => p.into_inner(),
                };
            }
            if state.pending.is_empty() {
                break; // closing, and nothing left
            }
            if !backlog {
                state = self.linger(state);
            }
            let take = state.pending.len().min(self.max_batch);
            let batch: Vec<Row> = state.pending.drain(..take).collect();
            backlog = take == self.max_batch && !state.pending.is_empty();
            drop(state);
            let result = self.write(&batch);
            state = self.shared.lock();
            match result {
                Ok(()) => state.commits += 1,
                Err(e) => {
                    state.failed += take as u64;
                    state.last_error = Some(e.to_string());
                }
            }
            state.processed += take as u64;
            self.shared.done.notify_all();
        }
    }

    /// Lets rows gather for `linger` unless a flush or close waits or a batch is full.
    fn linger<'a>(&self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let until = Instant::now() + self.linger;
        loop {
            if state.closing || state.flushes_waiting > 0 || state.pending.len() >= self.max_batch {
                return state;
            }
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                return state;
            };
            if left.is_zero() {
                return state;
            }
            state = match self.shared.wake.wait_timeout(state, left) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
    }

    fn write(&mut self, batch: &[Row]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        for rows in batch.chunks(self.per_insert) {
            let mut statement = tx.prepare_cached(&self.sql.for_rows(rows.len()))?;
            statement.execute(params_from_iter(rows.iter().flatten()))?;
        }
        tx.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(dir: &Path) -> PathBuf {
        let path = dir.join("t.sqlite3");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE calls (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, s TEXT, f REAL)",
        )
        .unwrap();
        path
    }

    fn cols() -> Vec<String> {
        vec!["n".into(), "s".into(), "f".into()]
    }

    fn appender(path: &Path, linger: Duration, max_batch: usize, per_insert: usize) -> RowAppender {
        RowAppender::open(path, "calls", &cols(), linger, max_batch, per_insert).unwrap()
    }

    fn row(n: i64) -> Row {
        let s = if n % 3 == 0 {
            Value::Null
        } else {
            Value::Text(format!("r{n}"))
        };
        vec![Value::Integer(n), s, Value::Real(n as f64 / 4.0)]
    }

    fn read(path: &Path) -> Vec<(i64, Option<String>, f64)> {
        let conn = Connection::open(path).unwrap();
        let mut st = conn
            .prepare("SELECT n, s, f FROM calls ORDER BY n")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn every_row_lands_once_across_statement_and_batch_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(dir.path());
        let app = appender(&path, Duration::from_millis(5), 10, 3);
        for n in 0..47 {
            assert_eq!(app.append(row(n)).unwrap(), 0);
        }
        assert!(app.flush(Some(Duration::from_secs(30))));
        let got = read(&path);
        assert_eq!(got.len(), 47);
        for (n, (gn, gs, gf)) in got.into_iter().enumerate() {
            let n = n as i64;
            assert_eq!(gn, n);
            assert_eq!(
                gs,
                if n % 3 == 0 {
                    None
                } else {
                    Some(format!("r{n}"))
                }
            );
            assert_eq!(gf, n as f64 / 4.0);
        }
        let stats = app.stats();
        assert_eq!((stats.appended, stats.processed, stats.failed), (47, 47, 0));
        assert!(
            stats.commits >= 5,
            "max_batch 10 means at least 5 commits: {stats:?}"
        );
    }

    #[test]
    fn a_burst_within_the_linger_is_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(dir.path());
        let app = appender(&path, Duration::from_millis(300), 1024, 256);
        for n in 0..20 {
            app.append(row(n)).unwrap();
        }
        // Let the linger run out by itself (no flush to cut it short).
        let start = Instant::now();
        while app.stats().processed < 20 {
            assert!(start.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(app.stats().commits, 1);
        assert_eq!(read(&path).len(), 20);
    }

    #[test]
    fn close_commits_what_is_queued_and_refuses_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(dir.path());
        let app = appender(&path, Duration::from_secs(3600), 1024, 256);
        for n in 0..5 {
            app.append(row(n)).unwrap();
        }
        app.close();
        app.close();
        assert_eq!(read(&path).len(), 5);
        assert!(app.append(row(9)).is_err());
        assert!(app.flush(Some(Duration::from_millis(1))));
    }

    #[test]
    fn a_failed_batch_is_counted_and_named_never_retried() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(dir.path());
        let app = appender(&path, Duration::ZERO, 1024, 256);
        app.append(row(1)).unwrap();
        assert!(app.flush(Some(Duration::from_secs(30))));
        // A NOT NULL column given NULL: SQLite refuses the batch.
        app.append(vec![Value::Null, Value::Null, Value::Null])
            .unwrap();
        assert!(app.flush(Some(Duration::from_secs(30))));
        let stats = app.stats();
        assert_eq!((stats.processed, stats.failed), (2, 1));
        assert!(stats.last_error.unwrap().contains("NOT NULL"));
        assert_eq!(app.append(row(2)).unwrap(), 1); // the count reaches the caller
        assert!(app.flush(Some(Duration::from_secs(30))));
        assert_eq!(read(&path).len(), 2);
    }

    #[test]
    fn a_full_queue_drops_and_counts_rather_than_grow() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(dir.path());
        let mut app = appender(&path, Duration::from_secs(3600), 1024, 256);
        app.max_pending = 3;
        // The writer lingers for an hour: the queue only drains on flush.
        let failed: Vec<u64> = (0..5).map(|n| app.append(row(n)).unwrap()).collect();
        assert_eq!(failed, vec![0, 0, 0, 1, 2]);
        let stats = app.stats();
        assert_eq!((stats.appended, stats.failed), (3, 2));
        assert!(stats.last_error.unwrap().contains("dropped"));
        assert!(app.flush(Some(Duration::from_secs(30))));
        assert_eq!(read(&path).len(), 3);
        assert_eq!(app.append(row(9)).unwrap(), 2); // room again once written
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_writer_runs_at_a_lower_priority() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(dir.path());
        let app = appender(&path, Duration::ZERO, 8, 8);
        app.append(row(1)).unwrap();
        assert!(app.flush(Some(Duration::from_secs(30)))); // the writer has started
        let mut nices = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let task = task.unwrap().path();
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            if comm.trim() == "skinflint-ledge" {
                // Field 19 of stat is the nice value (after the parenthesised name).
                let stat = std::fs::read_to_string(task.join("stat")).unwrap();
                let after = &stat[stat.rfind(')').unwrap() + 2..];
                nices.push(after.split(' ').nth(16).unwrap().parse::<i32>().unwrap());
            }
        }
        assert!(
            nices.contains(&WRITER_NICE),
            "writer threads' nice values: {nices:?}"
        );
    }

    #[test]
    fn bad_arguments_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(dir.path());
        let open = |table: &str, cols: &[String], batch| {
            RowAppender::open(&path, table, cols, Duration::ZERO, batch, 1)
                .err()
                .map(|e| e.to_string())
        };
        assert!(open("calls; DROP", &cols(), 1)
            .unwrap()
            .contains("identifier"));
        assert!(open("calls", &["n x".to_string()], 1)
            .unwrap()
            .contains("identifier"));
        assert!(open("calls", &[], 1).unwrap().contains("at least one"));
        assert!(open("calls", &cols(), 0).unwrap().contains("at least 1"));
        let app = appender(&path, Duration::ZERO, 8, 8);
        let err = app.append(vec![Value::Integer(1)]).unwrap_err().to_string();
        assert!(
            err.contains("1 values") && err.contains("3 columns"),
            "{err}"
        );
    }
}
