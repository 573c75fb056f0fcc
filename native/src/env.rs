//! LMDB environments shared within a process, for every store on LMDB (the response cache,
//! the budget ledger).
//!
//! LMDB must not be opened twice in one process, so each kind of store ([`Store`]) keeps a
//! process-wide registry mapping each canonical directory to one [`SharedEnv`]; every handle
//! on that directory shares it. The environment closes (under the registry lock) when the
//! last handle goes. Other processes open the same files; LMDB's lock file coordinates them.
//! Read transactions do not use thread-local storage (`MDB_NOTLS`), so any thread may read.
//!
//! An LMDB environment must not be used across `fork()`: in a forked child every handle
//! inherited from the parent refuses to work, and opening the directory again closes the
//! inherited environment (only the child's copy of its mappings and file descriptors) and
//! opens a fresh one.
//!
//! `durable = false` opens the environment with `MDB_NOSYNC` (see each store's docs); the
//! first opener in a process fixes the flags and the map size.

use std::cell::UnsafeCell;
use std::collections::BTreeMap;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, Weak};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, RwTxn, WithoutTls};

use crate::error::{CoreError, Result};

pub(crate) type Db = Database<'static, Bytes, Bytes>;

/// `max_dbs` of every environment (the most named databases a store may have).
const MAX_DBS: u32 = 4;
const MAX_READERS: u32 = 512;

/// How many times an open yields to a concurrent close of the same directory before it
/// gives up waiting (each wait is one `yield_now`; the close itself takes microseconds).
const MAX_CLOSE_WAITS: u32 = 100_000;

/// Bumped in the child after every `fork()` (see [`SharedEnv::env`]).
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

fn watch_forks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a handler that only increments an atomic.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

/// One kind of store on LMDB: how its errors read, and its registry of open environments.
/// `T` is what the store keeps per environment (its databases, shared counters).
pub(crate) struct Store<T: 'static> {
    /// The handle type named in errors, e.g. `"ResponseCache"`.
    handle: &'static str,
    /// Builds this store's error (`CoreError::cache`, `CoreError::budget`).
    error: fn(&Path, String) -> CoreError,
    /// Appended to "cannot open LMDB environment".
    open_hint: &'static str,
    registry: Mutex<BTreeMap<PathBuf, Weak<SharedEnv<T>>>>,
}

/// How a store's environment is opened.
pub(crate) struct Options<const N: usize> {
    /// The named databases, created if missing, handed to the store in this order.
    pub databases: [&'static str; N],
    pub map_size: usize,
    /// Without `MDB_NOSYNC`.
    pub durable: bool,
}

impl<T: Send + Sync + 'static> Store<T> {
    pub(crate) const fn new(
        handle: &'static str,
        error: fn(&Path, String) -> CoreError,
        open_hint: &'static str,
    ) -> Self {
        Store {
            handle,
            error,
            open_hint,
            registry: Mutex::new(BTreeMap::new()),
        }
    }

    fn registry(&self) -> MutexGuard<'_, BTreeMap<PathBuf, Weak<SharedEnv<T>>>> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared environment of directory `path` (created if needed), opened with
    /// `options` and `make` (which builds the store's state from its databases) unless this
    /// process already has it open.
    pub(crate) fn open<const N: usize>(
        &'static self,
        path: &Path,
        options: Options<N>,
        make: impl FnOnce([Db; N]) -> T,
    ) -> Result<Arc<SharedEnv<T>>> {
        std::fs::create_dir_all(path)
            .map_err(|e| (self.error)(path, format!("cannot create the directory: {e}")))?;
        let dir = std::fs::canonicalize(path)
            .map_err(|e| (self.error)(path, format!("cannot resolve the directory: {e}")))?;
        watch_forks();
        // Dropped only after the registry lock is released (its `Drop` takes that lock).
        let mut inherited_from_parent = None;
        let mut waits = 0u32;
        let shared = loop {
            let mut reg = self.registry();
            let entry = reg.get(&dir);
            let existing = entry.and_then(Weak::upgrade);
            if existing.is_none() && entry.is_some() && waits < MAX_CLOSE_WAITS {
                // The last handle was just dropped on another thread and its `Drop` (which
                // closes the environment under this lock) has not run yet: heed would refuse
                // a second open until it has, so let it finish first.
                drop(reg);
                waits += 1;
                std::thread::yield_now();
                continue;
            }
            let current = FORK_GENERATION.load(Ordering::Relaxed);
            break match existing {
                Some(shared) if shared.generation == current => shared,
                stale => {
                    if let Some(inherited) = stale {
                        // SAFETY: a stale generation means this is a forked child; the
                        // registry lock is held.
                        unsafe { inherited.close_in_forked_child() };
                        inherited_from_parent = Some(inherited);
                    }
                    let shared = Arc::new(SharedEnv::open(self, dir.clone(), options, make)?);
                    reg.insert(dir.clone(), Arc::downgrade(&shared));
                    shared
                }
            };
        };
        drop(inherited_from_parent);
        Ok(shared)
    }
}

/// One opened environment, shared by every handle on its directory in this process, with
/// the store's state `T` (reached through `Deref`).
pub(crate) struct SharedEnv<T: 'static> {
    /// Closed in `Drop` (under the registry lock) or, in a forked child, by
    /// [`SharedEnv::close_in_forked_child`]. Only reached through [`SharedEnv::env`].
    env: UnsafeCell<ManuallyDrop<Env<WithoutTls>>>,
    closed: AtomicBool,
    /// [`FORK_GENERATION`] when opened.
    generation: u64,
    store: &'static Store<T>,
    dir: PathBuf,
    /// Opened without `MDB_NOSYNC`.
    synced: bool,
    state: T,
}

// SAFETY: the `UnsafeCell` is only written by `close_in_forked_child`, when no reference
// into it can exist (see there); otherwise `Env` is `Sync` and only read.
unsafe impl<T: Sync> Sync for SharedEnv<T> {}

impl<T> Drop for SharedEnv<T> {
    fn drop(&mut self) {
        // Close the environment while holding the registry lock, so a concurrent open of the
        // same directory cannot race with LMDB's close (heed refuses a second open).
        let mut reg = self
            .store
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if reg.get(&self.dir).is_some_and(|w| w.strong_count() == 0) {
            reg.remove(&self.dir);
        }
        if !self.closed.swap(true, Ordering::AcqRel) {
            // SAFETY: `drop` has exclusive access; `closed` guarantees a single close.
            unsafe { ManuallyDrop::drop(self.env.get_mut()) };
        }
    }
}

impl<T> Deref for SharedEnv<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.state
    }
}

impl<T> SharedEnv<T> {
    /// The environment, unless this process is a fork of the one that opened it.
    #[inline]
    pub(crate) fn env(&self) -> Result<&Env<WithoutTls>> {
        if self.generation != FORK_GENERATION.load(Ordering::Relaxed)
            || self.closed.load(Ordering::Acquire)
        {
            return Err((self.store.error)(
                &self.dir,
                format!(
                    "this handle was opened before fork(); an LMDB environment cannot cross a \
                     fork. Open a new {} in this process",
                    self.store.handle
                ),
            ));
        }
        // SAFETY: not closed, and closing only happens in a forked child, where the
        // generation check above already refused (so no reference handed out here is alive
        // when it closes).
        Ok(unsafe { &**self.env.get() })
    }

    /// Closes the environment inherited from the parent process.
    ///
    /// # Safety
    /// Only in a forked child (`generation` is stale), where [`SharedEnv::env`] refuses, so no
    /// reference into `env` exists; the caller holds the registry lock.
    unsafe fn close_in_forked_child(&self) {
        debug_assert_ne!(self.generation, FORK_GENERATION.load(Ordering::Relaxed));
        if !self.closed.swap(true, Ordering::AcqRel) {
            // SAFETY: see the function's contract.
            unsafe { ManuallyDrop::drop(&mut *self.env.get()) };
        }
    }

    /// The canonical directory (the registry key).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the environment syncs every commit (opened without `MDB_NOSYNC`).
    pub(crate) fn synced(&self) -> bool {
        self.synced
    }

    /// This store's error for `what` failing with `e`.
    pub(crate) fn err(&self, what: &str, e: impl std::fmt::Display) -> CoreError {
        (self.store.error)(&self.dir, format!("{what}: {e}"))
    }

    pub(crate) fn read_txn(&self) -> Result<heed::RoTxn<'_, WithoutTls>> {
        self.env()?
            .read_txn()
            .map_err(|e| self.err("cannot begin read transaction", e))
    }

    pub(crate) fn write_txn(&self) -> Result<RwTxn<'_>> {
        self.env()?
            .write_txn()
            .map_err(|e| self.err("cannot begin write transaction", e))
    }

    /// The LMDB map size (0 if the environment is unusable here).
    pub(crate) fn map_size(&self) -> usize {
        self.env().map(|env| env.info().map_size).unwrap_or(0)
    }

    fn open<const N: usize>(
        store: &'static Store<T>,
        dir: PathBuf,
        options: Options<N>,
        make: impl FnOnce([Db; N]) -> T,
    ) -> Result<Self> {
        debug_assert!(N <= MAX_DBS as usize);
        let fail =
            |what: &str, e: &dyn std::fmt::Display| (store.error)(&dir, format!("{what}: {e}"));
        let mut env_options = EnvOpenOptions::new().read_txn_without_tls();
        env_options
            .map_size(options.map_size)
            .max_dbs(MAX_DBS)
            .max_readers(MAX_READERS);
        if !options.durable {
            // SAFETY: NO_SYNC only trades durability on OS crash (documented by each store);
            // it does not affect memory safety.
            unsafe {
                env_options.flags(EnvFlags::NO_SYNC);
            }
        }
        // SAFETY: the environment is opened once per process (registry), never with
        // NO_LOCK, and its files are only modified through LMDB.
        let env = unsafe { env_options.open(&dir) }.map_err(|e| {
            fail(
                &format!("cannot open LMDB environment{}", store.open_hint),
                &e,
            )
        })?;
        // Reader slots of crashed processes would otherwise pin old pages forever.
        env.clear_stale_readers()
            .map_err(|e| fail("cannot clear stale readers", &e))?;
        let wtxn = env
            .write_txn()
            .map_err(|e| fail("cannot begin write transaction", &e))?;
        let databases = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
                let mut dbs = Vec::with_capacity(N);
                for name in options.databases {
                    dbs.push(dbo.create_database::<Bytes, Bytes>(wtxn, Some(name))?);
                }
                let dbs: [_; N] = dbs.try_into().unwrap_or_else(|_| unreachable!());
                Ok(CommitOrAbort::<_, ()>::Commit(dbs))
            })
            .map_err(|e| fail("cannot create databases", &e))?
            .commit()
            .ok_or_else(|| fail("cannot create databases", &"aborted"))?;
        Ok(SharedEnv {
            env: UnsafeCell::new(ManuallyDrop::new(env)),
            closed: AtomicBool::new(false),
            generation: FORK_GENERATION.load(Ordering::Relaxed),
            store,
            synced: options.durable,
            dir,
            state: make(databases),
        })
    }
}
