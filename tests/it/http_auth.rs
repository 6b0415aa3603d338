//! Who may write: bearer key when one is set, loopback only when none is.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use storydex::embed::fake::FakeEncoder;
use storydex::server::{router, AppState, ServeSettings};
use storydex::store::Store;
use tower::ServiceExt;

use crate::helpers::{assert_error, make_digest, spawn_app_with_settings};

#[tokio::test]
async fn writes_need_the_bearer_key_when_one_is_set() {
    let app = spawn_app_with_settings(ServeSettings {
        api_key: Some("s3cret-key".into()),
        ..ServeSettings::default()
    })
    .await;
    let digest = make_digest("2026-02-03T08:00:00+08:00", "platypus", 2);
    let before = app.get_json("/v1/digests").await;
    let post = |auth: Option<&'static str>| {
        let mut request = app
            .client
            .post(app.url("/v1/digests"))
            .header("content-type", "text/markdown")
            .body(digest.clone());
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };

    let missing = post(None).await.unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_error(missing, 401, "unauthorized").await;
    assert_error(
        post(Some("Bearer wrong-key")).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        post(Some("Bearer s3cret-ke")).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        post(Some("Basic s3cret-key")).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(
        app.get_json("/v1/digests").await,
        before,
        "a refused write stored something"
    );
    assert_eq!(app.get("/v1/digests/d20260203-0800").await.status(), 404);

    let created = post(Some("Bearer s3cret-key")).await.unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["new"], 2);
    // Reads stay open.
    assert_eq!(app.get("/v1/digests/d20260203-0800").await.status(), 200);
}

#[tokio::test]
async fn auth_is_checked_before_the_content_type() {
    let app = spawn_app_with_settings(ServeSettings {
        api_key: Some("k".into()),
        ..ServeSettings::default()
    })
    .await;
    let response = app
        .client
        .post(app.url("/v1/digests"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "unauthorized").await;
}

/// Drives the router in-process, as if it listened on a public address.
async fn post_off_loopback(state: AppState, digest: String) -> (StatusCode, Value) {
    state.set_local_addr("192.0.2.10:8080".parse().unwrap());
    let request = Request::post("/v1/digests")
        .header("content-type", "text/markdown")
        .body(Body::from(digest))
        .unwrap();
    let response = router(state).oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn writes_without_a_key_are_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), "fake-hash-384", 384).unwrap());
    let state = AppState::new(&ServeSettings::default());
    state
        .set_ready(Arc::clone(&store), Arc::new(FakeEncoder::default()), 0.9)
        .unwrap();
    let digest = make_digest("2026-02-04T08:00:00+08:00", "numbat", 1);
    let (status, body) = post_off_loopback(state, digest).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("STORYDEX_API_KEY"));
    assert_eq!(store.story_count().unwrap(), 0);
}

#[tokio::test]
async fn a_key_allows_writes_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), "fake-hash-384", 384).unwrap());
    let state = AppState::new(&ServeSettings {
        api_key: Some("k".into()),
        ..ServeSettings::default()
    });
    state
        .set_ready(Arc::clone(&store), Arc::new(FakeEncoder::default()), 0.9)
        .unwrap();
    state.set_local_addr("192.0.2.10:8080".parse().unwrap());
    let request = Request::post("/v1/digests")
        .header("content-type", "text/markdown")
        .header("authorization", "Bearer k")
        .body(Body::from(make_digest(
            "2026-02-05T08:00:00+08:00",
            "bilby",
            2,
        )))
        .unwrap();
    let response = router(state).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(store.story_count().unwrap(), 2);
}
