//! The semantic cache's vector index: unit-length embeddings grouped by namespace, each
//! pointing at a response-cache key, searched by cosine similarity (a dot product).
//!
//! **Persistence.** LMDB (its own environment, through the shared registry of `env.rs`) holds
//! an append-only log: key = a sequence number (big endian), value = namespace, cache key,
//! expiry and vector. Every process keeps an in-memory copy per namespace (contiguous `f32`
//! rows) and, before each search, applies the log entries it has not seen yet, so processes
//! sharing a data directory see each other's additions and a restart rebuilds the index.
//! Removing entries (expiry purge, trimming to `max_entries`) bumps an epoch in the `meta`
//! database; a process that sees a new epoch rebuilds its copy from the log.
//!
//! **Search** is brute force in two passes: an `i8` copy of the rows (per-row symmetric scale,
//! a quarter of the memory traffic) is scanned for the `k * 8` (at least 32) best candidates,
//! which are then scored exactly on the `f32` rows (AVX2/FMA when the CPU has them, detected at
//! run time). Returned scores and `min_score` are exact; only recall could suffer, and with
//! that many candidates it does not in practice (see the tests; bench/RESULTS.md has the
//! figures). Expired rows are skipped. A hit is only a pointer:
//! the caller must still find the response-cache entry (it may have expired or been evicted).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use heed::MdbError;

use crate::env::{self, Db};
use crate::error::{CoreError, Result};

/// Longest namespace or key accepted, in bytes.
pub const MAX_ID_BYTES: usize = 1024;
/// Fraction of `max_entries` removed (oldest first) when the index is full.
const TRIM_DIVISOR: usize = 10;
const EPOCH_KEY: &[u8] = b"epoch";
const DIM_KEY: &[u8] = b"dim";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One search result: the similarity and the response-cache key it points at.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    pub score: f32,
    pub key: Vec<u8>,
}

/// The rows of one namespace.
#[derive(Default)]
struct Space {
    keys: Vec<Vec<u8>>,
    slots: HashMap<Vec<u8>, usize>,
    expires_ms: Vec<u64>,
    rows: Vec<f32>,
    /// The rows quantized to `i8` (scanned first), and each row's scale back to `f32`.
    qrows: Vec<i8>,
    qscales: Vec<f32>,
}

impl Space {
    fn upsert(&mut self, dim: usize, key: &[u8], expires_ms: u64, vector: &[f32]) {
        if let Some(&slot) = self.slots.get(key) {
            self.expires_ms[slot] = expires_ms;
            self.rows[slot * dim..(slot + 1) * dim].copy_from_slice(vector);
            self.qscales[slot] = quantize(vector, &mut self.qrows[slot * dim..(slot + 1) * dim]);
            return;
        }
        self.slots.insert(key.to_vec(), self.keys.len());
        self.keys.push(key.to_vec());
        self.expires_ms.push(expires_ms);
        self.rows.extend_from_slice(vector);
        let start = self.qrows.len();
        self.qrows.resize(start + dim, 0);
        self.qscales
            .push(quantize(vector, &mut self.qrows[start..]));
    }

    /// The rows worth scoring exactly: all of them in a small namespace, else the
    /// `candidates` unexpired rows with the best approximate (int8) score.
    fn candidates(&self, query: &[f32], candidates: usize, now: u64) -> Vec<usize> {
        let n = self.keys.len();
        if n <= candidates {
            return (0..n).filter(|&i| self.expires_ms[i] > now).collect();
        }
        let mut q = vec![0i8; query.len()];
        let qscale = quantize(query, &mut q);
        let mut approx = vec![0i32; n];
        dots_i8(&q, &self.qrows, &mut approx);
        // The best `candidates` in one pass: a buffer of up to twice that many, cut back to
        // the best half whenever it fills, and a floor below which a row cannot get in.
        let mut scored: Vec<(f32, usize)> = Vec::with_capacity(2 * candidates);
        let mut floor = f32::NEG_INFINITY;
        for (i, &d) in approx.iter().enumerate() {
            let score = d as f32 * qscale * self.qscales[i];
            if score <= floor || self.expires_ms[i] <= now {
                continue;
            }
            scored.push((score, i));
            if scored.len() == 2 * candidates {
                scored.select_nth_unstable_by(candidates - 1, |a, b| b.0.total_cmp(&a.0));
                scored.truncate(candidates);
                floor = scored.iter().map(|s| s.0).fold(f32::INFINITY, f32::min);
            }
        }
        if scored.len() > candidates {
            scored.select_nth_unstable_by(candidates - 1, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(candidates);
        }
        scored.into_iter().map(|(_, i)| i).collect()
    }
}

/// The in-memory copy of the log.
#[derive(Default)]
struct Mem {
    /// Highest log sequence applied.
    seen: u64,
    epoch: u64,
    spaces: HashMap<Vec<u8>, Space>,
}

struct IndexState {
    log: Db,
    meta: Db,
    mem: RwLock<Mem>,
}

type SharedEnv = env::SharedEnv<IndexState>;

static INDEXES: env::Store<IndexState> = env::Store::new(
    "SemanticIndex",
    |dir, message| CoreError::cache(dir, format!("semantic index: {message}")),
    " (if it is corrupt, delete the directory; the semantic index is rebuilt as misses recur)",
);

/// A persistent vector index (see the module docs).
pub struct VectorIndex {
    shared: Arc<SharedEnv>,
    path: PathBuf,
    dim: usize,
    max_entries: usize,
}

struct Record<'a> {
    namespace: &'a [u8],
    key: &'a [u8],
    expires_ms: u64,
    vector: Vec<f32>,
}

fn encode(namespace: &[u8], key: &[u8], expires_ms: u64, vector: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + namespace.len() + key.len() + 4 * vector.len());
    out.extend_from_slice(&(namespace.len() as u16).to_le_bytes());
    out.extend_from_slice(namespace);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&expires_ms.to_le_bytes());
    for x in vector {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn decode(raw: &[u8], dim: usize) -> Option<Record<'_>> {
    let (ns_len, rest) = raw.split_first_chunk::<2>()?;
    let (namespace, rest) = rest.split_at_checked(u16::from_le_bytes(*ns_len) as usize)?;
    let (key_len, rest) = rest.split_first_chunk::<2>()?;
    let (key, rest) = rest.split_at_checked(u16::from_le_bytes(*key_len) as usize)?;
    let (expires, rest) = rest.split_first_chunk::<8>()?;
    if rest.len() != 4 * dim {
        return None;
    }
    let vector = rest
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some(Record {
        namespace,
        key,
        expires_ms: u64::from_le_bytes(*expires),
        vector,
    })
}

fn read_u64(db: &Db, txn: &heed::RoTxn<'_, heed::WithoutTls>, key: &[u8]) -> heed::Result<u64> {
    Ok(db
        .get(txn, key)?
        .and_then(|v| v.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0))
}

impl VectorIndex {
    /// Opens (creating it if needed) the index in directory `path`, for vectors of `dim`
    /// dimensions, holding at most `max_entries` rows in all (the oldest go first).
    pub fn open(
        path: impl AsRef<Path>,
        dim: usize,
        max_entries: usize,
        durable: bool,
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if dim == 0 || max_entries == 0 {
            return Err(CoreError::InvalidArgument(
                "dim and max_entries must be > 0".into(),
            ));
        }
        // Each row: the vector, two ids (typically 32 bytes each) and LMDB's overhead; twice
        // that leaves room for the free pages of a copy-on-write B-tree.
        let row = 4 * dim + 256;
        let map_size = (max_entries.saturating_mul(row).saturating_mul(2) + (64 << 20))
            .next_multiple_of(1 << 20);
        let options = env::Options {
            databases: ["log", "meta"],
            map_size,
            durable,
        };
        let shared = INDEXES.open(&path, options, |[log, meta]| IndexState {
            log,
            meta,
            mem: RwLock::new(Mem::default()),
        })?;
        let index = VectorIndex {
            shared,
            path,
            dim,
            max_entries,
        };
        index.check_dim()?;
        Ok(index)
    }

    /// Records `dim` on first open; a later open with another `dim` is an error.
    fn check_dim(&self) -> Result<()> {
        let s = &*self.shared;
        let mut wtxn = s.write_txn()?;
        let stored = s
            .meta
            .get(&wtxn, DIM_KEY)
            .map_err(|e| s.err("read failed", e))?;
        match stored.and_then(|v| <[u8; 8]>::try_from(v).ok()) {
            Some(v) if u64::from_le_bytes(v) as usize != self.dim => Err(s.err(
                "open failed",
                format!(
                    "it holds vectors of {} dimensions, not {}; delete the directory to start over",
                    u64::from_le_bytes(v),
                    self.dim
                ),
            )),
            Some(_) => Ok(()),
            None => {
                s.meta
                    .put(&mut wtxn, DIM_KEY, &(self.dim as u64).to_le_bytes())
                    .map_err(|e| s.err("write failed", e))?;
                wtxn.commit().map_err(|e| s.err("commit failed", e))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    fn check(&self, namespace: &[u8], key: Option<&[u8]>, vector: &[f32]) -> Result<()> {
        if namespace.is_empty() || namespace.len() > MAX_ID_BYTES {
            return Err(CoreError::InvalidArgument(format!(
                "namespace must be 1 to {MAX_ID_BYTES} bytes, got {}",
                namespace.len()
            )));
        }
        if let Some(key) = key {
            if key.is_empty() || key.len() > MAX_ID_BYTES {
                return Err(CoreError::InvalidArgument(format!(
                    "key must be 1 to {MAX_ID_BYTES} bytes, got {}",
                    key.len()
                )));
            }
        }
        if vector.len() != self.dim {
            return Err(CoreError::InvalidArgument(format!(
                "vector must have {} dimensions, got {}",
                self.dim,
                vector.len()
            )));
        }
        if !vector.iter().all(|x| x.is_finite()) {
            return Err(CoreError::InvalidArgument(
                "vector must hold finite numbers only".into(),
            ));
        }
        Ok(())
    }

    /// Adds (or replaces) the row of `key` in `namespace`, expiring in `ttl_seconds`.
    pub fn add(
        &self,
        namespace: &[u8],
        key: &[u8],
        vector: &[f32],
        ttl_seconds: f64,
    ) -> Result<()> {
        self.check(namespace, Some(key), vector)?;
        if !(ttl_seconds.is_finite() && ttl_seconds > 0.0) {
            return Err(CoreError::InvalidArgument(format!(
                "ttl_seconds must be a finite number > 0, got {ttl_seconds}"
            )));
        }
        let expires_ms = now_ms().saturating_add((ttl_seconds * 1000.0) as u64);
        let value = encode(namespace, key, expires_ms, vector);
        let s = &*self.shared;
        for attempt in 0..2 {
            match self.append(&value)? {
                Ok(()) => break,
                Err(e) if attempt == 0 && is_map_full(&e) => self.trim(self.max_entries / 2)?,
                Err(e) => return Err(s.err("write failed", e)),
            }
        }
        self.refresh()
    }

    /// Appends one log entry (the inner error is LMDB's, so a full map can be told apart).
    fn append(&self, value: &[u8]) -> Result<heed::Result<()>> {
        let s = &*self.shared;
        let mut wtxn = s.write_txn()?;
        Ok(append_in(s, &mut wtxn, value, self.max_entries).and_then(|()| wtxn.commit()))
    }

    /// Removes the oldest rows until at most `keep` remain.
    fn trim(&self, keep: usize) -> Result<()> {
        let s = &*self.shared;
        let mut wtxn = s.write_txn()?;
        let count = s.log.len(&wtxn).map_err(|e| s.err("read failed", e))? as usize;
        if count > keep {
            remove_oldest(s, &mut wtxn, count - keep).map_err(|e| s.err("trim failed", e))?;
            bump_epoch(s, &mut wtxn).map_err(|e| s.err("write failed", e))?;
        }
        wtxn.commit().map_err(|e| s.err("commit failed", e))
    }

    /// Removes expired rows from LMDB (and, through the epoch, from every process's copy).
    /// Returns how many were removed.
    pub fn purge_expired(&self) -> Result<u64> {
        let s = &*self.shared;
        let now = now_ms();
        let mut wtxn = s.write_txn()?;
        let mut expired = Vec::new();
        for item in s.log.iter(&wtxn).map_err(|e| s.err("read failed", e))? {
            let (k, v) = item.map_err(|e| s.err("read failed", e))?;
            if decode(v, self.dim).is_none_or(|r| r.expires_ms <= now) {
                expired.push(k.to_vec());
            }
        }
        for k in &expired {
            s.log
                .delete(&mut wtxn, k)
                .map_err(|e| s.err("write failed", e))?;
        }
        if !expired.is_empty() {
            bump_epoch(s, &mut wtxn).map_err(|e| s.err("write failed", e))?;
        }
        wtxn.commit().map_err(|e| s.err("commit failed", e))?;
        self.refresh()?;
        Ok(expired.len() as u64)
    }

    /// Applies the log entries this process has not seen (all of them after a new epoch).
    fn refresh(&self) -> Result<()> {
        let s = &*self.shared;
        let rtxn = s.read_txn()?;
        let epoch = read_u64(&s.meta, &rtxn, EPOCH_KEY).map_err(|e| s.err("read failed", e))?;
        let last = s
            .log
            .last(&rtxn)
            .map_err(|e| s.err("read failed", e))?
            .and_then(|(k, _)| <[u8; 8]>::try_from(k).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        {
            let mem = s.mem.read().unwrap_or_else(|e| e.into_inner());
            if mem.epoch == epoch && mem.seen >= last {
                return Ok(());
            }
        }
        let mut mem = s.mem.write().unwrap_or_else(|e| e.into_inner());
        if mem.epoch != epoch {
            *mem = Mem {
                epoch,
                ..Mem::default()
            };
        }
        let start = (mem.seen + 1).to_be_bytes();
        let range = (
            std::ops::Bound::Included(&start[..]),
            std::ops::Bound::Unbounded,
        );
        let entries = s
            .log
            .range(&rtxn, &range)
            .map_err(|e| s.err("read failed", e))?;
        for item in entries {
            let (k, v) = item.map_err(|e| s.err("read failed", e))?;
            let Some(seq) = <[u8; 8]>::try_from(k).ok().map(u64::from_be_bytes) else {
                continue;
            };
            mem.seen = mem.seen.max(seq);
            if let Some(r) = decode(v, self.dim) {
                mem.spaces.entry(r.namespace.to_vec()).or_default().upsert(
                    self.dim,
                    r.key,
                    r.expires_ms,
                    &r.vector,
                );
            }
        }
        Ok(())
    }

    /// The `k` unexpired rows of `namespace` most similar to `query` with a score of at
    /// least `min_score`, best first.
    pub fn search(
        &self,
        namespace: &[u8],
        query: &[f32],
        k: usize,
        min_score: f32,
    ) -> Result<Vec<Match>> {
        self.check(namespace, None, query)?;
        self.refresh()?;
        let mem = self.shared.mem.read().unwrap_or_else(|e| e.into_inner());
        let Some(space) = mem.spaces.get(namespace) else {
            return Ok(Vec::new());
        };
        // Two passes: the int8 copy picks generous candidates, the f32 rows score them
        // exactly, so every returned score (and `min_score`) is exact; only recall could
        // suffer, and with k * 8 (at least 32) candidates it does not in practice.
        let now = now_ms();
        let dim = self.dim;
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        for i in space.candidates(query, k.saturating_mul(8).max(32), now) {
            let score = dot(query, &space.rows[i * dim..(i + 1) * dim]);
            if score < min_score {
                continue;
            }
            if best.len() == k && best.last().is_some_and(|&(s, _)| s >= score) {
                continue;
            }
            let at = best.partition_point(|&(s, _)| s >= score);
            best.insert(at, (score, i));
            best.truncate(k);
        }
        Ok(best
            .into_iter()
            .map(|(score, i)| Match {
                score,
                key: space.keys[i].clone(),
            })
            .collect())
    }

    /// Rows in `namespace` (expired ones included until purged).
    pub fn len(&self, namespace: &[u8]) -> Result<usize> {
        self.refresh()?;
        let mem = self.shared.mem.read().unwrap_or_else(|e| e.into_inner());
        Ok(mem.spaces.get(namespace).map_or(0, |s| s.keys.len()))
    }
}

fn is_map_full(e: &heed::Error) -> bool {
    matches!(e, heed::Error::Mdb(MdbError::MapFull))
}

fn append_in(
    s: &SharedEnv,
    wtxn: &mut heed::RwTxn<'_>,
    value: &[u8],
    max_entries: usize,
) -> heed::Result<()> {
    let last = s
        .log
        .last(wtxn)?
        .and_then(|(k, _)| <[u8; 8]>::try_from(k).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0);
    s.log.put(wtxn, &(last + 1).to_be_bytes(), value)?;
    let count = s.log.len(wtxn)? as usize;
    if count > max_entries {
        let target = max_entries - max_entries / TRIM_DIVISOR;
        remove_oldest(s, wtxn, count - target)?;
        bump_epoch(s, wtxn)?;
    }
    Ok(())
}

fn remove_oldest(s: &SharedEnv, wtxn: &mut heed::RwTxn<'_>, n: usize) -> heed::Result<()> {
    let oldest: Vec<Vec<u8>> = s
        .log
        .iter(wtxn)?
        .take(n)
        .map(|item| item.map(|(k, _)| k.to_vec()))
        .collect::<heed::Result<_>>()?;
    for k in &oldest {
        s.log.delete(wtxn, k)?;
    }
    Ok(())
}

fn bump_epoch(s: &SharedEnv, wtxn: &mut heed::RwTxn<'_>) -> heed::Result<()> {
    let epoch = s
        .meta
        .get(wtxn, EPOCH_KEY)?
        .and_then(|v| <[u8; 8]>::try_from(v).ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0);
    s.meta.put(wtxn, EPOCH_KEY, &(epoch + 1).to_le_bytes())
}

/// `out[i]` = dot(`query`, row `i` of `rows`).
fn dots(query: &[f32], rows: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        unsafe { dots_avx2(query, rows, out) };
        return;
    }
    for (row, o) in rows.chunks_exact(query.len()).zip(out.iter_mut()) {
        *o = dot_portable(query, row);
    }
}

#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ac, ar) = a.as_chunks::<16>();
    let (bc, br) = b.as_chunks::<16>();
    for (x, y) in ac.iter().zip(bc) {
        for ((a, &xi), &yi) in acc.iter_mut().zip(x).zip(y) {
            *a += xi * yi;
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2(query: &[f32], rows: &[f32], out: &mut [f32]) {
    for (row, o) in rows.chunks_exact(query.len()).zip(out.iter_mut()) {
        let mut acc = [0f32; 16];
        let (ac, ar) = query.as_chunks::<16>();
        let (bc, br) = row.as_chunks::<16>();
        for (x, y) in ac.iter().zip(bc) {
            for ((a, &xi), &yi) in acc.iter_mut().zip(x).zip(y) {
                *a += xi * yi;
            }
        }
        let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
        *o = acc.iter().sum::<f32>() + tail;
    }
}

/// Writes `v` scaled to `i8` (symmetric: the largest magnitude maps to 127) into `out` and
/// returns the scale back (`v[i] ~= out[i] * scale`).
fn quantize(v: &[f32], out: &mut [i8]) -> f32 {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        out.fill(0);
        return 0.0;
    }
    let inv = 127.0 / max;
    for (o, x) in out.iter_mut().zip(v) {
        *o = (x * inv).round().clamp(-127.0, 127.0) as i8;
    }
    max / 127.0
}

/// The exact dot product of two vectors.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut out = [0f32];
    dots(a, b, &mut out);
    out[0]
}

/// `out[i]` = dot(`query`, row `i` of `rows`), in integers (no overflow: |x| <= 127, so a
/// dimension would have to exceed 133,000 to reach `i32::MAX`). A large namespace is split
/// over the rayon pool: the scan is the whole cost of a search at 100k rows.
fn dots_i8(query: &[i8], rows: &[i8], out: &mut [i32]) {
    use rayon::prelude::*;
    const ROWS_PER_TASK: usize = 8192;
    if out.len() <= ROWS_PER_TASK {
        return dots_i8_serial(query, rows, out);
    }
    out.par_chunks_mut(ROWS_PER_TASK)
        .zip(rows.par_chunks(ROWS_PER_TASK * query.len()))
        .for_each(|(out, rows)| dots_i8_serial(query, rows, out));
}

fn dots_i8_serial(query: &[i8], rows: &[i8], out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports the features the function is compiled for.
        unsafe { dots_i8_avx2(query, rows, out) };
        return;
    }
    dots_i8_portable(query, rows, out);
}

fn dots_i8_portable(query: &[i8], rows: &[i8], out: &mut [i32]) {
    for (row, o) in rows.chunks_exact(query.len()).zip(out.iter_mut()) {
        *o = query
            .iter()
            .zip(row)
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum();
    }
}

/// 32 products per step: `maddubs` multiplies unsigned by signed bytes, so the query goes in
/// as |q| and its sign moves onto the row (`sign_epi8`); |q| <= 128 and |r| <= 127 keep each
/// pair sum within i16 (2 * 128 * 127 = 32,512), so nothing saturates.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dots_i8_avx2(query: &[i8], rows: &[i8], out: &mut [i32]) {
    use std::arch::x86_64::*;
    let (qc, qr) = query.as_chunks::<32>();
    // SAFETY (all loads here): each chunk is 32 readable bytes; loadu needs no alignment.
    let q: Vec<(__m256i, __m256i)> = qc
        .iter()
        .map(|c| {
            let v = unsafe { _mm256_loadu_si256(c.as_ptr().cast()) };
            (_mm256_abs_epi8(v), v)
        })
        .collect();
    let ones = _mm256_set1_epi16(1);
    for (row, o) in rows.chunks_exact(query.len()).zip(out.iter_mut()) {
        let (rc, rr) = row.as_chunks::<32>();
        let mut acc = _mm256_setzero_si256();
        for (&(abs_q, sign_q), r) in q.iter().zip(rc) {
            let r = unsafe { _mm256_loadu_si256(r.as_ptr().cast()) };
            let pairs = _mm256_maddubs_epi16(abs_q, _mm256_sign_epi8(r, sign_q));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
        }
        let sum = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256::<1>(acc),
        );
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32::<0b01_00_11_10>(sum));
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32::<0b10_11_00_01>(sum));
        let tail: i32 = qr
            .iter()
            .zip(rr)
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum();
        *o = _mm_cvtsi128_si32(sum) + tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.into_iter().map(|a| a / n).collect()
    }

    #[test]
    fn finds_the_nearest_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let dim = 20;
        {
            let index = VectorIndex::open(dir.path(), dim, 1000, false).unwrap();
            for i in 0..50u64 {
                index
                    .add(b"ns", &i.to_le_bytes(), &unit(i, dim), 60.0)
                    .unwrap();
            }
            let hit = index.search(b"ns", &unit(7, dim), 1, -1.0).unwrap();
            assert_eq!(hit[0].key, 7u64.to_le_bytes());
            assert!((hit[0].score - 1.0).abs() < 1e-5);
            assert!(index
                .search(b"other", &unit(7, dim), 1, -1.0)
                .unwrap()
                .is_empty());
        }
        let index = VectorIndex::open(dir.path(), dim, 1000, false).unwrap();
        assert_eq!(index.len(b"ns").unwrap(), 50);
        let hits = index.search(b"ns", &unit(9, dim), 3, -1.0).unwrap();
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[0].key, 9u64.to_le_bytes());
        assert!(hits[0].score >= hits[1].score && hits[1].score >= hits[2].score);
        assert!(VectorIndex::open(dir.path(), dim + 1, 1000, false).is_err());
    }

    #[test]
    fn trims_the_oldest_beyond_max_entries() {
        let dir = tempfile::tempdir().unwrap();
        let index = VectorIndex::open(dir.path(), 8, 20, false).unwrap();
        for i in 0..25u64 {
            index
                .add(b"ns", &i.to_le_bytes(), &unit(i, 8), 60.0)
                .unwrap();
        }
        let n = index.len(b"ns").unwrap();
        assert!(n <= 20, "{n}");
        assert!(index.search(b"ns", &unit(24, 8), 1, 0.99).unwrap()[0].key == 24u64.to_le_bytes());
        assert!(index
            .search(b"ns", &unit(0, 8), 1, 0.99)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn avx2_and_portable_agree() {
        let q = unit(1, 384);
        let rows: Vec<f32> = (0..10).flat_map(|i| unit(i + 2, 384)).collect();
        let mut out = vec![0f32; 10];
        dots(&q, &rows, &mut out);
        for (i, row) in rows.chunks_exact(384).enumerate() {
            assert!((out[i] - dot_portable(&q, row)).abs() < 1e-5);
        }
    }

    #[test]
    fn int8_avx2_and_portable_agree() {
        let dim = 390; // not a multiple of 32: the tail is exercised too
        let mut q = vec![0i8; dim];
        quantize(&unit(1, dim), &mut q);
        // Enough rows to go parallel; the first rows are the extremes (saturation would show).
        let n = 20_000;
        let mut rows = vec![0i8; n * dim];
        for (i, row) in rows.chunks_exact_mut(dim).enumerate() {
            match i {
                0 => row.fill(127),
                1 => row.fill(-127),
                2 => row.copy_from_slice(&q),
                _ => {
                    quantize(&unit(i as u64 + 2, dim), row);
                }
            }
        }
        let mut extreme_q = vec![-127i8; dim];
        extreme_q[0] = 0;
        for query in [&q, &extreme_q] {
            let (mut fast, mut slow) = (vec![0i32; n], vec![0i32; n]);
            dots_i8(query, &rows, &mut fast);
            dots_i8_portable(query, &rows, &mut slow);
            assert_eq!(fast, slow);
            assert!(slow.iter().any(|&d| d != 0));
        }
    }

    /// The two-pass search against an exact brute force on random unit vectors: the same
    /// top-1 in at least 99% of queries, every score exact and never below `min_score`.
    #[test]
    fn two_pass_search_matches_exact_search() {
        let dir = tempfile::tempdir().unwrap();
        let (dim, n) = (64, 2000u64);
        let index = VectorIndex::open(dir.path(), dim, 10_000, false).unwrap();
        let rows: Vec<Vec<f32>> = (0..n).map(|i| unit(i + 1000, dim)).collect();
        for (i, row) in rows.iter().enumerate() {
            index
                .add(b"ns", &(i as u64).to_le_bytes(), row, 60.0)
                .unwrap();
        }
        let (queries, min_score) = (300u64, 0.2);
        let mut same_top1 = 0;
        for q in 0..queries {
            let query = unit(q + 1_000_000, dim);
            let exact: Vec<f32> = rows.iter().map(|r| dot_portable(&query, r)).collect();
            let best = (0..rows.len())
                .max_by(|&a, &b| exact[a].total_cmp(&exact[b]))
                .unwrap();
            let hits = index.search(b"ns", &query, 4, min_score).unwrap();
            for hit in &hits {
                let i = u64::from_le_bytes(hit.key.clone().try_into().unwrap()) as usize;
                assert!(
                    (hit.score - exact[i]).abs() < 1e-5,
                    "{} vs {}",
                    hit.score,
                    exact[i]
                );
                assert!(hit.score >= min_score);
            }
            if exact[best] < min_score {
                assert!(hits.is_empty());
                same_top1 += 1;
            } else if hits
                .first()
                .is_some_and(|h| h.key == (best as u64).to_le_bytes())
            {
                same_top1 += 1;
            }
        }
        assert!(same_top1 * 100 >= queries * 99, "{same_top1}/{queries}");
    }
}
