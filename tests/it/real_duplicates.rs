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

/// The real model, remembering every passage it embedded, so that ingesting the same
/// digests in several orders embeds each text once.
struct Remembering {
    inner: Arc<storydex::embed::CandleEncoder>,
    seen: std::sync::Mutex<std::collections::HashMap<String, Vec<storydex::embed::Window>>>,
}

impl Encoder for Remembering {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dimension(&self) -> usize {
        self.inner.dimension()
    }
    fn device_info(&self) -> storydex::embed::DeviceInfo {
        self.inner.device_info()
    }
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, storydex::embed::EmbedError> {
        self.inner.embed_query(text)
    }
    fn embed_passages(
        &self,
        texts: &[&str],
    ) -> Result<Vec<Vec<storydex::embed::Window>>, storydex::embed::EmbedError> {
        let missing: Vec<&str> = {
            let seen = self.seen.lock().unwrap();
            texts
                .iter()
                .copied()
                .filter(|t| !seen.contains_key(*t))
                .collect()
        };
        let fresh = self.inner.embed_passages(&missing)?;
        let mut seen = self.seen.lock().unwrap();
        for (text, windows) in missing.into_iter().zip(fresh) {
            seen.insert(text.to_owned(), windows);
        }
        Ok(texts.iter().map(|t| seen[*t].clone()).collect())
    }
    fn count_tokens(&self, text: &str) -> Result<usize, storydex::embed::EmbedError> {
        self.inner.count_tokens(text)
    }
    fn passage_layout(&self) -> String {
        self.inner.passage_layout()
    }
}

/// Every stored cluster of two or more stories, as sorted id lists.
fn stored_clusters(service: &Service) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = service
        .duplicates(DateRange::ALL, None)
        .expect("duplicates")
        .into_iter()
        .map(|c| {
            let mut ids: Vec<String> = c.stories.into_iter().map(|(s, _)| s.id).collect();
            ids.sort();
            ids
        })
        .collect();
    out.sort();
    out
}

/// Clusters are assigned at ingest, online in publication order; a digest that arrives
/// late (older than what is stored), an edited digest and a removed story re-run the
/// assignment from the earliest story they touch. Whatever the order of arrival, the
/// stored clusters are those of one batch recompute.
#[test]
fn clusters_stored_at_ingest_do_not_depend_on_the_order_digests_arrive_in() {
    let input = tempfile::tempdir().expect("temp dir");
    digests_with_rewritten_links(input.path());
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(input.path())
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4);
    let encoder = Arc::new(Remembering {
        inner: real_encoder(),
        seen: Default::default(),
    });
    let threshold = encoder.inner.spec().thresholds.duplicate;
    let orders: [[usize; 4]; 4] = [[0, 1, 2, 3], [1, 0, 3, 2], [3, 2, 1, 0], [2, 0, 3, 1]];
    let mut results = Vec::new();
    for order in orders {
        let data = tempfile::tempdir().expect("temp dir");
        let store =
            Store::open(data.path(), encoder.model_id(), encoder.dimension()).expect("store");
        let service = Service::new(Arc::new(store), encoder.clone(), threshold);
        for i in order {
            service
                .ingest_paths(&[files[i].clone()], &AtomicBool::new(false), &mut |_| {})
                .expect("ingest");
        }
        let incremental = stored_clusters(&service);
        let report = service.recluster().expect("recluster");
        assert_eq!(report.moved, 0, "order {order:?}: {report:?}");
        assert_eq!(stored_clusters(&service), incremental, "order {order:?}");
        results.push((order, incremental, service, data));
    }
    let first = &results[0].1;
    assert_eq!(first.len(), SAMPLE_REPEATS.len(), "{first:?}");
    for (order, clusters, _, _) in &results {
        assert_eq!(clusters, first, "order {order:?} differs from file order");
    }

    // An edited digest (one item dropped, so an Atlas repeat disappears), then restored.
    let (_, _, service, _) = &results[1];
    let atlas_repeat = files[1].clone();
    let text = std::fs::read_to_string(&atlas_repeat).expect("read 001");
    let start = text.find("3.  [").expect("item 3 of 001");
    let end = text.find("4.  [").expect("item 4 of 001");
    let edited = format!("{}{}", &text[..start], &text[end..]);
    let edited_dir = tempfile::tempdir().expect("temp dir");
    let edited_file = edited_dir
        .path()
        .join(atlas_repeat.file_name().expect("name"));
    std::fs::write(&edited_file, edited).expect("write edited");
    let report = service
        .ingest_paths(&[edited_file], &AtomicBool::new(false), &mut |_| {})
        .expect("ingest edited");
    assert_eq!(report.removed, 1);
    let without = stored_clusters(service);
    assert_eq!(without.len(), first.len() - 1, "{without:?}");
    assert_eq!(service.recluster().expect("recluster").moved, 0);
    service
        .ingest_paths(&[atlas_repeat], &AtomicBool::new(false), &mut |_| {})
        .expect("restore 001");
    assert_eq!(&stored_clusters(service), first);
}
