//! One HTTP test with the real multilingual model. It fails, naming `scripts/fetch-model`,
//! when `models/multilingual-e5-small/` is absent (see `helpers::real_model_dir`).

use std::sync::Arc;

use serde_json::{json, Value};
use storydex::cli::ModelArgs;
use storydex::embed::Encoder;
use storydex::server::{AppState, ServeSettings};
use storydex::store::Store;

use crate::helpers::{real_model_dir, sample_dir, ATLAS_STORY, SAMPLE_REPEATS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_model_finds_a_chinese_story_from_an_english_query_over_http() {
    let model_dir = real_model_dir();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let (store, encoder) = tokio::task::spawn_blocking(move || {
        let encoder = ModelArgs {
            model: None,
            model_dir: Some(model_dir),
            ..ModelArgs::default()
        }
        .load_encoder()
        .expect("load the model");
        let store = Store::open(&data, encoder.model_id(), encoder.dimension()).unwrap();
        (Arc::new(store), Arc::new(encoder))
    })
    .await
    .unwrap();
    let model_id = encoder.model_id().to_owned();
    let state = AppState::new(&ServeSettings::default());
    state.set_ready(store, encoder, 0.9).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(storydex::server::serve(
        listener,
        state,
        std::future::pending(),
    ));
    let client = reqwest::Client::new();

    for file in ["000_ce41d89debbb0a4e.txt", "002_942afda76c0f7909.txt"] {
        let text = std::fs::read_to_string(sample_dir().join(file)).unwrap();
        let response = client
            .post(format!("{base}/v1/digests"))
            .header("content-type", "text/markdown")
            .body(text)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }
    let health: Value = client
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["model"], model_id.as_str());

    let response: Value = client
        .post(format!("{base}/v1/search"))
        .json(&json!({"query": "Boston Dynamics humanoid robot working in car factories", "k": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let top: Vec<&str> = response["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert!(top[..2].contains(&ATLAS_STORY), "{response:#}");
}

/// Items of 001 that 000 did not report (001-08 is close: a detail of 000-01).
const SAMPLE_FRESH: [&str; 2] = ["d20260107-0000-01", "d20260107-0000-08"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_model_finds_the_sample_repeats_as_clusters_and_in_a_check() {
    let encoder = tokio::task::spawn_blocking(crate::helpers::real_encoder)
        .await
        .unwrap();
    let threshold = encoder.spec().thresholds.duplicate;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), encoder.model_id(), encoder.dimension()).unwrap();
    let state = AppState::new(&ServeSettings::default());
    state
        .set_ready(Arc::new(store), encoder, threshold)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(storydex::server::serve(
        listener,
        state,
        std::future::pending(),
    ));
    let client = reqwest::Client::new();

    // The four digests in publication order (002 and 004 are from 2025); not the archive.
    let mut created = Vec::new();
    for file in [
        "002_942afda76c0f7909.txt",
        "004_e093e21e046dee1d.txt",
        "000_ce41d89debbb0a4e.txt",
        "001_f9894c49d7f708a5.txt",
    ] {
        let text = std::fs::read_to_string(sample_dir().join(file)).unwrap();
        let response = client
            .post(format!("{base}/v1/digests"))
            .header("content-type", "text/markdown")
            .body(text)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{file}");
        created.push(response.json::<Value>().await.unwrap());
    }

    // (a) The seven repeats are the only clusters.
    let duplicates: Value = client
        .get(format!("{base}/v1/duplicates"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut pairs: Vec<Vec<String>> = duplicates["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut ids: Vec<String> = c["stories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_owned())
                .collect();
            ids.sort();
            ids
        })
        .collect();
    pairs.sort();
    let expected: Vec<Vec<String>> = SAMPLE_REPEATS
        .iter()
        .map(|(a, b)| vec![(*a).to_owned(), (*b).to_owned()])
        .collect();
    assert_eq!(pairs, expected, "threshold {threshold}: {duplicates:#}");

    // (b) Digest 001 as a draft: every link moved elsewhere (no same-link bonus), dated
    // between 000 and 001 so that 000 is earlier and the stored 001 is later.
    let original = std::fs::read_to_string(sample_dir().join("001_f9894c49d7f708a5.txt")).unwrap();
    let draft = original
        .replace("https://x.com/", "https://example.org/mirror/")
        .replace(
            "date: 2026-01-07T00:00:10+08:00",
            "date: 2026-01-06T18:00:00+08:00",
        );
    assert_ne!(draft, original);
    assert!(!draft.contains("x.com/"));
    let response = client
        .post(format!("{base}/v1/check"))
        .header("content-type", "text/markdown")
        .body(draft)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let check: Value = response.json().await.unwrap();
    assert_eq!(check["digest"], "d20260106-1800");
    let items = check["items"].as_array().unwrap();
    assert_eq!(items.len(), 9);
    let coverage = |stored_id: &str| -> Vec<(String, f64)> {
        let draft_id = stored_id.replace("d20260107-0000", "d20260106-1800");
        let item = items
            .iter()
            .find(|i| i["id"] == draft_id.as_str())
            .unwrap_or_else(|| panic!("no item {draft_id}"));
        item["previous_coverage"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_owned(),
                    c["score"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    for item in items {
        eprintln!(
            "check {} {}: {:?}",
            item["id"],
            item["title"],
            coverage(
                &item["id"]
                    .as_str()
                    .unwrap()
                    .replace("d20260106-1800", "d20260107-0000")
            )
        );
    }
    for (original, repeat) in SAMPLE_REPEATS {
        let found = coverage(repeat);
        assert_eq!(
            found.first().map(|c| c.0.as_str()),
            Some(original),
            "{repeat}: {found:?}"
        );
        assert!(
            found.iter().all(|c| !c.0.starts_with("d20260107-0000")),
            "{repeat}: the stored 001 is later than the draft: {found:?}"
        );
    }
    for fresh in SAMPLE_FRESH {
        let found = coverage(fresh);
        assert!(
            found.iter().all(|c| !c.0.starts_with("d20260106-1200")),
            "{fresh} repeats nothing of 000: {found:?}"
        );
    }
    // Posting 001 (links intact) reported the same originals in its 201.
    let posted = created[3]["items"].as_array().unwrap();
    for item in posted {
        eprintln!("posted {}: {}", item["id"], item["previous_coverage"]);
    }
    let first_of = |id: &str| {
        posted.iter().find(|i| i["id"] == id).unwrap()["previous_coverage"][0]["id"].clone()
    };
    for (original, repeat) in SAMPLE_REPEATS {
        assert_eq!(first_of(repeat), original, "{repeat} as posted");
    }
    for fresh in SAMPLE_FRESH {
        assert!(first_of(fresh).is_null(), "{fresh} as posted");
    }
}
