//! Prints the score distributions of true and false duplicate pairs in a store, to pick
//! the per-model `thresholds.duplicate` in `models/<name>.toml`.
//!
//! Usage: `cargo run --release --example calibrate_duplicates -- DATA_DIR [A=B ...]`
//! where each `A=B` names two story ids that report the same event. Without pairs it
//! uses the sample corpus's seven repeats of digest 000 in digest 001.

use std::collections::HashSet;

use storydex::cluster::{canonical_url, pair_score, Item, Params};
use storydex::store::Store;
use storydex::vector::dot;

const SAMPLE_PAIRS: [(&str, &str); 7] = [
    ("d20260106-1200-02", "d20260107-0000-09"),
    ("d20260106-1200-04", "d20260107-0000-02"),
    ("d20260106-1200-05", "d20260107-0000-03"),
    ("d20260106-1200-06", "d20260107-0000-04"),
    ("d20260106-1200-07", "d20260107-0000-07"),
    ("d20260106-1200-08", "d20260107-0000-05"),
    ("d20260106-1200-10", "d20260107-0000-06"),
];

fn quantiles(mut v: Vec<f32>) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!(
        "n={} min={:.3} p10={:.3} p50={:.3} p90={:.3} p99={:.3} max={:.3}",
        v.len(),
        q(0.0),
        q(0.1),
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    )
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: DATA_DIR [A=B ...]"))?;
    let mut truth: HashSet<(String, String)> = args
        .filter_map(|a| a.split_once('=').map(|(x, y)| (x.to_owned(), y.to_owned())))
        .collect();
    if truth.is_empty() {
        truth = SAMPLE_PAIRS
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    }
    let (model_id, dimension) = Store::stored_model(dir.as_ref())?
        .ok_or_else(|| anyhow::anyhow!("{dir} holds no store; run storydex ingest first"))?;
    let store = Store::open(dir.as_ref(), &model_id, dimension)?;
    let stories = store.story_vectors()?;
    let item = |s: &storydex::store::StoryVector, url: bool| Item {
        digest: s.digest_id.clone(),
        time: s.published.map(|t| t.unix_timestamp()),
        url: if url {
            s.url.as_deref().map(canonical_url)
        } else {
            None
        },
        vector: s.vector.clone(),
    };
    let p = Params::with_threshold(0.0);
    let (mut t_cos, mut f_cos, mut t_score, mut f_score, mut f_same_window) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut worst_false = Vec::new();
    for (i, a) in stories.iter().enumerate() {
        for b in &stories[i + 1..] {
            if a.digest_id == b.digest_id {
                continue;
            }
            let cos = dot(&a.vector, &b.vector);
            let score = pair_score(&item(a, false), &item(b, false), cos, &p);
            let is_true = truth.contains(&(a.id.clone(), b.id.clone()))
                || truth.contains(&(b.id.clone(), a.id.clone()));
            if is_true {
                t_cos.push(cos);
                t_score.push(score);
                println!("true  {:.3} {:.3}  {} = {}", cos, score, a.id, b.id);
            } else {
                f_cos.push(cos);
                f_score.push(score);
                worst_false.push((score, a.id.clone(), b.id.clone()));
                if a.day.is_some() && a.day == b.day {
                    f_same_window.push(score);
                }
            }
        }
    }
    worst_false.sort_by(|x, y| y.0.total_cmp(&x.0));
    for (s, a, b) in worst_false.iter().take(10) {
        println!("false {s:.3}  {a} ~ {b}");
    }
    println!("true pairs,  cosine: {}", quantiles(t_cos));
    println!("false pairs, cosine: {}", quantiles(f_cos));
    println!("true pairs,  score (no link bonus): {}", quantiles(t_score));
    println!("false pairs, score (no link bonus): {}", quantiles(f_score));
    println!(
        "false pairs on the same day, score: {}",
        quantiles(f_same_window)
    );
    Ok(())
}
