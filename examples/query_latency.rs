//! Query embedding latency in-process (no HTTP): p10/p50/p90 over repeated runs, one
//! query at a time, then batches of 4 and 16 distinct queries embedded together against
//! the same queries one by one (what `serve --query-batch` changes).
//!
//! Usage: `cargo run --release --example query_latency -- [REPEATS] [QUERY]`
//! (`STORYDEX_INT8_QUERIES=1`: int8 weights for queries; `STORYDEX_F32=1`: no bf16).
use std::time::Instant;

use storydex::embed::{CandleEncoder, Encoder, ModelFiles, ModelSpec};

/// Distinct queries, Chinese and English, as a real client sends them.
const QUERIES: [&str; 16] = [
    "Boston Dynamics Atlas robot in car factories",
    "英伟达发布新芯片",
    "Hugging Face VRAM estimator",
    "OpenAI 新模型发布",
    "DeepMind Gemini robotics",
    "开源推理模型",
    "AI coding agents",
    "谷歌论文 Nested Learning",
    "humanoid robots on a production line",
    "大语言模型的局限",
    "Nvidia GTC keynote",
    "多模态视频生成",
    "AI chip export rules",
    "自动驾驶 VLA 模型",
    "Claude Code tips",
    "智能体编程工具",
];

fn percentiles(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q) as usize];
    (at(0.1), at(0.5), at(0.9))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(200);
    let query = args.next().unwrap_or_else(|| QUERIES[0].to_owned());
    let spec = ModelSpec::default_model();
    let files = ModelFiles::locate(&spec, None)?;
    // To compare precisions: int8 weights for queries, or f32 instead of bf16.
    let options = storydex::embed::EncoderOptions {
        int8_queries: std::env::var_os("STORYDEX_INT8_QUERIES").is_some(),
        precision: if std::env::var_os("STORYDEX_F32").is_some() {
            storydex::embed::Precision::F32
        } else {
            storydex::embed::Precision::Auto
        },
        ..Default::default()
    };
    let encoder = CandleEncoder::load_with(spec, &files, options)?;
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let t = Instant::now();
        encoder.embed_query(&query)?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (p10, p50, p90) = percentiles(ms);
    println!(
        "{} tokens: p10 {p10:.2} ms  p50 {p50:.2} ms  p90 {p90:.2} ms",
        encoder.count_tokens(&query)?
    );
    for size in [4usize, 16] {
        let texts = &QUERIES[..size];
        let (mut alone, mut together) = (Vec::new(), Vec::new());
        // Interleaved, so both see the same machine load.
        for _ in 0..(n / size).max(5) {
            let t = Instant::now();
            for q in texts {
                encoder.embed_query(q)?;
            }
            alone.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            for v in encoder.embed_queries(texts) {
                v?;
            }
            together.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (_, a50, a90) = percentiles(alone);
        let (_, t50, t90) = percentiles(together);
        println!(
            "{size:>2} queries: one by one p50 {a50:.2} ms (p90 {a90:.2}), together p50 {t50:.2} ms \
             (p90 {t90:.2}): {:.2}x",
            a50 / t50
        );
    }
    Ok(())
}
