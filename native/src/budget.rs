//! The local budget ledger on LMDB (heed): atomic reserve / commit / release over budget
//! windows, shared by every thread and process that opens the same directory.
//!
//! The rule (see `sidecar/skinflint/budget_store/base.py`): a reservation is admitted on all
//! of its charges or on none, and only if, for every charge, `spent + reserved + charge <=
//! limit` for each non-zero limit. Commit releases the holds and adds the actual spend;
//! release drops the holds (idempotent). Every operation runs in **one** LMDB write
//! transaction; LMDB serializes writers across processes, which is the atomicity.
//!
//! # Layout
//!
//! Four named databases in one environment. Every value starts with a format byte
//! ([`FORMAT`]); a value that does not decode is an error naming its key, never "absent"
//! (money must not silently vanish).
//!
//! * `windows`: `budget_id ++ 0x00 ++ window_start (u64 BE)` -> format ++ `spent_nanousd`,
//!   `reserved_nanousd`, `spent_tokens`, `reserved_tokens`, `requests`, `window_end`
//!   (u64 LE each; 49 bytes).
//! * `reservations`: `reservation_id` -> format ++ `expires_ms` (u64 LE) ++ flags (u8, bit 0 =
//!   released by expiry) ++ charge count (u16 LE) ++ per charge: window-key length (u16 LE),
//!   window key, `nanousd`, `tokens`, `window_end` (u64 LE each).
//! * `expiry`: `due_ms (u64 BE) ++ reservation_id` -> empty. A live reservation is indexed at
//!   its `expires_ms`; once released by expiry it stays as a tombstone (its charges, so a late
//!   commit still records the spend on the right windows) indexed at
//!   `expires_ms + RESERVATION_GRACE_MS`, when it is deleted.
//! * `specs`: `budget_id` -> format ++ the spec's JSON text (opaque).
//!
//! Budget ids must not contain NUL (it separates the id from the window start in keys), so
//! the windows of budget `A` are exactly the keys starting with `A\0` (never `A:x`).
//!
//! # Expiry
//!
//! "Expired" means `expires_ms <= now_ms` with the caller's clock. Every reserve, commit,
//! release, record and state first releases up to [`EXPIRE_BATCH`] expired reservations (oldest first, through the `expiry`
//! index), whichever windows they touch; `purge_expired` releases all of them. After a long
//! outage with more than [`EXPIRE_BATCH`] expired holds, a reserve may be denied on holds
//! that the next operations release: conservative, never an overspend.
//!
//! Windows whose `window_end` (unix seconds, 0 = never) is more than [`WINDOW_MARGIN_S`] in
//! the past and that hold nothing are dropped by `purge_expired`.
//!
//! # Environments and durability
//!
//! As for the response cache (both go through `env.rs`): one environment per canonical
//! directory per process (registry), refused in a forked child (open the ledger again
//! there), read transactions without thread-local storage. The directory must not also
//! hold a response cache. `durable = false` opens with `MDB_NOSYNC`: a process crash
//! (`kill -9`) loses nothing, since the OS has the pages; an OS crash or power loss may lose
//! the last transactions. `durable = true` syncs every commit to disk. The map is
//! [`MAP_SIZE`] (sparse); when it is full the operation fails (nothing is ever evicted from
//! a ledger).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use heed::{MdbError, RwTxn};

use crate::env::{self, Db};
use crate::error::{CoreError, Result};

/// The format byte leading every value.
pub const FORMAT: u8 = 1;
/// LMDB map size: 1 GiB, sparse (millions of windows and reservations).
pub const MAP_SIZE: usize = 1 << 30;
/// Expired reservations released at the start of each operation, at most.
pub const EXPIRE_BATCH: usize = 1024;
/// How long an expired reservation's charges are kept for a late commit.
pub const RESERVATION_GRACE_MS: u64 = 3_600_000;
/// Windows are dropped this long after their `window_end` (so last period's spend can be read).
pub const WINDOW_MARGIN_S: u64 = 86_400;
/// Longest budget id / reservation id, in bytes.
pub const MAX_ID_LEN: usize = 256;

const WINDOW_LEN: usize = 1 + 6 * 8;
const FLAG_RELEASED: u8 = 1;

/// What one reservation asks of one budget window (see `Charge` in `base.py`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    pub budget_id: String,
    /// Unix seconds (0 for a TOTAL window).
    pub window_start: u64,
    /// 0 = no limit of that kind.
    pub limit_nanousd: u64,
    pub limit_tokens: u64,
    pub nanousd: u64,
    pub tokens: u64,
    /// Unix seconds; 0 = never dropped.
    pub window_end: u64,
}

/// The counters of one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowState {
    pub spent_nanousd: u64,
    pub reserved_nanousd: u64,
    pub spent_tokens: u64,
    pub reserved_tokens: u64,
    pub requests: u64,
}

/// Which limit a denied reservation would cross.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    Nanousd,
    Tokens,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Nanousd => "nanousd",
            LimitKind::Tokens => "tokens",
        }
    }
}

/// Why a reservation was refused: the first charge that did not fit, with its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub budget_id: String,
    pub window_start: u64,
    pub limit_nanousd: u64,
    pub limit_tokens: u64,
    pub state: WindowState,
    pub limit_kind: LimitKind,
}

/// A window right before and after a commit or record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub budget_id: String,
    pub window_start: u64,
    pub before: WindowState,
    pub after: WindowState,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct WindowRec {
    state: WindowState,
    window_end: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct HeldCharge {
    window_key: Vec<u8>,
    nanousd: u64,
    tokens: u64,
    window_end: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Reservation {
    expires_ms: u64,
    released: bool,
    charges: Vec<HeldCharge>,
}

impl Reservation {
    /// When its `expiry` index record is due.
    fn due_ms(&self) -> u64 {
        if self.released {
            self.expires_ms.saturating_add(RESERVATION_GRACE_MS)
        } else {
            self.expires_ms
        }
    }
}

// -- encoding -----------------------------------------------------------------------------

fn window_key(budget_id: &str, window_start: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(budget_id.len() + 9);
    k.extend_from_slice(budget_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&window_start.to_be_bytes());
    k
}

/// `(budget_id, window_start)` of a window key.
fn split_window_key(key: &[u8]) -> Option<(String, u64)> {
    if key.len() < 9 || key[key.len() - 9] != 0 {
        return None;
    }
    let (id, ws) = key.split_at(key.len() - 9);
    let id = String::from_utf8(id.to_vec()).ok()?;
    Some((id, u64_be(&ws[1..])))
}

fn u64_be(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn u64_le(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn expiry_key(due_ms: u64, id: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + id.len());
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(id);
    k
}

fn encode_window(w: &WindowRec) -> [u8; WINDOW_LEN] {
    let mut v = [0u8; WINDOW_LEN];
    v[0] = FORMAT;
    let s = &w.state;
    let fields = [
        s.spent_nanousd,
        s.reserved_nanousd,
        s.spent_tokens,
        s.reserved_tokens,
        s.requests,
        w.window_end,
    ];
    for (i, f) in fields.iter().enumerate() {
        v[1 + 8 * i..9 + 8 * i].copy_from_slice(&f.to_le_bytes());
    }
    v
}

fn decode_window(raw: &[u8]) -> Option<WindowRec> {
    if raw.len() != WINDOW_LEN || raw[0] != FORMAT {
        return None;
    }
    let f = |i: usize| u64_le(&raw[1 + 8 * i..]);
    Some(WindowRec {
        state: WindowState {
            spent_nanousd: f(0),
            reserved_nanousd: f(1),
            spent_tokens: f(2),
            reserved_tokens: f(3),
            requests: f(4),
        },
        window_end: f(5),
    })
}

fn encode_reservation(r: &Reservation) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + r.charges.len() * 40);
    v.push(FORMAT);
    v.extend_from_slice(&r.expires_ms.to_le_bytes());
    v.push(if r.released { FLAG_RELEASED } else { 0 });
    v.extend_from_slice(&(r.charges.len() as u16).to_le_bytes());
    for c in &r.charges {
        v.extend_from_slice(&(c.window_key.len() as u16).to_le_bytes());
        v.extend_from_slice(&c.window_key);
        v.extend_from_slice(&c.nanousd.to_le_bytes());
        v.extend_from_slice(&c.tokens.to_le_bytes());
        v.extend_from_slice(&c.window_end.to_le_bytes());
    }
    v
}

fn decode_reservation(raw: &[u8]) -> Option<Reservation> {
    let mut rest = raw;
    let mut take = |n: usize| -> Option<&[u8]> {
        if rest.len() < n {
            return None;
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    };
    if take(1)? != [FORMAT] {
        return None;
    }
    let expires_ms = u64_le(take(8)?);
    let flags = take(1)?[0];
    if flags & !FLAG_RELEASED != 0 {
        return None;
    }
    let n = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
    let mut charges = Vec::with_capacity(n);
    for _ in 0..n {
        let klen = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
        let window_key = take(klen)?.to_vec();
        split_window_key(&window_key)?;
        charges.push(HeldCharge {
            window_key,
            nanousd: u64_le(take(8)?),
            tokens: u64_le(take(8)?),
            window_end: u64_le(take(8)?),
        });
    }
    if !rest.is_empty() {
        return None;
    }
    Some(Reservation {
        expires_ms,
        released: flags & FLAG_RELEASED != 0,
        charges,
    })
}

/// A key for messages: UTF-8 when it is, else hex.
fn show_key(key: &[u8]) -> String {
    if let Some((id, ws)) = split_window_key(key) {
        return format!("{id:?}@{ws}");
    }
    match std::str::from_utf8(key) {
        Ok(s) if !s.contains('\0') => format!("{s:?}"),
        _ => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn merge_window_end(a: u64, b: u64) -> u64 {
    if a == 0 || b == 0 {
        0
    } else {
        a.max(b)
    }
}

// -- environments -------------------------------------------------------------------------

/// The ledger's databases (per environment, see [`env::SharedEnv`]).
struct LedgerDbs {
    windows: Db,
    reservations: Db,
    expiry: Db,
    specs: Db,
}

static LEDGERS: env::Store<LedgerDbs> = env::Store::new(
    "BudgetLedger",
    |dir, message| CoreError::budget(dir, message),
    "",
);

/// A handle on a budget ledger directory (see the module docs).
pub struct BudgetLedger {
    shared: Arc<env::SharedEnv<LedgerDbs>>,
    path: PathBuf,
    durable: bool,
}

fn check_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.contains('\0') {
        return Err(CoreError::InvalidArgument(format!(
            "{what} must be 1 to {MAX_ID_LEN} bytes without NUL, got {id:?}"
        )));
    }
    Ok(())
}

fn overflow(key: &[u8], field: &str) -> CoreError {
    CoreError::InvalidArgument(format!(
        "{field} of budget window {} would overflow u64; refused (nothing was changed)",
        show_key(key)
    ))
}

/// A window to spend on: key, `window_end`, and the hold to release first (if live).
type SpendOn = (Vec<u8>, u64, Option<(u64, u64)>);

impl WindowState {
    /// Subtracts a hold; an error message when the window holds less (never wraps).
    fn release(&self, key: &[u8], nanousd: u64, tokens: u64) -> std::result::Result<Self, String> {
        let under = || {
            format!(
                "window {} holds less than a reservation on it",
                show_key(key)
            )
        };
        Ok(WindowState {
            reserved_nanousd: self
                .reserved_nanousd
                .checked_sub(nanousd)
                .ok_or_else(under)?,
            reserved_tokens: self.reserved_tokens.checked_sub(tokens).ok_or_else(under)?,
            ..*self
        })
    }

    fn add_spend(&self, key: &[u8], nanousd: u64, tokens: u64) -> Result<WindowState> {
        Ok(WindowState {
            spent_nanousd: self
                .spent_nanousd
                .checked_add(nanousd)
                .ok_or_else(|| overflow(key, "spent_nanousd"))?,
            spent_tokens: self
                .spent_tokens
                .checked_add(tokens)
                .ok_or_else(|| overflow(key, "spent_tokens"))?,
            requests: self
                .requests
                .checked_add(1)
                .ok_or_else(|| overflow(key, "requests"))?,
            ..*self
        })
    }
}

impl BudgetLedger {
    /// Opens (creating it if needed) the ledger in directory `path`.
    pub fn open(path: impl AsRef<Path>, durable: bool) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let options = env::Options {
            databases: ["windows", "reservations", "expiry", "specs"],
            map_size: MAP_SIZE,
            durable,
        };
        let shared = LEDGERS.open(&path, options, |[windows, reservations, expiry, specs]| {
            LedgerDbs {
                windows,
                reservations,
                expiry,
                specs,
            }
        })?;
        Ok(BudgetLedger {
            shared,
            path,
            durable,
        })
    }

    /// The directory as given when opening.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn durable(&self) -> bool {
        self.durable
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> CoreError {
        self.shared.err(what, e)
    }

    fn h<T>(&self, r: heed::Result<T>) -> Result<T> {
        r.map_err(|e| self.err("LMDB operation failed", e))
    }

    fn corrupt(&self, db: &str, key: &[u8]) -> CoreError {
        self.err(
            "undecodable value",
            format!(
                "{db} key {} does not decode (unknown format or damaged); the ledger holds \
                 spend, so it is not ignored: restore the directory from a backup",
                show_key(key)
            ),
        )
    }

    /// Runs `f` in one write transaction: committed on `Ok`, aborted on `Err`.
    fn write<R>(&self, f: impl FnOnce(&mut RwTxn) -> Result<R>) -> Result<R> {
        let s = &*self.shared;
        let mut wtxn = self.h(s.env()?.write_txn())?;
        match f(&mut wtxn) {
            Ok(r) => {
                wtxn.commit().map_err(|e| match e {
                    heed::Error::Mdb(MdbError::MapFull) => self.err(
                        "the LMDB map is full (MDB_MAP_FULL)",
                        format!("{MAP_SIZE} bytes; run purge_expired or move old budgets away"),
                    ),
                    e => self.err("commit failed", e),
                })?;
                if self.durable && !s.synced() {
                    self.h(s.env()?.force_sync())?;
                }
                Ok(r)
            }
            Err(e) => {
                wtxn.abort();
                Err(e)
            }
        }
    }

    fn get_window(&self, txn: &RwTxn, key: &[u8]) -> Result<Option<WindowRec>> {
        match self.h(self.shared.windows.get(txn, key))? {
            None => Ok(None),
            Some(raw) => decode_window(raw)
                .map(Some)
                .ok_or_else(|| self.corrupt("windows", key)),
        }
    }

    fn put_window(&self, txn: &mut RwTxn, key: &[u8], w: &WindowRec) -> Result<()> {
        self.h(self.shared.windows.put(txn, key, &encode_window(w)))
    }

    fn get_reservation(&self, txn: &RwTxn, id: &[u8]) -> Result<Option<Reservation>> {
        match self.h(self.shared.reservations.get(txn, id))? {
            None => Ok(None),
            Some(raw) => decode_reservation(raw)
                .map(Some)
                .ok_or_else(|| self.corrupt("reservations", id)),
        }
    }

    /// Subtracts a live reservation's holds from its windows.
    fn release_holds(&self, txn: &mut RwTxn, r: &Reservation) -> Result<()> {
        for c in &r.charges {
            if c.nanousd == 0 && c.tokens == 0 {
                continue;
            }
            let Some(mut w) = self.get_window(txn, &c.window_key)? else {
                return Err(self.err(
                    "inconsistent ledger",
                    format!(
                        "window {} of a live hold is missing",
                        show_key(&c.window_key)
                    ),
                ));
            };
            w.state = w
                .state
                .release(&c.window_key, c.nanousd, c.tokens)
                .map_err(|m| self.err("inconsistent ledger", m))?;
            self.put_window(txn, &c.window_key, &w)?;
        }
        Ok(())
    }

    /// Releases expired reservations (at most `limit` index records) and deletes tombstones
    /// past their grace. Returns (reservations released, index records processed).
    fn expire(&self, txn: &mut RwTxn, now_ms: u64, limit: usize) -> Result<(u64, usize)> {
        let s = &*self.shared;
        let (mut released, mut processed) = (0u64, 0usize);
        while processed < limit {
            let Some((k, _)) = self.h(s.expiry.first(txn))? else {
                break;
            };
            if k.len() < 8 {
                return Err(self.corrupt("expiry", k));
            }
            let due = u64_be(k);
            if due > now_ms {
                break;
            }
            let key = k.to_vec();
            self.h(s.expiry.delete(txn, &key))?;
            processed += 1;
            let id = &key[8..];
            let Some(mut r) = self.get_reservation(txn, id)? else {
                continue; // stale index record
            };
            if r.due_ms() != due {
                continue; // stale index record
            }
            if r.released {
                self.h(s.reservations.delete(txn, id))?;
            } else {
                self.release_holds(txn, &r)?;
                r.released = true;
                self.h(s.reservations.put(txn, id, &encode_reservation(&r)))?;
                self.h(s.expiry.put(txn, &expiry_key(r.due_ms(), id), &[]))?;
                released += 1;
            }
        }
        Ok((released, processed))
    }

    /// Whether any `expiry` record is due (a read transaction: cheap).
    fn anything_due(&self, now_ms: u64) -> Result<bool> {
        let s = &*self.shared;
        let rtxn = self.h(s.env()?.read_txn())?;
        let first = self.h(s.expiry.first(&rtxn))?;
        Ok(first.is_some_and(|(k, _)| k.len() < 8 || u64_be(k) <= now_ms))
    }

    /// Holds every charge, or none. `None` = admitted. Reserving an existing id is an error.
    pub fn reserve(
        &self,
        id: &str,
        charges: &[Charge],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<Option<Denial>> {
        check_id("reservation id", id)?;
        for c in charges {
            check_id("budget id", &c.budget_id)?;
        }
        if ttl_ms == 0 {
            return Err(CoreError::InvalidArgument("ttl_ms must be > 0".into()));
        }
        if charges.len() > u16::MAX as usize {
            return Err(CoreError::InvalidArgument(format!(
                "at most {} charges per reservation, got {}",
                u16::MAX,
                charges.len()
            )));
        }
        let expires_ms = now_ms
            .checked_add(ttl_ms)
            .ok_or_else(|| CoreError::InvalidArgument("now_ms + ttl_ms overflows u64".into()))?;
        let s = &*self.shared;
        self.write(|txn| {
            self.expire(txn, now_ms, EXPIRE_BATCH)?;
            if self.h(s.reservations.get(txn, id.as_bytes()))?.is_some() {
                return Err(CoreError::InvalidArgument(format!(
                    "reservation id {id:?} already exists (reserve each call once, with a \
                     fresh id)"
                )));
            }
            // The windows after this reservation, in charge order (a window named twice
            // accumulates).
            let mut work: Vec<(Vec<u8>, WindowRec)> = Vec::with_capacity(charges.len());
            for c in charges {
                let key = window_key(&c.budget_id, c.window_start);
                let i = match work.iter().position(|(k, _)| *k == key) {
                    Some(i) => i,
                    None => {
                        let w = self.get_window(txn, &key)?.unwrap_or(WindowRec {
                            state: WindowState::default(),
                            window_end: c.window_end,
                        });
                        work.push((key, w));
                        work.len() - 1
                    }
                };
                let (key, w) = &mut work[i];
                let st = w.state;
                let over = |limit: u64, spent: u64, reserved: u64, amount: u64| {
                    limit != 0
                        && spent
                            .checked_add(reserved)
                            .and_then(|x| x.checked_add(amount))
                            .is_none_or(|total| total > limit)
                };
                let kind = if over(
                    c.limit_nanousd,
                    st.spent_nanousd,
                    st.reserved_nanousd,
                    c.nanousd,
                ) {
                    Some(LimitKind::Nanousd)
                } else if over(
                    c.limit_tokens,
                    st.spent_tokens,
                    st.reserved_tokens,
                    c.tokens,
                ) {
                    Some(LimitKind::Tokens)
                } else {
                    None
                };
                if let Some(limit_kind) = kind {
                    // Commit only the expiry releases done above.
                    return Ok(Some(Denial {
                        budget_id: c.budget_id.clone(),
                        window_start: c.window_start,
                        limit_nanousd: c.limit_nanousd,
                        limit_tokens: c.limit_tokens,
                        state: st,
                        limit_kind,
                    }));
                }
                w.state.reserved_nanousd = st
                    .reserved_nanousd
                    .checked_add(c.nanousd)
                    .ok_or_else(|| overflow(key, "reserved_nanousd"))?;
                w.state.reserved_tokens = st
                    .reserved_tokens
                    .checked_add(c.tokens)
                    .ok_or_else(|| overflow(key, "reserved_tokens"))?;
                w.window_end = merge_window_end(w.window_end, c.window_end);
            }
            for (key, w) in &work {
                self.put_window(txn, key, w)?;
            }
            let r = Reservation {
                expires_ms,
                released: false,
                charges: charges
                    .iter()
                    .map(|c| HeldCharge {
                        window_key: window_key(&c.budget_id, c.window_start),
                        nanousd: c.nanousd,
                        tokens: c.tokens,
                        window_end: c.window_end,
                    })
                    .collect(),
            };
            self.h(s
                .reservations
                .put(txn, id.as_bytes(), &encode_reservation(&r)))?;
            self.h(s
                .expiry
                .put(txn, &expiry_key(expires_ms, id.as_bytes()), &[]))?;
            Ok(None)
        })
    }

    /// Adds spend to windows (1 request each), in order, first releasing each one's hold
    /// (if any); a window named twice gets it twice. `before` is the state before both.
    fn add_spend(
        &self,
        txn: &mut RwTxn,
        windows: &[SpendOn],
        nanousd: u64,
        tokens: u64,
    ) -> Result<Vec<Committed>> {
        let mut out = Vec::with_capacity(windows.len());
        for (key, window_end, hold) in windows {
            let mut w = self.get_window(txn, key)?.unwrap_or(WindowRec {
                state: WindowState::default(),
                window_end: *window_end,
            });
            let before = w.state;
            if let Some((n, t)) = hold {
                w.state = w
                    .state
                    .release(key, *n, *t)
                    .map_err(|m| self.err("inconsistent ledger", m))?;
            }
            w.state = w.state.add_spend(key, nanousd, tokens)?;
            w.window_end = merge_window_end(w.window_end, *window_end);
            self.put_window(txn, key, &w)?;
            let (budget_id, window_start) =
                split_window_key(key).ok_or_else(|| self.corrupt("windows", key))?;
            out.push(Committed {
                budget_id,
                window_start,
                before,
                after: w.state,
            });
        }
        Ok(out)
    }

    /// Releases the holds and adds the actual spend to every charged window. An unknown id
    /// records nothing (`[]`); one released by expiry (within the grace) still records.
    pub fn commit(
        &self,
        id: &str,
        nanousd: u64,
        tokens: u64,
        now_ms: u64,
    ) -> Result<Vec<Committed>> {
        check_id("reservation id", id)?;
        let s = &*self.shared;
        self.write(|txn| {
            self.expire(txn, now_ms, EXPIRE_BATCH)?;
            let Some(r) = self.get_reservation(txn, id.as_bytes())? else {
                return Ok(Vec::new());
            };
            self.h(s.reservations.delete(txn, id.as_bytes()))?;
            self.h(s.expiry.delete(txn, &expiry_key(r.due_ms(), id.as_bytes())))?;
            let live = !r.released;
            let windows: Vec<SpendOn> = r
                .charges
                .into_iter()
                .map(|c| {
                    (
                        c.window_key,
                        c.window_end,
                        live.then_some((c.nanousd, c.tokens)),
                    )
                })
                .collect();
            self.add_spend(txn, &windows, nanousd, tokens)
        })
    }

    /// Drops the reservation's holds (nothing spent). Idempotent; unknown ids are ignored.
    pub fn release(&self, id: &str, now_ms: u64) -> Result<()> {
        check_id("reservation id", id)?;
        let s = &*self.shared;
        self.write(|txn| {
            self.expire(txn, now_ms, EXPIRE_BATCH)?;
            let Some(r) = self.get_reservation(txn, id.as_bytes())? else {
                return Ok(());
            };
            if !r.released {
                self.release_holds(txn, &r)?;
            }
            self.h(s.reservations.delete(txn, id.as_bytes()))?;
            self.h(s.expiry.delete(txn, &expiry_key(r.due_ms(), id.as_bytes())))?;
            Ok(())
        })
    }

    /// Adds spend without a reservation and without checking limits (a cache hit).
    pub fn record(
        &self,
        charges: &[Charge],
        nanousd: u64,
        tokens: u64,
        now_ms: u64,
    ) -> Result<Vec<Committed>> {
        for c in charges {
            check_id("budget id", &c.budget_id)?;
        }
        let windows: Vec<_> = charges
            .iter()
            .map(|c| (window_key(&c.budget_id, c.window_start), c.window_end, None))
            .collect::<Vec<SpendOn>>();
        self.write(|txn| {
            self.expire(txn, now_ms, EXPIRE_BATCH)?;
            self.add_spend(txn, &windows, nanousd, tokens)
        })
    }

    /// The counters of one window, expired reservations released first.
    pub fn state(&self, budget_id: &str, window_start: u64, now_ms: u64) -> Result<WindowState> {
        check_id("budget id", budget_id)?;
        let key = window_key(budget_id, window_start);
        let decode = |raw: Option<&[u8]>| match raw {
            None => Ok(WindowState::default()),
            Some(raw) => decode_window(raw)
                .map(|w| w.state)
                .ok_or_else(|| self.corrupt("windows", &key)),
        };
        if self.anything_due(now_ms)? {
            self.write(|txn| {
                self.expire(txn, now_ms, EXPIRE_BATCH)?;
                decode(self.h(self.shared.windows.get(txn, &key))?)
            })
        } else {
            let s = &*self.shared;
            let rtxn = self.h(s.env()?.read_txn())?;
            decode(self.h(s.windows.get(&rtxn, &key))?)
        }
    }

    /// Releases every expired reservation (returns how many), deletes tombstones past their
    /// grace, and drops windows ended more than [`WINDOW_MARGIN_S`] ago that hold nothing.
    pub fn purge_expired(&self, now_ms: u64) -> Result<u64> {
        let mut total = 0;
        loop {
            let (released, processed) = self.write(|txn| self.expire(txn, now_ms, EXPIRE_BATCH))?;
            total += released;
            if processed < EXPIRE_BATCH {
                break;
            }
        }
        let now_s = now_ms / 1000;
        let s = &*self.shared;
        self.write(|txn| {
            let mut doomed = Vec::new();
            for item in self.h(s.windows.iter(txn))? {
                let (k, v) = self.h(item)?;
                let w = decode_window(v).ok_or_else(|| self.corrupt("windows", k))?;
                if w.window_end != 0
                    && w.window_end.saturating_add(WINDOW_MARGIN_S) <= now_s
                    && w.state.reserved_nanousd == 0
                    && w.state.reserved_tokens == 0
                {
                    doomed.push(k.to_vec());
                }
            }
            for k in doomed {
                self.h(s.windows.delete(txn, &k))?;
            }
            Ok(())
        })?;
        Ok(total)
    }

    /// Stores (or replaces) the spec of `budget_id` (opaque JSON text).
    pub fn put_spec(&self, budget_id: &str, spec_json: &str) -> Result<()> {
        check_id("budget id", budget_id)?;
        let mut v = Vec::with_capacity(1 + spec_json.len());
        v.push(FORMAT);
        v.extend_from_slice(spec_json.as_bytes());
        self.write(|txn| self.h(self.shared.specs.put(txn, budget_id.as_bytes(), &v)))
    }

    fn decode_spec(&self, key: &[u8], raw: &[u8]) -> Result<String> {
        match raw.split_first() {
            Some((&FORMAT, text)) => {
                String::from_utf8(text.to_vec()).map_err(|_| self.corrupt("specs", key))
            }
            _ => Err(self.corrupt("specs", key)),
        }
    }

    pub fn get_spec(&self, budget_id: &str) -> Result<Option<String>> {
        check_id("budget id", budget_id)?;
        let s = &*self.shared;
        let rtxn = self.h(s.env()?.read_txn())?;
        match self.h(s.specs.get(&rtxn, budget_id.as_bytes()))? {
            None => Ok(None),
            Some(raw) => self.decode_spec(budget_id.as_bytes(), raw).map(Some),
        }
    }

    /// Every spec, sorted by budget id.
    pub fn list_specs(&self) -> Result<Vec<(String, String)>> {
        let s = &*self.shared;
        let rtxn = self.h(s.env()?.read_txn())?;
        let mut out = Vec::new();
        for item in self.h(s.specs.iter(&rtxn))? {
            let (k, v) = self.h(item)?;
            let id = String::from_utf8(k.to_vec()).map_err(|_| self.corrupt("specs", k))?;
            out.push((id, self.decode_spec(k, v)?));
        }
        Ok(out)
    }

    /// Deletes the spec, every window of the budget, and the budget's charges from every
    /// reservation (so a later release or commit does not touch a re-created window).
    /// Returns whether the spec existed.
    pub fn delete_spec(&self, budget_id: &str) -> Result<bool> {
        check_id("budget id", budget_id)?;
        let s = &*self.shared;
        let mut prefix = budget_id.as_bytes().to_vec();
        prefix.push(0);
        self.write(|txn| {
            let existed = self.h(s.specs.delete(txn, budget_id.as_bytes()))?;
            let mut doomed = Vec::new();
            for item in self.h(s.windows.prefix_iter(txn, &prefix))? {
                let (k, _) = self.h(item)?;
                if k.len() == prefix.len() + 8 {
                    doomed.push(k.to_vec());
                }
            }
            for k in &doomed {
                self.h(s.windows.delete(txn, k))?;
            }
            let mut rewrite = Vec::new();
            for item in self.h(s.reservations.iter(txn))? {
                let (k, v) = self.h(item)?;
                let r = decode_reservation(v).ok_or_else(|| self.corrupt("reservations", k))?;
                if r.charges.iter().any(|c| doomed_key(&c.window_key, &prefix)) {
                    rewrite.push((k.to_vec(), r));
                }
            }
            for (k, mut r) in rewrite {
                r.charges.retain(|c| !doomed_key(&c.window_key, &prefix));
                self.h(s.reservations.put(txn, &k, &encode_reservation(&r)))?;
            }
            Ok(existed)
        })
    }

    /// Overwrites a raw value (tests: simulate a damaged or foreign value).
    #[doc(hidden)]
    pub fn put_raw_for_test(&self, db: &str, key: &[u8], raw: &[u8]) -> Result<()> {
        let s = &*self.shared;
        let db = match db {
            "windows" => s.windows,
            "reservations" => s.reservations,
            "expiry" => s.expiry,
            _ => s.specs,
        };
        self.write(|txn| self.h(db.put(txn, key, raw)))
    }
}

fn doomed_key(window_key: &[u8], prefix: &[u8]) -> bool {
    window_key.len() == prefix.len() + 8 && window_key.starts_with(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    const T0: u64 = 1_700_000_000_000;
    const TTL: u64 = 10_000;

    fn ch(id: &str, n: u64, t: u64, limit_n: u64, limit_t: u64) -> Charge {
        Charge {
            budget_id: id.into(),
            window_start: 0,
            limit_nanousd: limit_n,
            limit_tokens: limit_t,
            nanousd: n,
            tokens: t,
            window_end: 0,
        }
    }

    fn ws(spent_n: u64, res_n: u64, spent_t: u64, res_t: u64, req: u64) -> WindowState {
        WindowState {
            spent_nanousd: spent_n,
            reserved_nanousd: res_n,
            spent_tokens: spent_t,
            reserved_tokens: res_t,
            requests: req,
        }
    }

    fn open() -> (tempfile::TempDir, BudgetLedger) {
        let dir = tempfile::tempdir().unwrap();
        let l = BudgetLedger::open(dir.path(), false).unwrap();
        (dir, l)
    }

    #[test]
    fn admit_up_to_the_limit_exactly() {
        let (_d, l) = open();
        assert_eq!(
            l.reserve("r1", &[ch("a", 60, 6, 100, 10)], TTL, T0)
                .unwrap(),
            None
        );
        assert_eq!(
            l.reserve("r2", &[ch("a", 40, 4, 100, 10)], TTL, T0)
                .unwrap(),
            None
        );
        assert_eq!(l.state("a", 0, T0).unwrap(), ws(0, 100, 0, 10, 0));
        // Zero limits: unlimited.
        let big = ch("u", 1 << 60, 1 << 40, 0, 0);
        assert_eq!(l.reserve("r3", &[big], TTL, T0).unwrap(), None);
    }

    #[test]
    fn deny_money_then_tokens() {
        let (_d, l) = open();
        assert!(l
            .reserve("r1", &[ch("m", 60, 0, 100, 0)], TTL, T0)
            .unwrap()
            .is_none());
        let d = l
            .reserve("r2", &[ch("m", 41, 5, 100, 0)], TTL, T0)
            .unwrap()
            .unwrap();
        assert_eq!(d.limit_kind, LimitKind::Nanousd);
        assert_eq!((d.budget_id.as_str(), d.limit_nanousd), ("m", 100));
        assert_eq!(d.state, ws(0, 60, 0, 0, 0));

        assert!(l
            .reserve("r3", &[ch("k", 1, 700, 0, 1000)], TTL, T0)
            .unwrap()
            .is_none());
        let d = l
            .reserve("r4", &[ch("k", 1, 301, 0, 1000)], TTL, T0)
            .unwrap()
            .unwrap();
        assert_eq!(d.limit_kind, LimitKind::Tokens);
        assert!(l
            .reserve("r5", &[ch("k", 0, 300, 0, 1000)], TTL, T0)
            .unwrap()
            .is_none());
        // A denied id was not stored: it can be reserved again.
        assert!(l
            .reserve("r4", &[ch("k", 0, 0, 0, 1000)], TTL, T0)
            .unwrap()
            .is_none());
    }

    #[test]
    fn all_or_none() {
        let (_d, l) = open();
        let both = [ch("A", 60, 1, 100, 0), ch("B", 60, 1, 50, 0)];
        let d = l.reserve("r1", &both, TTL, T0).unwrap().unwrap();
        assert_eq!(d.budget_id, "B");
        assert_eq!(l.state("A", 0, T0).unwrap(), WindowState::default());
        assert_eq!(l.state("B", 0, T0).unwrap(), WindowState::default());
        // The same window twice accumulates within one reservation.
        let twice = [ch("C", 60, 0, 100, 0), ch("C", 60, 0, 100, 0)];
        assert!(l.reserve("r2", &twice, TTL, T0).unwrap().is_some());
        assert_eq!(l.state("C", 0, T0).unwrap(), WindowState::default());
    }

    #[test]
    fn duplicate_id_is_an_error() {
        let (_d, l) = open();
        assert!(l
            .reserve("r", &[ch("d", 1, 0, 100, 0)], TTL, T0)
            .unwrap()
            .is_none());
        assert!(matches!(
            l.reserve("r", &[ch("d", 1, 0, 100, 0)], TTL, T0),
            Err(CoreError::InvalidArgument(_))
        ));
        assert_eq!(l.state("d", 0, T0).unwrap().reserved_nanousd, 1);
    }

    #[test]
    fn commit_and_release() {
        let (_d, l) = open();
        let mut a = ch("A", 60, 100, 1000, 0);
        a.window_start = 5;
        let cs = [a, ch("B", 60, 100, 1000, 0)];
        assert!(l.reserve("r", &cs, TTL, T0).unwrap().is_none());
        let out = l.commit("r", 45, 70, T0 + 1).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].budget_id.as_str(), out[0].window_start), ("A", 5));
        for c in &out {
            assert_eq!(c.before, ws(0, 60, 0, 100, 0));
            assert_eq!(c.after, ws(45, 0, 70, 0, 1));
        }
        // Committed once: a second commit of the id records nothing.
        assert!(l.commit("r", 45, 70, T0 + 1).unwrap().is_empty());
        assert!(l
            .reserve("x", &[ch("B", 955, 0, 1000, 0)], TTL, T0)
            .unwrap()
            .is_none());
        assert!(l
            .reserve("y", &[ch("B", 1, 0, 1000, 0)], TTL, T0)
            .unwrap()
            .is_some());
        l.release("x", T0).unwrap();
        l.release("x", T0).unwrap();
        l.release("never", T0).unwrap();
        assert_eq!(l.state("B", 0, T0).unwrap(), ws(45, 0, 70, 0, 1));
    }

    #[test]
    fn expiry_releases_and_late_commit_records() {
        let (_d, l) = open();
        assert!(l
            .reserve("e", &[ch("e", 80, 0, 100, 0)], 1000, T0)
            .unwrap()
            .is_none());
        assert!(l
            .reserve("f", &[ch("e", 30, 0, 100, 0)], 1000, T0 + 999)
            .unwrap()
            .is_some());
        assert!(l
            .reserve("g", &[ch("e", 30, 0, 100, 0)], 1000, T0 + 1000)
            .unwrap()
            .is_none());
        assert_eq!(l.state("e", 0, T0 + 1000).unwrap(), ws(0, 30, 0, 0, 0));
        // e expired (released); a late commit still records its spend, releases nothing.
        let out = l.commit("e", 70, 7, T0 + 1500).unwrap();
        assert_eq!(out[0].after, ws(70, 30, 7, 0, 1));
        // Purge counts reservations released; tombstones go silently after the grace.
        assert!(l
            .reserve("h", &[ch("p", 5, 1, 0, 0), ch("q", 5, 1, 0, 0)], 10, T0)
            .unwrap()
            .is_none());
        assert_eq!(l.purge_expired(T0 + 5).unwrap(), 0);
        assert_eq!(l.purge_expired(T0 + 3000).unwrap(), 2); // g and h
        assert_eq!(l.purge_expired(T0 + 3001).unwrap(), 0);
        assert_eq!(l.state("p", 0, T0 + 3001).unwrap(), WindowState::default());
        let late = T0 + 2000 + RESERVATION_GRACE_MS + 10;
        assert_eq!(l.purge_expired(late).unwrap(), 0);
        assert!(l.commit("h", 1, 1, late).unwrap().is_empty());
    }

    #[test]
    fn record_and_window_purge() {
        let (_d, l) = open();
        let mut a = ch("A", 0, 0, 10, 0);
        a.window_start = 7;
        a.window_end = T0 / 1000 + 60;
        let out = l
            .record(&[a.clone(), ch("B", 0, 0, 10, 0)], 0, 0, T0)
            .unwrap();
        assert_eq!(out[1].after, ws(0, 0, 0, 0, 1));
        l.record(&[ch("B", 0, 0, 10, 0)], 25, 3, T0).unwrap();
        assert_eq!(l.state("B", 0, T0).unwrap(), ws(25, 0, 3, 0, 2));
        assert!(l
            .reserve("r", &[ch("B", 0, 0, 10, 0)], TTL, T0)
            .unwrap()
            .is_some());
        // A's window ended; it goes after the margin, B's (never ends) stays.
        l.purge_expired(T0 + 60_000).unwrap();
        assert_eq!(l.state("A", 7, T0).unwrap().requests, 1);
        l.purge_expired(T0 + (61 + WINDOW_MARGIN_S) * 1000).unwrap();
        assert_eq!(l.state("A", 7, T0).unwrap(), WindowState::default());
        assert_eq!(l.state("B", 0, T0).unwrap().requests, 2);
    }

    #[test]
    fn specs_and_delete_removes_windows() {
        let (d, l) = open();
        assert!(l.list_specs().unwrap().is_empty());
        l.put_spec("b", "{\"limit\": 2}").unwrap();
        l.put_spec("A", "{}").unwrap();
        l.put_spec("A:x", "{}").unwrap();
        assert_eq!(l.get_spec("b").unwrap().as_deref(), Some("{\"limit\": 2}"));
        assert_eq!(l.list_specs().unwrap().len(), 3);
        for (i, (b, w)) in [("A", 0), ("A", 100), ("A:x", 0)].iter().enumerate() {
            let mut c = ch(b, 10, 1, 100, 0);
            c.window_start = *w;
            let id = format!("r{i}");
            assert!(l.reserve(&id, &[c], TTL, T0).unwrap().is_none());
            l.commit(&id, 10, 1, T0).unwrap();
        }
        let mut held = ch("A", 5, 0, 0, 0);
        held.window_start = 100;
        assert!(l
            .reserve("held", &[held, ch("A:x", 5, 0, 0, 0)], TTL, T0)
            .unwrap()
            .is_none());
        assert!(l.delete_spec("A").unwrap());
        assert!(!l.delete_spec("A").unwrap());
        assert_eq!(l.state("A", 100, T0).unwrap(), WindowState::default());
        assert_eq!(l.state("A:x", 0, T0).unwrap(), ws(10, 5, 1, 0, 1));
        // The held charge on A is gone; releasing it touches only A:x.
        l.release("held", T0).unwrap();
        assert_eq!(l.state("A:x", 0, T0).unwrap(), ws(10, 0, 1, 0, 1));
        drop(l);
        let l = BudgetLedger::open(d.path(), true).unwrap();
        assert_eq!(
            l.list_specs().unwrap(),
            vec![
                ("A:x".into(), "{}".into()),
                ("b".into(), "{\"limit\": 2}".into())
            ]
        );
    }

    #[test]
    fn overflow_is_refused() {
        let (_d, l) = open();
        assert!(l
            .reserve("a", &[ch("o", u64::MAX, 0, 0, 0)], TTL, T0)
            .unwrap()
            .is_none());
        assert!(matches!(
            l.reserve("b", &[ch("o", 1, 0, 0, 0)], TTL, T0),
            Err(CoreError::InvalidArgument(_))
        ));
        // Against a limit, an overflowing sum is simply over the limit.
        let d = l
            .reserve("c", &[ch("o", 1, 0, u64::MAX, 0)], TTL, T0)
            .unwrap();
        assert!(d.is_some());
        l.commit("a", u64::MAX, 0, T0).unwrap();
        assert!(matches!(
            l.record(&[ch("o", 0, 0, 0, 0)], 1, 0, T0),
            Err(CoreError::InvalidArgument(_))
        ));
        assert_eq!(l.state("o", 0, T0).unwrap(), ws(u64::MAX, 0, 0, 0, 1));
    }

    #[test]
    fn corrupt_values_are_errors() {
        let (_d, l) = open();
        l.record(&[ch("c", 0, 0, 0, 0)], 5, 0, T0).unwrap();
        l.put_raw_for_test("windows", &window_key("c", 0), b"\x09garbage")
            .unwrap();
        let e = l.state("c", 0, T0).unwrap_err().to_string();
        assert!(e.contains("\"c\"@0"), "{e}");
        assert!(l.record(&[ch("c", 0, 0, 0, 0)], 5, 0, T0).is_err());
        l.put_raw_for_test("specs", b"s", b"\x02{}").unwrap();
        assert!(l.get_spec("s").is_err());
    }

    #[test]
    fn bad_ids_are_refused() {
        let (_d, l) = open();
        assert!(l.reserve("", &[], TTL, T0).is_err());
        assert!(l.reserve("r", &[ch("a\0b", 0, 0, 0, 0)], TTL, T0).is_err());
        assert!(l.reserve("r", &[], 0, T0).is_err());
        assert!(l.reserve("r", &[], TTL, T0).unwrap().is_none());
    }

    #[test]
    fn threads_never_overspend() {
        let (d, l) = open();
        drop(l);
        let admitted = AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (path, admitted) = (d.path(), &admitted);
                s.spawn(move || {
                    let l = BudgetLedger::open(path, false).unwrap();
                    for i in 0..100 {
                        let id = format!("{t}-{i}");
                        if l.reserve(&id, &[ch("t", 10, 0, 1005, 0)], TTL, T0)
                            .unwrap()
                            .is_none()
                        {
                            l.commit(&id, 10, 0, T0).unwrap();
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let l = BudgetLedger::open(d.path(), false).unwrap();
        assert_eq!(admitted.load(Ordering::Relaxed), 100);
        assert_eq!(l.state("t", 0, T0).unwrap(), ws(1000, 0, 0, 0, 100));
    }
}
