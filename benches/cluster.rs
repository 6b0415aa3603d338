//! Duplicate clustering on 10,000 synthetic stories (2,000 planted events x 5 copies):
//! the kNN candidate search and the average-linkage clustering, measured apart.
//! `cluster_100k` runs the same at archive scale.

mod common;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use storydex::cluster::{cluster, knn, Params};

fn clustering(c: &mut Criterion) {
    let planted = common::planted(2_000, 5, 365, 7);
    let params = Params::with_threshold(common::THRESHOLD);
    let neighbors = knn(&planted.items, params.neighbors).expect("knn");

    let mut group = c.benchmark_group("cluster_10k");
    // Seconds per knn call: the same few iterations per sample, not criterion's ramp.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("knn", |b| {
        b.iter(|| knn(&planted.items, params.neighbors).expect("knn"))
    });
    group.bench_function("cluster", |b| {
        b.iter(|| cluster(&planted.items, &neighbors, &params))
    });
    group.finish();
}

criterion_group!(benches, clustering);
criterion_main!(benches);
