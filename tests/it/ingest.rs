//! Ingest and store behaviour with the real model, each test on its own small store
//! (one or two digests, a few seconds of embedding): edits re-embed only what changed,
//! bad files are reported without touching what is stored, and a lost or corrupt vector
//! index is rebuilt from SQLite.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use storydex::domain::{DateRange, QueryText, TopK};
use storydex::embed::Encoder;
use storydex::service::{IngestReport, SearchMode, Service};
use storydex::store::{Store, StoredStory};
use tempfile::TempDir;

use crate::helpers::{real_encoder, sample_dir, ATLAS_STORY};

/// Digest of 2025-06-10 00:00, 8 stories.
const JUNE_FILE: &str = "002_942afda76c0f7909.txt";
const JUNE_DIGEST: &str = "d20250610-0000";
/// Digest of 2025-11-05, 7 stories.
const NOVEMBER_FILE: &str = "004_e093e21e046dee1d.txt";
/// Digest of 2026-01-06 12:00, 10 stories, among them the Atlas story.
const ATLAS_FILE: &str = "000_ce41d89debbb0a4e.txt";

fn open_service(data: &Path) -> Service {
    let encoder = real_encoder();
    let store = Store::open(data, encoder.model_id(), encoder.dimension()).expect("open store");
    let threshold = encoder.spec().thresholds.duplicate;
    Service::new(Arc::new(store), encoder, threshold)
}

fn ingest(service: &Service, path: &Path) -> IngestReport {
    service
        .ingest_paths(&[path.to_owned()], &AtomicBool::new(false), &mut |_| {})
        .unwrap_or_else(|e| panic!("ingest {}: {e}", path.display()))
}

fn sample_text(file: &str) -> String {
    std::fs::read_to_string(sample_dir().join(file)).unwrap()
}

/// The 1-based line of the first line starting with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starts with {prefix:?}"))
        + 1
}

/// Writes `text` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn editing_one_summary_re_embeds_only_that_story_and_dropping_an_item_removes_it() {
    let data = tempfile::tempdir().unwrap();
    let inbox = tempfile::tempdir().unwrap();
    let service = open_service(data.path());
    let original = sample_text(JUNE_FILE);
    let file = write(inbox.path(), "digest.md", &original);

    let first = ingest(&service, &file);
    assert_eq!((first.new, first.updated, first.unchanged), (8, 0, 0));
    let again = ingest(&service, &file);
    assert_eq!(
        (again.new, again.updated, again.unchanged, again.removed),
        (0, 0, 8, 0),
        "{again:?}"
    );
    assert_eq!(again.tokens, 0, "an unchanged file must not be re-embedded");

    // Item 3's summary gets a new sentence.
    let sentence = "该研究还公开了全部评测代码。";
    let anchor = "指出了多模态AI未来改进的关键方向。";
    assert!(original.contains(anchor), "the sample changed");
    let edited = original.replacen(anchor, &format!("{anchor}{sentence}"), 1);
    write(inbox.path(), "digest.md", &edited);
    let report = ingest(&service, &file);
    assert_eq!(
        (report.new, report.updated, report.unchanged, report.removed),
        (0, 1, 7, 0),
        "{report:?}"
    );
    assert!(report.tokens > 0);
    let story = service.story(&format!("{JUNE_DIGEST}-03")).unwrap();
    assert!(story.text.contains(sentence), "{}", story.text);

    // The last item is dropped from the digest.
    let last = edited.find("\n8.  [").expect("item 8");
    write(inbox.path(), "digest.md", &edited[..last + 1]);
    let report = ingest(&service, &file);
    assert_eq!(
        (report.new, report.updated, report.unchanged, report.removed),
        (0, 0, 7, 1),
        "{report:?}"
    );
    assert_eq!(report.tokens, 0);
    assert!(service.story(&format!("{JUNE_DIGEST}-08")).is_err());
    assert_eq!(service.story_count().unwrap(), 7);
    assert_eq!(service.window_count(), 7);
}

#[test]
fn bad_files_are_reported_with_file_and_line_and_stored_stories_stay_as_they_were() {
    let data = tempfile::tempdir().unwrap();
    let service = open_service(data.path());
    let first = ingest(&service, &sample_dir().join(JUNE_FILE));
    assert_eq!(first.new, 8);
    let stories_before: Vec<StoredStory> = service.digest(JUNE_DIGEST).unwrap().1;
    let vectors_before: Vec<_> = stories_before
        .iter()
        .map(|s| service.story_windows(&s.id).unwrap())
        .map(|w| w.into_iter().map(|(_, v)| v).collect::<Vec<_>>())
        .collect();

    let inbox = tempfile::tempdir().unwrap();
    // A good digest that is not stored yet.
    write(inbox.path(), "a-good.md", sample_text(NOVEMBER_FILE));
    // Neither format: a plain Markdown note (its first non-blank line is line 2).
    let notes = write(
        inbox.path(),
        "b-notes.md",
        "\n# Reading list\n\n- a paper\n",
    );
    // Not UTF-8: a Latin-1 byte on line 3.
    let latin1 = write(
        inbox.path(),
        "c-latin1.txt",
        b"---\ntitle: \"x\"\ndate: caf\xe9\n---\n".as_slice(),
    );
    // The stored June digest, re-edited so that item 3 lost its link: it must not
    // replace (or delete) any of the stored June stories.
    let june = sample_text(JUNE_FILE);
    let item3 = "3.  [多模态RAG研究揭示检索优越性与VLM文本阅读挑战-merve](https://x.com/mervenoyann/status/1932061705745653791)";
    assert!(june.contains(item3), "the sample changed");
    let no_link = june.replacen(
        item3,
        "3.  多模态RAG研究揭示检索优越性与VLM文本阅读挑战-merve",
        1,
    );
    let no_link_line = line_of(&no_link, "3.  ");
    let broken = write(inbox.path(), "d-no-link.md", &no_link);

    let report = ingest(&service, inbox.path());
    assert_eq!(report.files, 1, "{report:?}");
    assert_eq!((report.new, report.updated, report.removed), (7, 0, 0));
    let failed: Vec<(String, String)> = report
        .failed
        .iter()
        .map(|f| (f.source.clone(), f.error.clone()))
        .collect();
    assert_eq!(failed.len(), 3, "{failed:#?}");
    for (path, line, says) in [
        (&notes, 2, "expected a digest"),
        (&latin1, 3, "UTF-8"),
        (&broken, no_link_line, "link"),
    ] {
        let source = path.display().to_string();
        let (_, error) = failed
            .iter()
            .find(|(s, _)| *s == source)
            .unwrap_or_else(|| panic!("{source} is not reported: {failed:#?}"));
        assert!(
            error.starts_with(&format!("{source}:{line}: ")),
            "{error} (expected line {line})"
        );
        assert!(error.contains(says), "{error}");
    }

    let stories_after = service.digest(JUNE_DIGEST).unwrap().1;
    assert_eq!(stories_after, stories_before);
    let vectors_after: Vec<_> = stories_after
        .iter()
        .map(|s| service.story_windows(&s.id).unwrap())
        .map(|w| w.into_iter().map(|(_, v)| v).collect::<Vec<_>>())
        .collect();
    assert_eq!(vectors_after, vectors_before);
    assert_eq!(service.story_count().unwrap(), 8 + 7);
}

/// A store holding the Atlas digest, and the top three ids and scores for the Atlas query.
fn atlas_store() -> (TempDir, Vec<(String, f32)>) {
    let data = tempfile::tempdir().unwrap();
    let service = open_service(data.path());
    ingest(&service, &sample_dir().join(ATLAS_FILE));
    let top = atlas_top(&service);
    assert_eq!(top[0].0, ATLAS_STORY, "{top:?}");
    assert!(service.index_path().is_file());
    (data, top)
}

fn atlas_top(service: &Service) -> Vec<(String, f32)> {
    let query = QueryText::new("Boston Dynamics Atlas robot in car factories").unwrap();
    service
        .search(
            &query,
            TopK::new(3).unwrap(),
            DateRange::ALL,
            SearchMode::Vector,
        )
        .unwrap()
        .into_iter()
        .map(|h| (h.story.id, h.score))
        .collect()
}

fn assert_same_hits(got: &[(String, f32)], want: &[(String, f32)]) {
    let ids = |h: &[(String, f32)]| h.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(got), ids(want), "{got:?} vs {want:?}");
    for ((_, a), (_, b)) in got.iter().zip(want) {
        assert!((a - b).abs() < 1e-5, "{got:?} vs {want:?}");
    }
}

#[test]
fn deleted_index_is_rebuilt_from_sqlite_on_open() {
    let (data, before) = atlas_store();
    let index = data.path().join("index.usearch");
    std::fs::remove_file(&index).expect("the store keeps its index in index.usearch");

    let service = open_service(data.path());
    assert_eq!(service.index_path(), index);
    assert!(index.is_file(), "the rebuilt index is saved again");
    assert_eq!(service.window_count(), 10);
    assert_same_hits(&atlas_top(&service), &before);
}

#[test]
fn corrupt_index_is_rebuilt_from_sqlite_on_open() {
    let (data, before) = atlas_store();
    let index = data.path().join("index.usearch");
    let good = std::fs::read(&index).unwrap();

    for garbage in [
        b"this is not a usearch index".to_vec(),
        good[..good.len() / 2].to_vec(),
    ] {
        std::fs::write(&index, &garbage).unwrap();
        let service = open_service(data.path());
        assert_eq!(service.window_count(), 10);
        assert_same_hits(&atlas_top(&service), &before);
        drop(service);
        let saved = std::fs::read(&index).unwrap();
        assert_ne!(
            saved, garbage,
            "the rebuilt index replaces the corrupt file"
        );
    }
}
