//! Search latency over a store of 20,000 synthetic stories (4,000 planted events x 5
//! copies over 200 days, dim 384): k = 10 over everything, and with a one-week and a
//! one-month date filter (the filter runs inside the HNSW search, so a narrow range is
//! the slow case). Measured at the service, so it includes grouping windows into
//! stories and reading the hits from SQLite; the query vector is given (the encoder
//! bench measures embedding the query). One digest in five is stored as an archive, so
//! `k10_calibrated` measures the per-kind calibration of the default ranking (one
//! search per source kind) against `k10`, one plain search, in the same run.

mod common;

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use storydex::corpus::{Digest, SourceKind, Story};
use storydex::domain::{DateRange, QueryText, TopK};
use storydex::embed::fake::FakeEncoder;
use storydex::embed::{Encoder, Window};
use storydex::service::{SearchMode, Service};
use storydex::store::{NewStory, Store};
use time::OffsetDateTime;

const EVENTS: usize = 4_000;
const DAYS: usize = 200;

/// A store in a temp dir holding the planted stories, one window each.
fn build_store() -> (tempfile::TempDir, Service, common::Planted) {
    let planted = common::planted(EVENTS, 5, DAYS, 11);
    let dir = tempfile::tempdir().expect("temp dir");
    let encoder = Arc::new(FakeEncoder::new(common::DIM));
    let store = Store::open(dir.path(), encoder.model_id(), encoder.dimension()).expect("store");
    let time = |item: &storydex::cluster::Item| {
        OffsetDateTime::from_unix_timestamp(1_735_689_600 + item.time.unwrap_or(0))
            .expect("time in range")
    };
    let mut digests: Vec<&str> = planted.items.iter().map(|i| i.digest.as_str()).collect();
    digests.sort();
    digests.dedup();
    for id in digests {
        let slot: i64 = id[1..].parse().expect("digest ids are d<slot>");
        store
            .put_digest(&Digest {
                id: id.to_owned(),
                kind: if slot % 5 == 0 {
                    SourceKind::Archive
                } else {
                    SourceKind::Digest
                },
                title: format!("digest {id}"),
                published: OffsetDateTime::from_unix_timestamp(
                    1_735_689_600 + slot * common::DIGEST_SECONDS,
                )
                .ok(),
                categories: vec!["AI".into()],
                source: format!("{id}.md"),
            })
            .expect("put digest");
    }
    let stories: Vec<Story> = planted
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let text = format!("story {i} of event {}", planted.event[i]);
            Story {
                id: format!("s{i:06}"),
                digest_id: item.digest.clone(),
                position: (i % 50) as u32 + 1,
                headline: text.clone(),
                author: None,
                url: Some(format!("https://example.com/{i}")),
                published: Some(time(item)),
                tags: Vec::new(),
                display: text.clone(),
                text,
            }
        })
        .collect();
    for (chunk, items) in stories.chunks(1000).zip(planted.items.chunks(1000)) {
        let batch: Vec<NewStory<'_>> = chunk
            .iter()
            .zip(items)
            .map(|(story, item)| NewStory {
                story,
                hash: story.id.clone(),
                windows: vec![Window {
                    start: 0,
                    end: story.text.len(),
                    tokens: 16,
                    vector: item.vector.clone(),
                }],
            })
            .collect();
        store
            .put_stories(
                &batch,
                &storydex::cluster::Params::with_threshold(common::THRESHOLD),
            )
            .expect("put stories");
    }
    store.save_index().expect("save index");
    let service = Service::new(Arc::new(store), encoder, common::THRESHOLD);
    (dir, service, planted)
}

fn search(c: &mut Criterion) {
    let (_dir, service, planted) = build_store();
    let plain = service.clone_with_ranking(service.ranking().with_collection_shift(0.0));
    let calibrated = service.clone_with_ranking(service.ranking().with_collection_shift(0.5));
    // Queries near stored stories (as a real query near its topic is), cycled.
    let mut rng = common::Rng::new(5);
    let queries: Vec<Vec<f32>> = (0..64)
        .map(|_| {
            let base = &planted.items[rng.below(planted.items.len())].vector;
            let noise = rng.unit_vector(common::DIM);
            let mut q: Vec<f32> = base.iter().zip(&noise).map(|(b, n)| b + 0.3 * n).collect();
            storydex::vector::normalize(&mut q);
            q
        })
        .collect();
    let k = TopK::new(10).expect("k");
    let ranges = [
        ("all", DateRange::ALL),
        (
            "one_month",
            DateRange::parse(Some("2025-03-01"), Some("2025-03-31")).expect("range"),
        ),
        (
            "one_week",
            DateRange::parse(Some("2025-03-01"), Some("2025-03-07")).expect("range"),
        ),
    ];
    let text = QueryText::new("benchmark query").expect("query");
    let mut group = c.benchmark_group("search_20k");
    for (name, range) in ranges {
        let hits = service
            .search_with(&text, Some(&queries[0]), k, range, SearchMode::Vector)
            .expect("search");
        assert_eq!(hits.len(), 10, "{name}: too few stories in range");
        let mut next = 0;
        for (bench, service) in [("k10", &plain), ("k10_calibrated", &calibrated)] {
            group.bench_with_input(BenchmarkId::new(bench, name), &range, |b, range| {
                b.iter(|| {
                    next = (next + 1) % queries.len();
                    service
                        .search_with(&text, Some(&queries[next]), k, *range, SearchMode::Vector)
                        .expect("search")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
