//! Query embedding latency in-process (no HTTP): p10/p50/p90 over repeated runs.
//!
//! Usage: `cargo run --release --example query_latency -- [REPEATS] [QUERY]`
use std::time::Instant;

use storydex::embed::{CandleEncoder, Encoder, ModelFiles, ModelSpec};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(200);
    let query = args
        .next()
        .unwrap_or_else(|| "Boston Dynamics Atlas robot in car factories".to_owned());
    let spec = ModelSpec::default_model();
    let files = ModelFiles::locate(&spec, None)?;
    let encoder = CandleEncoder::load(spec, &files)?;
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let t = Instant::now();
        encoder.embed_query(&query)?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q) as usize];
    println!(
        "{} tokens: p10 {:.2} ms  p50 {:.2} ms  p90 {:.2} ms",
        encoder.count_tokens(&query)?,
        at(0.1),
        at(0.5),
        at(0.9)
    );
    Ok(())
}
