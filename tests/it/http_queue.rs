//! The embedding queue under load, searches during an ingest, graceful shutdown.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinSet;

use crate::helpers::{assert_error, make_digest, spawn_app, spawn_app_with_a_slow_queue_of_one};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_embedding_queue_answers_503_overloaded_with_retry_after() {
    let app = spawn_app_with_a_slow_queue_of_one(Duration::from_millis(400)).await;
    let mut requests = JoinSet::new();
    for i in 0..6 {
        let client = app.client.clone();
        let url = app.url("/v1/search");
        requests.spawn(async move {
            client
                .post(url)
                .json(&json!({"query": format!("Nvidia robots {i}")}))
                .send()
                .await
                .unwrap()
        });
    }
    let started = Instant::now();
    let (mut ok, mut overloaded) = (0, 0);
    while let Some(response) = requests.join_next().await {
        let response = response.unwrap();
        if response.status() == 200 {
            ok += 1;
        } else {
            assert_eq!(response.headers()["retry-after"], "1");
            assert_error(response, 503, "overloaded").await;
            overloaded += 1;
        }
    }
    assert!(
        ok >= 1 && overloaded >= 1,
        "ok {ok}, overloaded {overloaded}"
    );
    assert_eq!(ok + overloaded, 6);
    // One running and one waiting at most: nobody waited for four model calls.
    assert!(
        started.elapsed() < Duration::from_millis(2_000),
        "{:?}",
        started.elapsed()
    );

    app.encoder.set_delay(Duration::ZERO);
    let after = app.search(json!({"query": "Nvidia"})).await;
    assert_eq!(
        after.status(),
        200,
        "the queue drains and the server recovers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_keep_answering_while_a_digest_is_ingested() {
    let app = spawn_app().await;
    // 80 stories embed in 10 batches of 8; each model call takes 40 ms.
    app.encoder.set_delay(Duration::from_millis(40));
    let digest = make_digest("2026-02-06T08:00:00+08:00", "bandicoot", 80);
    let ingest = {
        let client = app.client.clone();
        let url = app.url("/v1/digests");
        tokio::spawn(async move {
            let response = client
                .post(url)
                .header("content-type", "text/markdown")
                .body(digest)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(60)).await;
    let mut searches = JoinSet::new();
    for i in 0..8 {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/search?q=Boston%20Dynamics%20Atlas%20{i}&k=5"));
        searches.spawn(async move {
            let response = client.get(url).send().await.unwrap();
            (response.status().as_u16(), Instant::now())
        });
    }
    let mut finished = Vec::new();
    while let Some(result) = searches.join_next().await {
        let (status, at) = result.unwrap();
        assert_eq!(status, 200);
        finished.push(at);
    }
    let (status, ingest_done) = ingest.await.unwrap();
    assert_eq!(status, 201);
    assert!(
        finished.iter().all(|at| *at < ingest_done),
        "searches waited for the whole ingest instead of slipping between its batches"
    );
    app.encoder.set_delay(Duration::ZERO);
    let health = app.get_json("/health").await;
    assert_eq!(health["stories"], crate::helpers::SAMPLE_STORIES + 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_request_finish() {
    let mut app = spawn_app().await;
    app.encoder.set_delay(Duration::from_millis(300));
    let in_flight = {
        let client = app.client.clone();
        let url = app.url("/v1/search?q=Atlas");
        tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let server = app.shut_down();
    assert_eq!(in_flight.await.unwrap(), 200);
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops once idle")
        .unwrap()
        .unwrap();
    assert!(app.client.get(app.url("/health")).send().await.is_err());
}

#[tokio::test]
async fn reads_that_need_no_model_call_ignore_a_busy_queue() {
    let app = spawn_app_with_a_slow_queue_of_one(Duration::from_millis(1_000)).await;
    let busy = {
        let client = app.client.clone();
        let url = app.url("/v1/search?q=busy");
        tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    app.get_json(&format!(
        "/v1/stories/{}/similar",
        crate::helpers::ATLAS_STORY
    ))
    .await;
    app.get_json("/v1/digests").await;
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(busy.await.unwrap(), 200);
}
