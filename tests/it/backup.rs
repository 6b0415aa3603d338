//! Backups of a live store: `POST /v1/admin/backup` while digests keep arriving gives
//! a store equal to the source as of the backup's last committed digest.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use storydex::domain::{DateRange, QueryText, TopK};
use storydex::embed::fake::FakeEncoder;
use storydex::server::ServeSettings;
use storydex::service::{SearchMode, Service};
use storydex::store::Store;

use crate::helpers::{
    assert_error, make_digest, sample_dir, spawn_app, spawn_app_with, AppOptions,
};

const DIGESTS: usize = 14;

fn digest(i: usize) -> String {
    make_digest(
        &format!("2026-03-{:02}T08:00:00+08:00", i + 1),
        &format!("bk{i}"),
        3,
    )
}

/// What two stores must agree on: every story with its windows, the duplicate clusters,
/// and search results.
fn snapshot(service: &Service) -> Vec<String> {
    let mut out = Vec::new();
    for d in service.digests().unwrap() {
        let (_, stories) = service.digest(&d.id).unwrap();
        for s in stories {
            let windows: Vec<(usize, usize, Vec<f32>)> = service
                .story_windows(&s.id)
                .unwrap()
                .into_iter()
                .map(|(m, v)| (m.start, m.end, v))
                .collect();
            out.push(format!(
                "{} {} {:?} {:?}",
                s.id, s.headline, s.text, windows
            ));
        }
    }
    out.sort();
    for c in service.duplicates(DateRange::default(), None).unwrap() {
        let members: Vec<&str> = c.stories.iter().map(|(s, _)| s.id.as_str()).collect();
        out.push(format!("cluster {} {members:?}", c.id));
    }
    for q in ["quokka release", "Atlas humanoid robot", "英伟达发布新芯片"] {
        let hits = service
            .search(
                &QueryText::new(q).unwrap(),
                TopK::DEFAULT,
                DateRange::default(),
                SearchMode::Hybrid,
            )
            .unwrap();
        let hits: Vec<(String, f32)> = hits.into_iter().map(|h| (h.story.id, h.score)).collect();
        out.push(format!("search {q}: {hits:?}"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_steady_writes_is_the_store_as_of_its_last_digest() {
    let root = tempfile::tempdir().unwrap();
    let settings = ServeSettings {
        backup_dir: Some(root.path().join("backups")),
        ..ServeSettings::default()
    };
    let app = spawn_app_with(AppOptions {
        settings,
        ..AppOptions::default()
    })
    .await;
    let (client, url) = (app.client.clone(), app.url("/v1/digests"));
    let writer = tokio::spawn(async move {
        for i in 0..DIGESTS {
            let response = client
                .post(&url)
                .header("content-type", "text/markdown")
                .body(digest(i))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201, "digest {i}");
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    });
    // Back up while the writer is going, a few digests in.
    let mut taken = None;
    for _ in 0..200 {
        let stored = app.get_json("/health").await["stories"].as_u64().unwrap();
        if stored >= crate::helpers::SAMPLE_STORIES as u64 + 6 {
            let response = app
                .client
                .post(app.url("/v1/admin/backup"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            taken = Some(response.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = taken.expect("the backup ran while digests arrived");
    writer.await.unwrap();
    let dir = std::path::PathBuf::from(report["dir"].as_str().unwrap());
    assert!(dir.starts_with(root.path().join("backups")), "{report}");

    tokio::task::spawn_blocking(move || {
        let encoder = Arc::new(FakeEncoder::default());
        let restored = Service::new(
            Arc::new(Store::open(&dir, "fake-hash-384", 384).expect("the backup opens")),
            encoder.clone(),
            0.9,
        );
        // The posted digests it holds are the first k, in order: a prefix, never a gap.
        let held: Vec<String> = restored
            .digests()
            .unwrap()
            .into_iter()
            .filter(|d| d.title.starts_with("test digest bk"))
            .map(|d| d.title)
            .collect();
        let k = held.len();
        assert!(
            (2..DIGESTS).contains(&k),
            "{k} of {DIGESTS} digests in the backup"
        );
        for i in 0..k {
            assert!(held.contains(&format!("test digest bk{i}")), "{held:?}");
        }
        assert_eq!(report["stories"], crate::helpers::SAMPLE_STORIES + 3 * k);
        // The source as of that digest, built again from the same files in the same order.
        let reference_dir = tempfile::tempdir().unwrap();
        let reference = Service::new(
            Arc::new(Store::open(reference_dir.path(), "fake-hash-384", 384).unwrap()),
            encoder,
            0.9,
        );
        reference
            .ingest_paths(&[sample_dir()], &AtomicBool::new(false), &mut |_| {})
            .unwrap();
        for i in 0..k {
            reference
                .ingest_text(&format!("bk{i}.md"), &digest(i))
                .unwrap();
        }
        assert_eq!(snapshot(&restored), snapshot(&reference));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn backups_need_a_backup_folder_and_refuse_an_existing_target() {
    let app = spawn_app().await;
    let message = assert_error(
        app.client
            .post(app.url("/v1/admin/backup"))
            .send()
            .await
            .unwrap(),
        409,
        "backups_off",
    )
    .await;
    assert!(message.contains("--backup-dir"), "{message}");
    let dir = tempfile::tempdir().unwrap();
    let err = storydex::store::backup(&dir.path().join("nothing"), &dir.path().join("out"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds no store"), "{err}");
}
