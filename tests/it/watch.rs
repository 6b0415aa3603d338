//! A watched folder with real files: the watcher over a service with the fake encoder,
//! and over the real server (its writes through the server's write path, its status on
//! `/metrics` and the Digests page). Every wait polls for a condition, up to 20 s; the
//! store changes before the watcher's status does, so a wait names both.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use storydex::embed::fake::FakeEncoder;
use storydex::embed::Encoder;
use storydex::service::{Service, WatchOptions, WatchSnapshot, Watcher};
use storydex::store::Store;
use tempfile::TempDir;

use crate::helpers::{make_digest, spawn_app};

const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `condition` until it holds; fails after [`PATIENCE`], saying what was awaited.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < PATIENCE,
            "waited {PATIENCE:?} for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Watched {
    service: Arc<Service>,
    watcher: Option<Watcher>,
    folder: TempDir,
    _data: TempDir,
}

impl Watched {
    /// A service over an empty store, watching an empty folder; returns once the first
    /// scan is done (so files written next arrive as events).
    fn start(quiet_ms: u64, removes: bool) -> Watched {
        let data = tempfile::tempdir().expect("temp dir");
        let folder = tempfile::tempdir().expect("temp dir");
        let encoder = Arc::new(FakeEncoder::default());
        let store =
            Store::open(data.path(), encoder.model_id(), encoder.dimension()).expect("open store");
        let service = Arc::new(Service::new(Arc::new(store), encoder, 0.9));
        let applying = Arc::clone(&service);
        let watcher = Watcher::spawn(
            WatchOptions {
                folder: folder.path().to_owned(),
                quiet: Duration::from_millis(quiet_ms),
                removes,
            },
            Box::new(move |op| {
                applying
                    .apply_watch_op(op, &AtomicBool::new(false))
                    .map_err(|e| e.to_string())
            }),
        )
        .expect("start watching");
        let watched = Watched {
            service,
            watcher: Some(watcher),
            folder,
            _data: data,
        };
        wait_until("the first scan", || watched.status().last_scan.is_some());
        watched
    }

    fn status(&self) -> WatchSnapshot {
        self.watcher.as_ref().expect("watching").status().snapshot()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.folder.path().join(name)
    }

    fn stories(&self) -> usize {
        self.service.story_count().expect("story count")
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(watcher) = self.watcher.take() {
            watcher.stop();
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write the file");
}

#[test]
fn watch_ingests_a_file_written_in_pieces_once_and_whole() {
    let w = Watched::start(1500, false);
    let text = make_digest("2026-02-01T09:00:00+08:00", "pieces", 3);
    let mut file = std::fs::File::create(w.path("pieces.md")).expect("create");
    let bytes = text.as_bytes();
    let step = bytes.len() / 5 + 1;
    for piece in bytes.chunks(step) {
        file.write_all(piece).expect("write a piece");
        file.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(file);
    wait_until("the three stories, counted", || {
        w.stories() == 3 && w.status().ingested > 0
    });
    let status = w.status();
    assert_eq!(status.ingested, 1, "{status:?}");
    assert_eq!(status.failed, 0, "{status:?}");
    let digests = w.service.digests().expect("digests");
    assert_eq!(digests.len(), 1);
    assert_eq!(digests[0].stories, 3);
}

#[test]
fn watch_ingests_a_file_written_elsewhere_and_renamed_into_place_at_once() {
    // A quiet time longer than the test's patience: only the rename can trigger it.
    let w = Watched::start(600_000, false);
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let draft = elsewhere.path().join("renamed.md");
    write(
        &draft,
        &make_digest("2026-02-02T09:00:00+08:00", "renamed", 2),
    );
    std::fs::rename(&draft, w.path("renamed.md")).expect("rename into place");
    wait_until("the renamed file's stories, counted", || {
        w.stories() == 2 && w.status().ingested > 0
    });
    assert_eq!(w.status().ingested, 1);
}

#[test]
fn watch_reports_a_broken_file_with_its_line_keeps_going_and_ingests_it_once_fixed() {
    let w = Watched::start(200, false);
    let broken = w.path("broken.md");
    write(&broken, "\n\nthis is not a digest\n");
    wait_until("the broken file to be reported", || {
        !w.status().failing.is_empty()
    });
    let status = w.status();
    assert_eq!(status.failed, 1);
    let failure = &status.failing[0];
    assert_eq!(failure.source, broken.display().to_string());
    assert!(
        failure.error.contains("broken.md:3:"),
        "names the file and line: {}",
        failure.error
    );

    // The watcher goes on.
    write(
        &w.path("good.md"),
        &make_digest("2026-02-03T09:00:00+08:00", "good", 2),
    );
    wait_until("the good file's stories", || w.stories() == 2);

    // Fixed, the file is picked up at its next change.
    write(
        &broken,
        &make_digest("2026-02-04T09:00:00+08:00", "fixed", 3),
    );
    wait_until("the fixed file's stories, counted", || {
        w.stories() == 5 && w.status().failing.is_empty()
    });
    let status = w.status();
    assert!(status.failing.is_empty(), "{status:?}");
    assert_eq!(status.ingested, 2, "{status:?}");
}

#[test]
fn watch_keeps_the_stories_of_a_deleted_file_unless_told_to_remove_them() {
    let w = Watched::start(200, false);
    let file = w.path("sub/kept.md");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    write(&file, &make_digest("2026-02-05T09:00:00+08:00", "kept", 2));
    wait_until("the stories", || w.stories() == 2);
    std::fs::remove_file(&file).expect("delete");
    wait_until("the deletion to be seen", || w.status().removed == 1);
    assert_eq!(w.stories(), 2);
    assert_eq!(w.service.digests().expect("digests").len(), 1);

    let w = Watched::start(200, true);
    let file = w.path("gone.md");
    write(&file, &make_digest("2026-02-06T09:00:00+08:00", "gone", 2));
    wait_until("the stories", || w.stories() == 2);
    std::fs::remove_file(&file).expect("delete");
    wait_until("the stories and the digest to be removed", || {
        w.stories() == 0 && w.service.digests().expect("digests").is_empty()
    });
    let hits = w
        .service
        .search_with(
            &storydex::domain::QueryText::new("gone quokka").expect("query"),
            None,
            storydex::domain::TopK::new(10).expect("k"),
            storydex::domain::DateRange::ALL,
            storydex::service::SearchMode::Lexical,
        )
        .expect("search");
    assert!(
        hits.is_empty(),
        "the removed stories are not found: {hits:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_in_the_server_shows_its_folder_and_broken_files_on_metrics_and_the_digests_page() {
    let app = spawn_app().await;
    let folder = tempfile::tempdir().expect("temp dir");
    let watcher = app
        .state
        .start_watch(
            WatchOptions {
                folder: folder.path().to_owned(),
                quiet: Duration::from_millis(200),
                removes: false,
            },
            tokio::runtime::Handle::current(),
        )
        .expect("start watching");
    std::fs::write(folder.path().join("broken.md"), "nothing to see\n").expect("write");
    std::fs::write(
        folder.path().join("served.md"),
        make_digest("2026-03-01T09:00:00+08:00", "served", 2),
    )
    .expect("write");
    let started = Instant::now();
    let metrics = loop {
        let text = app.get("/metrics").await.text().await.expect("body");
        if text.contains("storydex_watch_files_total{result=\"ingested\"} 1")
            && text.contains("storydex_watch_files_total{result=\"failed\"} 1")
        {
            break text;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "metrics never showed both files:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(metrics.contains("storydex_watch_last_scan_timestamp_seconds "));
    assert!(metrics.contains("storydex_watch_failing_files 1"));

    let digests = app.get_json("/v1/digests").await;
    assert!(
        digests["digests"]
            .as_array()
            .expect("digests")
            .iter()
            .any(|d| d["title"] == "test digest served"),
        "{digests}"
    );
    let page = app.get("/digests").await.text().await.expect("page");
    let folder_name = folder.path().display().to_string();
    assert!(page.contains(&folder_name), "names the folder");
    assert!(
        page.contains("broken.md:1:"),
        "names the broken file and line"
    );

    tokio::task::spawn_blocking(move || watcher.stop())
        .await
        .expect("stop");
}
