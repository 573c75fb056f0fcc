//! A BERT encoder (the architecture of all-MiniLM-L6-v2) for one unpadded text: weights read
//! from a safetensors file into packed layouts once, then a forward pass with no allocation
//! beyond a few activation buffers sized by the text.

use std::path::Path;

use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use super::kernels::{add_layer_norm, gelu, Packed};

/// The fields of a Hugging Face `config.json` the forward pass depends on.
#[derive(Debug, Deserialize)]
pub struct Config {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

fn default_type_vocab_size() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".to_owned()
}
fn default_position_type() -> String {
    "absolute".to_owned()
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    /// Query, key and value in one product (`3 × hidden` outputs, in that order).
    qkv: Packed,
    attn_out: Packed,
    attn_norm: Norm,
    up: Packed,
    down: Packed,
    out_norm: Norm,
}

pub struct Bert {
    hidden: usize,
    heads: usize,
    eps: f32,
    max_positions: usize,
    vocab: usize,
    word: Vec<f32>,
    position: Vec<f32>,
    /// Token type 0 (one text, no segment B).
    token_type: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
}

struct Weights<'a> {
    tensors: SafeTensors<'a>,
    /// "" or "bert." — checkpoints saved from `BertForX` carry the prefix.
    prefix: &'static str,
}

impl Weights<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let full = format!("{}{name}", self.prefix);
        let view = self
            .tensors
            .tensor(&full)
            .map_err(|_| format!("tensor {full} is missing"))?;
        if view.dtype() != Dtype::F32 {
            return Err(format!("tensor {full} is {:?}, expected F32", view.dtype()));
        }
        if view.shape() != shape {
            return Err(format!(
                "tensor {full} has shape {:?}, expected {shape:?}",
                view.shape()
            ));
        }
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn norm(&self, name: &str, d: usize) -> Result<Norm, String> {
        Ok(Norm {
            gamma: self.get(&format!("{name}.weight"), &[d])?,
            beta: self.get(&format!("{name}.bias"), &[d])?,
        })
    }

    fn linear(&self, name: &str, out: usize, inp: usize) -> Result<Packed, String> {
        let w = self.get(&format!("{name}.weight"), &[out, inp])?;
        let b = self.get(&format!("{name}.bias"), &[out])?;
        Ok(Packed::new(&w, &b, out, inp))
    }
}

impl Bert {
    /// Reads `model.safetensors` in `dir` for `config`; the error says which tensor is wrong.
    pub fn load(dir: &Path, config: &Config) -> Result<Bert, String> {
        if config.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act {:?} is not supported (only \"gelu\")",
                config.hidden_act
            ));
        }
        if config.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type {:?} is not supported (only \"absolute\")",
                config.position_embedding_type
            ));
        }
        let (d, ff) = (config.hidden_size, config.intermediate_size);
        if config.num_attention_heads == 0 || d % config.num_attention_heads != 0 {
            return Err(format!(
                "hidden_size {d} is not a multiple of num_attention_heads"
            ));
        }
        let bytes = std::fs::read(dir.join("model.safetensors"))
            .map_err(|e| format!("cannot read model.safetensors: {e}"))?;
        let tensors = SafeTensors::deserialize(&bytes)
            .map_err(|e| format!("model.safetensors does not parse: {e}"))?;
        let prefix = if tensors
            .tensor("bert.embeddings.word_embeddings.weight")
            .is_ok()
        {
            "bert."
        } else {
            ""
        };
        let w = Weights { tensors, prefix };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let at = |part: &str| format!("encoder.layer.{i}.{part}");
            let mut qkv_w = Vec::with_capacity(3 * d * d);
            let mut qkv_b = Vec::with_capacity(3 * d);
            for part in ["query", "key", "value"] {
                qkv_w.extend(w.get(&at(&format!("attention.self.{part}.weight")), &[d, d])?);
                qkv_b.extend(w.get(&at(&format!("attention.self.{part}.bias")), &[d])?);
            }
            layers.push(Layer {
                qkv: Packed::new(&qkv_w, &qkv_b, 3 * d, d),
                attn_out: w.linear(&at("attention.output.dense"), d, d)?,
                attn_norm: w.norm(&at("attention.output.LayerNorm"), d)?,
                up: w.linear(&at("intermediate.dense"), ff, d)?,
                down: w.linear(&at("output.dense"), d, ff)?,
                out_norm: w.norm(&at("output.LayerNorm"), d)?,
            });
        }
        if config.type_vocab_size == 0 {
            return Err("type_vocab_size is 0: the model has no token type 0".to_owned());
        }
        let token_type = w.get(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, d],
        )?;
        Ok(Bert {
            hidden: d,
            heads: config.num_attention_heads,
            eps: config.layer_norm_eps as f32,
            max_positions: config.max_position_embeddings,
            vocab: config.vocab_size,
            word: w.get("embeddings.word_embeddings.weight", &[config.vocab_size, d])?,
            position: w.get(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, d],
            )?,
            token_type: token_type[..d].to_vec(),
            embed_norm: w.norm("embeddings.LayerNorm", d)?,
            layers,
        })
    }

    pub fn hidden(&self) -> usize {
        self.hidden
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// The mean over tokens of the last hidden states of `ids` (one text, all attended).
    pub fn mean_pooled(&self, ids: &[u32]) -> Result<Vec<f32>, String> {
        let (n, d) = (ids.len(), self.hidden);
        if n == 0 || n > self.max_positions {
            return Err(format!("{n} tokens: expected 1 to {}", self.max_positions));
        }
        let mut h = vec![0.0f32; n * d];
        for (i, (&id, row)) in ids.iter().zip(h.chunks_exact_mut(d)).enumerate() {
            let id = id as usize;
            if id >= self.vocab {
                return Err(format!(
                    "token id {id} is outside the vocabulary ({})",
                    self.vocab
                ));
            }
            let word = &self.word[id * d..(id + 1) * d];
            let pos = &self.position[i * d..(i + 1) * d];
            for (j, v) in row.iter_mut().enumerate() {
                *v = word[j] + pos[j] + self.token_type[j];
            }
        }
        add_layer_norm(
            &mut h,
            None,
            &self.embed_norm.gamma,
            &self.embed_norm.beta,
            self.eps,
        );
        let ff = self.layers.first().map_or(0, |l| l.up.out());
        let mut qkv = vec![0.0f32; n * 3 * d];
        let mut ctx = vec![0.0f32; n * d];
        let mut attended = vec![0.0f32; n * d];
        let mut inner = vec![0.0f32; n * ff];
        for layer in &self.layers {
            layer.qkv.forward(&h, n, &mut qkv);
            self.attention(&qkv, n, &mut ctx);
            layer.attn_out.forward(&ctx, n, &mut attended);
            let norm = &layer.attn_norm;
            add_layer_norm(&mut attended, Some(&h), &norm.gamma, &norm.beta, self.eps);
            layer.up.forward(&attended, n, &mut inner);
            gelu(&mut inner);
            layer.down.forward(&inner, n, &mut h);
            let norm = &layer.out_norm;
            add_layer_norm(&mut h, Some(&attended), &norm.gamma, &norm.beta, self.eps);
        }
        let mut pooled = vec![0.0f32; d];
        for row in h.chunks_exact(d) {
            for (p, v) in pooled.iter_mut().zip(row) {
                *p += v;
            }
        }
        for p in &mut pooled {
            *p /= n as f32;
        }
        Ok(pooled)
    }

    /// Scaled dot-product self-attention of every head, each head in its own task.
    fn attention(&self, qkv: &[f32], n: usize, ctx: &mut [f32]) {
        let d = self.hidden;
        let dh = d / self.heads;
        let scale = 1.0 / (dh as f32).sqrt();
        let mut per_head = vec![0.0f32; self.heads * n * dh];
        let head = |(h, out): (usize, &mut [f32])| {
            let mut scores = vec![0.0f32; n];
            for i in 0..n {
                let q = &qkv[i * 3 * d + h * dh..i * 3 * d + (h + 1) * dh];
                let mut max = f32::NEG_INFINITY;
                for (j, s) in scores.iter_mut().enumerate() {
                    let k = &qkv[j * 3 * d + d + h * dh..j * 3 * d + d + (h + 1) * dh];
                    *s = dot(q, k) * scale;
                    max = max.max(*s);
                }
                let mut sum = 0.0f32;
                for s in scores.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let o = &mut out[i * dh..(i + 1) * dh];
                o.fill(0.0);
                for (j, s) in scores.iter().enumerate() {
                    let v = &qkv[j * 3 * d + 2 * d + h * dh..j * 3 * d + 2 * d + (h + 1) * dh];
                    let p = s / sum;
                    for (a, b) in o.iter_mut().zip(v) {
                        *a += p * b;
                    }
                }
            }
        };
        if n * n * d < 1 << 16 {
            per_head.chunks_exact_mut(n * dh).enumerate().for_each(head);
        } else {
            per_head
                .par_chunks_exact_mut(n * dh)
                .enumerate()
                .for_each(head);
        }
        for (h, block) in per_head.chunks_exact(n * dh).enumerate() {
            for (i, row) in block.chunks_exact(dh).enumerate() {
                ctx[i * d + h * dh..i * d + (h + 1) * dh].copy_from_slice(row);
            }
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums so the loop vectorizes (a strict left fold cannot be reordered).
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}
