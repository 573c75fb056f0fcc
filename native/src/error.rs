//! The one error type of the core. Every fallible function returns `Result<_, CoreError>`;
//! the binding (`py.rs`) maps each variant to one Python exception class.

use std::path::PathBuf;

/// An error of the Rust core. Messages name the offending field or path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The request does not have the documented shape (`KeyInputError` in Python).
    /// The message starts with the path of the bad field, e.g. `messages[2].content[0]`.
    #[error("{0}")]
    KeyInput(String),

    /// A rule set is invalid: unknown built-in name, bad regex (`RuleSetError`).
    #[error("{0}")]
    RuleSet(String),

    /// LMDB could not be opened or written (`CacheError`, an `OSError`).
    #[error("response cache at {}: {message}", path.display())]
    Cache { path: PathBuf, message: String },

    /// The budget ledger's LMDB could not be opened or written, or holds a value that does
    /// not decode (`BudgetLedgerError`, an `OSError`).
    #[error("budget ledger at {}: {message}", path.display())]
    Budget { path: PathBuf, message: String },

    /// The spend ledger's SQLite file could not be opened by the row appender
    /// (`LedgerError`, an `OSError`).
    #[error("ledger at {}: {message}", path.display())]
    Ledger { path: PathBuf, message: String },

    /// A plain bad argument, e.g. a non-positive TTL (`ValueError`).
    #[error("{0}")]
    InvalidArgument(String),

    /// Token counting failed, e.g. an unknown encoding name (`TokenizerError`).
    #[error("{0}")]
    Tokenizer(String),

    /// The embedding model could not be loaded or run (`EmbeddingError`).
    #[error("{0}")]
    Embedding(String),
}

impl CoreError {
    pub(crate) fn cache(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        CoreError::Cache {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn ledger(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        CoreError::Ledger {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn budget(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        CoreError::Budget {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Result alias used throughout the core.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
