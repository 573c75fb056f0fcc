//! Byte-level fast paths of the text rules (see `canon.rs`): the NFC quick check and the
//! whitespace collapse + trim, working on UTF-8 bytes instead of decoded `char`s.
//!
//! Both rest on facts about UTF-8 that the unit tests check for every code point:
//!
//! * **NFC.** Every code point below U+0300 has `NFC_Quick_Check=Yes` and canonical combining
//!   class 0, and in UTF-8 those are exactly the code points whose first byte is below `0xCC`
//!   (continuation bytes are `0x80..=0xBF`, so a byte `>= 0xCC` always starts a code point).
//!   Such a code point resets the quick check's state, so the check only has to run over the
//!   islands of code points `>= U+0300`.
//! * **Whitespace.** Unicode `White_Space` (what [`char::is_whitespace`] tests) is
//!   `U+0009..=U+000D`, `U+0020` and ten more code points, whose UTF-8 forms all start with
//!   `0xC2` (U+0085, U+00A0), `0xE1` (U+1680), `0xE2` (U+2000..=U+200A, U+2028, U+2029,
//!   U+202F, U+205F) or `0xE3` (U+3000). Other bytes are copied as they are; a character is
//!   decoded only at one of those four lead bytes ([`ws_len_at`]).
//!
//! The scans for something rare (a byte `>= 0xCC`; anything collapsing would change) skip
//! 64 bytes at a time. The collapse works on 16-byte blocks: a block's whitespace bytes
//! become spaces, the ones that continue a run are dropped, and the kept bytes are packed
//! together (one byte shuffle with SSSE3, else fixed 16-byte moves per dropped byte).
//! Blocks that hold a non-ASCII whitespace character, and the tail, go byte by byte. On
//! x86-64 the masks use SSE2 (part of the x86-64 baseline) and the shuffle SSSE3 when the
//! CPU has it (checked at run time); elsewhere portable loops compute the same, and the unit
//! tests check every variant against the portable one and against a char-by-char reference.

use unicode_normalization::{is_nfc_quick, IsNormalized};

/// Bytes at or above this start a code point `>= U+0300` (see the module docs).
const NFC_ISLAND_LEAD: u8 = 0xCC;

/// Same answer as `is_nfc_quick(s.chars()) == IsNormalized::Yes`, decoding only the islands
/// of code points `>= U+0300`.
pub(crate) fn is_nfc_quick_yes(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut from = 0;
    while let Some(start) = find_byte_at_least(bytes, from, NFC_ISLAND_LEAD) {
        // The island ends at the next code point below U+0300: an ASCII byte or a lead byte
        // 0xC0..=0xCB (continuation bytes are 0x80..=0xBF).
        let end = bytes[start..]
            .iter()
            .position(|&b| b < 0x80 || (0xC0..NFC_ISLAND_LEAD).contains(&b))
            .map_or(bytes.len(), |p| start + p);
        // `start` and `end` are both code point boundaries.
        if is_nfc_quick(s[start..end].chars()) != IsNormalized::Yes {
            return false;
        }
        from = end;
    }
    true
}

/// Position of the first byte `>= min` at or after `from`.
fn find_byte_at_least(bytes: &[u8], from: usize, min: u8) -> Option<usize> {
    let mut i = from;
    // Whole 64-byte chunks first; the exact position is found byte by byte in the first
    // chunk that has one.
    while let Some(chunk) = bytes.get(i..i + SKIP) {
        if any_at_least(chunk.try_into().expect("SKIP bytes"), min) {
            break;
        }
        i += SKIP;
    }
    bytes[i..].iter().position(|&b| b >= min).map(|p| i + p)
}

/// Bytes skipped at a time by the scans that look for something rare.
const SKIP: usize = 64;

#[inline(always)]
fn any_at_least(chunk: &[u8; SKIP], min: u8) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        sse2::any_at_least(chunk, min)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        any_at_least_portable(chunk, min)
    }
}

#[cfg(any(test, not(target_arch = "x86_64")))]
fn any_at_least_portable(chunk: &[u8; SKIP], min: u8) -> bool {
    chunk.iter().fold(false, |acc, &b| acc | (b >= min))
}

/// Whether `window[1..]` may hold a collapse event (see [`first_collapse_event`]), with
/// `window[0]` the byte before: ASCII whitespace other than a space, a space after a space,
/// or a byte that may start a non-ASCII whitespace character.
#[inline(always)]
fn may_have_event(window: &[u8; SKIP + 1]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        sse2::may_have_event(window)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        may_have_event_portable(window)
    }
}

#[cfg(any(test, not(target_arch = "x86_64")))]
fn may_have_event_portable(window: &[u8; SKIP + 1]) -> bool {
    window.windows(2).fold(false, |acc, pair| {
        let (p, b) = (pair[0], pair[1]);
        acc | (0x09..=0x0d).contains(&b)
            | (b == b' ' && p == b' ')
            | (b == 0xC2)
            | (0xE1..=0xE3).contains(&b)
    })
}

/// Length in bytes of the whitespace character starting at `bytes[i]`, or 0 when the byte
/// does not start one (continuation bytes never do).
#[inline]
pub(crate) fn ws_len_at(bytes: &[u8], i: usize) -> usize {
    let next = |k: usize| bytes.get(i + k).copied();
    match bytes[i] {
        b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' => 1,
        // U+0085, U+00A0
        0xC2 => match next(1) {
            Some(0x85 | 0xA0) => 2,
            _ => 0,
        },
        // U+1680
        0xE1 if next(1) == Some(0x9A) && next(2) == Some(0x80) => 3,
        // U+2000..=U+200A, U+2028, U+2029, U+202F, U+205F
        0xE2 => match (next(1), next(2)) {
            (Some(0x80), Some(0x80..=0x8A | 0xA8 | 0xA9 | 0xAF)) | (Some(0x81), Some(0x9F)) => 3,
            _ => 0,
        },
        // U+3000
        0xE3 if next(1) == Some(0x80) && next(2) == Some(0x80) => 3,
        _ => 0,
    }
}

const BLOCK: usize = 16;

/// Per-byte masks of one 16-byte block (bit `k` = byte `k`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Masks {
    /// ASCII whitespace: `\t \n \x0b \x0c \r` and space.
    ws: u16,
    /// Spaces only.
    space: u16,
    /// Bytes that may start a non-ASCII whitespace character (`0xC2`, `0xE1..=0xE3`).
    lead: u16,
}

#[cfg(any(test, not(target_arch = "x86_64")))]
fn masks_portable(block: &[u8; BLOCK]) -> Masks {
    let mut m = Masks {
        ws: 0,
        space: 0,
        lead: 0,
    };
    for (k, &b) in block.iter().enumerate() {
        m.ws |= u16::from(b == b' ' || (0x09..=0x0d).contains(&b)) << k;
        m.space |= u16::from(b == b' ') << k;
        m.lead |= u16::from(b == 0xC2 || (0xE1..=0xE3).contains(&b)) << k;
    }
    m
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8,
        _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_setzero_si128,
        _mm_storeu_si128, _mm_sub_epi8,
    };

    use super::{Masks, BLOCK, SKIP};

    /// Lanes of `v` in `lo..=lo + span` (unsigned).
    ///
    /// # Safety
    /// Needs SSE2 (always there on x86-64).
    #[inline(always)]
    unsafe fn in_range(v: __m128i, lo: u8, span: u8) -> __m128i {
        let t = _mm_sub_epi8(v, _mm_set1_epi8(lo as i8));
        _mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8(span as i8)), t)
    }

    #[inline(always)]
    pub(super) fn masks(block: &[u8; BLOCK]) -> Masks {
        // SAFETY: SSE2 is part of the x86-64 baseline; the load reads exactly the 16 bytes of
        // `block` (unaligned loads are allowed).
        unsafe {
            let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
            let space = _mm_cmpeq_epi8(v, _mm_set1_epi8(b' ' as i8));
            let ws = _mm_or_si128(space, in_range(v, 0x09, 4));
            let lead = _mm_or_si128(
                _mm_cmpeq_epi8(v, _mm_set1_epi8(0xC2_u8 as i8)),
                in_range(v, 0xE1, 2),
            );
            Masks {
                ws: _mm_movemask_epi8(ws) as u16,
                space: _mm_movemask_epi8(space) as u16,
                lead: _mm_movemask_epi8(lead) as u16,
            }
        }
    }

    /// Whether any byte of `chunk` is `>= min` (`min >= 1`).
    #[inline(always)]
    pub(super) fn any_at_least(chunk: &[u8; SKIP], min: u8) -> bool {
        debug_assert!(min >= 1);
        // SAFETY: SSE2 is part of the x86-64 baseline; each load reads 16 of the 64 bytes of
        // `chunk`.
        unsafe {
            let below = _mm_set1_epi8((min - 1) as i8);
            let mut all_below = _mm_set1_epi8(-1);
            for k in 0..SKIP / BLOCK {
                let v = _mm_loadu_si128(chunk.as_ptr().add(k * BLOCK).cast::<__m128i>());
                // v <= min - 1  <=>  max(v, min - 1) == min - 1
                let le = _mm_cmpeq_epi8(_mm_max_epu8(v, below), below);
                all_below = _mm_and_si128(all_below, le);
            }
            _mm_movemask_epi8(all_below) != 0xffff
        }
    }

    /// See [`super::may_have_event`].
    #[inline(always)]
    pub(super) fn may_have_event(window: &[u8; SKIP + 1]) -> bool {
        // SAFETY: SSE2 is part of the x86-64 baseline; the loads read bytes `16k..16k + 17`
        // of the 65 bytes of `window`.
        unsafe {
            let spaces = _mm_set1_epi8(b' ' as i8);
            let mut any = _mm_setzero_si128();
            for k in 0..SKIP / BLOCK {
                let before = _mm_loadu_si128(window.as_ptr().add(k * BLOCK).cast::<__m128i>());
                let v = _mm_loadu_si128(window.as_ptr().add(k * BLOCK + 1).cast::<__m128i>());
                let double =
                    _mm_and_si128(_mm_cmpeq_epi8(v, spaces), _mm_cmpeq_epi8(before, spaces));
                let lead = _mm_or_si128(
                    _mm_cmpeq_epi8(v, _mm_set1_epi8(0xC2_u8 as i8)),
                    in_range(v, 0xE1, 2),
                );
                any = _mm_or_si128(
                    any,
                    _mm_or_si128(double, _mm_or_si128(in_range(v, 0x09, 4), lead)),
                );
            }
            _mm_movemask_epi8(any) != 0
        }
    }

    /// `block` with every ASCII whitespace byte replaced by a space, into `out[..16]`.
    #[inline(always)]
    pub(super) fn spaced(block: &[u8; BLOCK], out: &mut [u8; 2 * BLOCK]) {
        // SAFETY: SSE2 is part of the x86-64 baseline; the load reads the 16 bytes of `block`
        // and the store writes the first 16 of the 32 bytes of `out`.
        unsafe {
            let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
            let spaces = _mm_set1_epi8(b' ' as i8);
            let ws = _mm_or_si128(_mm_cmpeq_epi8(v, spaces), in_range(v, 0x09, 4));
            let r = _mm_or_si128(_mm_andnot_si128(ws, v), _mm_and_si128(ws, spaces));
            _mm_storeu_si128(out.as_mut_ptr().cast::<__m128i>(), r);
        }
    }
}

#[inline(always)]
fn masks(block: &[u8; BLOCK]) -> Masks {
    #[cfg(target_arch = "x86_64")]
    {
        sse2::masks(block)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        masks_portable(block)
    }
}

#[inline(always)]
fn spaced(block: &[u8; BLOCK], ws: u16, out: &mut [u8; 2 * BLOCK]) {
    #[cfg(target_arch = "x86_64")]
    {
        let _ = ws;
        sse2::spaced(block, out);
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        spaced_portable(block, ws, out);
    }
}

#[cfg(any(test, not(target_arch = "x86_64")))]
fn spaced_portable(block: &[u8; BLOCK], ws: u16, out: &mut [u8; 2 * BLOCK]) {
    for (k, &b) in block.iter().enumerate() {
        out[k] = if ws >> k & 1 != 0 { b' ' } else { b };
    }
}

fn block_at(bytes: &[u8], i: usize) -> Option<&[u8; BLOCK]> {
    bytes.get(i..i + BLOCK).and_then(|b| b.try_into().ok())
}

/// Bits of `lead` (a block starting at `i`) whose byte really starts a whitespace character.
fn real_unicode_ws(bytes: &[u8], i: usize, mut lead: u16) -> u16 {
    let mut real = 0;
    while lead != 0 {
        let k = lead.trailing_zeros() as usize;
        if ws_len_at(bytes, i + k) > 0 {
            real |= 1 << k;
        }
        lead &= lead - 1;
    }
    real
}

/// First position in `bytes[from..end]` where collapsing changes something: a whitespace
/// character other than a space, or a space right after a space. Text before `from` is not
/// looked at (as if `from` were the start of the text).
pub(crate) fn first_collapse_event(bytes: &[u8], from: usize, end: usize) -> Option<usize> {
    let bytes = &bytes[..end];
    let mut i = from;
    let mut prev_space = false;
    'outer: loop {
        // Skip 64 bytes at a time while they cannot hold an event (the check needs the byte
        // before, so not at `from`).
        if i > from {
            while let Some(window) = bytes.get(i - 1..i + SKIP) {
                if may_have_event(window.try_into().expect("SKIP + 1 bytes")) {
                    break;
                }
                i += SKIP;
            }
            // No event before `i`, so whitespace there is a lone space.
            prev_space = bytes[i - 1] == b' ';
        }
        // Then up to 64 bytes block by block, exactly.
        for _ in 0..SKIP / BLOCK {
            let Some(block) = block_at(bytes, i) else {
                break 'outer;
            };
            let m = masks(block);
            let mut event =
                (m.ws & !m.space) | (m.space & ((m.space << 1) | u16::from(prev_space)));
            if m.lead != 0 {
                event |= real_unicode_ws(bytes, i, m.lead);
            }
            if event != 0 {
                return Some(i + event.trailing_zeros() as usize);
            }
            prev_space = m.space >> (BLOCK - 1) != 0;
            i += BLOCK;
        }
    }
    while i < end {
        if bytes[i] == b' ' {
            if prev_space {
                return Some(i);
            }
            prev_space = true;
        } else if ws_len_at(bytes, i) > 0 {
            return Some(i);
        } else {
            prev_space = false;
        }
        i += 1;
    }
    None
}

/// Collapses whitespace in `s[from..end]` (every run becomes one space), given that
/// `first` is what [`first_collapse_event`] returned for that range.
pub(crate) fn collapse_range(s: &str, from: usize, end: usize, first: usize) -> String {
    let bytes = s.as_bytes();
    debug_assert!(from <= first && first < end && end <= bytes.len());
    let mut c = Collapse::new(bytes, from, end, first);
    #[cfg(target_arch = "x86_64")]
    {
        if ssse3::available() {
            // SAFETY: the CPU supports SSSE3 (checked just above).
            unsafe { c.blocks_ssse3() };
        } else {
            c.blocks();
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    c.blocks();
    c.finish()
}

/// State of one collapse: input `bytes[i..end]` still to do, output `out[..w]` so far.
struct Collapse<'a> {
    bytes: &'a [u8],
    end: usize,
    i: usize,
    out: Vec<u8>,
    w: usize,
    /// Whether the last character written was whitespace (a space).
    prev_ws: bool,
}

impl<'a> Collapse<'a> {
    fn new(bytes: &'a [u8], from: usize, end: usize, first: usize) -> Self {
        // The output is never longer than the input range, so `w <= i - from`. A block's
        // stores end less than 31 bytes past where its output starts, and blocks only run
        // while `i + 16 <= end`, so `BLOCK` bytes of slack keep every store inside `out`.
        let mut out = vec![0u8; end - from + BLOCK];
        out[..first - from].copy_from_slice(&bytes[from..first]);
        Collapse {
            bytes,
            end,
            i: first,
            out,
            w: first - from,
            // Before `first` there is no event, so whitespace there is a lone space.
            prev_ws: first > from && bytes[first - 1] == b' ',
        }
    }

    /// The next whole 16-byte block of input, if any.
    fn block(&self) -> Option<&'a [u8; BLOCK]> {
        block_at(&self.bytes[..self.end], self.i)
    }

    /// Whether the block at `i` with lead-byte mask `lead` has a non-ASCII whitespace
    /// character; if so, collapses that block byte by byte (its last character may end past
    /// it) and returns true.
    #[inline(always)]
    fn unicode_block(&mut self, lead: u16) -> bool {
        if lead != 0 && real_unicode_ws(self.bytes, self.i, lead) != 0 {
            self.bytes_until(self.i + BLOCK);
            true
        } else {
            false
        }
    }

    /// The 16-byte blocks, portable version: kept runs are copied with fixed 16-byte moves.
    fn blocks(&mut self) {
        let mut spaced_block = [0u8; 2 * BLOCK];
        while let Some(block) = self.block() {
            let m = masks(block);
            if self.unicode_block(m.lead) {
                continue;
            }
            spaced(block, m.ws, &mut spaced_block);
            // A whitespace byte is dropped when the byte before it is whitespace too.
            let mut drop = m.ws & ((m.ws << 1) | u16::from(self.prev_ws));
            let mut src = 0;
            let (out, mut w) = (&mut self.out, self.w);
            while drop != 0 {
                let k = drop.trailing_zeros() as usize;
                out[w..w + BLOCK].copy_from_slice(&spaced_block[src..src + BLOCK]);
                w += k - src;
                src = k + 1;
                drop &= drop - 1;
            }
            out[w..w + BLOCK].copy_from_slice(&spaced_block[src..src + BLOCK]);
            self.w = w + BLOCK - src;
            self.prev_ws = m.ws >> (BLOCK - 1) != 0;
            self.i += BLOCK;
        }
    }

    /// Byte-by-byte collapse of the characters starting before `stop` (the last one may end
    /// past it).
    fn bytes_until(&mut self, stop: usize) {
        while self.i < stop {
            let n = ws_len_at(self.bytes, self.i);
            if n == 0 {
                self.out[self.w] = self.bytes[self.i];
                self.w += 1;
                self.prev_ws = false;
                self.i += 1;
            } else {
                if !self.prev_ws {
                    self.out[self.w] = b' ';
                    self.w += 1;
                }
                self.prev_ws = true;
                self.i += n;
            }
        }
    }

    /// Does the tail and returns the output.
    fn finish(mut self) -> String {
        self.bytes_until(self.end);
        let mut out = self.out;
        out.truncate(self.w);
        debug_assert!(std::str::from_utf8(&out).is_ok());
        // SAFETY: `out` is the input range with whole whitespace characters (each a complete
        // UTF-8 sequence, found by `ws_len_at` at its lead byte) replaced by one ASCII space
        // or removed; every other byte is copied unchanged and in order. So `out` is valid
        // UTF-8.
        unsafe { String::from_utf8_unchecked(out) }
    }
}

/// The block loop with SSSE3's byte shuffle: a block's kept bytes are compacted with one
/// `pshufb` (indices from a table per 8-bit half) and stored with two 8-byte moves, without
/// branching on where the dropped bytes are.
#[cfg(target_arch = "x86_64")]
mod ssse3 {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8,
        _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_set_epi64x, _mm_shuffle_epi8,
        _mm_storel_epi64, _mm_sub_epi8, _mm_unpackhi_epi64,
    };

    use super::{block_at, real_unicode_ws, Collapse, BLOCK};

    /// Whether the CPU has SSSE3 (std caches the answer).
    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("ssse3")
    }

    /// For each 8-bit mask: the positions of its set bits in increasing order, then zeros.
    static COMPACT: [[u8; 8]; 256] = compact_table();

    /// For each 8-bit mask: how many bits are set (no `popcnt` needed).
    static KEPT: [u8; 256] = kept_table();

    const fn kept_table() -> [u8; 256] {
        let mut table = [0u8; 256];
        let mut mask = 0;
        while mask < 256 {
            table[mask] = (mask as u8).count_ones() as u8;
            mask += 1;
        }
        table
    }

    const fn compact_table() -> [[u8; 8]; 256] {
        let mut table = [[0u8; 8]; 256];
        let mut mask = 0;
        while mask < 256 {
            let mut n = 0;
            let mut bit = 0;
            while bit < 8 {
                if mask >> bit & 1 != 0 {
                    table[mask][n] = bit as u8;
                    n += 1;
                }
                bit += 1;
            }
            mask += 1;
        }
        table
    }

    /// Lanes of `v` in `lo..=lo + span` (unsigned).
    #[target_feature(enable = "ssse3")]
    #[inline]
    fn in_range(v: __m128i, lo: u8, span: u8) -> __m128i {
        let t = _mm_sub_epi8(v, _mm_set1_epi8(lo as i8));
        _mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8(span as i8)), t)
    }

    impl Collapse<'_> {
        /// Same result as [`Collapse::blocks`].
        #[target_feature(enable = "ssse3")]
        pub(super) fn blocks_ssse3(&mut self) {
            let spaces = _mm_set1_epi8(b' ' as i8);
            let bytes = &self.bytes[..self.end];
            // Locals, not fields: the compiler cannot tell that stores into `out` leave them
            // alone, and would reload them every block.
            let (mut i, mut w, mut prev_ws) = (self.i, self.w, self.prev_ws);
            let mut out = std::mem::take(&mut self.out);
            while let Some(block) = block_at(bytes, i) {
                // SAFETY: reads the 16 bytes of `block` (unaligned loads are allowed).
                let v = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) };
                let ws = _mm_or_si128(_mm_cmpeq_epi8(v, spaces), in_range(v, 0x09, 4));
                let lead = _mm_or_si128(
                    _mm_cmpeq_epi8(v, _mm_set1_epi8(0xC2_u8 as i8)),
                    in_range(v, 0xE1, 2),
                );
                let lead = _mm_movemask_epi8(lead) as u16;
                if lead != 0 && real_unicode_ws(bytes, i, lead) != 0 {
                    // Rare: a non-ASCII whitespace character; this block goes byte by byte.
                    (self.i, self.w, self.prev_ws, self.out) = (i, w, prev_ws, out);
                    self.bytes_until(i + BLOCK);
                    (i, w, prev_ws) = (self.i, self.w, self.prev_ws);
                    out = std::mem::take(&mut self.out);
                    continue;
                }
                let ws_bits = _mm_movemask_epi8(ws) as u32;
                let spaced = _mm_or_si128(_mm_andnot_si128(ws, v), _mm_and_si128(ws, spaces));
                // A whitespace byte is dropped when the byte before it is whitespace too.
                let keep = !(ws_bits & ((ws_bits << 1) | u32::from(prev_ws)));
                let (lo, hi) = ((keep & 0xff) as usize, (keep >> 8 & 0xff) as usize);
                // Indices into the whole block: the high half's are 8 more.
                let lo_idx = i64::from_le_bytes(COMPACT[lo]);
                let hi_idx = i64::from_le_bytes(COMPACT[hi]) + 0x0808_0808_0808_0808;
                let packed = _mm_shuffle_epi8(spaced, _mm_set_epi64x(hi_idx, lo_idx));
                let w_hi = w + usize::from(KEPT[lo]);
                let lo_dst = out[w..w + 8].as_mut_ptr().cast::<__m128i>();
                let hi_dst = out[w_hi..w_hi + 8].as_mut_ptr().cast::<__m128i>();
                // SAFETY: each store writes the 8 bytes of the bounds-checked slice it points
                // into (unaligned stores are allowed).
                unsafe {
                    _mm_storel_epi64(lo_dst, packed);
                    _mm_storel_epi64(hi_dst, _mm_unpackhi_epi64(packed, packed));
                }
                w = w_hi + usize::from(KEPT[hi]);
                prev_ws = ws_bits >> (BLOCK - 1) & 1 != 0;
                i += BLOCK;
            }
            (self.i, self.w, self.prev_ws, self.out) = (i, w, prev_ws, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use unicode_normalization::char::canonical_combining_class;

    /// A tiny deterministic PRNG so the randomized tests need no dependency.
    pub(crate) struct XorShift(pub(crate) u64);
    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Every code point below U+0300 is NFC_QC=Yes with combining class 0, and exactly those
    /// start with a byte below 0xCC.
    #[test]
    fn nfc_island_facts() {
        for c in (0..=0x10ffff_u32).filter_map(char::from_u32) {
            let mut buf = [0u8; 4];
            let lead = c.encode_utf8(&mut buf).as_bytes()[0];
            assert_eq!(
                lead < NFC_ISLAND_LEAD,
                (c as u32) < 0x300,
                "U+{:04X}",
                c as u32
            );
            if (c as u32) < 0x300 {
                assert_eq!(canonical_combining_class(c), 0, "U+{:04X}", c as u32);
                assert_eq!(
                    is_nfc_quick(std::iter::once(c)),
                    IsNormalized::Yes,
                    "U+{:04X}",
                    c as u32
                );
            }
        }
    }

    #[test]
    fn ws_len_matches_is_whitespace_for_every_code_point() {
        for c in (0..=0x10ffff_u32).filter_map(char::from_u32) {
            let s = format!("{c}x");
            let expected = if c.is_whitespace() { c.len_utf8() } else { 0 };
            assert_eq!(ws_len_at(s.as_bytes(), 0), expected, "U+{:04X}", c as u32);
            // A character cut short at the end of the slice is never whitespace by accident.
            let bytes = &s.as_bytes()[..c.len_utf8()];
            assert_eq!(ws_len_at(bytes, 0), expected, "U+{:04X}", c as u32);
            for k in 1..c.len_utf8() {
                assert_eq!(ws_len_at(s.as_bytes(), k), 0, "U+{:04X} byte {k}", c as u32);
            }
        }
    }

    #[test]
    fn block_masks_agree_with_portable() {
        let mut rng = XorShift(99);
        let specials = [
            b' ', b'\t', b'\n', 0x0b, 0x0c, b'\r', 0x08, 0x0e, 0x1f, b'a', 0xC1, 0xC2, 0xC3, 0xE0,
            0xE1, 0xE2, 0xE3, 0xE4, 0x80, 0xA0, 0xFF, 0x00,
        ];
        for round in 0..20_000 {
            let mut block = [0u8; BLOCK];
            for b in &mut block {
                let r = rng.next();
                *b = if round % 2 == 0 {
                    specials[(r % specials.len() as u64) as usize]
                } else {
                    r as u8
                };
            }
            let m = masks(&block);
            assert_eq!(m, masks_portable(&block), "{block:?}");
            let mut a = [0u8; 2 * BLOCK];
            let mut b = [0u8; 2 * BLOCK];
            spaced(&block, m.ws, &mut a);
            spaced_portable(&block, m.ws, &mut b);
            assert_eq!(a, b, "{block:?}");
        }
    }

    /// Every run of whitespace becomes one space, char by char.
    fn collapse_reference(s: &str) -> String {
        let mut out = String::new();
        let mut prev_ws = false;
        for c in s.chars() {
            if c.is_whitespace() {
                if !prev_ws {
                    out.push(' ');
                }
                prev_ws = true;
            } else {
                out.push(c);
                prev_ws = false;
            }
        }
        out
    }

    /// Both block loops (portable and, when the CPU has it, SSSE3) against the reference.
    #[test]
    fn block_loops_agree_with_reference() {
        let mut pieces: Vec<String> = (0..=0x3000_u32)
            .filter_map(char::from_u32)
            .filter(|c| c.is_whitespace())
            .map(String::from)
            .collect();
        for p in [
            " ",
            " ",
            " ",
            "  ",
            "a",
            "bc",
            "word",
            "\u{1f}",
            "é",
            "\u{a1}",
            "\u{2019}",
            "\u{2060}",
            "\u{3001}",
            "中",
            "\u{1681}",
            "😀",
            "0123456789abcdef",
        ] {
            pieces.push(p.to_owned());
        }
        let mut rng = XorShift(0xb10c);
        for round in 0..40_000 {
            let n = rng.next() % if round % 2 == 0 { 8 } else { 80 };
            let s: String = (0..n)
                .map(|_| pieces[(rng.next() % pieces.len() as u64) as usize].as_str())
                .collect();
            let expected = collapse_reference(&s);
            let bytes = s.as_bytes();
            let Some(first) = first_collapse_event(bytes, 0, bytes.len()) else {
                assert_eq!(s, expected);
                continue;
            };
            let mut portable = Collapse::new(bytes, 0, bytes.len(), first);
            portable.blocks();
            assert_eq!(portable.finish(), expected, "{s:?}");
            #[cfg(target_arch = "x86_64")]
            if ssse3::available() {
                let mut fast = Collapse::new(bytes, 0, bytes.len(), first);
                // SAFETY: the CPU has SSSE3.
                unsafe { fast.blocks_ssse3() };
                assert_eq!(fast.finish(), expected, "{s:?}");
            }
            assert_eq!(collapse_range(&s, 0, bytes.len(), first), expected, "{s:?}");
        }
    }

    #[test]
    fn skip_checks_agree_with_portable() {
        let mut rng = XorShift(0x5c1f);
        let specials = [
            b' ', b'\t', b'\n', 0x0b, 0x0c, b'\r', 0x08, 0x0e, b'a', 0xC1, 0xC2, 0xC3, 0xCB, 0xCC,
            0xCD, 0xE0, 0xE1, 0xE2, 0xE3, 0xE4, 0x80, 0xFF, 0x00,
        ];
        for round in 0..40_000 {
            let mut window = [b'a'; SKIP + 1];
            // Mostly plain bytes with a few specials, so both answers come up.
            for _ in 0..(rng.next() % 4) {
                let at = (rng.next() % (SKIP as u64 + 1)) as usize;
                window[at] = if round % 3 == 0 {
                    rng.next() as u8
                } else {
                    specials[(rng.next() % specials.len() as u64) as usize]
                };
            }
            assert_eq!(
                may_have_event(&window),
                may_have_event_portable(&window),
                "{window:?}"
            );
            let chunk: &[u8; SKIP] = window[1..].try_into().unwrap();
            for min in [1, 0x80, 0xCB, 0xCC, 0xCD, 0xFF] {
                assert_eq!(
                    any_at_least(chunk, min),
                    any_at_least_portable(chunk, min),
                    "{chunk:?} {min}"
                );
            }
        }
    }

    #[test]
    fn nfc_quick_yes_matches_library() {
        // Code points after ASCII, and between combining marks (classes 220 and 230): every
        // one in the ranges with combining marks, Hangul and NFC_QC=No/Maybe characters,
        // a sample elsewhere (the library is slow in unoptimized test builds).
        let dense = |c: u32| {
            c < 0x3400
                || (0xf900..0xfb50).contains(&c)
                || (0xfe00..0xfe30).contains(&c)
                || (0x1_0000..0x1_1000).contains(&c)
                || (0x1_1000..0x1_2000).contains(&c)
                || (0x1_d100..0x1_d250).contains(&c)
                || (0x2_f800..0x2_fa20).contains(&c)
        };
        let mut s = String::new();
        let code_points = (0..=0x10ffff_u32).filter(|&c| dense(c) || c % 61 == 0);
        for c in code_points.filter_map(char::from_u32) {
            for (before, after) in [("ab", ""), ("\u{316}", "\u{301}"), ("e\u{301}", "\u{316}")] {
                s.clear();
                s.push_str(before);
                s.push(c);
                s.push_str(after);
                assert_eq!(
                    is_nfc_quick_yes(&s),
                    is_nfc_quick(s.chars()) == IsNormalized::Yes,
                    "{s:?}"
                );
            }
        }
    }
}
