//! Where the AVX-512 encoder's time goes, against this CPU's bf16 peak.
//!
//!     cargo run --release --example roofline [-- ROUNDS]
//!
//! Embeds the first window of every sample story with the real model (bf16 passages,
//! as storydex runs them), then times each part of the forward pass for the same
//! window lengths on the same kernels, one window at a time, and the `vdpbf16ps` peak
//! (12 independent accumulators) on one core and on every thread. Prints JSON.

use std::time::Instant;

use storydex::embed::{CandleEncoder, Encoder, ModelFiles, ModelSpec};

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(1), |a| a.parse())?;
    let spec = ModelSpec::default_model();
    let files = ModelFiles::locate(&spec, None)?;
    let encoder = CandleEncoder::load(spec, &files)?;
    let mut texts = Vec::new();
    for entry in std::fs::read_dir("data/sample")? {
        for story in storydex::corpus::parse_file(&entry?.path())?.stories {
            texts.push(encoder.first_window_text(&story.text)?.to_owned());
        }
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    encoder.embed_passages(&refs[..2])?;
    let started = Instant::now();
    let windows = encoder.embed_passages(&refs)?;
    let seconds = started.elapsed().as_secs_f64();
    let lengths: Vec<usize> = windows.iter().flatten().map(|w| w.tokens).collect();
    let tokens: usize = lengths.iter().sum();
    let report = storydex::embed::roofline::run(&lengths, rounds);
    let flop_per_pass = report.parts.iter().map(|p| p.gflop).sum::<f64>() / rounds.max(1) as f64;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "encoder": encoder.device_info().to_string(),
            "sample": {
                "windows": lengths.len(),
                "tokens": tokens,
                "seconds": seconds,
                "tokens_per_s": tokens as f64 / seconds,
                "gflops": flop_per_pass / seconds,
                "fraction_of_peak": flop_per_pass / seconds / report.peak_gflops_all,
            },
            "parts_one_window_at_a_time": report,
        }))?
    );
    Ok(())
}
