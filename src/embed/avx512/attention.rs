//! Fused self-attention for one unpadded sequence on the CPU (the AVX-512 path).
//!
//! Owns: `softmax(Q·Kᵀ)·V` per head straight from the fused `[L, 3H]` QKV projection
//! (Q already scaled by 1/√d), writing the `[L, H]` context. Must not: mask or pad;
//! storydex embeds each window on its own, so every position attends to every other.
//!
//! Why: done with separate candle ops, a 512-token window spends more time in
//! transposing copies, zero-filled 12×512×512 score tensors and scalar `expf` than in
//! the matmuls. Here each head is one pass over L rows with a vectorisable `exp`, and
//! heads run in parallel on rayon's pool.

use rayon::prelude::*;

/// Sequences at least this long run attention in bf16 when asked to (passages; queries
/// stay f32).
pub(crate) const BF16_MIN_LEN: usize = 25;

/// Context `[len, h]` from the fused projection `[len, 3h]`; `bf16`: both matmuls of
/// sequences of at least [`BF16_MIN_LEN`] on bf16 pairs (AVX512-BF16), softmax in f32.
pub(crate) fn attention(qkv: &[f32], len: usize, h: usize, heads: usize, bf16: bool) -> Vec<f32> {
    let d = h / heads;
    let bf16 = bf16 && len >= BF16_MIN_LEN && super::linear::bf16_available();
    assert_eq!(
        qkv.len(),
        len * 3 * h,
        "fused attention: bad QKV size; this is a bug"
    );
    let mut out = vec![0.0f32; len * h];
    #[cfg(target_arch = "x86_64")]
    if super::linear::avx512_available() && d.is_multiple_of(PANEL) {
        let out_ptr = SendPtr(out.as_mut_ptr());
        // Short sequences (queries) are cheaper to run here than to hand to another core.
        let min_heads = if len < 64 { heads } else { 1 };
        (0..heads)
            .into_par_iter()
            .with_min_len(min_heads)
            .for_each(|head| {
                let out_ptr = &out_ptr;
                // SAFETY: the CPU has AVX-512 (and AVX512-BF16 when bf16); each head
                // writes only its own d columns of every row of `out` (len×h), so no two
                // tasks alias; qkv is len×3h.
                unsafe {
                    if bf16 {
                        head_tiled_bf16(qkv.as_ptr(), len, h, d, head, out_ptr.0)
                    } else {
                        head_tiled(qkv.as_ptr(), len, h, d, head, out_ptr.0)
                    }
                }
            });
        return out;
    }
    let per_head: Vec<Vec<f32>> = (0..heads)
        .into_par_iter()
        .map(|head| head_any(qkv, len, h, d, head))
        .collect();
    for (head, ctx) in per_head.iter().enumerate() {
        for i in 0..len {
            out[i * h + head * d..i * h + head * d + d].copy_from_slice(&ctx[i * d..i * d + d]);
        }
    }
    out
}

struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint column ranges of one buffer to rayon tasks.
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

/// Keys per score panel and context columns per pass: two 512-bit registers of f32.
const PANEL: usize = 32;
/// Query rows per register tile: 8 rows × 2 registers = 16 accumulators.
const ROWS: usize = 8;

/// One head as two register-tiled matmuls per tile of 8 query rows: scores `Q·Kᵀ`
/// against keys packed in panels of 32 (each key value loaded once feeds 8 rows), the
/// softmax numerators in place, then `P·V` straight from the V rows of `qkv`.
///
/// # Safety
/// AVX-512F and FMA must be available; `qkv` is `len×3h`, `out` is `len×h` and this call
/// is the only writer of columns `head·d .. head·d + d`; `d` is a multiple of 32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn head_tiled(qkv: *const f32, len: usize, h: usize, d: usize, head: usize, out: *mut f32) {
    let stride = 3 * h;
    let panels = len.div_ceil(PANEL);
    let width = panels * PANEL;
    // kp[p][dd][lane] = K[p·32 + lane][dd]; padding keys are zero and their scores are
    // never read.
    let mut kp = vec![0.0f32; panels * d * PANEL];
    for j in 0..len {
        let k = qkv.add(j * stride + h + head * d);
        let (p, lane) = (j / PANEL, j % PANEL);
        for dd in 0..d {
            kp[(p * d + dd) * PANEL + lane] = *k.add(dd);
        }
    }
    let mut scores = vec![0.0f32; ROWS * width];
    let q = qkv.add(head * d);
    let v = qkv.add(2 * h + head * d);
    let o = out.add(head * d);
    let mut row = 0;
    while row < len {
        let rows = (len - row).min(ROWS);
        let args = (
            q.add(row * stride),
            stride,
            len,
            d,
            kp.as_ptr(),
            v,
            o.add(row * h),
            h,
        );
        let s = scores.as_mut_ptr();
        match rows {
            8.. => head_tile::<8>(args, s, width),
            7 => head_tile::<7>(args, s, width),
            6 => head_tile::<6>(args, s, width),
            5 => head_tile::<5>(args, s, width),
            4 => head_tile::<4>(args, s, width),
            3 => head_tile::<3>(args, s, width),
            2 => head_tile::<2>(args, s, width),
            _ => head_tile::<1>(args, s, width),
        }
        row += rows;
    }
}

/// Q rows, their stride, len, d, packed K, V rows (stride as Q), context rows, their stride.
type TileArgs = (
    *const f32,
    usize,
    usize,
    usize,
    *const f32,
    *const f32,
    *mut f32,
    usize,
);

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn head_tile<const R: usize>(args: TileArgs, scores: *mut f32, width: usize) {
    use std::arch::x86_64::*;
    let (q, stride, len, d, kp, v, out, ldo) = args;
    for p in 0..width / PANEL {
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        let panel = kp.add(p * d * PANEL);
        for dd in 0..d {
            let b0 = _mm512_loadu_ps(panel.add(dd * PANEL));
            let b1 = _mm512_loadu_ps(panel.add(dd * PANEL + 16));
            for r in 0..R {
                let a = _mm512_set1_ps(*q.add(r * stride + dd));
                lo[r] = _mm512_fmadd_ps(a, b0, lo[r]);
                hi[r] = _mm512_fmadd_ps(a, b1, hi[r]);
            }
        }
        for r in 0..R {
            _mm512_storeu_ps(scores.add(r * width + p * PANEL), lo[r]);
            _mm512_storeu_ps(scores.add(r * width + p * PANEL + 16), hi[r]);
        }
    }
    let mut inv = [0.0f32; R];
    for (r, inv) in inv.iter_mut().enumerate() {
        let s = std::slice::from_raw_parts_mut(scores.add(r * width), len);
        *inv = 1.0 / softmax_numerators(s);
    }
    for c in (0..d).step_by(PANEL) {
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        for j in 0..len {
            let vr = v.add(j * stride + c);
            let (b0, b1) = (_mm512_loadu_ps(vr), _mm512_loadu_ps(vr.add(16)));
            for r in 0..R {
                let a = _mm512_set1_ps(*scores.add(r * width + j));
                lo[r] = _mm512_fmadd_ps(a, b0, lo[r]);
                hi[r] = _mm512_fmadd_ps(a, b1, hi[r]);
            }
        }
        for r in 0..R {
            let scale = _mm512_set1_ps(inv[r]);
            _mm512_storeu_ps(out.add(r * ldo + c), _mm512_mul_ps(lo[r], scale));
            _mm512_storeu_ps(out.add(r * ldo + c + 16), _mm512_mul_ps(hi[r], scale));
        }
    }
}

/// [`head_tiled`] with both matmuls on bf16 pairs: `Q·Kᵀ` pairs along the head
/// dimension, `P·V` along the keys; scores, softmax and sums stay f32.
///
/// # Safety
/// As [`head_tiled`], and AVX512-BF16 must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
unsafe fn head_tiled_bf16(
    qkv: *const f32,
    len: usize,
    h: usize,
    d: usize,
    head: usize,
    out: *mut f32,
) {
    use std::arch::x86_64::*;
    let stride = 3 * h;
    let pairs = d / 2;
    let panels = len.div_ceil(PANEL);
    let width = panels * PANEL;
    let key_pairs = len.div_ceil(2);
    // 16 bf16 pairs (lo[i], hi[i]) from two runs of 16 f32.
    let pairs16 = |lo: *const f32, hi: *const f32| -> __m512i {
        let bf = |p: *const f32| {
            _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(
                _mm512_cvtneps_pbh(_mm512_loadu_ps(p)),
            ))
        };
        _mm512_or_si512(bf(lo), _mm512_slli_epi32::<16>(bf(hi)))
    };
    // Q rows as bf16: each u32 of a row is the pair (2i, 2i+1).
    let mut qb = vec![0u32; len * pairs];
    {
        let q16 = std::slice::from_raw_parts_mut(qb.as_mut_ptr() as *mut u16, len * d);
        for j in 0..len {
            let q = std::slice::from_raw_parts(qkv.add(j * stride + head * d), d);
            super::linear::to_bf16_inline(q, &mut q16[j * d..(j + 1) * d]);
        }
    }
    // Kᵀ in f32 panels of 32 keys first (kt[p][dd][lane]; padding keys zero), then
    // kb[p][i][lane] = the pair (2i, 2i+1) of key p·32 + lane.
    let mut kt = vec![0.0f32; panels * d * PANEL];
    for j in 0..len {
        let k = qkv.add(j * stride + h + head * d);
        let (p, lane) = (j / PANEL, j % PANEL);
        for dd in 0..d {
            kt[(p * d + dd) * PANEL + lane] = *k.add(dd);
        }
    }
    let mut kb = vec![0u32; panels * pairs * PANEL];
    for p in 0..panels {
        for i in 0..pairs {
            for half in [0, 16] {
                let lo = kt.as_ptr().add((p * d + 2 * i) * PANEL + half);
                _mm512_storeu_si512(
                    kb.as_mut_ptr().add((p * pairs + i) * PANEL + half) as *mut __m512i,
                    pairs16(lo, lo.add(PANEL)),
                );
            }
        }
    }
    // vb[c][jp][col] = (V[2jp][c·32 + col], V[2jp + 1][c·32 + col]); a missing last key
    // is zero.
    let zeros = vec![0.0f32; d];
    let mut vb = vec![0u32; d / PANEL * key_pairs * PANEL];
    for jp in 0..key_pairs {
        let v0 = qkv.add(2 * jp * stride + 2 * h + head * d);
        let v1 = if 2 * jp + 1 < len {
            v0.add(stride)
        } else {
            zeros.as_ptr()
        };
        for c in 0..d / PANEL {
            for half in [0, 16] {
                let col = c * PANEL + half;
                _mm512_storeu_si512(
                    vb.as_mut_ptr().add((c * key_pairs + jp) * PANEL + half) as *mut __m512i,
                    pairs16(v0.add(col), v1.add(col)),
                );
            }
        }
    }
    let mut scores = vec![0.0f32; ROWS * width];
    let mut probs = vec![0u32; ROWS * key_pairs];
    let o = out.add(head * d);
    let mut first = 0;
    while first < len {
        let rows = (len - first).min(ROWS);
        let args = Bf16Tile {
            q: qb.as_ptr().add(first * pairs),
            pairs,
            kb: kb.as_ptr(),
            panels,
            vb: vb.as_ptr(),
            key_pairs,
            len,
            d,
            scores: scores.as_mut_ptr(),
            probs: probs.as_mut_ptr(),
            out: o.add(first * h),
            ldo: h,
        };
        match rows {
            8.. => head_tile_bf16::<8>(&args),
            7 => head_tile_bf16::<7>(&args),
            6 => head_tile_bf16::<6>(&args),
            5 => head_tile_bf16::<5>(&args),
            4 => head_tile_bf16::<4>(&args),
            3 => head_tile_bf16::<3>(&args),
            2 => head_tile_bf16::<2>(&args),
            _ => head_tile_bf16::<1>(&args),
        }
        first += rows;
    }
}

/// Operands of one tile of [`head_tiled_bf16`].
struct Bf16Tile {
    /// The tile's Q rows, `pairs` u32 each.
    q: *const u32,
    pairs: usize,
    kb: *const u32,
    panels: usize,
    vb: *const u32,
    key_pairs: usize,
    len: usize,
    d: usize,
    /// `ROWS × panels·32` f32 scratch.
    scores: *mut f32,
    /// `ROWS × key_pairs` scratch.
    probs: *mut u32,
    out: *mut f32,
    ldo: usize,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
unsafe fn head_tile_bf16<const R: usize>(t: &Bf16Tile) {
    use std::arch::x86_64::*;
    let width = t.panels * PANEL;
    let bh = |v: __m512i| -> __m512bh { std::mem::transmute(v) };
    for p in 0..t.panels {
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        let panel = t.kb.add(p * t.pairs * PANEL);
        for i in 0..t.pairs {
            let b0 = bh(_mm512_loadu_si512(panel.add(i * PANEL) as *const __m512i));
            let b1 = bh(_mm512_loadu_si512(
                panel.add(i * PANEL + 16) as *const __m512i
            ));
            for r in 0..R {
                let a = bh(_mm512_set1_epi32(*t.q.add(r * t.pairs + i) as i32));
                lo[r] = _mm512_dpbf16_ps(lo[r], a, b0);
                hi[r] = _mm512_dpbf16_ps(hi[r], a, b1);
            }
        }
        for r in 0..R {
            _mm512_storeu_ps(t.scores.add(r * width + p * PANEL), lo[r]);
            _mm512_storeu_ps(t.scores.add(r * width + p * PANEL + 16), hi[r]);
        }
    }
    let mut inv = [0.0f32; R];
    for (r, inv) in inv.iter_mut().enumerate() {
        let s = std::slice::from_raw_parts_mut(t.scores.add(r * width), t.len);
        *inv = 1.0 / softmax_numerators(s);
        let p = std::slice::from_raw_parts_mut(
            t.probs.add(r * t.key_pairs) as *mut u16,
            2 * t.key_pairs,
        );
        super::linear::to_bf16_inline(s, p);
        // An odd last key pairs with a zero.
        p[t.len..].fill(0);
    }
    for c in 0..t.d / PANEL {
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        let v = t.vb.add(c * t.key_pairs * PANEL);
        for jp in 0..t.key_pairs {
            let b0 = bh(_mm512_loadu_si512(v.add(jp * PANEL) as *const __m512i));
            let b1 = bh(_mm512_loadu_si512(v.add(jp * PANEL + 16) as *const __m512i));
            for r in 0..R {
                let a = bh(_mm512_set1_epi32(*t.probs.add(r * t.key_pairs + jp) as i32));
                lo[r] = _mm512_dpbf16_ps(lo[r], a, b0);
                hi[r] = _mm512_dpbf16_ps(hi[r], a, b1);
            }
        }
        for r in 0..R {
            let scale = _mm512_set1_ps(inv[r]);
            let out = t.out.add(r * t.ldo + c * PANEL);
            _mm512_storeu_ps(out, _mm512_mul_ps(lo[r], scale));
            _mm512_storeu_ps(out.add(16), _mm512_mul_ps(hi[r], scale));
        }
    }
}

/// Any head size, and CPUs without AVX-512.
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
    fn bf16_attention_stays_within_bf16_rounding_of_the_textbook_formula() {
        if !super::super::linear::bf16_available() {
            eprintln!("no AVX512-BF16 on this CPU: attention runs in f32 here");
            return;
        }
        // Odd and even lengths around the 8-row tiles and 32-key panels; d 32 and 64.
        for (len, heads, d) in [(25, 2, 32), (33, 3, 64), (70, 1, 32), (129, 2, 32)] {
            let h = heads * d;
            let qkv: Vec<f32> = (0..len * 3 * h)
                .map(|i| ((i * 37) % 23) as f32 / 23.0 - 0.5)
                .collect();
            let got = attention(&qkv, len, h, heads, true);
            let want = attention(&qkv, len, h, heads, false);
            for i in 0..len * h {
                assert!(
                    (got[i] - want[i]).abs() < 1e-2,
                    "len {len} d {d} element {i}: bf16 {} vs f32 {}",
                    got[i],
                    want[i]
                );
            }
        }
    }

    #[test]
    fn fused_attention_equals_the_textbook_formula() {
        // Head sizes for the generic and the tiled path; lengths around the 8-row tiles
        // and the 32-key panels.
        for (len, heads, d) in [(7, 3, 4), (19, 2, 32), (1, 2, 32), (33, 3, 64), (70, 1, 32)] {
            let h = heads * d;
            let qkv: Vec<f32> = (0..len * 3 * h)
                .map(|i| ((i * 37) % 23) as f32 / 23.0 - 0.5)
                .collect();
            let got = attention(&qkv, len, h, heads, false);
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
