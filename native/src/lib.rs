//! Rust core of skinflint: canonicalization, cache keys, prefix fingerprints, the LMDB
//! response cache, the LMDB budget ledger, token counting, the sentence embedder and vector
//! index of the semantic cache, and the spend ledger's SQLite row writer.
//!
//! The core is plain Rust returning [`Result<_, CoreError>`](error::CoreError); the Python
//! binding lives only in `py.rs`, behind the `python` feature, so `cargo test` needs no
//! Python.

pub mod appender;
pub mod budget;
pub mod cache;
pub mod canon;
pub mod embed;
mod env;
pub mod error;
pub mod key;
pub mod prefix;
mod scan;
pub mod tokens;
pub mod vindex;

#[cfg(feature = "python")]
mod py;

pub use appender::{AppenderStats, RowAppender};
pub use budget::{BudgetLedger, Charge, Committed, Denial, LimitKind, WindowState};
pub use cache::{CacheStats, ResponseCache};
pub use canon::{RuleSet, RuleSetOptions};
pub use embed::Embedder;
pub use error::{CoreError, Result};
pub use key::{cache_key, CacheKey, KeyInput, Message, Part, Role};
pub use prefix::{prefix_fingerprints, PrefixFingerprint, PrefixKind};
pub use tokens::{count_chat_tokens, count_tokens, encoding_for_model, Method, TokenCount};
pub use vindex::{Match, VectorIndex};
