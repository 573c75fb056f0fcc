//! Canonicalization: the rule sets that decide which requests count as "the same".
//!
//! Text rules run in this order:
//!
//! 1. **NFC** (`nfc`): Unicode normalization form C. Skipped cheaply when
//!    [`is_nfc_quick`] already answers "yes".
//! 2. **Volatile-field stripping**: ISO-8601 timestamps (`<ts>`), then dates (`<date>`), then
//!    UUIDs (`<uuid>`), then each custom pattern (`<v>`), in that order, so a timestamp becomes
//!    one `<ts>` rather than `<date>` plus a time.
//! 3. **Case folding** (`case_fold`): full Unicode lowercase ([`str::to_lowercase`], the default
//!    case mapping including the Greek final-sigma rule). It is not Unicode *case folding*
//!    (`ß` stays `ß`), and lowercasing can leave text that is no longer NFC, so with `nfc` the
//!    result is normalized again.
//! 4. **Whitespace collapse** (`collapse_whitespace`): every run of Unicode `White_Space`
//!    characters becomes one ASCII space, in a single pass.
//! 5. **Trim** (`trim`): leading and trailing Unicode whitespace removed.
//!
//! The NFC quick check and steps 4-5 (fused into one pass) work on UTF-8 bytes, decoding a
//! character only where one could matter (see `scan.rs`); unit tests check them against the
//! straightforward char-by-char versions kept under `#[cfg(test)]`.
//!
//! # Idempotence
//!
//! `canonicalize(canonicalize(x)) == canonicalize(x)` for every input. How it is kept:
//!
//! * Placeholders are atomic: stripping only looks at the text *between* existing placeholders
//!   (`<ts>`, `<date>`, `<uuid>`, `<v>`, including ones the caller typed), so no pattern can
//!   match into a placeholder or turn one into something else. Empty matches are ignored.
//! * The built-in patterns only accept a match whose neighbours are not ASCII letters or digits
//!   (so `v2024-05-01` and hex runs inside longer identifiers are left alone).
//! * Stripping runs to a fixed point: when a round replaced something (or, with custom
//!   patterns, when case folding or whitespace collapse changed the text and so could create a
//!   new match), the whole pipeline runs again until a round changes nothing. Every round that
//!   changes something turns at least one character that is not part of a placeholder into
//!   one, so this terminates; built-in rules settle after one extra verification round. A cap
//!   of [`MAX_ROUNDS`] rounds bounds the work for pathological custom patterns (anchored
//!   patterns such as `a$` can peel one character per round), and only those could ever
//!   reach it.
//! * Without stripping the pipeline is one pass: NFC, lowercase (+ NFC), whitespace collapse
//!   and trim are each idempotent and do not undo each other (whitespace never composes under
//!   NFC and lowercases to itself); the unit tests check these facts for every code point.
//!
//! Custom patterns see one segment (the text between two placeholders) at a time, so `^` and
//! `$` anchor to segment boundaries.
//!
//! # JSON
//!
//! [`RuleSet::write_json`] writes compact JSON: object keys sorted by code point when
//! `sort_json_keys` (keys are otherwise kept in the caller's order), every string value put
//! through the text rules, keys only NFC-normalized (a key's meaning is never changed; if two
//! keys become equal the last value wins, as in a JSON parser). Numbers: integers are exact;
//! other numbers are `f64` written in shortest round-trip form, and a float with an integral
//! value of magnitude below 2^53 is written as an integer, so `1`, `1.0`, `1.00` and `1e0` are
//! the same number (`-0.0` is `0`).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

use crate::error::{CoreError, Result};
use crate::scan;

/// Placeholder for a stripped ISO-8601 timestamp.
pub const PLACEHOLDER_TIMESTAMP: &str = "<ts>";
/// Placeholder for a stripped calendar date.
pub const PLACEHOLDER_DATE: &str = "<date>";
/// Placeholder for a stripped UUID.
pub const PLACEHOLDER_UUID: &str = "<uuid>";
/// Placeholder for a match of a custom `strip_patterns` regex.
pub const PLACEHOLDER_CUSTOM: &str = "<v>";

const PLACEHOLDERS: [&str; 4] = [
    PLACEHOLDER_TIMESTAMP,
    PLACEHOLDER_DATE,
    PLACEHOLDER_UUID,
    PLACEHOLDER_CUSTOM,
];

/// Upper bound on stripping rounds (see the module docs on idempotence).
pub const MAX_ROUNDS: usize = 16;

/// Names accepted by [`RuleSet::named`].
pub const BUILTIN_NAMES: [&str; 4] = ["exact", "conservative", "volatile", "aggressive"];

const DATE: &str = r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])";

static TIMESTAMP_RE: LazyLock<Regex> = LazyLock::new(|| {
    // date, `T`/space, hh:mm, optional :ss, optional fraction, optional zone.
    Regex::new(&format!(
        r"{DATE}[Tt ](?:[01][0-9]|2[0-4]):[0-5][0-9](?::[0-6][0-9](?:[.,][0-9]+)?)?(?:[Zz]|[+-][0-9]{{2}}(?::?[0-9]{{2}})?)?"
    ))
    .expect("built-in timestamp regex compiles")
});

static DATE_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(DATE).expect("built-in date regex compiles"));

static UUID_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
        .expect("built-in uuid regex compiles")
});

/// Matches wherever any built-in rule could (every timestamp starts with a date): one scan
/// tells whether the built-in rules need to run at all.
static BUILTIN_PREFILTER_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!("{DATE}|{}", UUID_RE.as_str())).expect("built-in prefilter compiles")
});

/// The flags and patterns of a rule set, as passed to [`RuleSet::new`].
///
/// `Default` gives the same values as the Python constructor's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSetOptions {
    pub name: String,
    pub nfc: bool,
    pub collapse_whitespace: bool,
    pub trim: bool,
    pub sort_json_keys: bool,
    pub case_fold: bool,
    pub strip_timestamps: bool,
    pub strip_dates: bool,
    pub strip_uuids: bool,
    pub strip_patterns: Vec<String>,
}

impl Default for RuleSetOptions {
    fn default() -> Self {
        RuleSetOptions {
            name: "custom".to_owned(),
            nfc: true,
            collapse_whitespace: true,
            trim: true,
            sort_json_keys: true,
            case_fold: false,
            strip_timestamps: false,
            strip_dates: false,
            strip_uuids: false,
            strip_patterns: Vec::new(),
        }
    }
}

/// One stripping rule: a regex and the placeholder its matches become.
#[derive(Clone, Debug)]
struct StripRule {
    regex: Regex,
    placeholder: &'static str,
    /// Built-in rules reject matches next to an ASCII letter or digit.
    word_bounded: bool,
}

/// A named, immutable canonicalization rule set (see the module docs).
#[derive(Clone, Debug)]
pub struct RuleSet {
    options: RuleSetOptions,
    strip: Vec<StripRule>,
    has_custom: bool,
    has_builtin: bool,
}

impl RuleSet {
    /// Builds a rule set. Fails with [`CoreError::RuleSet`] naming the first pattern that does
    /// not compile.
    pub fn new(options: RuleSetOptions) -> Result<Self> {
        let mut strip = Vec::new();
        let builtin = |regex: &Regex, placeholder| StripRule {
            regex: regex.clone(),
            placeholder,
            word_bounded: true,
        };
        if options.strip_timestamps {
            strip.push(builtin(&TIMESTAMP_RE, PLACEHOLDER_TIMESTAMP));
        }
        if options.strip_dates {
            strip.push(builtin(&DATE_RE, PLACEHOLDER_DATE));
        }
        if options.strip_uuids {
            strip.push(builtin(&UUID_RE, PLACEHOLDER_UUID));
        }
        for (i, pattern) in options.strip_patterns.iter().enumerate() {
            let regex = Regex::new(pattern).map_err(|e| {
                CoreError::RuleSet(format!(
                    "rule set {:?}: strip_patterns[{i}] {pattern:?} is not a valid regex \
                     (Rust regex syntax; look-around and backreferences are not supported): {e}",
                    options.name
                ))
            })?;
            strip.push(StripRule {
                regex,
                placeholder: PLACEHOLDER_CUSTOM,
                word_bounded: false,
            });
        }
        let has_custom = !options.strip_patterns.is_empty();
        let has_builtin = strip.iter().any(|r| r.word_bounded);
        Ok(RuleSet {
            options,
            strip,
            has_custom,
            has_builtin,
        })
    }

    /// One of the built-in rule sets ([`BUILTIN_NAMES`]):
    ///
    /// * `exact`: nothing changes (provider prefix fingerprints need byte-identical text);
    /// * `conservative` (the default): NFC, whitespace collapse, trim, JSON key order;
    /// * `volatile`: conservative + timestamps, dates and UUIDs stripped;
    /// * `aggressive`: volatile + case folding.
    pub fn named(name: &str) -> Result<Self> {
        let conservative = RuleSetOptions {
            name: name.to_owned(),
            ..RuleSetOptions::default()
        };
        let volatile = RuleSetOptions {
            strip_timestamps: true,
            strip_dates: true,
            strip_uuids: true,
            ..conservative.clone()
        };
        let options = match name {
            "exact" => RuleSetOptions {
                name: name.to_owned(),
                nfc: false,
                collapse_whitespace: false,
                trim: false,
                sort_json_keys: false,
                ..RuleSetOptions::default()
            },
            "conservative" => conservative,
            "volatile" => volatile,
            "aggressive" => RuleSetOptions {
                case_fold: true,
                ..volatile
            },
            _ => {
                return Err(CoreError::RuleSet(format!(
                    "unknown rule set {name:?}; expected one of {}",
                    BUILTIN_NAMES.join(", ")
                )))
            }
        };
        RuleSet::new(options)
    }

    /// The rule set's name (`"custom"` unless given).
    pub fn name(&self) -> &str {
        &self.options.name
    }

    /// The flags and patterns this rule set was built from.
    pub fn options(&self) -> &RuleSetOptions {
        &self.options
    }

    /// Canonical form of `text` (borrowed when nothing changes).
    pub fn canonicalize_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let o = &self.options;
        let mut s = Cow::Borrowed(text);
        if o.nfc {
            apply(&mut s, nfc_if_needed);
        }
        let mut rounds = 0;
        loop {
            let stripped = apply(&mut s, |t| self.strip_once(t));
            let mut changed = stripped;
            if o.case_fold {
                changed |= apply(&mut s, |t| lowercase_if_needed(t, o.nfc));
            }
            if o.collapse_whitespace {
                // Collapse and trim in one pass (same result as one after the other).
                changed |= collapse_cow(&mut s, o.trim);
            } else if o.trim {
                changed |= trim_cow(&mut s);
            }
            rounds += 1;
            // Another round is only needed when a new match could have appeared: a
            // replacement changed some match's surroundings, or (custom patterns only) case
            // folding / whitespace collapse made text a pattern now matches.
            let again = stripped || (self.has_custom && changed);
            if !again || rounds >= MAX_ROUNDS {
                break;
            }
            // A placeholder followed by a combining mark (e.g. `>` + U+0338) is not NFC.
            if o.nfc {
                apply(&mut s, nfc_if_needed);
            }
        }
        s
    }

    /// Replaces every accepted match of every strip rule, left to right, rule by rule.
    /// `None` when nothing matched.
    fn strip_once(&self, text: &str) -> Option<String> {
        let mut current: Option<String> = None;
        let skip_builtins = self.has_builtin && !BUILTIN_PREFILTER_RE.is_match(text);
        for rule in &self.strip {
            if skip_builtins && rule.word_bounded {
                continue;
            }
            let src = current.as_deref().unwrap_or(text);
            if let Some(next) = strip_rule(rule, src) {
                current = Some(next);
            }
        }
        current
    }

    /// Canonical compact JSON for `json_text`. Fails with [`CoreError::KeyInput`] when the
    /// text is not JSON.
    pub fn canonicalize_json(&self, json_text: &str) -> Result<String> {
        let value: Value = serde_json::from_str(json_text)
            .map_err(|e| CoreError::KeyInput(format!("json_text: not valid JSON: {e}")))?;
        let mut out = String::with_capacity(json_text.len());
        self.write_json(&value, &mut out);
        Ok(out)
    }

    /// Appends the canonical compact JSON of `value` to `out`.
    pub fn write_json(&self, value: &Value, out: &mut String) {
        match value {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => write_number(n, out),
            Value::String(s) => write_json_string(&self.canonicalize_text(s), out),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.write_json(item, out);
                }
                out.push(']');
            }
            Value::Object(map) => self.write_json_object(map, out),
        }
    }

    /// Appends the canonical compact JSON of the object `map` to `out`.
    pub fn write_json_object(&self, map: &Map<String, Value>, out: &mut String) {
        let mut renamed = false;
        let mut entries: Vec<(Cow<'_, str>, &Value)> = map
            .iter()
            .map(|(k, v)| {
                let key = self.canonicalize_key(k);
                renamed |= matches!(key, Cow::Owned(_));
                (key, v)
            })
            .collect();
        if renamed {
            dedupe_keys(&mut entries);
        }
        if self.options.sort_json_keys {
            entries.sort_by(|a, b| a.0.cmp(&b.0));
        }
        out.push('{');
        for (i, (key, v)) in entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(key, out);
            out.push(':');
            self.write_json(v, out);
        }
        out.push('}');
    }

    /// Object keys are only NFC-normalized (with `nfc`): their meaning never changes.
    fn canonicalize_key<'a>(&self, key: &'a str) -> Cow<'a, str> {
        let mut k = Cow::Borrowed(key);
        if self.options.nfc {
            apply(&mut k, nfc_if_needed);
        }
        k
    }
}

/// Runs `stage` on `s`, replacing it when the stage changed something. Returns whether it did.
fn apply<'a>(s: &mut Cow<'a, str>, stage: impl FnOnce(&str) -> Option<String>) -> bool {
    match stage(s) {
        Some(new) => {
            *s = Cow::Owned(new);
            true
        }
        None => false,
    }
}

/// NFC of `s`, or `None` when it already is NFC.
fn nfc_if_needed(s: &str) -> Option<String> {
    // Byte-level quick check: same answer as `is_nfc_quick(s.chars()) == Yes`.
    if scan::is_nfc_quick_yes(s) {
        return None;
    }
    let normalized: String = s.nfc().collect();
    (normalized != s).then_some(normalized)
}

/// The straightforward [`nfc_if_needed`] (char by char), kept to test the fast path against.
#[cfg(test)]
fn nfc_if_needed_reference(s: &str) -> Option<String> {
    use unicode_normalization::{is_nfc_quick, IsNormalized};
    if s.is_ascii() || is_nfc_quick(s.chars()) == IsNormalized::Yes {
        return None;
    }
    let normalized: String = s.nfc().collect();
    (normalized != s).then_some(normalized)
}

fn is_lowercase_stable(c: char) -> bool {
    let mut lower = c.to_lowercase();
    lower.next() == Some(c) && lower.next().is_none()
}

/// Full Unicode lowercase of `s` (NFC again when `nfc`), or `None` when nothing changes.
fn lowercase_if_needed(s: &str, nfc: bool) -> Option<String> {
    let needed = if s.is_ascii() {
        s.bytes().any(|b| b.is_ascii_uppercase())
    } else {
        !s.chars().all(is_lowercase_stable)
    };
    if !needed {
        return None;
    }
    let lower = s.to_lowercase();
    let lower = if nfc {
        nfc_if_needed(&lower).unwrap_or(lower)
    } else {
        lower
    };
    (lower != s).then_some(lower)
}

/// Whitespace collapse (every run of Unicode whitespace becomes one ASCII space) and, with
/// `trim`, trimming, fused into one byte-level pass (see `scan.rs`): the result equals
/// [`collapse_whitespace_if_needed`] followed by [`trim_cow`]. Returns whether the text
/// changed; text that only needs trimming stays borrowed.
fn collapse_cow(s: &mut Cow<'_, str>, trim: bool) -> bool {
    let (from, end) = if trim {
        let from = s.len() - s.trim_start().len();
        (from, from + s[from..].trim_end().len())
    } else {
        (0, s.len())
    };
    match scan::first_collapse_event(s.as_bytes(), from, end) {
        Some(first) => {
            *s = Cow::Owned(scan::collapse_range(s, from, end, first));
            true
        }
        None => slice_cow(s, from, end),
    }
}

/// Every run of Unicode whitespace becomes one ASCII space, in a single pass. `None` when the
/// text has no whitespace other than single spaces. The straightforward version of
/// [`collapse_cow`], kept to test it against.
#[cfg(test)]
fn collapse_whitespace_if_needed(s: &str) -> Option<String> {
    if s.is_ascii() {
        collapse_ascii_whitespace_if_needed(s)
    } else {
        collapse_unicode_whitespace_if_needed(s)
    }
}

#[cfg(test)]
fn collapse_unicode_whitespace_if_needed(s: &str) -> Option<String> {
    let mut out: Option<String> = None;
    let mut prev_ws = false;
    for (i, c) in s.char_indices() {
        let ws = c.is_whitespace();
        match &mut out {
            None => {
                if ws && (c != ' ' || prev_ws) {
                    let mut buf = String::with_capacity(s.len());
                    buf.push_str(&s[..i]);
                    if !prev_ws {
                        buf.push(' ');
                    }
                    out = Some(buf);
                }
            }
            Some(buf) => {
                if !ws {
                    buf.push(c);
                } else if !prev_ws {
                    buf.push(' ');
                }
            }
        }
        prev_ws = ws;
    }
    out
}

/// [`collapse_whitespace_if_needed`] for ASCII text, byte by byte.
#[cfg(test)]
fn collapse_ascii_whitespace_if_needed(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let is_ws = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let first = (0..bytes.len()).find(|&i| {
        let b = bytes[i];
        is_ws(b) && (b != b' ' || (i > 0 && is_ws(bytes[i - 1])))
    })?;
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..first]);
    let mut prev_ws = first > 0 && is_ws(bytes[first - 1]);
    for &b in &bytes[first..] {
        let ws = is_ws(b);
        if !ws {
            out.push(b);
        } else if !prev_ws {
            out.push(b' ');
        }
        prev_ws = ws;
    }
    // Only ASCII bytes were copied or written.
    String::from_utf8(out).ok()
}

/// Trims Unicode whitespace in place. Returns whether anything was removed.
fn trim_cow(s: &mut Cow<'_, str>) -> bool {
    let from = s.len() - s.trim_start().len();
    let end = from + s[from..].trim_end().len();
    slice_cow(s, from, end)
}

/// Narrows `s` to `s[from..end]` (char boundaries) in place. Returns whether it got shorter.
fn slice_cow(s: &mut Cow<'_, str>, from: usize, end: usize) -> bool {
    if from == 0 && end == s.len() {
        return false;
    }
    match s {
        Cow::Borrowed(b) => *b = &b[from..end],
        Cow::Owned(o) => {
            o.truncate(end);
            o.drain(..from);
        }
    }
    true
}

/// Splits `text` into `(is_placeholder, piece)` pieces, placeholders being atomic.
fn segments(text: &str) -> impl Iterator<Item = (bool, &str)> {
    let mut rest = text;
    let mut pending: Option<&str> = None;
    std::iter::from_fn(move || {
        if let Some(p) = pending.take() {
            return Some((true, p));
        }
        if rest.is_empty() {
            return None;
        }
        let mut search_from = 0;
        while let Some(off) = rest[search_from..].find('<') {
            let at = search_from + off;
            if let Some(p) = PLACEHOLDERS.iter().find(|p| rest[at..].starts_with(**p)) {
                let before = &rest[..at];
                let placeholder = &rest[at..at + p.len()];
                rest = &rest[at + p.len()..];
                if before.is_empty() {
                    return Some((true, placeholder));
                }
                pending = Some(placeholder);
                return Some((false, before));
            }
            search_from = at + 1;
        }
        let last = rest;
        rest = "";
        Some((false, last))
    })
}

fn is_ascii_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Applies one strip rule to every non-placeholder segment of `text`.
fn strip_rule(rule: &StripRule, text: &str) -> Option<String> {
    let mut out: Option<String> = None;
    let mut copied = 0; // bytes of `text` already accounted for in `out`
    let mut offset = 0; // byte offset of the current segment in `text`
    for (is_placeholder, seg) in segments(text) {
        if !is_placeholder {
            let bytes = seg.as_bytes();
            let mut pos = 0;
            while pos <= seg.len() {
                let Some(m) = rule.regex.find_at(seg, pos) else {
                    break;
                };
                let accepted = !m.is_empty()
                    && (!rule.word_bounded
                        || ((m.start() == 0 || !is_ascii_word_byte(bytes[m.start() - 1]))
                            && (m.end() == seg.len() || !is_ascii_word_byte(bytes[m.end()]))));
                if accepted {
                    let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
                    buf.push_str(&text[copied..offset + m.start()]);
                    buf.push_str(rule.placeholder);
                    copied = offset + m.end();
                    pos = m.end();
                } else {
                    // Try the next start position (a shorter or later match may be valid).
                    pos = next_char_boundary(seg, m.start());
                }
            }
        }
        offset += seg.len();
    }
    let mut buf = out?;
    buf.push_str(&text[copied..]);
    Some(buf)
}

fn next_char_boundary(s: &str, at: usize) -> usize {
    let mut i = at + 1;
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Writes `s` as a JSON string literal, escaping exactly as serde_json does.
pub(crate) fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Largest magnitude below which every integral `f64` is exactly an integer (2^53).
const MAX_SAFE_INTEGER_F64: f64 = 9_007_199_254_740_992.0;

fn write_number(n: &serde_json::Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        push_i64(i, out);
    } else if let Some(u) = n.as_u64() {
        push_u64(u, out);
    } else if let Some(f) = n.as_f64() {
        write_float(f, out);
    } else {
        // Not reachable without serde_json's arbitrary_precision feature.
        let _ = write!(out, "{n}");
    }
}

fn write_float(f: f64, out: &mut String) {
    if f.fract() == 0.0 && f.abs() < MAX_SAFE_INTEGER_F64 {
        // Also turns -0.0 into 0.
        push_i64(f as i64, out);
    } else if let Some(n) = serde_json::Number::from_f64(f) {
        let _ = write!(out, "{n}");
    } else {
        // serde_json never holds NaN or infinities; keep the output valid JSON anyway.
        out.push_str("null");
    }
}

/// Appends `u` in decimal (what `Display` writes, without the formatting machinery).
fn push_u64(mut u: u64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[start..]).expect("ASCII digits"));
}

/// Appends `i` in decimal (what `Display` writes).
fn push_i64(i: i64, out: &mut String) {
    if i < 0 {
        out.push('-');
    }
    push_u64(i.unsigned_abs(), out);
}

/// Drops entries whose (renamed) key repeats an earlier one: the first position is kept with
/// the last value, as a JSON parser (and serde_json's ordered map) would.
fn dedupe_keys(entries: &mut Vec<(Cow<'_, str>, &Value)>) {
    let mut i = 0;
    while i < entries.len() {
        let mut j = i + 1;
        while j < entries.len() {
            if entries[j].0 == entries[i].0 {
                let (_, v) = entries.remove(j);
                entries[i].1 = v;
            } else {
                j += 1;
            }
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str) -> RuleSet {
        RuleSet::named(name).unwrap()
    }

    fn canon(rules: &RuleSet, s: &str) -> String {
        rules.canonicalize_text(s).into_owned()
    }

    fn custom(patterns: &[&str], case_fold: bool) -> RuleSet {
        RuleSet::new(RuleSetOptions {
            strip_timestamps: true,
            strip_dates: true,
            strip_uuids: true,
            case_fold,
            strip_patterns: patterns.iter().map(|p| p.to_string()).collect(),
            ..RuleSetOptions::default()
        })
        .unwrap()
    }

    #[test]
    fn exact_changes_nothing() {
        let r = rs("exact");
        for s in ["  A\u{a0}b\t", "e\u{301}", "2024-05-01", "X  Y"] {
            assert_eq!(canon(&r, s), s);
        }
        assert!(matches!(r.canonicalize_text("abc"), Cow::Borrowed(_)));
    }

    #[test]
    fn nfc_rule() {
        let r = rs("conservative");
        assert_eq!(canon(&r, "e\u{301}"), "\u{e9}");
        assert_eq!(canon(&r, "\u{e9}"), "\u{e9}");
        // Already-canonical text is borrowed, not copied.
        assert!(matches!(
            r.canonicalize_text("plain text"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn whitespace_and_trim_rules() {
        let r = rs("conservative");
        assert_eq!(canon(&r, "  a \t\n b\u{a0}\u{3000}c  "), "a b c");
        assert_eq!(canon(&r, "a\u{2028}b"), "a b");
        assert_eq!(canon(&r, "\u{85}x\u{85}"), "x");
        assert_eq!(canon(&r, "a b"), "a b");
        assert_eq!(canon(&r, "   "), "");
        assert_eq!(canon(&r, ""), "");
        let no_trim = RuleSet::new(RuleSetOptions {
            trim: false,
            ..RuleSetOptions::default()
        })
        .unwrap();
        assert_eq!(canon(&no_trim, "  a  b "), " a b ");
        let no_collapse = RuleSet::new(RuleSetOptions {
            collapse_whitespace: false,
            ..RuleSetOptions::default()
        })
        .unwrap();
        assert_eq!(canon(&no_collapse, "  a  b "), "a  b");
    }

    #[test]
    fn ascii_whitespace_fast_path_agrees() {
        let mut rng = XorShift(7);
        let alphabet = [b' ', b'\t', b'\n', 0x0b, 0x0c, b'\r', 0x1c, b'a', b'b'];
        for _ in 0..20_000 {
            let len = (rng.next() % 8) as usize;
            let s: String = (0..len)
                .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize] as char)
                .collect();
            assert_eq!(
                collapse_ascii_whitespace_if_needed(&s),
                collapse_unicode_whitespace_if_needed(&s),
                "{s:?}"
            );
        }
    }

    /// Whitespace characters, look-alikes that share their lead bytes, combining marks and
    /// plain text: the pieces the fast-path tests build strings from.
    fn fast_path_pieces() -> Vec<String> {
        let mut pieces: Vec<String> = (0..=0x3000_u32)
            .filter_map(char::from_u32)
            .filter(|c| c.is_whitespace())
            .map(String::from)
            .collect();
        for s in [
            " ",
            " ",
            " ",
            "  ",
            "a",
            "b",
            "word",
            "x",
            "\u{1c}",
            "\u{1f}",
            "\u{0}",
            "\u{8}",
            "\u{e}",
            "\u{84}",
            "\u{86}",
            "\u{9f}",
            "\u{a1}",
            "\u{ff}",
            "é",
            "ï",
            "ß",
            "\u{1681}",
            "\u{167f}",
            "\u{200b}",
            "\u{200c}",
            "\u{2027}",
            "\u{202a}",
            "\u{202e}",
            "\u{2030}",
            "\u{205e}",
            "\u{2060}",
            "\u{2019}",
            "\u{201c}",
            "—",
            "…",
            "\u{3001}",
            "\u{3042}",
            "\u{30a2}",
            "中",
            "\u{301}",
            "\u{316}",
            "\u{338}",
            "e\u{301}",
            "\u{212b}",
            "\u{2000}",
            "😀",
            "\u{10ffff}",
            "0123456789abcdef",
        ] {
            pieces.push(s.to_owned());
        }
        pieces
    }

    fn random_text(rng: &mut XorShift, pieces: &[String], max_pieces: u64) -> String {
        let len = (rng.next() % (max_pieces + 1)) as usize;
        (0..len)
            .map(|_| pieces[(rng.next() % pieces.len() as u64) as usize].as_str())
            .collect()
    }

    /// The straightforward collapse-then-trim that [`collapse_cow`] fuses.
    fn collapse_then_trim(s: &str, trim: bool) -> (String, bool) {
        let mut c = Cow::Borrowed(s);
        let mut changed = apply(&mut c, collapse_whitespace_if_needed);
        if trim {
            changed |= trim_cow(&mut c);
        }
        (c.into_owned(), changed)
    }

    fn check_collapse(s: &str) {
        for trim in [false, true] {
            let expected = collapse_then_trim(s, trim);
            let mut borrowed = Cow::Borrowed(s);
            let changed = collapse_cow(&mut borrowed, trim);
            assert_eq!(
                (borrowed.as_ref(), changed),
                (expected.0.as_str(), expected.1),
                "{s:?} trim={trim}"
            );
            if !changed {
                assert!(matches!(borrowed, Cow::Borrowed(_)), "{s:?}");
            }
            let mut owned: Cow<'_, str> = Cow::Owned(s.to_owned());
            let changed = collapse_cow(&mut owned, trim);
            assert_eq!(
                (owned.as_ref(), changed),
                (expected.0.as_str(), expected.1),
                "{s:?} trim={trim}"
            );
        }
    }

    #[test]
    fn collapse_fast_path_agrees_with_reference() {
        let pieces = fast_path_pieces();
        for p in &pieces {
            for q in &pieces {
                check_collapse(&format!("{p}{q}"));
                check_collapse(&format!("ab{p}{q}c"));
            }
        }
        let mut rng = XorShift(0x5eed);
        for round in 0..30_000 {
            // Short strings hit the byte-by-byte tail, long ones the 16-byte blocks and
            // characters that straddle two blocks.
            let max = if round % 3 == 0 { 6 } else { 60 };
            check_collapse(&random_text(&mut rng, &pieces, max));
        }
        // Clean text (single spaces, look-alike lead bytes) with one whitespace character or
        // double space at every position: the 64-byte skips must stop for it.
        let clean = "ab c\u{2019}d é \u{3001}\u{a9}\u{1681}xyz ".repeat(12);
        let boundaries: Vec<usize> = (0..=clean.len())
            .filter(|&i| clean.is_char_boundary(i))
            .collect();
        for (n, &at) in boundaries.iter().enumerate() {
            for ws in [
                "\n", " ", "\u{a0}", "\u{2029}", "\u{3000}", "\u{1680}", "\u{85}",
            ] {
                if n % 7 != 0 && ws != " " && ws != "\u{2029}" {
                    continue;
                }
                check_collapse(&format!("{}{ws}{}", &clean[..at], &clean[at..]));
            }
        }
        check_collapse(&clean);
        // Long runs of one whitespace kind, at every offset relative to a block.
        for p in &pieces {
            for pad in 0..18 {
                let s = format!("{}{}{}", "x".repeat(pad), p.repeat(40), "y".repeat(pad));
                check_collapse(&s);
                check_collapse(&format!("{s} {s}"));
            }
        }
    }

    #[test]
    fn nfc_fast_path_agrees_with_reference() {
        let mut pieces = fast_path_pieces();
        for s in [
            "\u{300}",
            "\u{340}",
            "\u{344}",
            "\u{374}",
            "\u{37e}",
            "\u{387}",
            "\u{f900}",
            "\u{1100}",
            "\u{1161}",
            "\u{11a8}",
            "가",
            "\u{ac00}\u{11a8}",
            "\u{2126}",
            "\u{3099}",
            "\u{309a}",
            "\u{1d15e}",
            "\u{2f800}",
            "A\u{30a}",
            "\u{c5}",
            "\u{2cb}",
            "\u{2ff}",
            "\u{cb}",
            "\u{cc}",
        ] {
            pieces.push(s.to_owned());
        }
        let mut rng = XorShift(0xfeed);
        for _ in 0..30_000 {
            let s = random_text(&mut rng, &pieces, 24);
            assert_eq!(nfc_if_needed(&s), nfc_if_needed_reference(&s), "{s:?}");
        }
        for s in TRICKY {
            assert_eq!(nfc_if_needed(s), nfc_if_needed_reference(s), "{s:?}");
        }
    }

    #[test]
    fn case_fold_rule() {
        let r = rs("aggressive");
        assert_eq!(canon(&r, "Hello WORLD"), "hello world");
        assert_eq!(canon(&r, "ὈΔΥΣΣΕΎΣ"), "ὀδυσσεύς"); // final sigma
        assert_eq!(canon(&r, "İ"), "i\u{307}");
        assert_eq!(canon(&r, "Straße"), "straße"); // lowercase, not case folding
        assert_eq!(canon(&rs("volatile"), "Hello"), "Hello");
    }

    #[test]
    fn timestamp_rule() {
        let r = rs("volatile");
        assert_eq!(canon(&r, "at 2024-05-01T12:30:00Z ok"), "at <ts> ok");
        assert_eq!(canon(&r, "2024-05-01 12:30:00.123+02:00"), "<ts>");
        assert_eq!(canon(&r, "2024-05-01T12:30"), "<ts>");
        assert_eq!(canon(&r, "2024-05-01t12:30:00,5z"), "<ts>");
        assert_eq!(canon(&r, "(2024-05-01T12:30:00-0700)"), "(<ts>)");
        // Glued to other letters or digits: left alone.
        assert_eq!(
            canon(&r, "2024-05-01T12:30:00Z2024-05-01"),
            "2024-05-01T12:30:00Z2024-05-01"
        );
    }

    #[test]
    fn date_rule() {
        let r = rs("volatile");
        assert_eq!(
            canon(&r, "on 2024-05-01, again 1999-12-31."),
            "on <date>, again <date>."
        );
        assert_eq!(canon(&r, "report_2024-05-01.csv"), "report_<date>.csv");
        // Not dates: inside identifiers, impossible months/days.
        assert_eq!(canon(&r, "v2024-05-01"), "v2024-05-01");
        assert_eq!(canon(&r, "12024-05-01"), "12024-05-01");
        assert_eq!(canon(&r, "2024-13-01 2024-05-32"), "2024-13-01 2024-05-32");
    }

    #[test]
    fn uuid_rule() {
        let r = rs("volatile");
        assert_eq!(
            canon(&r, "id=123e4567-E89B-12d3-a456-426614174000;"),
            "id=<uuid>;"
        );
        assert_eq!(
            canon(&r, "x123e4567-e89b-12d3-a456-426614174000"),
            "x123e4567-e89b-12d3-a456-426614174000"
        );
    }

    #[test]
    fn custom_patterns() {
        let r = custom(&[r"req_[a-z0-9]+", r"\bsk-\w+"], false);
        assert_eq!(canon(&r, "id req_abc123 key sk-xyz"), "id <v> key <v>");
        // A pattern that matches inside placeholders never touches them.
        let r = custom(&["v", "ts", "date", "<", ">"], false);
        assert_eq!(canon(&r, "2024-05-01"), "<date>");
        assert_eq!(canon(&r, "a<v>b"), "a<v>b");
        assert_eq!(canon(&r, "<x>"), "<v>x<v>");
        // Empty matches are ignored.
        let r = custom(&["a*"], false);
        assert_eq!(canon(&r, "bab"), "b<v>b");
        let err = RuleSet::new(RuleSetOptions {
            strip_patterns: vec!["ok".into(), "(".into()],
            ..RuleSetOptions::default()
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("strip_patterns[1]") && msg.contains("\"(\""),
            "{msg}"
        );
    }

    #[test]
    fn named_sets() {
        for name in BUILTIN_NAMES {
            assert_eq!(rs(name).name(), name);
        }
        let err = RuleSet::named("agressive").unwrap_err().to_string();
        assert!(
            err.contains("agressive") && err.contains("conservative"),
            "{err}"
        );
        let c = rs("conservative").options().clone();
        assert!(c.nfc && c.collapse_whitespace && c.trim && c.sort_json_keys);
        assert!(!c.case_fold && !c.strip_dates);
        let a = rs("aggressive").options().clone();
        assert!(a.case_fold && a.strip_dates && a.strip_timestamps && a.strip_uuids);
        let e = rs("exact").options().clone();
        assert!(!e.nfc && !e.collapse_whitespace && !e.trim && !e.sort_json_keys);
    }

    const TRICKY: &[&str] = &[
        "",
        " ",
        "  Hello\u{a0} World \t",
        "e\u{301}\u{301}",
        "\u{1e9b}\u{323}",
        "İstanbul ΣΊΣΥΦΟΣ Σ",
        "ΑΣ2024-05-01",
        "2024-05-01\u{338}",
        "<date>\u{338}",
        "x>\u{338}",
        "2024-05-01T12:30:00Z",
        "2024-05-01  12:30:00",
        "2024-05-01\t12:30",
        "2024-05-0112345678-1234-1234-1234-123456789abc",
        "2024-05-01-2024-05-01",
        "2024-05-01T12:30:00Z5",
        "<ts><date><uuid><v>",
        "<TS> <Date> <V>",
        "<<v>>",
        "ABC abc  ABC",
        "A\u{30a}\u{301}",
        "\u{212b}\u{212a}",
        "a\u{3000}\u{301}b",
        "\u{301} leading mark",
        "ﬁ ǅ ǈ ß ẞ",
        "123E4567-E89B-12D3-A456-426614174000",
        "X  Y\u{2029}Z",
    ];

    fn all_rule_sets() -> Vec<RuleSet> {
        let mut sets: Vec<RuleSet> = BUILTIN_NAMES.iter().map(|n| rs(n)).collect();
        sets.push(custom(&[r"ABC", r"a b", r"[a-z]$", r"^x", r"\d+"], false));
        sets.push(custom(&[r"abc", r"v", r"<", r"\s+"], true));
        sets.push(
            RuleSet::new(RuleSetOptions {
                nfc: false,
                case_fold: true,
                strip_dates: true,
                ..RuleSetOptions::default()
            })
            .unwrap(),
        );
        sets
    }

    fn assert_idempotent(rules: &RuleSet, s: &str) {
        let once = canon(rules, s);
        let twice = canon(rules, &once);
        assert_eq!(
            once,
            twice,
            "not idempotent for {s:?} with {:?}",
            rules.options()
        );
    }

    #[test]
    fn idempotent_on_tricky_strings() {
        for rules in all_rule_sets() {
            for s in TRICKY {
                assert_idempotent(&rules, s);
            }
            // Pairwise concatenations mix the tricky parts.
            for a in TRICKY {
                for b in TRICKY {
                    assert_idempotent(&rules, &format!("{a}{b}"));
                }
            }
        }
    }

    /// A tiny deterministic PRNG so the randomized test needs no dependency.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn idempotent_on_random_strings() {
        let pieces = [
            "a",
            "A",
            "b",
            "Z",
            "T",
            "t",
            "z",
            "0",
            "1",
            "2",
            "9",
            "-",
            ":",
            ".",
            "+",
            " ",
            "  ",
            "\t",
            "\n",
            "\u{a0}",
            "\u{3000}",
            "<",
            ">",
            "v",
            "ts",
            "<v>",
            "<ts>",
            "<date>",
            "\u{301}",
            "\u{338}",
            "\u{307}",
            "e",
            "İ",
            "Σ",
            "ς",
            "ß",
            "\u{212a}",
            "2024-05-01",
            "12:30",
            "12:30:00",
            "T12:30:00Z",
            "123e4567",
            "-e89b-12d3-a456-",
            "426614174000",
        ];
        let sets = all_rule_sets();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..4000 {
            let len = (rng.next() % 12) as usize;
            let s: String = (0..len)
                .map(|_| pieces[(rng.next() % pieces.len() as u64) as usize])
                .collect();
            for rules in &sets {
                assert_idempotent(rules, &s);
            }
        }
    }

    /// Facts the single-pass pipeline (no stripping) relies on, checked for every code point.
    #[test]
    fn per_code_point_facts() {
        for c in (0..=0x10ffff_u32).filter_map(char::from_u32) {
            let s = c.to_string();
            // lowercase (+ NFC) is idempotent.
            let lower = lowercase_if_needed(&s, true).unwrap_or_else(|| s.clone());
            assert_eq!(
                lowercase_if_needed(&lower, true),
                None,
                "lowercase+NFC not idempotent at U+{:04X}",
                c as u32
            );
            let lower_plain = s.to_lowercase();
            assert_eq!(lower_plain.to_lowercase(), lower_plain);
            // Lowercasing never creates or removes whitespace.
            assert_eq!(
                c.is_whitespace(),
                lower_plain.chars().any(char::is_whitespace),
                "U+{:04X}",
                c as u32
            );
            if c.is_whitespace() {
                assert_eq!(lower_plain, s);
            }
        }
        // Whitespace never composes with a following combining mark under NFC.
        let marks: Vec<char> = (0x300..=0x36f_u32)
            .chain(0x1ab0..=0x1aff)
            .chain(0x1dc0..=0x1dff)
            .chain(0x20d0..=0x20ff)
            .chain(0x3099..=0x309a)
            .filter_map(char::from_u32)
            .collect();
        for w in (0..=0x3000_u32)
            .filter_map(char::from_u32)
            .filter(|c| c.is_whitespace())
        {
            for &m in &marks {
                let s: String = [w, m].iter().collect();
                let n: Vec<char> = s.nfc().collect();
                // No composition across the space. (Some code points have singleton
                // decompositions, e.g. U+2000 -> U+2002, U+0340 -> U+0300.)
                let apart: Vec<char> = w.to_string().nfc().chain(m.to_string().nfc()).collect();
                assert_eq!(n, apart, "U+{:04X} U+{:04X}", w as u32, m as u32);
                assert!(n[0].is_whitespace());
            }
        }
    }

    #[test]
    fn json_keys_sorted_and_values_canonicalized() {
        let r = rs("conservative");
        let out = r
            .canonicalize_json(r#"{"b": {"z": 1, "a": [" x  y ", 2]}, "a": null, "A": true}"#)
            .unwrap();
        assert_eq!(out, r#"{"A":true,"a":null,"b":{"a":["x y",2],"z":1}}"#);
        // Keys keep their meaning: no trimming or case folding of keys.
        let agg = rs("aggressive");
        assert_eq!(
            agg.canonicalize_json(r#"{" Key ": "VALUE 2024-05-01"}"#)
                .unwrap(),
            r#"{" Key ":"value <date>"}"#
        );
        // Keys are NFC-normalized; a collision keeps the last value.
        assert_eq!(
            r.canonicalize_json("{\"e\u{301}\": 1, \"\u{e9}\": 2}")
                .unwrap(),
            "{\"\u{e9}\":2}"
        );
        // exact keeps the caller's key order.
        assert_eq!(
            rs("exact").canonicalize_json(r#"{"b":1,"a":2}"#).unwrap(),
            r#"{"b":1,"a":2}"#
        );
    }

    #[test]
    fn json_numbers_and_escapes() {
        let r = rs("conservative");
        let c = |s: &str| r.canonicalize_json(s).unwrap();
        assert_eq!(c("1.0"), "1");
        assert_eq!(c("1.00"), "1");
        assert_eq!(c("1e0"), "1");
        assert_eq!(c("-0.0"), "0");
        assert_eq!(c("0.1"), "0.1");
        assert_eq!(c("1.5e300"), "1.5e+300");
        assert_eq!(c("18446744073709551615"), "18446744073709551615");
        assert_eq!(c("-9223372036854775808"), "-9223372036854775808");
        assert_eq!(c("9007199254740993.0"), "9007199254740992.0");
        // The string value goes through the text rules: the newline collapses to a space.
        assert_eq!(
            c(r#""a\"b\\c\n\u0001\u00e9/""#),
            "\"a\\\"b\\\\c \\u0001\u{e9}/\""
        );
        for s in [
            "1.0",
            "0.1",
            "1.5e300",
            "9007199254740993.0",
            "[1,2.50,{\"x\":-0.0}]",
            r#""a\"b\\c\n\u0001""#,
            "1e400",
        ] {
            let once = r.canonicalize_json(s);
            if let Ok(once) = once {
                assert_eq!(r.canonicalize_json(&once).unwrap(), once, "{s}");
                // Our escaping matches serde_json's.
                let v: Value = serde_json::from_str(&once).unwrap();
                let mut again = String::new();
                r.write_json(&v, &mut again);
                assert_eq!(again, once);
            }
        }
        let err = r.canonicalize_json("{nope").unwrap_err();
        assert!(matches!(err, CoreError::KeyInput(_)));
        assert!(err.to_string().starts_with("json_text: not valid JSON"));
    }

    #[test]
    fn integer_formatting_matches_display() {
        let mut rng = XorShift(0x1234);
        let mut values: Vec<u64> = vec![0, 1, 9, 10, 99, 100, u64::MAX, u64::MAX - 1, 1 << 63];
        values.extend((0..20).map(|k| 10u64.pow(k)));
        values.extend((0..20).map(|k| 10u64.pow(k) - 1));
        values.extend((0..10_000).map(|_| rng.next() >> (rng.next() % 64)));
        for u in values {
            let mut out = String::from("x");
            push_u64(u, &mut out);
            assert_eq!(out, format!("x{u}"));
            for i in [u as i64, (u as i64).wrapping_neg(), i64::MIN, i64::MAX] {
                let mut out = String::new();
                push_i64(i, &mut out);
                assert_eq!(out, i.to_string());
            }
        }
    }

    #[test]
    fn json_string_escaping_matches_serde_json() {
        let all: String = (0u32..0x80).filter_map(char::from_u32).collect::<String>() + "é\u{2028}";
        let mut ours = String::new();
        write_json_string(&all, &mut ours);
        assert_eq!(ours, serde_json::to_string(&all).unwrap());
    }
}
