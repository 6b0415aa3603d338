//! storydex at archive scale: a store of synthetic stories (default 1,000,000) with real
//! SQLite, usearch and stored duplicate clusters, then the HTTP routes over it.
//!
//! `scripts/bench-scale [STORIES]` runs it (`cargo bench --bench scale`). It prints: the
//! ingest rate without the model and the per-story write time (storing, indexing and
//! assigning the story's duplicate cluster); start-up to ready (opening the store: index
//! and catalog); RSS; p50/p99/max of `POST /v1/search` (fake encoder: the model is left
//! out), `GET /v1/stories/{id}/similar`, `GET /v1/duplicates` over 7 days and
//! `GET /v1/stories/{id}/duplicates`; and recall@10 of the index against exact search.
//! Run without `--bench` (as `cargo test --benches` does) it checks the same path on
//! 3,000 stories. Vectors: see `common/mod.rs` (planted events over topics).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use storydex::cluster::Params;
use storydex::corpus::{Digest, SourceKind, Story};
use storydex::domain::DateRange;
use storydex::embed::fake::FakeEncoder;
use storydex::embed::{Encoder, Window};
use storydex::server::{AppState, ServeSettings};
use storydex::store::{NewStory, Store};
use time::OffsetDateTime;

const EPOCH: i64 = 1_262_304_000; // 2010-01-01: forty years of digests fit after it

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn quantiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0;
    format!(
        "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (n={})",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0),
        v.len()
    )
}

fn time_of(slot_seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(EPOCH + slot_seconds).expect("time in range")
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "storydex=info".into()),
        )
        .init();
    let full = std::env::args().any(|a| a == "--bench");
    let stories: usize = std::env::var("STORYDEX_SCALE_STORIES")
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(if full { 1_000_000 } else { 3_000 });
    let copies = 3;
    let events = stories / copies;
    let days = (stories / 60).max(30);
    // STORYDEX_SCALE_REUSE=1: measure a store an earlier run left in STORYDEX_SCALE_DIR,
    // in a fresh process (so RSS is the store's, not the generator's).
    let reuse = std::env::var("STORYDEX_SCALE_REUSE").is_ok_and(|v| v == "1");
    let dir = match std::env::var("STORYDEX_SCALE_DIR") {
        Ok(d) => {
            if !reuse {
                let _ = std::fs::remove_dir_all(&d);
            }
            std::path::PathBuf::from(d)
        }
        Err(_) => tempfile::tempdir().expect("temp dir").keep(),
    };
    println!(
        "{stories} stories ({events} events x {copies} copies over {days} days) in {}",
        dir.display()
    );
    let encoder = Arc::new(FakeEncoder::new(common::DIM));
    let params = Params::with_threshold(common::THRESHOLD);
    if !reuse {
        ingest(&dir, events, copies, days, &encoder, &params);
    }
    measure(&dir, stories, days, full, &encoder, &params);
    if std::env::var("STORYDEX_SCALE_DIR").is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `STORYDEX_SCALE_VECTORS=DIR`: the window vectors of the store in DIR (one built from
/// the sample: `storydex ingest data/sample --data DIR`), to replace the planted ones.
fn sample_vectors() -> Option<Vec<Vec<f32>>> {
    let dir = std::path::PathBuf::from(std::env::var("STORYDEX_SCALE_VECTORS").ok()?);
    let (model, dimension) = Store::stored_model(&dir)
        .expect("read the sample store")
        .expect("STORYDEX_SCALE_VECTORS names no store");
    assert_eq!(dimension, common::DIM, "the sample store's dimension");
    let store = Store::open_for_reading(&dir, &model, dimension).expect("open the sample store");
    let mut vectors = Vec::new();
    for story in store.story_vectors().expect("stories") {
        for (_, v) in store.story_windows(&story.id).expect("windows") {
            vectors.push(v);
        }
    }
    Some(vectors)
}

/// Writes the planted stories in publication order, one digest per write.
fn ingest(
    dir: &std::path::Path,
    events: usize,
    copies: usize,
    days: usize,
    encoder: &Arc<FakeEncoder>,
    params: &Params,
) {
    let mut planted = common::planted(events, copies, days, 7);
    if let Some(sample) = sample_vectors() {
        println!(
            "vectors: {} real windows of the sample, perturbed",
            sample.len()
        );
        common::resample(&mut planted, &sample, 11);
    }
    let stories = planted.items.len();
    let mut order: Vec<usize> = (0..planted.items.len()).collect();
    order.sort_by_key(|&i| (planted.items[i].time, i));

    // 1. Ingest in publication order, one digest per write, as the digests arrive.
    let store = Store::open(dir, encoder.model_id(), encoder.dimension()).expect("store");
    let started = Instant::now();
    let mut per_story = Vec::new();
    let mut done = 0usize;
    let mut at = 0;
    while at < order.len() {
        let digest = planted.items[order[at]].digest.clone();
        let mut end = at;
        while end < order.len() && planted.items[order[end]].digest == digest {
            end += 1;
        }
        let slot: i64 = digest[1..].parse().expect("digest ids are d<slot>");
        store
            .put_digest(&Digest {
                id: digest.clone(),
                // One file in twenty an archive, so search calibrates two source kinds.
                kind: if slot % 20 == 0 {
                    SourceKind::Archive
                } else {
                    SourceKind::Digest
                },
                title: format!("digest {digest}"),
                published: Some(time_of(slot * common::DIGEST_SECONDS)),
                categories: vec!["AI".into()],
                source: format!("{digest}.md"),
            })
            .expect("put digest");
        let batch_stories: Vec<Story> = order[at..end]
            .iter()
            .enumerate()
            .map(|(n, &i)| {
                let text = format!("story {i} of event {}", planted.event[i]);
                Story {
                    id: format!("s{i:07}"),
                    digest_id: digest.clone(),
                    position: n as u32 + 1,
                    headline: text.clone(),
                    author: None,
                    url: Some(format!("https://example.com/{i}")),
                    published: Some(time_of(slot * common::DIGEST_SECONDS)),
                    tags: Vec::new(),
                    display: text.clone(),
                    text,
                }
            })
            .collect();
        let batch: Vec<NewStory<'_>> = batch_stories
            .iter()
            .zip(&order[at..end])
            .map(|(story, &i)| NewStory {
                story,
                hash: story.id.clone(),
                windows: vec![Window {
                    start: 0,
                    end: story.text.len(),
                    tokens: 16,
                    vector: planted.items[i].vector.clone(),
                }],
            })
            .collect();
        let t = Instant::now();
        store.put_stories(&batch, params).expect("put stories");
        let each = t.elapsed() / batch.len() as u32;
        per_story.extend(std::iter::repeat_n(each, batch.len()));
        done += batch.len();
        at = end;
        if done % 100_000 < batch.len() {
            eprintln!(
                "  {done} stored, {:.0} stories/s, RSS {:.0} MiB",
                done as f64 / started.elapsed().as_secs_f64(),
                rss_mib()
            );
        }
    }
    let ingest = started.elapsed();
    store.save_index().expect("save index");
    println!(
        "ingest without the model: {:.0} stories/s ({:.1} s); per story (store + index + cluster): {}",
        stories as f64 / ingest.as_secs_f64(),
        ingest.as_secs_f64(),
        quantiles(per_story.clone())
    );
}

/// Start-up, RSS, recall and the routes, over the store in `dir`.
fn measure(
    dir: &std::path::Path,
    stories: usize,
    days: usize,
    full: bool,
    encoder: &Arc<FakeEncoder>,
    params: &Params,
) {
    // 2. Start-up: open the store as `storydex serve` does (index, catalog, checks).
    let rss_before = rss_mib();
    let started = Instant::now();
    let store = Arc::new(Store::open(dir, encoder.model_id(), encoder.dimension()).expect("open"));
    store.ensure_clusters(params).expect("clusters");
    let startup = started.elapsed();
    println!(
        "start-up to ready: {:.2} s; RSS {:.0} MiB (before opening {:.0} MiB)",
        startup.as_secs_f64(),
        rss_mib(),
        rss_before
    );

    // 4. The HTTP routes, one connection, the model left out (fake encoder).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let state = AppState::new(&ServeSettings::default());
    // The shipped ranking (source kinds calibrated), the planted events' threshold.
    let mut tuning = storydex::service::Tuning::from(common::THRESHOLD);
    tuning.ranking = storydex::embed::ModelSpec::default_model().search;
    state
        .set_ready(Arc::clone(&store), encoder.clone(), tuning)
        .expect("ready");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(storydex::server::serve(listener, state, async move {
        let _ = rx.await;
    }));
    let client = reqwest::blocking::Client::new();
    let get = |path: &str| {
        let t = Instant::now();
        let r = client.get(format!("{base}{path}")).send().expect("request");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let _ = r.bytes();
        t.elapsed()
    };
    let n = if full { 500 } else { 50 };
    let ids: Vec<String> = (0..n)
        .map(|i| format!("s{:07}", (i * 104_729) % stories))
        .collect();
    let mut similar = Vec::new();
    let mut story_dups = Vec::new();
    for id in &ids {
        similar.push(get(&format!("/v1/stories/{id}/similar?k=10")));
        story_dups.push(get(&format!("/v1/stories/{id}/duplicates")));
    }
    let mut week = Vec::new();
    for i in 0..n {
        let day = (i * 37) % days.saturating_sub(7).max(1);
        let since = time_of(day as i64 * 86_400).date();
        let until = time_of((day + 6) as i64 * 86_400).date();
        week.push(get(&format!("/v1/duplicates?since={since}&until={until}")));
    }
    let mut search = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let r = client
            .post(format!("{base}/v1/search"))
            .json(&serde_json::json!({"query": format!("event {i} robots"), "k": 10, "mode": "vector"}))
            .send()
            .expect("search");
        assert!(r.status().is_success());
        let _ = r.bytes();
        search.push(t.elapsed());
    }
    println!(
        "POST /v1/search (vector mode, fake encoder)  {}",
        quantiles(search)
    );
    println!(
        "GET /v1/stories/{{id}}/similar               {}",
        quantiles(similar)
    );
    println!(
        "GET /v1/duplicates, 7 days                   {}",
        quantiles(week)
    );
    println!(
        "GET /v1/stories/{{id}}/duplicates            {}",
        quantiles(story_dups)
    );
    println!("RSS after the requests: {:.0} MiB", rss_mib());
    let _ = tx.send(());
    let _ = runtime.block_on(server);
    // 4b. Search with and without calibrating the source kinds, same store, same queries
    // (stored story vectors), in the service: what the second kind's search costs.
    {
        let service =
            storydex::service::Service::new(Arc::clone(&store), encoder.clone(), common::THRESHOLD);
        let probes = store.story_vectors().expect("vectors");
        let text = storydex::domain::QueryText::new("probe").expect("query");
        let k = storydex::domain::TopK::new(10).expect("k");
        for shift in [0.0, 0.5] {
            let service = service.clone_with_ranking(
                storydex::embed::ModelSpec::default_model()
                    .search
                    .with_collection_shift(shift),
            );
            let took: Vec<Duration> = probes
                .iter()
                .step_by((probes.len() / n).max(1))
                .map(|p| {
                    let t = Instant::now();
                    service
                        .search_with(
                            &text,
                            Some(&p.vector),
                            k,
                            storydex::domain::DateRange::ALL,
                            storydex::service::SearchMode::Vector,
                        )
                        .expect("search");
                    t.elapsed()
                })
                .collect();
            println!(
                "vector search in the service, collection_shift {shift}: {}",
                quantiles(took)
            );
        }
    }
    // 5. Recall@10 of the index against exact search over the stored story vectors (one
    // window per story here), 200 stored vectors as queries. Last: it loads them all.
    let all = store.story_vectors().expect("vectors");
    let probes: Vec<usize> = (0..200).map(|i| (i * 7919) % all.len()).collect();
    let tenths: Vec<f32> = probes
        .iter()
        .map(|&p| {
            let q = &all[p].vector;
            let mut exact: Vec<f32> = all
                .iter()
                .map(|s| storydex::vector::dot(q, &s.vector))
                .collect();
            exact.select_nth_unstable_by(9, |a, b| b.total_cmp(a));
            exact[..10].iter().copied().fold(f32::MAX, f32::min)
        })
        .collect();
    let modes = [
        (
            "sign codes, 4,096 re-scored (default)",
            storydex::store::LargeSearch::DEFAULT,
        ),
        (
            "sign codes, 2,048 re-scored",
            storydex::store::LargeSearch::Rescored { depth: 2048 },
        ),
        (
            "graph, expansion_search 64",
            storydex::store::LargeSearch::Graph { expansion: 64 },
        ),
        (
            "graph, expansion_search 128",
            storydex::store::LargeSearch::Graph { expansion: 128 },
        ),
        (
            "graph, expansion_search 256",
            storydex::store::LargeSearch::Graph { expansion: 256 },
        ),
    ];
    for (name, how) in modes {
        store.set_large_search(how);
        let mut recall = 0.0;
        let mut took = Vec::new();
        for (&p, &tenth) in probes.iter().zip(&tenths) {
            let t = Instant::now();
            // Window keys are not story indices: compare by score (ties are equal).
            let hits = store
                .search_windows(&all[p].vector, 10, None, DateRange::ALL, |_| true)
                .expect("search")
                .into_iter()
                .filter(|h| h.score >= tenth - 1e-6)
                .count();
            took.push(t.elapsed());
            recall += hits.min(10) as f64 / 10.0;
        }
        println!(
            "recall@10 against exact search, {name}: {:.3}; window search {}",
            recall / probes.len() as f64,
            quantiles(took)
        );
    }
    store.set_large_search(storydex::store::LargeSearch::DEFAULT);
}
