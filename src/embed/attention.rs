//! Fused self-attention for one unpadded sequence on the CPU: a candle custom op.
//!
//! Owns: `softmax(Q·Kᵀ)·V` per head straight from the fused `[L, 3H]` QKV projection
//! (Q already scaled by 1/√d), writing the `[L, H]` context. Must not: mask or pad;
//! storydex embeds each window on its own, so every position attends to every other.
//!
//! Why: done with separate candle ops, a 512-token window spends more time in
//! transposing copies, zero-filled 12×512×512 score tensors and scalar `expf` than in
//! the matmuls. Here each head is one pass over L rows with a vectorisable `exp`, and
//! heads run in parallel on rayon's pool.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

pub(crate) struct FusedAttention {
    pub(crate) heads: usize,
}

impl CustomOp1 for FusedAttention {
    fn name(&self) -> &'static str {
        "storydex-fused-attention"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (len, three_h) = layout.shape().dims2()?;
        let h = three_h / 3;
        if three_h % 3 != 0 || h % self.heads != 0 {
            candle_core::bail!(
                "fused attention: bad QKV width {three_h} for {} heads",
                self.heads
            );
        }
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("fused attention needs a contiguous input");
        };
        let qkv = &storage.as_slice::<f32>()?[start..end];
        Ok((
            CpuStorage::F32(attention(qkv, len, h, self.heads)),
            Shape::from((len, h)),
        ))
    }
}

/// Context `[len, h]` from the fused projection `[len, 3h]`.
pub(crate) fn attention(qkv: &[f32], len: usize, h: usize, heads: usize) -> Vec<f32> {
    let d = h / heads;
    // Short sequences (queries) are cheaper to run here than to hand to another core.
    let min_heads = if len < 64 { heads } else { 1 };
    let per_head: Vec<Vec<f32>> = (0..heads)
        .into_par_iter()
        .with_min_len(min_heads)
        .map(|head| {
            #[cfg(target_arch = "x86_64")]
            if super::linear::avx512_available() {
                // SAFETY: the CPU supports the features the function is compiled for.
                return unsafe { head_avx512(qkv, len, h, d, head) };
            }
            head_generic(qkv, len, h, d, head)
        })
        .collect();
    let mut out = vec![0.0f32; len * h];
    for (head, ctx) in per_head.iter().enumerate() {
        for i in 0..len {
            out[i * h + head * d..i * h + head * d + d].copy_from_slice(&ctx[i * d..i * d + d]);
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn head_avx512(qkv: &[f32], len: usize, h: usize, d: usize, head: usize) -> Vec<f32> {
    head_generic(qkv, len, h, d, head)
}

#[inline(always)]
fn head_generic(qkv: &[f32], len: usize, h: usize, d: usize, head: usize) -> Vec<f32> {
    match d {
        32 => head_fixed::<32>(qkv, len, h, head),
        64 => head_fixed::<64>(qkv, len, h, head),
        _ => head_any(qkv, len, h, d, head),
    }
}

/// Scores are computed for 4×16 keys at a time and the context row keeps 4 partial
/// `[f32; D]` sums: independent accumulators, so the FMAs pipeline instead of waiting
/// on each other, and no store per step in either inner loop.
#[inline(always)]
fn head_fixed<const D: usize>(qkv: &[f32], len: usize, h: usize, head: usize) -> Vec<f32> {
    const LANES: usize = 16;
    // 8 independent score accumulators keep both FMA units busy (4-cycle latency).
    const GROUP: usize = 8;
    // 4 partial context rows of D lanes each for the P·V pass.
    const PARTS: usize = 4;
    let stride = 3 * h;
    let blocks = len.div_ceil(LANES * GROUP) * GROUP;
    // Kᵀ in blocks of 16 keys: kt[b][dd][lane]; padding keys are zero and their scores
    // are never read.
    let mut kt = vec![0.0f32; blocks * D * LANES];
    let mut v = vec![[0.0f32; D]; len];
    for j in 0..len {
        let row = &qkv[j * stride..(j + 1) * stride];
        let (b, lane) = (j / LANES, j % LANES);
        for dd in 0..D {
            kt[(b * D + dd) * LANES + lane] = row[h + head * D + dd];
        }
        v[j].copy_from_slice(&row[2 * h + head * D..2 * h + head * D + D]);
    }
    let mut ctx = vec![0.0f32; len * D];
    let mut scores = vec![0.0f32; blocks * LANES];
    for i in 0..len {
        let q = &qkv[i * stride + head * D..i * stride + head * D + D];
        for b in (0..blocks).step_by(GROUP) {
            let mut acc = [[0.0f32; LANES]; GROUP];
            for (dd, &qd) in q.iter().enumerate() {
                for (g, acc) in acc.iter_mut().enumerate() {
                    let k = &kt[((b + g) * D + dd) * LANES..((b + g) * D + dd + 1) * LANES];
                    for l in 0..LANES {
                        acc[l] = qd.mul_add(k[l], acc[l]);
                    }
                }
            }
            for (g, acc) in acc.iter().enumerate() {
                scores[(b + g) * LANES..(b + g + 1) * LANES].copy_from_slice(acc);
            }
        }
        let scores = &mut scores[..len];
        let sum = softmax_numerators(scores);
        let mut partial = [[0.0f32; D]; PARTS];
        let mut ps = scores.chunks_exact(PARTS);
        let mut vs = v.chunks_exact(PARTS);
        for (p, vr) in (&mut ps).zip(&mut vs) {
            for g in 0..PARTS {
                for dd in 0..D {
                    partial[g][dd] = p[g].mul_add(vr[g][dd], partial[g][dd]);
                }
            }
        }
        for (p, vr) in ps.remainder().iter().zip(vs.remainder()) {
            for dd in 0..D {
                partial[0][dd] = p.mul_add(vr[dd], partial[0][dd]);
            }
        }
        let inv = 1.0 / sum;
        for (dd, c) in ctx[i * D..(i + 1) * D].iter_mut().enumerate() {
            *c = (partial[0][dd] + partial[1][dd] + partial[2][dd] + partial[3][dd]) * inv;
        }
    }
    ctx
}

/// Any head size (not used by e5 models, kept so other BERTs still load).
fn head_any(qkv: &[f32], len: usize, h: usize, d: usize, head: usize) -> Vec<f32> {
    let stride = 3 * h;
    let mut ctx = vec![0.0f32; len * d];
    let mut scores = vec![0.0f32; len];
    for i in 0..len {
        let q = &qkv[i * stride + head * d..i * stride + head * d + d];
        for (j, s) in scores.iter_mut().enumerate() {
            let k = &qkv[j * stride + h + head * d..j * stride + h + head * d + d];
            *s = q.iter().zip(k).map(|(a, b)| a * b).sum();
        }
        let sum = softmax_numerators(&mut scores);
        let out = &mut ctx[i * d..(i + 1) * d];
        for (j, &p) in scores.iter().enumerate() {
            let v = &qkv[j * stride + 2 * h + head * d..j * stride + 2 * h + head * d + d];
            for (o, &x) in out.iter_mut().zip(v) {
                *o = p.mul_add(x, *o);
            }
        }
        out.iter_mut().for_each(|o| *o /= sum);
    }
    ctx
}

/// Replaces `scores` by `exp(s - max)` and returns their sum.
///
/// Float reductions do not auto-vectorise (they would reorder additions), so max and
/// sum keep 16 partial lanes explicitly; the `exp` pass has no reduction at all.
#[inline(always)]
fn softmax_numerators(scores: &mut [f32]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = scores.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            lanes[l] = lanes[l].max(c[l]);
        }
    }
    let max = chunks.remainder().iter().fold(
        lanes.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)),
        |m, &x| m.max(x),
    );
    for s in scores.iter_mut() {
        *s = exp(*s - max);
    }
    let mut lanes = [0.0f32; LANES];
    let mut chunks = scores.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            lanes[l] += c[l];
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// eˣ for x ≤ 0 (softmax inputs after subtracting the max), branch-free so it
/// vectorises: 2^(x·log₂e) split into an integer power and a degree-6 polynomial on
/// [-0.5, 0.5]. Relative error below 1e-6 on [-10, 0] and 1e-5 down to -87; below
/// that it saturates at e⁻⁸⁷ ≈ 1.6e-38, which no softmax sum notices.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let t = x.max(-87.0) * std::f32::consts::LOG2_E;
    // Adding 1.5·2²³ rounds t to an integer held in the low mantissa bits: no float to
    // int conversion (whose saturating semantics would not vectorise).
    const MAGIC: f32 = 12_582_912.0;
    let shifted = t + MAGIC;
    let n = shifted - MAGIC;
    let f = t - n;
    // 2^f on [-0.5, 0.5] (Taylor coefficients of e^(f·ln2)).
    let mut p = 1.540_353e-4_f32;
    p = p.mul_add(f, 1.333_355_8e-3);
    p = p.mul_add(f, 9.618_129e-3);
    p = p.mul_add(f, 5.550_411e-2);
    p = p.mul_add(f, 2.402_265e-1);
    p = p.mul_add(f, 6.931_472e-1);
    p = p.mul_add(f, 1.0);
    // t >= -125.6, so n + 127 >= 1: a normal power of two.
    let exponent = shifted
        .to_bits()
        .wrapping_sub(MAGIC.to_bits())
        .wrapping_add(127);
    f32::from_bits(exponent << 23) * p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_the_softmax_range() {
        for i in 0..=8700 {
            let x = -(i as f32) / 100.0;
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            // The product x·log2(e) loses ~6e-8·|x| in the exponent: fine for softmax,
            // where terms this small barely count.
            let tolerance = if x > -10.0 { 1e-6 } else { 1e-5 };
            assert!(
                (got - want).abs() <= want * tolerance + 1e-38,
                "exp({x}) = {got} vs {want}"
            );
        }
        assert_eq!(exp(-1000.0), exp(-87.0));
    }

    #[test]
    fn fused_attention_equals_the_textbook_formula() {
        for (len, heads, d) in [(7, 3, 4), (19, 2, 32)] {
            let h = heads * d;
            let qkv: Vec<f32> = (0..len * 3 * h)
                .map(|i| ((i * 37) % 23) as f32 / 23.0 - 0.5)
                .collect();
            let got = attention(&qkv, len, h, heads);
            for head in 0..heads {
                for i in 0..len {
                    let q = |dd: usize| qkv[i * 3 * h + head * d + dd];
                    let k = |j: usize, dd: usize| qkv[j * 3 * h + h + head * d + dd];
                    let v = |j: usize, dd: usize| qkv[j * 3 * h + 2 * h + head * d + dd];
                    let s: Vec<f64> = (0..len)
                        .map(|j| (0..d).map(|dd| (q(dd) * k(j, dd)) as f64).sum())
                        .collect();
                    let m = s.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for dd in 0..d {
                        let want: f64 = (0..len).map(|j| e[j] / z * v(j, dd) as f64).sum();
                        let g = got[i * h + head * d + dd] as f64;
                        assert!(
                            (g - want).abs() < 1e-5,
                            "head {head} row {i} dim {dd}: {g} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
