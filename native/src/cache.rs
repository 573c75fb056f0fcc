//! The response cache on LMDB (heed): per-entry TTL, a size bound with oldest-first eviction,
//! crash safety, many threads and several processes on one directory.
//!
//! # Layout
//!
//! Three named databases in one environment:
//!
//! * `entries`: key -> [`HEADER_LEN`]-byte header ++ payload. Header: magic `SKFC`, format
//!   version (u16 LE), reserved u16, xxh3-64 checksum of everything after it (u64 LE),
//!   created_ms, expires_at_ms, payload length (u64 LE each). A value that fails to decode
//!   (bad magic, unknown version, wrong length, checksum mismatch) or is expired is a miss,
//!   never an error, and is removed by the next write from this process.
//! * `order`: created_ms (u64 BE) ++ key -> key, for oldest-first eviction.
//! * `meta`: `bytes`, `entries`, `evictions` as u64 LE, updated in the same transaction as the
//!   entries they count, so they are exact and shared by every process. `bytes` counts
//!   payload bytes, which is what `max_bytes` bounds.
//!
//! # Environments
//!
//! LMDB must not be opened twice in one process, so a process-wide registry (`env.rs`,
//! shared with the budget ledger) maps each canonical directory to one shared environment;
//! every [`ResponseCache`] on that directory shares it, with its hit/miss/expired counters.
//! The environment closes when the last handle goes. Other processes open the same files;
//! LMDB's lock file coordinates them. Read transactions do not use thread-local storage
//! (`MDB_NOTLS`), so any thread may read.
//!
//! The map size is `max(2 * max_bytes + 32 MiB, 64 MiB)` rounded up to a multiple of 64 KiB
//! (a multiple of every common page size): twice the bound leaves room for LMDB's
//! copy-on-write pages and free-list, so the size bound, not the map, normally decides
//! eviction. If the map does fill (`MDB_MAP_FULL`, e.g. while old readers pin freed pages),
//! the write is aborted, a batch of the oldest entries is evicted in its own transaction and
//! the write retried; the error surfaces only when nothing is left to evict. The map size is
//! fixed by the first opener in a process; later handles with another `max_bytes` keep it.
//!
//! # Durability
//!
//! `durable = false` opens the environment with `MDB_NOSYNC`: commits reach the OS page
//! cache, not the disk. A process crash, including `kill -9`, loses nothing. An OS crash or
//! power loss may lose the most recent writes; LMDB documents that on a filesystem that does
//! not preserve write order it may also leave the environment corrupt. Values carry
//! checksums, so a torn value is a miss, and a cache can always be deleted and rebuilt;
//! call [`ResponseCache::sync`] to flush. `durable = true` syncs on every commit. When
//! handles of both kinds share one environment, the first opener's flags apply and durable
//! handles flush after each of their writes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use std::io::Write as _;

use heed::{MdbError, RwTxn};
use xxhash_rust::xxh3::{xxh3_64, Xxh3Default};

use crate::env::{self, Db};
use crate::error::{CoreError, Result};

/// Size of the value header.
pub const HEADER_LEN: usize = 40;
const MAGIC: &[u8; 4] = b"SKFC";
const FORMAT_VERSION: u16 = 1;

/// Longest accepted key (LMDB's limit is 511 bytes including the 8-byte order prefix).
pub const MAX_KEY_LEN: usize = 256;

const MIB: u64 = 1024 * 1024;
const MAP_ALIGN: u64 = 64 * 1024;
/// Write attempts after `MDB_MAP_FULL` before giving up.
const MAP_FULL_RETRIES: usize = 8;
/// Keys remembered (per environment) for removal on the next write.
const MAX_PENDING: usize = 1024;

const META_BYTES: &[u8] = b"bytes";
const META_ENTRIES: &[u8] = b"entries";
const META_EVICTIONS: &[u8] = b"evictions";

/// The map size used for `max_bytes` (see the module docs).
pub fn map_size_for(max_bytes: u64) -> u64 {
    let wanted = max_bytes
        .saturating_mul(2)
        .saturating_add(32 * MIB)
        .max(64 * MIB);
    wanted
        .checked_next_multiple_of(MAP_ALIGN)
        .unwrap_or(u64::MAX / MAP_ALIGN * MAP_ALIGN)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The decoded header of a stored value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    created_ms: u64,
    expires_ms: u64,
    payload_len: u64,
}

fn u64_at(raw: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&raw[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Decodes and verifies a stored value; `None` if it is not a valid value of this format.
fn decode(raw: &[u8]) -> Option<Header> {
    if raw.len() < HEADER_LEN || &raw[..4] != MAGIC {
        return None;
    }
    if u16::from_le_bytes([raw[4], raw[5]]) != FORMAT_VERSION {
        return None;
    }
    let header = Header {
        created_ms: u64_at(raw, 16),
        expires_ms: u64_at(raw, 24),
        payload_len: u64_at(raw, 32),
    };
    if header.payload_len != (raw.len() - HEADER_LEN) as u64 {
        return None;
    }
    if xxh3_64(&raw[16..]) != u64_at(raw, 8) {
        return None;
    }
    Some(header)
}

/// The header bytes for `payload` (checksum included).
fn encode_header(created_ms: u64, expires_ms: u64, payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(MAGIC);
    h[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&created_ms.to_le_bytes());
    h[24..32].copy_from_slice(&expires_ms.to_le_bytes());
    h[32..40].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    let mut hasher = Xxh3Default::new();
    hasher.update(&h[16..]);
    hasher.update(payload);
    h[8..16].copy_from_slice(&hasher.digest().to_le_bytes());
    h
}

fn order_key(created_ms: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&created_ms.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn is_map_full(e: &heed::Error) -> bool {
    matches!(e, heed::Error::Mdb(MdbError::MapFull))
}

/// Counters kept in the `meta` database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counters {
    bytes: u64,
    entries: u64,
    evictions: u64,
}

/// What the cache keeps per environment (see [`env::SharedEnv`]): its databases and this
/// process's lookup counters.
struct CacheState {
    entries: Db,
    order: Db,
    meta: Db,
    hits: AtomicU64,
    misses: AtomicU64,
    expired: AtomicU64,
    /// Keys seen undecodable or expired by readers, removed by the next write.
    pending: Mutex<Vec<Vec<u8>>>,
    has_pending: AtomicBool,
}

type SharedEnv = env::SharedEnv<CacheState>;

static CACHES: env::Store<CacheState> = env::Store::new(
    "ResponseCache",
    |dir, message| CoreError::cache(dir, message),
    " (if it is corrupt, delete the directory; the cache is rebuilt)",
);

impl CacheState {
    fn note_pending(&self, key: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() < MAX_PENDING && !pending.iter().any(|k| k == key) {
            pending.push(key.to_vec());
            self.has_pending.store(true, Ordering::Release);
        }
    }

    fn take_pending(&self) -> Vec<Vec<u8>> {
        if !self.has_pending.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn read_counters(&self, txn: &heed::RoTxn) -> heed::Result<Counters> {
        let read = |name: &[u8]| -> heed::Result<u64> {
            Ok(self
                .meta
                .get(txn, name)?
                .filter(|v| v.len() == 8)
                .map(|v| u64_at(v, 0))
                .unwrap_or(0))
        };
        Ok(Counters {
            bytes: read(META_BYTES)?,
            entries: read(META_ENTRIES)?,
            evictions: read(META_EVICTIONS)?,
        })
    }

    fn write_counters(&self, txn: &mut RwTxn, c: Counters) -> heed::Result<()> {
        self.meta.put(txn, META_BYTES, &c.bytes.to_le_bytes())?;
        self.meta.put(txn, META_ENTRIES, &c.entries.to_le_bytes())?;
        self.meta
            .put(txn, META_EVICTIONS, &c.evictions.to_le_bytes())
    }

    /// Removes `key` and its order record, fixing the counters. Returns whether it existed.
    fn remove_entry(&self, txn: &mut RwTxn, key: &[u8], c: &mut Counters) -> heed::Result<bool> {
        let Some(raw) = self.entries.get(txn, key)? else {
            return Ok(false);
        };
        let raw_len = raw.len();
        let header = decode(raw);
        self.entries.delete(txn, key)?;
        match header {
            Some(h) => {
                self.order.delete(txn, &order_key(h.created_ms, key))?;
                c.bytes = c.bytes.saturating_sub(h.payload_len);
            }
            // Undecodable: its order record (unknown time) is dropped when eviction or
            // purge_expired reaches it.
            None => {
                c.bytes = c
                    .bytes
                    .saturating_sub(raw_len.saturating_sub(HEADER_LEN) as u64)
            }
        }
        c.entries = c.entries.saturating_sub(1);
        Ok(true)
    }

    /// Evicts the oldest entry. Returns false when there is nothing left to evict.
    fn evict_oldest(&self, txn: &mut RwTxn, c: &mut Counters) -> heed::Result<bool> {
        loop {
            let Some((okey, _)) = self.order.first(txn)? else {
                return Ok(false);
            };
            let okey = okey.to_vec();
            self.order.delete(txn, &okey)?;
            if okey.len() < 8 {
                continue;
            }
            let mut created = [0u8; 8];
            created.copy_from_slice(&okey[..8]);
            let created = u64::from_be_bytes(created);
            let key = &okey[8..];
            let Some(raw) = self.entries.get(txn, key)? else {
                continue; // stale order record
            };
            match decode(raw) {
                // The entry was rewritten later; this record is stale.
                Some(h) if h.created_ms != created => continue,
                _ => {}
            }
            self.remove_entry(txn, key, c)?;
            c.evictions += 1;
            return Ok(true);
        }
    }
}

/// A handle on a response cache directory (see the module docs).
pub struct ResponseCache {
    shared: Arc<SharedEnv>,
    path: PathBuf,
    max_bytes: u64,
    durable: bool,
}

/// A snapshot of a cache's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries stored (all processes).
    pub entries: u64,
    /// Payload bytes stored (all processes).
    pub bytes: u64,
    /// Lookups that returned a value (this process).
    pub hits: u64,
    /// Lookups that returned nothing: absent, expired or undecodable (this process).
    pub misses: u64,
    /// Entries evicted to make room (all processes).
    pub evictions: u64,
    /// Lookups that found an expired entry, also counted in `misses` (this process).
    pub expired: u64,
    /// The LMDB map size in bytes.
    pub map_size: u64,
    /// This handle's size bound.
    pub max_bytes: u64,
}

enum PutError {
    MapFull,
    Other(CoreError),
}

impl ResponseCache {
    /// Opens (creating it if needed) the cache in directory `path`.
    pub fn open(path: impl AsRef<Path>, max_bytes: u64, durable: bool) -> Result<Self> {
        Self::open_with_map_size(path, max_bytes, durable, map_size_for(max_bytes))
    }

    /// [`open`](Self::open) with an explicit map size (tests use a tiny map).
    #[doc(hidden)]
    pub fn open_with_map_size(
        path: impl AsRef<Path>,
        max_bytes: u64,
        durable: bool,
        map_size: u64,
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if max_bytes == 0 {
            return Err(CoreError::InvalidArgument(
                "max_bytes must be > 0 (the size bound of the cache, in bytes)".into(),
            ));
        }
        let map_size = map_size
            .checked_next_multiple_of(MAP_ALIGN)
            .unwrap_or(u64::MAX / MAP_ALIGN * MAP_ALIGN);
        let options = env::Options {
            databases: ["entries", "order", "meta"],
            map_size: usize::try_from(map_size).unwrap_or(usize::MAX & !(MAP_ALIGN as usize - 1)),
            durable,
        };
        let shared = CACHES.open(&path, options, |[entries, order, meta]| CacheState {
            entries,
            order,
            meta,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
            has_pending: AtomicBool::new(false),
        })?;
        Ok(ResponseCache {
            shared,
            path,
            max_bytes,
            durable,
        })
    }

    /// The directory as given when opening.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The canonical directory (the registry key).
    pub fn dir(&self) -> &Path {
        self.shared.dir()
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn check_key(key: &[u8]) -> Result<()> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(CoreError::InvalidArgument(format!(
                "key is {} bytes; expected 1 to {MAX_KEY_LEN} bytes (use CacheKey.bytes, 16 bytes)",
                key.len()
            )));
        }
        Ok(())
    }

    /// Looks `key` up and passes a valid, unexpired payload to `f` while the read transaction
    /// is open. Read-only: never writes.
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        Self::check_key(key)?;
        let s = &*self.shared;
        let rtxn = s.read_txn()?;
        let raw = s
            .entries
            .get(&rtxn, key)
            .map_err(|e| s.err("read failed", e))?;
        let Some(raw) = raw else {
            s.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        match decode(raw) {
            Some(h) if now_ms() < h.expires_ms => {
                s.hits.fetch_add(1, Ordering::Relaxed);
                Ok(Some(f(&raw[HEADER_LEN..])))
            }
            Some(_) => {
                s.expired.fetch_add(1, Ordering::Relaxed);
                s.misses.fetch_add(1, Ordering::Relaxed);
                drop(rtxn);
                s.note_pending(key);
                Ok(None)
            }
            None => {
                s.misses.fetch_add(1, Ordering::Relaxed);
                drop(rtxn);
                s.note_pending(key);
                Ok(None)
            }
        }
    }

    /// As `get`, without side effects: the lookup counts in no statistic and notes nothing
    /// for cleanup, so a dry run (Estimate: "would this request hit?") is invisible.
    pub fn peek(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Self::check_key(key)?;
        let s = &*self.shared;
        let rtxn = s.read_txn()?;
        let raw = s
            .entries
            .get(&rtxn, key)
            .map_err(|e| s.err("read failed", e))?;
        Ok(raw.and_then(|raw| match decode(raw) {
            Some(h) if now_ms() < h.expires_ms => Some(raw[HEADER_LEN..].to_vec()),
            _ => None,
        }))
    }

    /// The stored payload, or `None` when absent, expired or undecodable.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_with(key, <[u8]>::to_vec)
    }

    /// Stores `value` under `key` for `ttl_seconds` (finite, > 0), evicting the oldest entries
    /// when the size bound or the LMDB map is reached.
    pub fn put(&self, key: &[u8], value: &[u8], ttl_seconds: f64) -> Result<()> {
        Self::check_key(key)?;
        if !(ttl_seconds.is_finite() && ttl_seconds > 0.0) {
            return Err(CoreError::InvalidArgument(format!(
                "ttl_seconds must be a finite number > 0, got {ttl_seconds}"
            )));
        }
        if value.len() as u64 > self.max_bytes {
            return Err(CoreError::InvalidArgument(format!(
                "value is {} bytes, more than max_bytes ({}) of the cache at {}; \
                 raise max_bytes or do not cache this response",
                value.len(),
                self.max_bytes,
                self.path.display()
            )));
        }
        let created = now_ms();
        // `as` saturates: a huge TTL means "never" in practice.
        let ttl_ms = (ttl_seconds * 1000.0).ceil() as u64;
        let header = encode_header(created, created.saturating_add(ttl_ms.max(1)), value);
        let s = &*self.shared;
        for _ in 0..MAP_FULL_RETRIES {
            match self.try_put(key, value, &header, created) {
                Ok(()) => return self.flush_if_durable(),
                Err(PutError::Other(e)) => return Err(e),
                Err(PutError::MapFull) => {
                    if !self.evict_batch(value.len() as u64)? {
                        break;
                    }
                }
            }
        }
        Err(s.err(
            "value does not fit in the LMDB map even after evicting",
            format!(
                "{} bytes, map size {} (MDB_MAP_FULL); raise max_bytes",
                value.len(),
                s.map_size()
            ),
        ))
    }

    fn flush_if_durable(&self) -> Result<()> {
        if self.durable && !self.shared.synced() {
            self.sync()?;
        }
        Ok(())
    }

    fn try_put(
        &self,
        key: &[u8],
        value: &[u8],
        header: &[u8; HEADER_LEN],
        created: u64,
    ) -> Result<(), PutError> {
        let s = &*self.shared;
        let map = |what: &'static str| {
            move |e: heed::Error| {
                if is_map_full(&e) {
                    PutError::MapFull
                } else {
                    PutError::Other(s.err(what, e))
                }
            }
        };
        let pending = s.take_pending();
        let mut wtxn = s.write_txn().map_err(PutError::Other)?;
        let result = (|| -> heed::Result<()> {
            let mut c = s.read_counters(&wtxn)?;
            let now = now_ms();
            for k in &pending {
                if k.as_slice() == key {
                    continue; // replaced below anyway
                }
                let stale = match s.entries.get(&wtxn, k)? {
                    Some(raw) => decode(raw).is_none_or(|h| now >= h.expires_ms),
                    None => false,
                };
                if stale {
                    s.remove_entry(&mut wtxn, k, &mut c)?;
                }
            }
            s.remove_entry(&mut wtxn, key, &mut c)?;
            let len = value.len() as u64;
            while c.bytes.saturating_add(len) > self.max_bytes {
                if !s.evict_oldest(&mut wtxn, &mut c)? {
                    // Nothing left to evict: the counters drifted (cannot happen with
                    // transactional updates, but never loop or refuse because of it).
                    c.bytes = 0;
                    c.entries = 0;
                    break;
                }
            }
            s.entries
                .put_reserved(&mut wtxn, key, HEADER_LEN + value.len(), |space| {
                    space.write_all(header)?;
                    space.write_all(value)
                })?;
            s.order.put(&mut wtxn, &order_key(created, key), key)?;
            c.bytes += len;
            c.entries += 1;
            s.write_counters(&mut wtxn, c)
        })();
        match result {
            Ok(()) => wtxn.commit().map_err(map("commit failed")),
            Err(e) => {
                wtxn.abort();
                // Keys we could not process are retried on the next write.
                for k in &pending {
                    s.note_pending(k);
                }
                Err(map("write failed")(e))
            }
        }
    }

    /// After `MDB_MAP_FULL`: evicts the oldest quarter of the entries (at least enough for
    /// `needed` payload bytes) in its own transaction, halving the batch if the eviction
    /// itself hits the full map. Returns false when there was nothing to evict.
    fn evict_batch(&self, needed: u64) -> Result<bool> {
        let s = &*self.shared;
        let entries = {
            let rtxn = s.read_txn()?;
            s.read_counters(&rtxn)
                .map_err(|e| s.err("read failed", e))?
                .entries
        };
        let mut batch = (entries / 4).max(1);
        loop {
            let mut wtxn = s.write_txn()?;
            let result = (|| -> heed::Result<u64> {
                let mut c = s.read_counters(&wtxn)?;
                let start_bytes = c.bytes;
                let mut evicted = 0;
                while evicted < batch || start_bytes - c.bytes.min(start_bytes) < needed {
                    if !s.evict_oldest(&mut wtxn, &mut c)? {
                        break;
                    }
                    evicted += 1;
                }
                s.write_counters(&mut wtxn, c)?;
                Ok(evicted)
            })();
            let result = match result {
                Ok(n) => wtxn.commit().map(|()| n),
                Err(e) => {
                    wtxn.abort();
                    Err(e)
                }
            };
            match result {
                Ok(n) => return Ok(n > 0),
                Err(e) if is_map_full(&e) && batch > 1 => batch /= 2,
                Err(e) if is_map_full(&e) => {
                    return Err(s.err(
                        "the LMDB map is full and even a single eviction does not fit",
                        format!(
                            "{e}; delete the directory or raise max_bytes (map size {})",
                            s.map_size()
                        ),
                    ))
                }
                Err(e) => return Err(s.err("eviction failed", e)),
            }
        }
    }

    /// Removes `key`. Returns whether it was present.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        Self::check_key(key)?;
        let s = &*self.shared;
        let mut wtxn = s.write_txn()?;
        let result = (|| -> heed::Result<bool> {
            let mut c = s.read_counters(&wtxn)?;
            let existed = s.remove_entry(&mut wtxn, key, &mut c)?;
            if existed {
                s.write_counters(&mut wtxn, c)?;
            }
            Ok(existed)
        })();
        let existed = self.finish(wtxn, result, "delete failed")?;
        self.flush_if_durable()?;
        Ok(existed)
    }

    /// Removes every expired or undecodable entry (and stale order records). Returns how many
    /// entries were removed.
    pub fn purge_expired(&self) -> Result<u64> {
        let s = &*self.shared;
        let mut wtxn = s.write_txn()?;
        let result = (|| -> heed::Result<u64> {
            let mut c = s.read_counters(&wtxn)?;
            let now = now_ms();
            // Collect first: LMDB cursors must not outlive deletions through other cursors.
            let mut stale_records = Vec::new();
            let mut doomed = Vec::new();
            for item in s.order.iter(&wtxn)? {
                let (okey, _) = item?;
                if okey.len() < 8 {
                    stale_records.push(okey.to_vec());
                    continue;
                }
                let created = u64::from_be_bytes(okey[..8].try_into().unwrap_or([0; 8]));
                let key = &okey[8..];
                match s.entries.get(&wtxn, key)?.map(decode) {
                    None => stale_records.push(okey.to_vec()),
                    Some(Some(h)) if h.created_ms != created => stale_records.push(okey.to_vec()),
                    Some(Some(h)) if now < h.expires_ms => {}
                    Some(_) => {
                        stale_records.push(okey.to_vec());
                        doomed.push(key.to_vec());
                    }
                }
            }
            // Undecodable entries whose order record is gone are found by a full scan.
            for item in s.entries.iter(&wtxn)? {
                let (key, raw) = item?;
                if decode(raw).is_none() && !doomed.iter().any(|d| d.as_slice() == key) {
                    doomed.push(key.to_vec());
                }
            }
            for okey in &stale_records {
                s.order.delete(&mut wtxn, okey)?;
            }
            let mut removed = 0;
            for key in &doomed {
                if s.remove_entry(&mut wtxn, key, &mut c)? {
                    removed += 1;
                }
            }
            s.write_counters(&mut wtxn, c)?;
            Ok(removed)
        })();
        let removed = self.finish(wtxn, result, "purge failed")?;
        self.flush_if_durable()?;
        Ok(removed)
    }

    /// Removes every entry (the eviction counter is kept).
    pub fn clear(&self) -> Result<()> {
        let s = &*self.shared;
        let mut wtxn = s.write_txn()?;
        let result = (|| -> heed::Result<()> {
            let c = s.read_counters(&wtxn)?;
            s.entries.clear(&mut wtxn)?;
            s.order.clear(&mut wtxn)?;
            s.write_counters(
                &mut wtxn,
                Counters {
                    bytes: 0,
                    entries: 0,
                    evictions: c.evictions,
                },
            )
        })();
        self.finish(wtxn, result, "clear failed")?;
        s.take_pending();
        self.flush_if_durable()
    }

    fn finish<T>(&self, wtxn: RwTxn, result: heed::Result<T>, what: &str) -> Result<T> {
        let s = &*self.shared;
        match result {
            Ok(v) => {
                wtxn.commit().map_err(|e| s.err(what, e))?;
                Ok(v)
            }
            Err(e) => {
                wtxn.abort();
                Err(s.err(what, e))
            }
        }
    }

    /// Counters: stored ones from a read transaction, lookups from this process.
    pub fn stats(&self) -> Result<CacheStats> {
        let s = &*self.shared;
        let c = {
            let rtxn = s.read_txn()?;
            s.read_counters(&rtxn)
                .map_err(|e| s.err("read failed", e))?
        };
        Ok(CacheStats {
            entries: c.entries,
            bytes: c.bytes,
            hits: s.hits.load(Ordering::Relaxed),
            misses: s.misses.load(Ordering::Relaxed),
            evictions: c.evictions,
            expired: s.expired.load(Ordering::Relaxed),
            map_size: s.map_size() as u64,
            max_bytes: self.max_bytes,
        })
    }

    /// Flushes the environment to disk.
    pub fn sync(&self) -> Result<()> {
        let s = &*self.shared;
        s.env()?.force_sync().map_err(|e| s.err("sync failed", e))
    }

    /// Overwrites the stored bytes of `key` (tests: simulate a torn or foreign value).
    #[doc(hidden)]
    pub fn put_raw_for_test(&self, key: &[u8], raw: &[u8]) -> Result<()> {
        let s = &*self.shared;
        let mut wtxn = s.write_txn()?;
        let result = s.entries.put(&mut wtxn, key, raw);
        self.finish(wtxn, result, "write failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread::sleep;
    use std::time::Duration;

    fn key(i: u32) -> [u8; 16] {
        (i as u128).to_be_bytes()
    }

    #[test]
    fn map_size_rule() {
        assert_eq!(map_size_for(1), 64 * MIB);
        assert_eq!(map_size_for(1 << 30), 2 * (1 << 30) + 32 * MIB);
        assert_eq!(map_size_for(100 * MIB + 1) % MAP_ALIGN, 0);
        assert!(map_size_for(100 * MIB + 1) >= 232 * MIB + 2);
        assert_eq!(map_size_for(u64::MAX) % MAP_ALIGN, 0);
    }

    #[test]
    fn header_roundtrip_and_corruption() {
        let payload = b"hello";
        let mut raw = encode_header(10, 20, payload).to_vec();
        raw.extend_from_slice(payload);
        assert_eq!(
            decode(&raw),
            Some(Header {
                created_ms: 10,
                expires_ms: 20,
                payload_len: 5
            })
        );
        for i in 0..raw.len() {
            if (6..8).contains(&i) {
                continue; // reserved bytes are not checked
            }
            let mut bad = raw.clone();
            bad[i] ^= 0x40;
            assert_eq!(decode(&bad), None, "flip at {i}");
        }
        assert_eq!(decode(&raw[..raw.len() - 1]), None);
        assert_eq!(decode(b""), None);
    }

    #[test]
    fn peek_reads_without_counting() {
        let dir = tempfile::tempdir().unwrap();
        let c = ResponseCache::open(dir.path(), 1 << 20, false).unwrap();
        assert_eq!(c.peek(&key(1)).unwrap(), None);
        c.put(&key(1), b"one", 60.0).unwrap();
        c.put(&key(2), b"gone", 0.001).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(c.peek(&key(1)).unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(c.peek(&key(2)).unwrap(), None);
        let st = c.stats().unwrap();
        assert_eq!((st.hits, st.misses, st.expired), (0, 0, 0));
        assert_eq!(st.entries, 2);
    }

    #[test]
    fn put_get_delete_and_stats() {
        let dir = tempfile::tempdir().unwrap();
        let c = ResponseCache::open(dir.path(), 1 << 20, false).unwrap();
        assert_eq!(c.get(&key(1)).unwrap(), None);
        c.put(&key(1), b"one", 60.0).unwrap();
        c.put(&key(2), b"two!", 60.0).unwrap();
        assert_eq!(c.get(&key(1)).unwrap().as_deref(), Some(&b"one"[..]));
        let st = c.stats().unwrap();
        assert_eq!((st.entries, st.bytes, st.hits, st.misses), (2, 7, 1, 1));
        assert_eq!(st.max_bytes, 1 << 20);
        assert_eq!(st.map_size, 64 * MIB);
        assert!(c.delete(&key(1)).unwrap());
        assert!(!c.delete(&key(1)).unwrap());
        assert_eq!(c.get(&key(1)).unwrap(), None);
        let st = c.stats().unwrap();
        assert_eq!((st.entries, st.bytes), (1, 4));
        c.clear().unwrap();
        let st = c.stats().unwrap();
        assert_eq!((st.entries, st.bytes), (0, 0));
        assert_eq!(c.get(&key(2)).unwrap(), None);
        c.sync().unwrap();
        // Empty values are values.
        c.put(&key(3), b"", 60.0).unwrap();
        assert_eq!(c.get(&key(3)).unwrap(), Some(vec![]));
    }

    #[test]
    fn bad_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let c = ResponseCache::open(dir.path(), 10, false).unwrap();
        for ttl in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = c.put(&key(1), b"x", ttl).unwrap_err();
            assert!(matches!(e, CoreError::InvalidArgument(_)));
            assert!(e.to_string().contains("ttl_seconds"), "{e}");
        }
        let e = c.put(&key(1), &[0u8; 11], 1.0).unwrap_err();
        assert!(matches!(e, CoreError::InvalidArgument(_)));
        assert!(e.to_string().contains("max_bytes"), "{e}");
        c.put(&key(1), &[0u8; 10], 1.0).unwrap();
        assert!(c.get(b"").is_err());
        assert!(c.get(&[0u8; 300]).is_err());
        assert!(matches!(
            ResponseCache::open(dir.path(), 0, false),
            Err(CoreError::InvalidArgument(_))
        ));
        // A path that cannot be a directory.
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = ResponseCache::open(&file, 10, false).err().unwrap();
        assert!(matches!(e, CoreError::Cache { .. }), "{e}");
        assert!(e.to_string().contains("file"), "{e}");
    }

    #[test]
    fn ttl_expiry_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let c = ResponseCache::open(dir.path(), 1 << 20, false).unwrap();
        c.put(&key(1), b"short", 0.05).unwrap();
        c.put(&key(2), b"long", 60.0).unwrap();
        assert!(c.get(&key(1)).unwrap().is_some());
        sleep(Duration::from_millis(80));
        assert_eq!(c.get(&key(1)).unwrap(), None);
        let st = c.stats().unwrap();
        assert_eq!((st.expired, st.entries), (1, 2));
        assert_eq!(c.purge_expired().unwrap(), 1);
        assert_eq!(c.purge_expired().unwrap(), 0);
        let st = c.stats().unwrap();
        assert_eq!((st.entries, st.bytes), (1, 4));
        assert!(c.get(&key(2)).unwrap().is_some());
    }

    #[test]
    fn expired_entries_seen_by_readers_are_removed_on_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let c = ResponseCache::open(dir.path(), 1 << 20, false).unwrap();
        c.put(&key(1), b"short", 0.02).unwrap();
        sleep(Duration::from_millis(40));
        assert_eq!(c.get(&key(1)).unwrap(), None);
        c.put(&key(2), b"x", 60.0).unwrap();
        let st = c.stats().unwrap();
        assert_eq!((st.entries, st.bytes), (1, 1));
    }

    #[test]
    fn overwrite_keeps_accounting_exact() {
        let dir = tempfile::tempdir().unwrap();
        let c = ResponseCache::open(dir.path(), 1 << 20, false).unwrap();
        c.put(&key(1), &[1u8; 100], 60.0).unwrap();
        c.put(&key(1), &[2u8; 30], 60.0).unwrap();
        c.put(&key(1), &[3u8; 50], 60.0).unwrap();
        let st = c.stats().unwrap();
        assert_eq!((st.entries, st.bytes, st.evictions), (1, 50, 0));
        assert_eq!(c.get(&key(1)).unwrap().unwrap(), vec![3u8; 50]);
        // Exactly one order record remains, so eviction sees the entry once.
        let s = &c.shared;
        let rtxn = s.read_txn().unwrap();
        assert_eq!(s.order.len(&rtxn).unwrap(), 1);
    }

    #[test]
    fn evicts_oldest_under_small_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let c = ResponseCache::open(dir.path(), 1000, false).unwrap();
        for i in 0..10 {
            c.put(&key(i), &[i as u8; 300], 60.0).unwrap();
            sleep(Duration::from_millis(2)); // distinct created_ms
        }
        let st = c.stats().unwrap();
        assert_eq!((st.entries, st.bytes, st.evictions), (3, 900, 7));
        for i in 0..7 {
            assert_eq!(c.get(&key(i)).unwrap(), None, "{i} should be evicted");
        }
        for i in 7..10 {
            assert!(c.get(&key(i)).unwrap().is_some(), "{i} should remain");
        }
        // A value of exactly max_bytes evicts everything else.
        c.put(&key(99), &[9u8; 1000], 60.0).unwrap();
        let st = c.stats().unwrap();
        assert_eq!((st.entries, st.bytes, st.evictions), (1, 1000, 10));
    }

    #[test]
    fn map_full_is_recovered_by_eviction() {
        let dir = tempfile::tempdir().unwrap();
        // A 1 MiB map with a 1 GiB size bound: the map fills long before the bound.
        let c = ResponseCache::open_with_map_size(dir.path(), 1 << 30, false, MIB).unwrap();
        let value = vec![7u8; 20_000];
        for i in 0..400 {
            c.put(&key(i), &value, 60.0).unwrap();
        }
        let st = c.stats().unwrap();
        assert!(st.evictions > 0, "{st:?}");
        assert!(st.entries < 400 && st.entries > 0, "{st:?}");
        assert_eq!(st.bytes, st.entries * 20_000);
        assert_eq!(c.get(&key(399)).unwrap().unwrap(), value);
        assert_eq!(c.get(&key(0)).unwrap(), None);
        // A value that can never fit in the map is an error, not a crash or a loop.
        let e = c
            .put(&key(1000), &vec![0u8; 4 * MIB as usize], 60.0)
            .unwrap_err();
        assert!(matches!(e, CoreError::Cache { .. }), "{e}");
        assert!(e.to_string().contains("MDB_MAP_FULL"), "{e}");
    }

    #[test]
    fn corrupted_value_is_a_miss_and_removed_on_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let c = ResponseCache::open(dir.path(), 1 << 20, false).unwrap();
        c.put(&key(1), b"good value", 60.0).unwrap();
        let s = &c.shared;
        let mut raw = {
            let rtxn = s.read_txn().unwrap();
            s.entries.get(&rtxn, &key(1)).unwrap().unwrap().to_vec()
        };
        let last = raw.len() - 1;
        raw[last] ^= 1;
        c.put_raw_for_test(&key(1), &raw).unwrap();
        assert_eq!(c.get(&key(1)).unwrap(), None);
        c.put_raw_for_test(&key(2), b"garbage").unwrap();
        assert_eq!(c.get(&key(2)).unwrap(), None);
        assert_eq!(c.stats().unwrap().misses, 2);
        // The next write removes both.
        c.put(&key(3), b"x", 60.0).unwrap();
        let rtxn = s.read_txn().unwrap();
        assert!(s.entries.get(&rtxn, &key(1)).unwrap().is_none());
        assert!(s.entries.get(&rtxn, &key(2)).unwrap().is_none());
        drop(rtxn);
        // purge_expired also finds undecodable values.
        c.put_raw_for_test(&key(4), b"junk").unwrap();
        assert_eq!(c.purge_expired().unwrap(), 1);
        assert!(c.get(&key(3)).unwrap().is_some());
    }

    #[test]
    fn two_handles_share_one_environment() {
        let dir = tempfile::tempdir().unwrap();
        let a = ResponseCache::open(dir.path(), 1 << 20, false).unwrap();
        let sub = dir.path().join(".");
        let b = ResponseCache::open(&sub, 1 << 20, true).unwrap();
        assert!(Arc::ptr_eq(&a.shared, &b.shared));
        a.put(&key(1), b"from a", 60.0).unwrap();
        assert_eq!(b.get(&key(1)).unwrap().as_deref(), Some(&b"from a"[..]));
        b.put(&key(2), b"from b", 60.0).unwrap();
        assert_eq!(a.get(&key(2)).unwrap().as_deref(), Some(&b"from b"[..]));
        // Lookup counters are shared per environment.
        assert_eq!(a.stats().unwrap().hits, 2);
        drop(a);
        drop(b);
        // Reopening after the last handle closed works and sees the data.
        let c = ResponseCache::open(dir.path(), 1 << 20, false).unwrap();
        assert_eq!(c.get(&key(1)).unwrap().as_deref(), Some(&b"from a"[..]));
        assert_eq!(c.stats().unwrap().entries, 2);
    }

    const CHILD_ENV: &str = "SKINFLINT_TEST_CACHE_CHILD_DIR";

    /// Runs in two roles: the test itself spawns this test binary again (filtered to this
    /// test, with `CHILD_ENV` set), and both processes write to one directory at once.
    #[test]
    fn two_processes_share_one_directory() {
        if let Ok(dir) = std::env::var(CHILD_ENV) {
            let c = ResponseCache::open(&dir, 1 << 20, false).unwrap();
            assert_eq!(c.get(&key(1)).unwrap().as_deref(), Some(&b"parent"[..]));
            for i in 0..200 {
                c.put(&key(2000 + i), b"child", 60.0).unwrap();
            }
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let c = ResponseCache::open(dir.path(), 1 << 20, false).unwrap();
        c.put(&key(1), b"parent", 60.0).unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "cache::tests::two_processes_share_one_directory",
                "--exact",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for i in 0..200 {
            c.put(&key(1000 + i), b"parent", 60.0).unwrap();
        }
        assert!(child.wait().unwrap().success());
        assert_eq!(c.get(&key(2199)).unwrap().as_deref(), Some(&b"child"[..]));
        let st = c.stats().unwrap();
        assert_eq!(st.entries, 401);
        assert_eq!(st.bytes, 6 + 200 * 6 + 200 * 5);
        // Lookup counters are per process: the child's hit is not here.
        assert_eq!((st.hits, st.misses), (1, 0));
    }

    #[test]
    fn many_threads() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(ResponseCache::open(dir.path(), 1 << 20, false).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let k = key(t * 1000 + i);
                        c.put(&k, &k, 60.0).unwrap();
                        assert_eq!(c.get(&k).unwrap().unwrap(), k.to_vec());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.stats().unwrap().entries, 800);
    }

    #[test]
    fn open_and_close_concurrently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        let c = ResponseCache::open(&path, 1 << 20, false).unwrap();
                        c.put(&key(1), b"v", 60.0).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
