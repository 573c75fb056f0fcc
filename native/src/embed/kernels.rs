//! The numeric kernels of the BERT forward pass, written for one short text at a time.
//!
//! A general GEMM (candle's `gemm`, BLAS) repacks the weight matrix on every call; for a
//! 14-token query that repacking costs more than the arithmetic (about 7 ms a text here). So
//! the weights are packed once at load ([`Packed`]): 16 output columns per panel, the input
//! dimension outermost inside a panel, which is the order the micro-kernel reads them in.
//! The kernel then keeps up to 6 token rows × 16 columns of accumulators in registers and
//! streams each panel once per block of rows. AVX2+FMA+F16C is used when the CPU has it
//! (checked at run time); elsewhere the same loops run as portable code.
//!
//! The packed weights are IEEE half precision (the arithmetic stays `f32`): a short query is
//! bound by streaming the 42 MB of `f32` weights from memory, and halving that traffic is
//! worth more than the last bits of the weights. The embedding moves by at most ~1e-4 per
//! component, a cosine to the `f32` result above 0.999999 (tests/test_semantic_native.py).

use half::f16;
use rayon::prelude::*;

/// Output columns per packed panel (two AVX registers).
pub const PANEL: usize = 16;
/// Token rows per micro-kernel call (12 accumulator registers of the 16 AVX2 has).
const ROWS: usize = 6;

/// A linear layer `y = x Wᵀ + b` with `W` (`out × inp`, PyTorch's layout) packed in panels.
pub struct Packed {
    inp: usize,
    out: usize,
    /// `panels × inp × PANEL` half-precision bit patterns; columns past `out` in the last
    /// panel are zero.
    data: Vec<u16>,
    /// `panels × PANEL`, zero-padded like `data`.
    bias: Vec<f32>,
}

impl Packed {
    /// Packs the row-major `weight` (`out × inp`) and `bias` (`out`).
    pub fn new(weight: &[f32], bias: &[f32], out: usize, inp: usize) -> Packed {
        assert_eq!(weight.len(), out * inp, "weight is out × inp");
        assert_eq!(bias.len(), out, "one bias per output");
        let panels = out.div_ceil(PANEL);
        let mut data = vec![0u16; panels * inp * PANEL];
        for (o, row) in weight.chunks_exact(inp).enumerate() {
            let (p, j) = (o / PANEL, o % PANEL);
            let panel = &mut data[p * inp * PANEL..(p + 1) * inp * PANEL];
            for (k, &w) in row.iter().enumerate() {
                panel[k * PANEL + j] = f16::from_f32(w).to_bits();
            }
        }
        let mut padded_bias = vec![0.0f32; panels * PANEL];
        padded_bias[..out].copy_from_slice(bias);
        Packed {
            inp,
            out,
            data,
            bias: padded_bias,
        }
    }

    pub fn out(&self) -> usize {
        self.out
    }

    /// `y[n × out] = x[n × inp] Wᵀ + b`, the panels shared out over the current rayon pool.
    pub fn forward(&self, x: &[f32], n: usize, y: &mut [f32]) {
        assert_eq!(x.len(), n * self.inp, "x is n × inp");
        assert_eq!(y.len(), n * self.out, "y is n × out");
        let panels = self.out.div_ceil(PANEL);
        let out = SharedOut(y.as_mut_ptr());
        let task = |p: usize| {
            // SAFETY: panel p writes only columns p*PANEL .. min(out, (p+1)*PANEL) of each row
            // of y, which no other panel touches, and y outlives the parallel loop.
            unsafe { self.panel(x, n, p, out.get()) }
        };
        // Below a few hundred thousand multiply-adds a hand-off to another thread costs more
        // than it saves.
        if n * self.inp * self.out < 1 << 18 {
            (0..panels).for_each(task);
        } else {
            (0..panels).into_par_iter().for_each(task);
        }
    }

    /// Panel `p` of the product for all `n` rows, written into `y` (row stride `self.out`).
    unsafe fn panel(&self, x: &[f32], n: usize, p: usize, y: *mut f32) {
        let w = &self.data[p * self.inp * PANEL..(p + 1) * self.inp * PANEL];
        let b = &self.bias[p * PANEL..(p + 1) * PANEL];
        let col = p * PANEL;
        let width = PANEL.min(self.out - col);
        let mut start = 0;
        // Even row blocks: 14 rows run as 5 + 5 + 4, not 6 + 6 + 2 (a 2-row block leaves the
        // FMA units idle on their latency).
        let blocks = n.div_ceil(ROWS);
        for block in 0..blocks {
            let rows = (n - start) / (blocks - block);
            let mut tile = [[0.0f32; PANEL]; ROWS];
            micro_kernel(
                &x[start * self.inp..(start + rows) * self.inp],
                rows,
                self.inp,
                w,
                b,
                &mut tile,
            );
            for (r, values) in tile.iter().take(rows).enumerate() {
                let dst = y.add((start + r) * self.out + col);
                std::ptr::copy_nonoverlapping(values.as_ptr(), dst, width);
            }
            start += rows;
        }
    }
}

/// `tile[r][j] = Σ_k x[r][k] · w[k][j] + b[j]` for `rows ≤ ROWS` rows of one panel.
fn micro_kernel(
    x: &[f32],
    rows: usize,
    k: usize,
    w: &[u16],
    b: &[f32],
    tile: &mut [[f32; PANEL]; ROWS],
) {
    debug_assert!((1..=ROWS).contains(&rows) && x.len() == rows * k && w.len() == k * PANEL);
    #[cfg(target_arch = "x86_64")]
    if avx2_fma_f16c() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked above); the slices are the sizes asserted.
        unsafe {
            match rows {
                1 => avx2::kernel::<1>(x, k, w, b, tile),
                2 => avx2::kernel::<2>(x, k, w, b, tile),
                3 => avx2::kernel::<3>(x, k, w, b, tile),
                4 => avx2::kernel::<4>(x, k, w, b, tile),
                5 => avx2::kernel::<5>(x, k, w, b, tile),
                _ => avx2::kernel::<6>(x, k, w, b, tile),
            }
        }
        return;
    }
    for (r, out) in tile.iter_mut().take(rows).enumerate() {
        let xr = &x[r * k..(r + 1) * k];
        let mut acc = [0.0f32; PANEL];
        for (xv, wk) in xr.iter().zip(w.chunks_exact(PANEL)) {
            for j in 0..PANEL {
                acc[j] = xv.mul_add(f16::from_bits(wk[j]).to_f32(), acc[j]);
            }
        }
        for j in 0..PANEL {
            out[j] = acc[j] + b[j];
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_fma_f16c() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{PANEL, ROWS};
    use std::arch::x86_64::*;

    /// The register-tiled kernel: `R` rows × 16 columns of accumulators, one pass over `k`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn kernel<const R: usize>(
        x: &[f32],
        k: usize,
        w: &[u16],
        b: &[f32],
        tile: &mut [[f32; PANEL]; ROWS],
    ) {
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        for kk in 0..k {
            let w0 = _mm256_cvtph_ps(_mm_loadu_si128(wp.add(kk * PANEL).cast()));
            let w1 = _mm256_cvtph_ps(_mm_loadu_si128(wp.add(kk * PANEL + 8).cast()));
            for r in 0..R {
                let xv = _mm256_broadcast_ss(&*xp.add(r * k + kk));
                lo[r] = _mm256_fmadd_ps(xv, w0, lo[r]);
                hi[r] = _mm256_fmadd_ps(xv, w1, hi[r]);
            }
        }
        let b0 = _mm256_loadu_ps(b.as_ptr());
        let b1 = _mm256_loadu_ps(b.as_ptr().add(8));
        for r in 0..R {
            _mm256_storeu_ps(tile[r].as_mut_ptr(), _mm256_add_ps(lo[r], b0));
            _mm256_storeu_ps(tile[r].as_mut_ptr().add(8), _mm256_add_ps(hi[r], b1));
        }
    }
}

/// A raw output pointer the parallel panels share; each writes a disjoint set of columns.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: the pointer is only written through at disjoint offsets (see `Packed::forward`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}
impl SharedOut {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// In place: each row of `x` (width `gamma.len()`) plus the same row of `residual`, then
/// normalized to zero mean and unit variance and scaled (BERT's post-residual LayerNorm).
pub fn add_layer_norm(
    x: &mut [f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let d = gamma.len();
    for (i, row) in x.chunks_exact_mut(d).enumerate() {
        if let Some(res) = residual {
            for (v, r) in row.iter_mut().zip(&res[i * d..(i + 1) * d]) {
                *v += r;
            }
        }
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

/// The exact (erf) GELU BERT uses, in place.
pub fn gelu(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// erf to about 1e-7 absolute: a rational minimax fit on [-4, 4] (Eigen's
/// `generic_fast_erf_float`); branch-free so the GELU loop vectorizes.
pub fn erf(x: f32) -> f32 {
    const ALPHA: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_600_1e-3,
        -1.609_603_3e-2,
    ];
    const BETA: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329_2e-3,
        -1.426_474e-2,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = ALPHA.iter().fold(0.0, |acc, &c| acc * x2 + c) * x;
    let q = BETA.iter().fold(0.0, |acc, &c| acc * x2 + c);
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product in f64 over the weights as stored (rounded to half precision).
    fn naive(x: &[f32], w: &[f32], b: &[f32], n: usize, out: usize, inp: usize) -> Vec<f32> {
        let half = |v: f32| f64::from(f16::from_f32(v).to_f32());
        let mut y = vec![0.0f32; n * out];
        for i in 0..n {
            for o in 0..out {
                let dot: f64 = (0..inp)
                    .map(|k| x[i * inp + k] as f64 * half(w[o * inp + k]))
                    .sum();
                y[i * out + o] = dot as f32 + b[o];
            }
        }
        y
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn packed_linear_matches_the_naive_product_for_every_shape() {
        // Row counts across the block boundaries, widths that are and are not panel multiples,
        // and one product big enough to go parallel.
        for &(n, out, inp) in &[
            (1, 16, 8),
            (5, 20, 7),
            (7, 33, 64),
            (13, 48, 384),
            (14, 384, 1536),
        ] {
            let (x, w, b) = (values(n * inp, 1), values(out * inp, 2), values(out, 3));
            let packed = Packed::new(&w, &b, out, inp);
            let mut y = vec![f32::NAN; n * out];
            packed.forward(&x, n, &mut y);
            let want = naive(&x, &w, &b, n, out, inp);
            for (got, want) in y.iter().zip(&want) {
                assert!(
                    (got - want).abs() < 1e-4,
                    "n={n} out={out} inp={inp}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn erf_is_within_2e_7_of_the_reference() {
        // Reference values of erf (Abramowitz & Stegun table 7.1, 10 digits).
        for &(x, want) in &[
            (0.0f32, 0.0f64),
            (0.1, 0.112_462_916_0),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (1.5, 0.966_105_146_5),
            (2.0, 0.995_322_265_0),
            (3.0, 0.999_977_909_5),
            (6.0, 1.0),
        ] {
            assert!((erf(x) as f64 - want).abs() < 2e-7, "erf({x}) = {}", erf(x));
            assert!((erf(-x) as f64 + want).abs() < 2e-7, "erf(-{x})");
        }
    }

    #[test]
    fn layer_norm_centres_and_scales_each_row() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 10.0];
        add_layer_norm(&mut x, None, &[1.0; 4], &[0.5; 4], 1e-12);
        let row: Vec<f32> = x[..4].to_vec();
        assert!((row.iter().sum::<f32>() / 4.0 - 0.5).abs() < 1e-6);
        assert!((row[3] - row[0] - 2.0 * 3.0 / 5f32.sqrt()).abs() < 1e-5);
        assert_eq!(&x[4..], &[0.5; 4]);
    }
}
