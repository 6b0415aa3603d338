//! Duplicate clustering at archive scale: 100,000 synthetic stories (20,000 planted
//! events, 5 copies each in different digests over a year), timed and scored.
//!
//! `cargo bench --bench cluster_100k` prints the wall time of `knn` and `cluster` and
//! the pairwise precision/recall against the planted events; the target is under 30 s
//! on 2 cores. Run without `--bench` (as `cargo test --benches` does) it checks the
//! same path on 2,000 stories only. See `common/mod.rs` for how the vectors are shaped.

mod common;

use std::time::Instant;

use storydex::cluster::{cluster, knn, Params};

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not.
    let full = std::env::args().any(|a| a == "--bench");
    let events = if full { 20_000 } else { 400 };
    let copies = 5;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    let started = Instant::now();
    let planted = common::planted(events, copies, 365, 42);
    let generate = started.elapsed();
    let params = Params::with_threshold(common::THRESHOLD);

    let (started, cpu0) = (Instant::now(), cpu_seconds());
    let neighbors = knn(&planted.items, params.neighbors).expect("knn");
    let (knn_time, cpu1) = (started.elapsed(), cpu_seconds());
    let started = Instant::now();
    let clusters = cluster(&planted.items, &neighbors, &params);
    let (cluster_time, cpu2) = (started.elapsed(), cpu_seconds());
    let (precision, recall) = common::pairwise(&planted, &clusters);

    let exact = clusters
        .iter()
        .filter(|c| c.members.len() == copies)
        .count();
    println!(
        "{} stories ({events} events x {copies} copies, dim {}), {threads} threads",
        planted.items.len(),
        common::DIM
    );
    println!("  generate vectors: {:>7.2} s", generate.as_secs_f64());
    println!(
        "  knn (k = {}):     {:>7.2} s",
        params.neighbors,
        knn_time.as_secs_f64()
    );
    println!("  cluster:          {:>7.2} s", cluster_time.as_secs_f64());
    println!(
        "  knn + cluster:    {:>7.2} s",
        (knn_time + cluster_time).as_secs_f64()
    );
    if let (Some(a), Some(b), Some(c)) = (cpu0, cpu1, cpu2) {
        // Wall time only means "on N cores" when nothing else runs; CPU time says how
        // much work it was whatever else the machine was doing.
        println!(
            "  CPU time:         {:>7.2} s knn, {:.2} s cluster",
            b - a,
            c - b
        );
    }
    println!(
        "  {} clusters ({exact} with all {copies} copies); pairwise precision {precision:.4}, recall {recall:.4}",
        clusters.len()
    );
    assert!(
        precision > 0.95 && recall > 0.8,
        "clustering quality fell: precision {precision:.4}, recall {recall:.4}"
    );
}

/// User + system CPU seconds of this process so far (all threads), where Linux says.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and
    // 15 of the whole line, in clock ticks (USER_HZ, 100 on Linux).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}
