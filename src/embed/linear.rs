//! The encoder's dense layers on x86 CPUs with AVX-512: a candle custom op.
//!
//! Owns: packing a `[out, in]` weight once at load time into 32-column panels, and
//! `y = x·Wᵀ + b` (optionally followed by exact GELU) with an AVX-512 register-tiled
//! kernel. Must not: be used where AVX-512 is missing; `Dense::load` falls back to
//! candle's own matmul there (and on GPUs).
//!
//! Why: candle's CPU matmul (the `gemm` crate) only uses AVX2 on stable Rust, and for
//! the short sequences of news items its thread hand-off costs more than it saves.
//! Here each call splits its column panels over rayon's pool, which nests cleanly when
//! several windows are embedded in parallel.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Shape, Tensor};
use rayon::prelude::*;

/// Columns per panel: two 512-bit registers of f32.
const NR: usize = 32;
/// Rows per register tile: 8 rows × 2 registers = 16 accumulators.
const MR: usize = 8;
/// Rows per tile on the int8 path: 26 accumulators, 2 weights and a broadcast still fit
/// the 32 vector registers.
const MR_SMALL: usize = 13;

/// A dense layer, packed for the AVX-512 kernel or left to candle.
pub(crate) enum Dense {
    Packed(PackedLinear),
    Candle {
        linear: candle_nn::Linear,
        gelu: bool,
    },
}

impl Dense {
    /// `weight` is `[out, in]` (PyTorch orientation), `bias` is `[out]`.
    pub(crate) fn new(weight: Tensor, bias: Tensor, gelu: bool) -> candle_core::Result<Self> {
        let (out, inp) = weight.dims2()?;
        if weight.device().is_cpu() && avx512_available() && out % NR == 0 {
            let w = weight
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let b = bias.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            return Ok(Dense::Packed(PackedLinear::new(&w, &b, out, inp, gelu)));
        }
        Ok(Dense::Candle {
            linear: candle_nn::Linear::new(weight, Some(bias)),
            gelu,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Dense::Packed(p) => x.apply_op1_no_bwd(p),
            Dense::Candle { linear, gelu } => {
                let y = linear.forward(x)?;
                if *gelu {
                    y.gelu_erf()
                } else {
                    Ok(y)
                }
            }
        }
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

/// Inputs of at most this many rows (queries) use the int8 copy of the weights: a
/// query is bound by streaming 21M weights from memory, not by arithmetic, and int8
/// reads a quarter of the bytes of f32. Longer inputs (passages) use f32.
const SMALL_M: usize = 24;

/// Whether short inputs use the int8 weights (on by default). `storydex eval` turns it
/// off to measure what int8 queries cost in ranking quality.
static INT8_SHORT_INPUTS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Chooses int8 (`true`, the default) or f32 weights for inputs of at most 24 tokens.
pub fn set_int8_short_inputs(on: bool) {
    INT8_SHORT_INPUTS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Weights laid out as `panels[p][k][j] = W[p*32 + j][k]`, in f32 and in int8.
pub(crate) struct PackedLinear {
    panels: Vec<f32>,
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
    pub(crate) fn new(w: &[f32], bias: &[f32], out: usize, inp: usize, gelu: bool) -> Self {
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
        let panels_i8 = panels
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let col = (i / (inp * NR)) * NR + i % NR;
                (x / scales[col]).round().clamp(-127.0, 127.0) as i8
            })
            .collect();
        Self {
            panels,
            panels_i8,
            scales,
            bias: bias.to_vec(),
            out,
            inp,
            gelu,
        }
    }

    /// `y[m, out] = x[m, inp]·Wᵀ + b`, then GELU if configured.
    pub(crate) fn apply(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert!(
            avx512_available(),
            "PackedLinear needs AVX-512; this is a bug"
        );
        assert_eq!(x.len(), m * self.inp);
        let mut y = vec![0.0f32; m * self.out];
        let out_ptr = SendPtr(y.as_mut_ptr());
        let panels = self.out / NR;
        let int8 = m <= SMALL_M && INT8_SHORT_INPUTS.load(std::sync::atomic::Ordering::Relaxed);
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
                    let weights = if int8 {
                        Weights::I8 {
                            panel: self.panels_i8.as_ptr().add(p * self.inp * NR),
                            scales: self.scales.as_ptr().add(p * NR),
                        }
                    } else {
                        Weights::F32(self.panels.as_ptr().add(p * self.inp * NR))
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
        y
    }
}

struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint column ranges of one buffer to rayon tasks.
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

impl CustomOp1 for PackedLinear {
    fn name(&self) -> &'static str {
        "storydex-packed-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = layout.shape().dims2()?;
        if k != self.inp {
            candle_core::bail!("packed linear expects {} inputs, got {k}", self.inp);
        }
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("packed linear needs a contiguous input");
        };
        let x = &storage.as_slice::<f32>()?[start..end];
        let y = self.apply(x, m);
        Ok((CpuStorage::F32(y), Shape::from((m, self.out))))
    }
}

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
            let packed = PackedLinear::new(&w, &b, out, inp, gelu_on);
            for m in [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 24, 25, 33] {
                let x: Vec<f32> = (0..m * inp)
                    .map(|i| ((i * 31) % 13) as f32 / 13.0 - 0.4)
                    .collect();
                let y = packed.apply(&x, m);
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
                        // int8 weights (m <= SMALL_M) round each weight by up to
                        // max|w|/254 of its column.
                        let tol = if m <= SMALL_M { 2e-2 } else { 1e-4 };
                        assert!(
                            (got - want).abs() < tol,
                            "m={m} r={r} c={c}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
