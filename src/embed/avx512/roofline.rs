//! Where the AVX-512 encoder's time goes: each part of the forward pass timed on its
//! own (the same kernels, weights of the real shape), against the CPU's measured bf16
//! peak. `cargo run --release --example roofline` prints it (docs/performance.md).
//!
//! Owns: the peak loop (12 independent `vdpbf16ps` accumulators, the most one core can
//! issue) and the per-part timing. Must not: be used on request paths.

use std::time::Instant;

use serde::Serialize;

use super::attention::attention;
use super::linear::{self, LongPrecision, PackedLinear};
use super::LayerNorm;

const H: usize = 384;
const FF: usize = 1536;
const HEADS: usize = 12;
const LAYERS: usize = 12;

/// One part of the forward pass over the whole run.
#[derive(Debug, Serialize)]
pub struct Part {
    pub name: &'static str,
    pub seconds: f64,
    /// Floating-point operations it does (multiply-adds count two).
    pub gflop: f64,
    pub gflops: f64,
    /// Its share of the forward pass's time.
    pub share: f64,
}

#[derive(Debug, Serialize)]
pub struct Roofline {
    pub threads: usize,
    /// `vdpbf16ps` throughput: one core, and every thread at once.
    pub peak_gflops_one_core: f64,
    pub peak_gflops_all: f64,
    pub sequences: usize,
    pub tokens: usize,
    pub parts: Vec<Part>,
    pub total_seconds: f64,
    pub total_gflops: f64,
    /// The forward pass's rate against the all-threads peak.
    pub fraction_of_peak: f64,
}

/// GFLOP/s of `vdpbf16ps` on the calling thread: 12 independent accumulators, so the
/// loop is bound by issue rate, not by the instruction's latency.
pub fn peak_gflops() -> f64 {
    #[cfg(target_arch = "x86_64")]
    if linear::bf16_available() {
        const ITERATIONS: u64 = 20_000_000;
        let started = Instant::now();
        // SAFETY: the CPU has AVX512-BF16 (checked above).
        let sink = unsafe { dpbf16_loop(ITERATIONS) };
        let seconds = started.elapsed().as_secs_f64();
        std::hint::black_box(sink);
        // 12 instructions per iteration, each 16 lanes × 2 products × 2 FLOP.
        return (ITERATIONS * 12 * 64) as f64 / seconds / 1e9;
    }
    0.0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16,avx512bw,avx512vl")]
unsafe fn dpbf16_loop(iterations: u64) -> f32 {
    use std::arch::x86_64::*;
    let a: __m512bh = std::mem::transmute(_mm512_set1_epi16(0x3f80));
    let b: __m512bh = std::mem::transmute(_mm512_set1_epi16(0x3c00));
    let mut acc = [_mm512_setzero_ps(); 12];
    for _ in 0..iterations {
        for x in &mut acc {
            *x = _mm512_dpbf16_ps(*x, a, b);
        }
    }
    let mut sum = _mm512_setzero_ps();
    for x in acc {
        sum = _mm512_add_ps(sum, x);
    }
    _mm512_reduce_add_ps(sum)
}

fn random(n: usize, seed: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (((i.wrapping_mul(2_654_435_761).wrapping_add(seed)) % 1000) as f32 / 500.0 - 1.0)
                * scale
        })
        .collect()
}

/// Times each part of the forward pass of sequences of `lengths` tokens, one sequence at
/// a time on the encoder's kernels in bf16 (as passages run), `rounds` times.
pub fn run(lengths: &[usize], rounds: usize) -> Roofline {
    assert!(linear::bf16_available(), "the roofline needs AVX512-BF16");
    let pack = |out: usize, inp: usize, gelu: bool, seed: usize| {
        let scale = (3.0 / inp as f32).sqrt();
        PackedLinear::with_precision(
            &random(out * inp, seed, scale),
            &random(out, seed + 1, 0.02),
            out,
            inp,
            gelu,
            LongPrecision::Bf16,
        )
    };
    let (qkv, out, up, down) = (
        pack(3 * H, H, false, 1),
        pack(H, H, false, 2),
        pack(FF, H, true, 3),
        pack(H, FF, false, 4),
    );
    let norm = LayerNorm {
        eps: 1e-12,
        weight: vec![1.0; H],
        bias: vec![0.0; H],
    };
    let names = [
        "QKV projection",
        "attention",
        "attention output",
        "layer norms",
        "FF up + GELU",
        "FF down",
    ];
    let mut seconds = [0.0f64; 6];
    let mut flop = [0.0f64; 6];
    let mut tokens = 0;
    for _ in 0..rounds.max(1) {
        for &len in lengths {
            tokens += len;
            let mut x = random(len * H, len, 1.0);
            for _ in 0..LAYERS {
                let mut time = |part: usize, f: &mut dyn FnMut()| {
                    let started = Instant::now();
                    f();
                    seconds[part] += started.elapsed().as_secs_f64();
                };
                let mut q = Vec::new();
                time(0, &mut || q = qkv.apply_with(&x, len, false));
                let mut context = Vec::new();
                time(1, &mut || context = attention(&q, len, H, HEADS, true));
                let mut attended = Vec::new();
                time(2, &mut || attended = out.apply_with(&context, len, false));
                time(3, &mut || norm.add_and_norm(&mut attended, &x));
                let mut ff = Vec::new();
                time(4, &mut || ff = up.apply_with(&attended, len, false));
                time(5, &mut || x = down.apply_with(&ff, len, false));
                time(3, &mut || norm.add_and_norm(&mut x, &attended));
            }
            let l = len as f64;
            flop[0] += LAYERS as f64 * 2.0 * l * H as f64 * 3.0 * H as f64;
            flop[1] += LAYERS as f64 * 2.0 * 2.0 * l * l * H as f64;
            flop[2] += LAYERS as f64 * 2.0 * l * (H * H) as f64;
            flop[4] += LAYERS as f64 * 2.0 * l * (H * FF) as f64;
            flop[5] += LAYERS as f64 * 2.0 * l * (H * FF) as f64;
        }
    }
    let total_seconds: f64 = seconds.iter().sum();
    let total_flop: f64 = flop.iter().sum();
    let threads = rayon::current_num_threads();
    let peak_gflops_one_core = peak_gflops();
    // One OS thread per core at once (not rayon, which may run both loops on one).
    let peak_gflops_all: f64 = std::thread::scope(|s| {
        let loops: Vec<_> = (0..threads).map(|_| s.spawn(peak_gflops)).collect();
        loops.into_iter().map(|l| l.join().unwrap_or(0.0)).sum()
    });
    let parts = names
        .iter()
        .enumerate()
        .map(|(i, &name)| Part {
            name,
            seconds: seconds[i],
            gflop: flop[i] / 1e9,
            gflops: flop[i] / seconds[i] / 1e9,
            share: seconds[i] / total_seconds,
        })
        .collect();
    let total_gflops = total_flop / total_seconds / 1e9;
    Roofline {
        threads,
        peak_gflops_one_core,
        peak_gflops_all,
        sequences: lengths.len() * rounds.max(1),
        tokens,
        parts,
        total_seconds,
        total_gflops,
        fraction_of_peak: total_gflops / peak_gflops_all,
    }
}
