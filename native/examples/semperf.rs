//! Latency of the semantic cache's two steps, printed as p50 / p99 (run with `--release`):
//! `cargo run --release -p skinflint-native --example semperf -- [MODEL_DIR]`.
//! Vector search at 10k and 100k rows in one namespace (top-4, random unit vectors), then, if
//! a model directory is given, the embedding of short texts (warm, ~200 calls).

use std::time::Instant;

use _native::{Embedder, VectorIndex};

fn unit(seed: u64, dim: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<f32> = (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.into_iter().map(|a| a / n).collect()
}

fn report(label: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "{label}: p50 {:.2} ms, p99 {:.2} ms (n={})",
        at(0.5),
        at(0.99),
        ms.len()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dim = 384;
    for rows in [10_000u64, 100_000] {
        let dir = tempfile::tempdir()?;
        let index = VectorIndex::open(dir.path(), dim, 200_000, false)?;
        for i in 0..rows {
            index.add(b"ns", &i.to_le_bytes(), &unit(i + 1, dim), 3600.0)?;
        }
        let mut ms = Vec::new();
        let mut found = 0;
        for q in 0..200u64 {
            // Half the queries are stored rows (a near-duplicate hit), half are new vectors.
            let query = unit(
                if q % 2 == 0 {
                    q * 37 % rows + 1
                } else {
                    rows + q + 1
                },
                dim,
            );
            let t = Instant::now();
            let hits = index.search(b"ns", &query, 4, 0.0)?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            found += usize::from(hits.first().is_some_and(|h| h.score > 0.999));
        }
        report(
            &format!("search top-4, {rows} rows ({found}/200 exact hits)"),
            ms,
        );
    }
    if let Some(model) = std::env::args().nth(1) {
        let embedder = Embedder::load(std::path::Path::new(&model))?;
        let texts = [
            "How do I reset my password?",
            "my card was declined at the store",
            "What is the exchange rate for euros?",
            "hi",
            "Why has my transfer not arrived yet? It has been three days.",
        ];
        for t in texts {
            embedder.embed(t)?;
        }
        let mut ms = Vec::new();
        for i in 0..200 {
            let t = Instant::now();
            embedder.embed(texts[i % texts.len()])?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        report("embed short text (warm)", ms);
        // By length: the cost grows with the token count (each token is a row of every
        // product), so a short query is the cheap case and a 256-token text the dear one.
        for words in [1usize, 8, 16, 32, 64, 250] {
            let text = vec!["word"; words].join(" ");
            let tokens = embedder.token_count(&text)?;
            embedder.embed(&text)?;
            let ms = (0..50)
                .map(|_| {
                    let t = Instant::now();
                    embedder
                        .embed(&text)
                        .map(|_| t.elapsed().as_secs_f64() * 1e3)
                })
                .collect::<Result<Vec<_>, _>>()?;
            report(&format!("embed {tokens} tokens"), ms);
        }
    }
    Ok(())
}
