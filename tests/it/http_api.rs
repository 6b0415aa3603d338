//! The happy paths: health, search, stories, similar, digests, ingest, metrics, OpenAPI.

use serde_json::{json, Value};
use storydex::server::ServeSettings;

use crate::helpers::{
    assert_error, make_digest, spawn_app, spawn_app_with, AppOptions, ATLAS_DIGEST, ATLAS_STORY,
    ATLAS_TITLE, SAMPLE_STORIES,
};

fn ids(hits: &Value) -> Vec<String> {
    hits["hits"]
        .as_array()
        .expect("hits is an array")
        .iter()
        .map(|h| h["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn health_reports_ok_with_story_count_and_model_once_ready() {
    let app = spawn_app().await;
    assert!(app.state.is_ready());
    let health = app.get_json("/health").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["stories"], SAMPLE_STORIES);
    assert_eq!(health["model"], "fake-hash-384");
    // Where the model runs: the fake encoder says the CPU in f32.
    assert_eq!(health["encoder"]["device"], "cpu");
    assert_eq!(health["encoder"]["precision"], "f32");
    assert_eq!(health["encoder"]["engine"], "fake");
}

#[tokio::test]
async fn health_answers_503_starting_until_the_model_is_loaded() {
    let app = spawn_app_with(AppOptions {
        ready: false,
        ..AppOptions::default()
    })
    .await;
    let response = app.get("/health").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "starting");
    assert_eq!(body["encoder"], Value::Null);
    let search = app.search(json!({"query": "Atlas"})).await;
    assert_eq!(search.headers()["retry-after"], "1");
    assert_error(search, 503, "not_ready").await;
    assert_error(app.get("/v1/digests").await, 503, "not_ready").await;
}

#[tokio::test]
async fn search_by_post_finds_the_story_whose_title_it_quotes() {
    let app = spawn_app().await;
    let response = app.search(json!({"query": ATLAS_TITLE, "k": 5})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["took_ms"].as_f64().unwrap() >= 0.0);
    let hits = body["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 5);
    let top = &hits[0];
    assert_eq!(top["id"], ATLAS_STORY, "{body:#}");
    assert_eq!(top["title"], ATLAS_TITLE);
    assert_eq!(top["digest"], ATLAS_DIGEST);
    assert!(top["url"].as_str().unwrap().starts_with("https://x.com/"));
    assert!(top["published"]
        .as_str()
        .unwrap()
        .starts_with("2026-01-06T12:00:09"));
    assert!(!top["snippet"].as_str().unwrap().is_empty());
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
}

#[tokio::test]
async fn search_by_get_answers_like_search_by_post() {
    let app = spawn_app().await;
    let by_post: Value = app
        .search(json!({"query": "Gemini Robotics DeepMind", "k": 3}))
        .await
        .json()
        .await
        .unwrap();
    let by_get = app
        .get_json("/v1/search?q=Gemini%20Robotics%20DeepMind&k=3")
        .await;
    assert_eq!(ids(&by_post), ids(&by_get));
    assert_eq!(ids(&by_get).len(), 3);
    let default_k = app.get_json("/v1/search?q=Nvidia").await;
    assert_eq!(ids(&default_k).len(), 10);
}

#[tokio::test]
async fn search_keeps_to_the_date_range() {
    let app = spawn_app().await;
    let body = app
        .get_json("/v1/search?q=AI&k=100&since=2026-01-06&until=2026-01-06")
        .await;
    let hits = body["hits"].as_array().unwrap();
    assert!(!hits.is_empty());
    for hit in hits {
        let published = hit["published"].as_str().expect("dated story");
        assert!(published.starts_with("2026-01-06"), "{hit}");
    }
}

#[tokio::test]
async fn lexical_search_finds_a_post_by_the_author_its_headline_credits() {
    let app = spawn_app().await;
    // Digest 001 item 6 is credited "-sarah guo"; neither its headline (once the author is
    // split off) nor its summary names her.
    let response = app
        .search(json!({"query": "Sarah Guo", "mode": "lexical", "since": "2026-01-07"}))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(ids(&body), ["d20260107-0000-06"], "{body:#}");
}

#[tokio::test]
async fn story_shows_the_stored_story_with_its_digest() {
    let app = spawn_app().await;
    let story = app.get_json(&format!("/v1/stories/{ATLAS_STORY}")).await;
    assert_eq!(story["id"], ATLAS_STORY);
    assert_eq!(story["title"], ATLAS_TITLE);
    assert_eq!(story["position"], 5);
    assert_eq!(story["digest"]["id"], ATLAS_DIGEST);
    assert!(story["summary"].as_str().unwrap().contains("Atlas"));
}

#[tokio::test]
async fn similar_with_other_digests_leaves_out_the_storys_own_digest() {
    let app = spawn_app().await;
    let all = app
        .get_json(&format!("/v1/stories/{ATLAS_STORY}/similar?k=20"))
        .await;
    let all_ids = ids(&all);
    assert_eq!(all_ids.len(), 20);
    assert!(
        !all_ids.contains(&ATLAS_STORY.to_owned()),
        "a story is not similar to itself"
    );
    assert!(
        all_ids.iter().any(|id| id.starts_with(ATLAS_DIGEST)),
        "without the flag its own digest's stories are candidates: {all_ids:?}"
    );
    let others = app
        .get_json(&format!(
            "/v1/stories/{ATLAS_STORY}/similar?k=20&other_digests=true"
        ))
        .await;
    let hits = others["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 20);
    for hit in hits {
        assert_ne!(hit["digest"], ATLAS_DIGEST, "{hit}");
    }
}

#[tokio::test]
async fn digests_are_listed_and_shown_with_their_stories() {
    let app = spawn_app().await;
    let list = app.get_json("/v1/digests").await;
    let digests = list["digests"].as_array().unwrap();
    assert_eq!(digests.len(), 5);
    let total: u64 = digests.iter().map(|d| d["stories"].as_u64().unwrap()).sum();
    assert_eq!(total as usize, SAMPLE_STORIES);
    assert_eq!(digests.iter().filter(|d| d["kind"] == "archive").count(), 1);
    let detail = app.get_json(&format!("/v1/digests/{ATLAS_DIGEST}")).await;
    assert_eq!(detail["id"], ATLAS_DIGEST);
    assert_eq!(detail["kind"], "digest");
    let items = detail["items"].as_array().unwrap();
    assert_eq!(items.len() as u64, detail["stories"].as_u64().unwrap());
    assert_eq!(items[4]["id"], ATLAS_STORY);
}

#[tokio::test]
async fn a_posted_digest_is_listed_and_found_by_search() {
    let app = spawn_app().await;
    let digest = make_digest("2026-02-01T08:00:00+08:00", "wombatlabs", 3);
    let response = app.post_digest(&digest).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/v1/digests/d20260201-0800");
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["digest"], "d20260201-0800");
    assert_eq!(
        created["stories"],
        json!([
            "d20260201-0800-01",
            "d20260201-0800-02",
            "d20260201-0800-03"
        ])
    );
    assert_eq!(created["items"][1]["id"], "d20260201-0800-02");
    assert!(created["items"][1]["title"]
        .as_str()
        .unwrap()
        .contains("wombatlabs"));
    assert_eq!(
        (created["new"].as_u64(), created["updated"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(created["unchanged"], 0);

    let health = app.get_json("/health").await;
    assert_eq!(health["stories"], SAMPLE_STORIES + 3);
    let list = app.get_json("/v1/digests").await;
    assert!(list["digests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["id"] == "d20260201-0800"));
    let found = app
        .get_json("/v1/search?q=wombatlabs%20report%202%20release%202&k=3")
        .await;
    assert_eq!(ids(&found)[0], "d20260201-0800-02", "{found:#}");
}

#[tokio::test]
async fn posting_the_same_digest_again_changes_nothing() {
    let app = spawn_app().await;
    let digest = make_digest("2026-02-02T08:00:00+08:00", "echidna", 4);
    assert_eq!(app.post_digest(&digest).await.status(), 201);
    let again: Value = app.post_digest(&digest).await.json().await.unwrap();
    assert_eq!(again["unchanged"], 4);
    assert_eq!(
        (again["new"].as_u64(), again["updated"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(app.get_json("/health").await["stories"], SAMPLE_STORIES + 4);

    // A sample digest, posted as a body, is also recognised as already stored.
    let sample =
        std::fs::read_to_string(crate::helpers::sample_dir().join("000_ce41d89debbb0a4e.txt"))
            .unwrap();
    let reposted: Value = app.post_digest(&sample).await.json().await.unwrap();
    assert_eq!(reposted["digest"], ATLAS_DIGEST);
    assert_eq!(reposted["new"], 0);
    assert_eq!(
        reposted["unchanged"],
        reposted["stories"].as_array().unwrap().len()
    );
}

#[tokio::test]
async fn metrics_count_requests_under_their_route_template() {
    let app = spawn_app().await;
    app.get_json(&format!("/v1/stories/{ATLAS_STORY}")).await;
    let _ = app.get("/v1/stories/no-such-story").await;
    let _ = app.get("/definitely/not/here").await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    assert!(
        text.contains(
            r#"storydex_http_requests_total{route="/v1/stories/{id}",method="GET",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(
        r#"storydex_http_requests_total{route="/v1/stories/{id}",method="GET",status="404"} 1"#
    ));
    assert!(text.contains(r#"route="unmatched""#));
    assert!(
        text.contains(r#"storydex_encoder_info{device="cpu",precision="f32",engine="fake"} 1"#),
        "{text}"
    );
    assert!(
        !text.contains(ATLAS_STORY),
        "raw paths must not become labels"
    );
    assert!(text.contains(
        r#"storydex_http_request_duration_seconds_bucket{route="/v1/stories/{id}",le="+Inf"} 2"#
    ));
    assert!(text.contains("storydex_embed_queue_depth 0"));
    assert!(text.contains(&format!("storydex_stories_indexed {SAMPLE_STORIES}")));
}

#[tokio::test]
async fn openapi_document_lists_every_path() {
    let app = spawn_app_with(AppOptions {
        ready: false,
        settings: ServeSettings::default(),
    })
    .await;
    let doc = app.get_json("/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/v1/search",
        "/v1/stories/{id}",
        "/v1/stories/{id}/similar",
        "/v1/digests",
        "/v1/digests/{id}",
        "/health",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(path), "missing {path}");
    }
    assert!(paths["/v1/search"]["post"].is_object());
    assert!(paths["/v1/search"]["get"].is_object());
    assert!(paths["/v1/digests"]["post"]["requestBody"]["content"]["text/markdown"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for schema in ["SearchResponse", "Hit", "DigestCreated", "ErrorBody"] {
        assert!(schemas.contains_key(schema), "missing schema {schema}");
    }
}
