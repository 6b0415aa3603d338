//! Duplicate coverage with the real model: digest 001 repeats seven stories of digest
//! 000 half a day later under new headlines. The links of 001 are rewritten here, so the
//! clusters must come from the text (the same link is a bonus, never a requirement).

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use storydex::domain::DateRange;
use storydex::embed::Encoder;
use storydex::service::Service;
use storydex::store::Store;

use crate::helpers::{real_encoder, sample_dir, SAMPLE_REPEATS};

fn pair(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

/// The four sample digests (no archive, to stay fast), 001's links pointed elsewhere.
fn digests_with_rewritten_links(dir: &Path) {
    for entry in std::fs::read_dir(sample_dir()).expect("sample dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name.starts_with("003_") {
            continue;
        }
        let mut text = std::fs::read_to_string(&path).expect("read sample");
        if name.starts_with("001_") {
            text = text.replace("https://x.com/", "https://mirror.example.org/posts/");
        }
        std::fs::write(dir.join(name), text).expect("write copy");
    }
}

#[test]
fn repeats_cluster_with_their_originals_even_when_links_differ() {
    let input = tempfile::tempdir().expect("temp dir");
    digests_with_rewritten_links(input.path());
    let data = tempfile::tempdir().expect("temp dir");
    let encoder = real_encoder();
    let store = Store::open(data.path(), encoder.model_id(), encoder.dimension()).expect("store");
    let threshold = encoder.spec().thresholds.duplicate;
    let service = Service::new(Arc::new(store), encoder, threshold);
    service
        .ingest_paths(
            &[input.path().to_owned()],
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .expect("ingest");

    let clusters = service
        .duplicates(DateRange::ALL, None)
        .expect("duplicates");
    let mut predicted: HashSet<(String, String)> = HashSet::new();
    for c in &clusters {
        let digests: HashSet<&str> = c
            .stories
            .iter()
            .map(|(s, _)| s.digest_id.as_str())
            .collect();
        assert!(digests.len() >= 2, "cluster {} spans one digest", c.id);
        assert_eq!(
            digests.len(),
            c.stories.len(),
            "cluster {} repeats a digest",
            c.id
        );
        for (i, (a, _)) in c.stories.iter().enumerate() {
            for (b, _) in &c.stories[i + 1..] {
                predicted.insert(pair(&a.id, &b.id));
            }
        }
    }
    let truth: HashSet<(String, String)> = SAMPLE_REPEATS.iter().map(|(a, b)| pair(a, b)).collect();
    let found = predicted.intersection(&truth).count();
    let precision = found as f64 / predicted.len().max(1) as f64;
    let missing: Vec<_> = truth.difference(&predicted).collect();
    let wrong: Vec<_> = predicted.difference(&truth).collect();
    assert!(missing.is_empty(), "repeats not clustered: {missing:?}");
    assert!(
        precision >= 0.95,
        "pairwise precision {precision:.3} (threshold {threshold}); unrelated pairs: {wrong:?}"
    );
}
