//! The encoder's dense layers on x86 CPUs with AVX-512.
//!
//! Owns: packing a `[out, in]` weight once at load time into 32-column panels, and
//! `y = x·Wᵀ + b` (optionally followed by exact GELU) with AVX-512 register-tiled
//! kernels: f32, bf16 pairs (`vdpbf16ps`, where the CPU has AVX512-BF16) for long
//! inputs, int8 weights for short ones when asked. Must not: be used where AVX-512 is
//! missing; the encoder runs candle-transformers' BERT there (and on GPUs).
//!
//! Why: candle's CPU matmul (the `gemm` crate) only uses AVX2 on stable Rust, and for
//! the short sequences of news items its thread hand-off costs more than it saves.
//! Here each call splits its column panels over rayon's pool, which nests cleanly when
//! several windows are embedded in parallel.
//!
//! This file is long because it holds the SIMD kernels themselves (f32, bf16, int8
//! tiles) beside the packing they read.

use rayon::prelude::*;

/// Columns per panel: two 512-bit registers of f32.
pub(crate) const NR: usize = 32;
/// Rows per register tile: 8 rows × 2 registers = 16 accumulators.
const MR: usize = 8;
/// Rows per tile on the int8 path: 26 accumulators, 2 weights and a broadcast still fit
/// the 32 vector registers.
const MR_SMALL: usize = 13;
/// Rows per tile on the bf16 path: 24 accumulators, each `vdpbf16ps` doing 32
/// multiply-adds, so a weight pair loaded from cache feeds 768 of them.
const MR_BF16: usize = 12;

/// AVX512-BF16 (`vdpbf16ps`, `vcvtneps2bf16`): Cooper Lake, Sapphire Rapids and later
/// Xeons, AMD Zen 4 and later.
pub(crate) fn bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx512_available()
            && std::is_x86_feature_detected!("avx512bf16")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

pub(crate) fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Inputs of at most this many rows (queries) may use the int8 copy of the weights
/// ([`crate::embed::EncoderOptions::int8_queries`]).
const SMALL_M: usize = 24;

/// Whether a sequence of `len` tokens counts as short (int8 weights, when on). A batch of
/// short sequences keeps their precision: what a text's vector is never depends on what
/// it was batched with.
pub(crate) fn is_short(len: usize) -> bool {
    len <= SMALL_M
}

/// How the weights for long inputs (passages) are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LongPrecision {
    F32,
    /// Weights and inputs rounded to bf16 (to nearest even), products summed in f32.
    Bf16,
}

enum LongPanels {
    /// `panels[p][k][j] = W[p*32 + j][k]`.
    F32(Vec<f32>),
    /// bf16 bits in pairs along k: `panels[p][k/2][j][k%2] = W[p*32 + j][k]`, k padded
    /// to even with zeros, so one 512-bit load holds 16 columns × 2 inputs, the operand
    /// `vdpbf16ps` wants.
    Bf16(Vec<u16>),
}

/// Weights packed in 32-column panels: for long inputs in f32 or bf16, for short ones in
/// int8.
pub(crate) struct PackedLinear {
    long: LongPanels,
    /// The same panels as int8, symmetric per output column: `w ≈ q · scale[col]`.
    /// The rounding error (≤ max|w|/254 per weight) is some 16 times smaller than the
    /// 4-bit quantisation the sample weights already carry.
    panels_i8: Vec<i8>,
    scales: Vec<f32>,
    bias: Vec<f32>,
    out: usize,
    inp: usize,
    gelu: bool,
}

impl PackedLinear {
    pub(crate) fn with_precision(
        w: &[f32],
        bias: &[f32],
        out: usize,
        inp: usize,
        gelu: bool,
        precision: LongPrecision,
    ) -> Self {
        assert!(
            precision == LongPrecision::F32 || bf16_available(),
            "bf16 panels need AVX512-BF16; this is a bug"
        );
        assert_eq!(
            out % NR,
            0,
            "output width must be a multiple of {NR}; this is a bug"
        );
        let mut panels = vec![0.0f32; out * inp];
        for p in 0..out / NR {
            for k in 0..inp {
                for j in 0..NR {
                    panels[(p * inp + k) * NR + j] = w[(p * NR + j) * inp + k];
                }
            }
        }
        let scales: Vec<f32> = (0..out)
            .map(|col| {
                let max = w[col * inp..(col + 1) * inp]
                    .iter()
                    .fold(0.0f32, |m, &x| m.max(x.abs()));
                if max > 0.0 {
                    max / 127.0
                } else {
                    1.0
                }
            })
            .collect();
        let long = match precision {
            LongPrecision::F32 => LongPanels::F32(panels),
            LongPrecision::Bf16 => {
                let pairs = inp.div_ceil(2);
                let mut b = vec![0u16; out / NR * pairs * NR * 2];
                for p in 0..out / NR {
                    for k in 0..inp {
                        for j in 0..NR {
                            b[((p * pairs + k / 2) * NR + j) * 2 + k % 2] =
                                bf16_bits(w[(p * NR + j) * inp + k]);
                        }
                    }
                }
                LongPanels::Bf16(b)
            }
        };
        let panels_i8 = (0..out * inp)
            .map(|i| {
                // Same panel order as the f32 panels: i = (p·inp + k)·32 + j.
                let (p, k, j) = (i / (inp * NR), i / NR % inp, i % NR);
                let col = p * NR + j;
                (w[col * inp + k] / scales[col])
                    .round()
                    .clamp(-127.0, 127.0) as i8
            })
            .collect();
        Self {
            long,
            panels_i8,
            scales,
            bias: bias.to_vec(),
            out,
            inp,
            gelu,
        }
    }

    /// `y[m, out] = x[m, inp]·Wᵀ + b`, then GELU if configured, with the int8 weights
    /// (`int8`, for rows of short sequences when asked) or the long inputs' ones. The
    /// rows may belong to several sequences: each row is computed on its own.
    pub(crate) fn apply_with(&self, x: &[f32], m: usize, int8: bool) -> Vec<f32> {
        assert!(
            avx512_available(),
            "PackedLinear needs AVX-512; this is a bug"
        );
        assert_eq!(x.len(), m * self.inp);
        // Every element is written below (each panel stores all its 32 columns of every
        // row), so the buffer is not zeroed first.
        let mut y: Vec<f32> = Vec::with_capacity(m * self.out);
        let out_ptr = SendPtr(y.as_mut_ptr());
        let panels = self.out / NR;
        // bf16 kernels read the input as bf16 pairs: rounded once here, not per panel.
        let pairs = self.inp.div_ceil(2);
        let x_bf16 = match &self.long {
            LongPanels::Bf16(_) if !int8 => to_bf16_rows(x, m, self.inp),
            _ => Vec::new(),
        };
        // Two halves per thread at most: enough to balance, few hand-offs. When rayon's
        // threads are all busy with other windows, the halves simply run here.
        let min_panels = panels.div_ceil(2 * rayon::current_num_threads()).max(1);
        (0..panels)
            .into_par_iter()
            .with_min_len(min_panels)
            .for_each(|p| {
                let out_ptr = &out_ptr;
                // SAFETY: each panel writes only its own 32 columns of every row of `y`,
                // which is m×out long; panels are disjoint, so no two tasks alias.
                unsafe {
                    let weights = match &self.long {
                        _ if int8 => Weights::I8 {
                            panel: self.panels_i8.as_ptr().add(p * self.inp * NR),
                            scales: self.scales.as_ptr().add(p * NR),
                        },
                        LongPanels::F32(w) => Weights::F32(w.as_ptr().add(p * self.inp * NR)),
                        LongPanels::Bf16(w) => {
                            panel_bf16(
                                x_bf16.as_ptr(),
                                m,
                                pairs,
                                w.as_ptr().add(p * pairs * NR * 2),
                                self.bias.as_ptr().add(p * NR),
                                out_ptr.0.add(p * NR),
                                self.out,
                                self.gelu,
                            );
                            return;
                        }
                    };
                    panel(
                        x.as_ptr(),
                        m,
                        self.inp,
                        weights,
                        self.bias.as_ptr().add(p * NR),
                        out_ptr.0.add(p * NR),
                        self.out,
                        self.gelu,
                    );
                }
            });
        // SAFETY: the panels together wrote all m×out elements (see above).
        unsafe { y.set_len(m * self.out) };
        y
    }
}

struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint column ranges of one buffer to rayon tasks.
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

/// Where one 32-column panel of weights is, and in which type.
#[derive(Clone, Copy)]
enum Weights {
    F32(*const f32),
    /// Int8 panel and the 32 column scales of this panel.
    I8 {
        panel: *const i8,
        scales: *const f32,
    },
}

/// One 32-column panel for all rows: full tiles of `MR` rows (f32) or up to
/// `MR_SMALL` rows (int8, so a query's rows share one widening of each weight), then
/// the remainder.
///
/// # Safety
/// `x` is `m×k`, `b` a packed `k×32` panel, `bias` 32 values, `y` row stride `ldy` with
/// 32 writable columns from `y`; AVX-512F and FMA must be available.
#[allow(clippy::too_many_arguments)]
unsafe fn panel(
    x: *const f32,
    m: usize,
    k: usize,
    b: Weights,
    bias: *const f32,
    y: *mut f32,
    ldy: usize,
    gelu: bool,
) {
    let mut row = 0;
    while row < m {
        let tile_rows = match b {
            Weights::F32(_) => MR,
            Weights::I8 { .. } => MR_SMALL,
        };
        let rows = (m - row).min(tile_rows);
        let (xr, yr) = (x.add(row * k), y.add(row * ldy));
        match rows {
            13.. => tile::<13>(xr, k, b, bias, yr, ldy),
            12 => tile::<12>(xr, k, b, bias, yr, ldy),
            11 => tile::<11>(xr, k, b, bias, yr, ldy),
            10 => tile::<10>(xr, k, b, bias, yr, ldy),
            9 => tile::<9>(xr, k, b, bias, yr, ldy),
            8 => tile::<8>(xr, k, b, bias, yr, ldy),
            7 => tile::<7>(xr, k, b, bias, yr, ldy),
            6 => tile::<6>(xr, k, b, bias, yr, ldy),
            5 => tile::<5>(xr, k, b, bias, yr, ldy),
            4 => tile::<4>(xr, k, b, bias, yr, ldy),
            3 => tile::<3>(xr, k, b, bias, yr, ldy),
            2 => tile::<2>(xr, k, b, bias, yr, ldy),
            _ => tile::<1>(xr, k, b, bias, yr, ldy),
        }
        if gelu {
            for r in 0..rows {
                gelu_32(yr.add(r * ldy));
            }
        }
        row += rows;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn tile<const R: usize>(
    x: *const f32,
    k: usize,
    b: Weights,
    bias: *const f32,
    y: *mut f32,
    ldy: usize,
) {
    use std::arch::x86_64::*;
    // f32 weights start from the bias; int8 ones start from zero and are scaled at the end.
    let (mut lo, mut hi) = match b {
        Weights::F32(_) => (
            [_mm512_loadu_ps(bias); R],
            [_mm512_loadu_ps(bias.add(16)); R],
        ),
        Weights::I8 { .. } => ([_mm512_setzero_ps(); R], [_mm512_setzero_ps(); R]),
    };
    // One loop per weight type so the load stays out of the inner loop's branches.
    macro_rules! accumulate {
        ($load:expr) => {
            for kk in 0..k {
                let (b0, b1) = $load(kk);
                for r in 0..R {
                    let a = _mm512_set1_ps(*x.add(r * k + kk));
                    lo[r] = _mm512_fmadd_ps(a, b0, lo[r]);
                    hi[r] = _mm512_fmadd_ps(a, b1, hi[r]);
                }
            }
        };
    }
    match b {
        Weights::F32(b) => accumulate!(|kk: usize| (
            _mm512_loadu_ps(b.add(kk * NR)),
            _mm512_loadu_ps(b.add(kk * NR + 16))
        )),
        Weights::I8 { panel, scales } => {
            let widen = |p: *const i8| {
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i)))
            };
            accumulate!(|kk: usize| (widen(panel.add(kk * NR)), widen(panel.add(kk * NR + 16))));
            let (s0, s1) = (_mm512_loadu_ps(scales), _mm512_loadu_ps(scales.add(16)));
            let (b0, b1) = (_mm512_loadu_ps(bias), _mm512_loadu_ps(bias.add(16)));
            for r in 0..R {
                lo[r] = _mm512_fmadd_ps(lo[r], s0, b0);
                hi[r] = _mm512_fmadd_ps(hi[r], s1, b1);
            }
        }
    }
    for r in 0..R {
        _mm512_storeu_ps(y.add(r * ldy), lo[r]);
        _mm512_storeu_ps(y.add(r * ldy + 16), hi[r]);
    }
}

/// f32 to bf16 bits, rounding to nearest even (NaN stays NaN).
fn bf16_bits(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

/// `x[m, k]` as bf16 rows of `2·ceil(k/2)` (a zero pads an odd `k`).
fn to_bf16_rows(x: &[f32], m: usize, k: usize) -> Vec<u16> {
    let width = 2 * k.div_ceil(2);
    let mut out = vec![0u16; m * width];
    for (row, dst) in x.chunks_exact(k).zip(out.chunks_exact_mut(width)) {
        to_bf16(row, dst);
    }
    out
}

/// `dst[i] = bf16(src[i])` (to nearest even) over the length both have.
pub(crate) fn to_bf16(src: &[f32], dst: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if bf16_available() {
        // SAFETY: the CPU has AVX512-BF16.
        unsafe { to_bf16_avx512(src, dst) };
        return;
    }
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = bf16_bits(v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
unsafe fn to_bf16_avx512(src: &[f32], dst: &mut [u16]) {
    to_bf16_inline(src, dst);
}

/// [`to_bf16`] for callers already compiled with AVX512-BF16 (inlined there: no
/// dispatch per call; the tail is a masked load and store).
///
/// # Safety
/// AVX-512F and AVX512-BF16 must be available.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn to_bf16_inline(src: &[f32], dst: &mut [u16]) {
    use std::arch::x86_64::*;
    let n = src.len().min(dst.len());
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    let mut i = 0;
    while i + 16 <= n {
        let v = _mm512_cvtneps_pbh(_mm512_loadu_ps(s.add(i)));
        _mm256_storeu_si256(
            d.add(i) as *mut __m256i,
            std::mem::transmute::<__m256bh, __m256i>(v),
        );
        i += 16;
    }
    if i < n {
        let mask: u16 = (1u16 << (n - i)) - 1;
        let v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, s.add(i)));
        _mm256_mask_storeu_epi16(
            d.add(i) as *mut i16,
            mask as __mmask16,
            std::mem::transmute::<__m256bh, __m256i>(v),
        );
    }
}

/// One 32-column panel for all rows on the bf16 path: tiles of `MR_BF16` rows, then the
/// remainder.
///
/// # Safety
/// `x` is `m` bf16 rows of `2·pairs`, `b` a packed bf16 panel of `pairs` pairs, `bias`
/// 32 values, `y` row stride `ldy` with 32 writable columns; AVX512-BF16 must be
/// available.
#[allow(clippy::too_many_arguments)]
unsafe fn panel_bf16(
    x: *const u16,
    m: usize,
    pairs: usize,
    b: *const u16,
    bias: *const f32,
    y: *mut f32,
    ldy: usize,
    gelu: bool,
) {
    let mut row = 0;
    while row < m {
        let rows = (m - row).min(MR_BF16);
        let (xr, yr) = (x.add(row * 2 * pairs), y.add(row * ldy));
        match rows {
            12.. => tile_bf16::<12>(xr, pairs, b, bias, yr, ldy),
            11 => tile_bf16::<11>(xr, pairs, b, bias, yr, ldy),
            10 => tile_bf16::<10>(xr, pairs, b, bias, yr, ldy),
            9 => tile_bf16::<9>(xr, pairs, b, bias, yr, ldy),
            8 => tile_bf16::<8>(xr, pairs, b, bias, yr, ldy),
            7 => tile_bf16::<7>(xr, pairs, b, bias, yr, ldy),
            6 => tile_bf16::<6>(xr, pairs, b, bias, yr, ldy),
            5 => tile_bf16::<5>(xr, pairs, b, bias, yr, ldy),
            4 => tile_bf16::<4>(xr, pairs, b, bias, yr, ldy),
            3 => tile_bf16::<3>(xr, pairs, b, bias, yr, ldy),
            2 => tile_bf16::<2>(xr, pairs, b, bias, yr, ldy),
            _ => tile_bf16::<1>(xr, pairs, b, bias, yr, ldy),
        }
        if gelu {
            for r in 0..rows {
                gelu_32(yr.add(r * ldy));
            }
        }
        row += rows;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile_bf16<const R: usize>(
    x: *const u16,
    pairs: usize,
    b: *const u16,
    bias: *const f32,
    y: *mut f32,
    ldy: usize,
) {
    use std::arch::x86_64::*;
    let mut lo = [_mm512_loadu_ps(bias); R];
    let mut hi = [_mm512_loadu_ps(bias.add(16)); R];
    let xw = x as *const i32;
    for kk in 0..pairs {
        let w = b.add(kk * NR * 2) as *const __m512i;
        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(w));
        let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(w.add(1)));
        for r in 0..R {
            // Inputs 2kk and 2kk+1 of row r, as one 32-bit pair in every lane.
            let a: __m512bh =
                std::mem::transmute(_mm512_set1_epi32(xw.add(r * pairs + kk).read_unaligned()));
            lo[r] = _mm512_dpbf16_ps(lo[r], a, b0);
            hi[r] = _mm512_dpbf16_ps(hi[r], a, b1);
        }
    }
    for r in 0..R {
        _mm512_storeu_ps(y.add(r * ldy), lo[r]);
        _mm512_storeu_ps(y.add(r * ldy + 16), hi[r]);
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn tile_bf16<const R: usize>(
    _x: *const u16,
    _pairs: usize,
    _b: *const u16,
    _bias: *const f32,
    _y: *mut f32,
    _ldy: usize,
) {
    unreachable!("bf16 panels are only built when AVX512-BF16 is available")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn tile<const R: usize>(
    _x: *const f32,
    _k: usize,
    _b: Weights,
    _bias: *const f32,
    _y: *mut f32,
    _ldy: usize,
) {
    unreachable!("PackedLinear is only built when AVX-512 is available")
}

/// Exact (erf) GELU on 32 values in place; branch-free so it vectorises.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f,fma"))]
unsafe fn gelu_32(y: *mut f32) {
    let v = std::slice::from_raw_parts_mut(y, NR);
    for x in v.iter_mut() {
        *x = gelu(*x);
    }
}

/// GELU(x) = x/2 · (1 + erf(x/√2)).
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf as a rational function on [-4, 4] (saturating outside), max abs error ~2e-7:
/// no branches and no `exp`, so it vectorises. Coefficients: the well-known minimax
/// fit used by Eigen's `generic_fast_erf_float`.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p.mul_add(x2, 2.770_681_4e-8);
    p = p.mul_add(x2, -2.101_024e-6);
    p = p.mul_add(x2, -5.692_506_4e-5);
    p = p.mul_add(x2, -7.349_906_3e-4);
    p = p.mul_add(x2, -2.954_6e-3);
    p = p.mul_add(x2, -1.609_603_3e-2);
    p *= x;
    let mut q = -1.456_607_2e-5_f32;
    q = q.mul_add(x2, -2.133_740_6e-4);
    q = q.mul_add(x2, -1.682_827e-3);
    q = q.mul_add(x2, -7.373_329_4e-3);
    q = q.mul_add(x2, -1.426_474e-2);
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_the_reference_within_a_millionth() {
        for i in -600..=600 {
            let x = i as f32 / 100.0;
            let want = candle_core::cpu::erf::erf_f64(x as f64) as f32;
            assert!(
                (erf(x) - want).abs() < 1e-6,
                "erf({x}) = {} vs {want}",
                erf(x)
            );
        }
    }

    fn plain_matmul(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        m: usize,
        inp: usize,
        gelu_on: bool,
    ) -> Vec<f64> {
        let out = b.len();
        let mut y = vec![0.0f64; m * out];
        for r in 0..m {
            for c in 0..out {
                let mut acc = b[c] as f64;
                for kk in 0..inp {
                    acc += x[r * inp + kk] as f64 * w[c * inp + kk] as f64;
                }
                y[r * out + c] = if gelu_on {
                    gelu(acc as f32) as f64
                } else {
                    acc
                };
            }
        }
        y
    }

    fn round_bf16(v: &[f32]) -> Vec<f32> {
        v.iter()
            .map(|&x| half::bf16::from_f32(x).to_f32())
            .collect()
    }

    #[test]
    fn bf16_kernel_equals_a_plain_matmul_of_the_rounded_values_on_odd_shapes() {
        if !bf16_available() {
            eprintln!("no AVX512-BF16 on this CPU: the bf16 kernel is not used here");
            return;
        }
        // Odd and even input widths, one and several panels, every row remainder of a
        // 12-row tile, and lengths on both sides of the short-input limit.
        for (out, inp) in [(32, 1), (64, 37), (96, 40), (32, 385)] {
            let w: Vec<f32> = (0..out * inp)
                .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
                .collect();
            let b: Vec<f32> = (0..out).map(|i| i as f32 / 10.0).collect();
            for gelu_on in [false, true] {
                let packed =
                    PackedLinear::with_precision(&w, &b, out, inp, gelu_on, LongPrecision::Bf16);
                for m in [25, 26, 29, 35, 36, 37, 47, 48, 49, 60, 61] {
                    let x: Vec<f32> = (0..m * inp)
                        .map(|i| ((i * 31) % 13) as f32 / 13.0 - 0.4 + i as f32 * 1e-4)
                        .collect();
                    let y = packed.apply_with(&x, m, false);
                    // The kernel multiplies bf16-rounded values exactly and sums in f32.
                    let exact = plain_matmul(&round_bf16(&x), &round_bf16(&w), &b, m, inp, gelu_on);
                    let full = plain_matmul(&x, &w, &b, m, inp, gelu_on);
                    for i in 0..m * out {
                        let got = y[i] as f64;
                        assert!(
                            (got - exact[i]).abs() < 1e-4 * (1.0 + exact[i].abs()),
                            "out={out} inp={inp} m={m} i={i}: {got} vs {}",
                            exact[i]
                        );
                        // And stays within bf16 rounding of the f32 result.
                        assert!(
                            (got - full[i]).abs() < 1e-2 * (inp as f64).sqrt(),
                            "out={out} inp={inp} m={m} i={i}: {got} vs f32 {}",
                            full[i]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_int8_path_stays_within_weight_rounding_of_a_plain_matmul() {
        if !bf16_available() {
            return;
        }
        let (out, inp) = (64, 40);
        let w: Vec<f32> = (0..out * inp)
            .map(|i| (i % 11) as f32 / 11.0 - 0.5)
            .collect();
        let b = vec![0.25f32; out];
        let packed = PackedLinear::with_precision(&w, &b, out, inp, false, LongPrecision::Bf16);
        for m in [1, 13, 24] {
            let x: Vec<f32> = (0..m * inp).map(|i| (i % 7) as f32 / 7.0 - 0.3).collect();
            let y = packed.apply_with(&x, m, true);
            let want = plain_matmul(&x, &w, &b, m, inp, false);
            for i in 0..m * out {
                assert!((y[i] as f64 - want[i]).abs() < 2e-2, "m={m} i={i}");
            }
        }
    }

    #[test]
    fn packed_linear_equals_a_plain_matmul_for_every_row_remainder() {
        if !avx512_available() {
            eprintln!("no AVX-512 on this CPU: the packed kernel is not used here");
            return;
        }
        let (out, inp) = (64, 40);
        let w: Vec<f32> = (0..out * inp)
            .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..out).map(|i| i as f32 / 10.0).collect();
        for gelu_on in [false, true] {
            let packed =
                PackedLinear::with_precision(&w, &b, out, inp, gelu_on, LongPrecision::F32);
            for m in [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 24, 25, 33] {
                let x: Vec<f32> = (0..m * inp)
                    .map(|i| ((i * 31) % 13) as f32 / 13.0 - 0.4)
                    .collect();
                let paths: &[bool] = if m <= SMALL_M {
                    &[false, true]
                } else {
                    &[false]
                };
                for &int8 in paths {
                    let y = packed.apply_with(&x, m, int8);
                    for r in 0..m {
                        for c in 0..out {
                            let mut want = b[c];
                            for kk in 0..inp {
                                want += x[r * inp + kk] * w[c * inp + kk];
                            }
                            if gelu_on {
                                want = gelu(want);
                            }
                            let got = y[r * out + c];
                            // int8 weights round each weight by up to max|w|/254 of
                            // its column.
                            let tol = if int8 { 2e-2 } else { 1e-4 };
                            assert!(
                                (got - want).abs() < tol,
                                "m={m} int8={int8} r={r} c={c}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
