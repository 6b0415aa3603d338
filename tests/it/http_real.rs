//! One HTTP test with the real multilingual model, skipped (with a note) when the model
//! folder is absent: `scripts/fetch-model` puts it in `models/multilingual-e5-small/`.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use storydex::cli::ModelArgs;
use storydex::embed::Encoder;
use storydex::http::{AppState, ServeSettings};
use storydex::store::Store;

use crate::helpers::{sample_dir, ATLAS_STORY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_model_finds_a_chinese_story_from_an_english_query_over_http() {
    let model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/multilingual-e5-small");
    if !model_dir.join("model.safetensors").exists() {
        eprintln!(
            "skipped: {} is missing; run scripts/fetch-model to test with the real model",
            model_dir.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let (store, encoder) = tokio::task::spawn_blocking(move || {
        let encoder = ModelArgs {
            model: None,
            model_dir: Some(model_dir),
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
    tokio::spawn(storydex::http::serve(
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
