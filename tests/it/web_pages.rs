//! The web page over HTTP with the fake encoder: what a browser gets for the rules that
//! need no real model: HTML errors, the busy page, the guards on publishing, and
//! stored markup shown as text. The browser itself is in `browser.rs`.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use storydex::server::ServeSettings;
use tokio::task::JoinSet;

use crate::helpers::{
    make_digest, spawn_app, spawn_app_with_a_slow_queue_of_one, spawn_app_with_settings, TestApp,
    ATLAS_STORY,
};

const KEY: &str = "page-test-key";

async fn with_key() -> TestApp {
    spawn_app_with_settings(ServeSettings {
        api_key: Some(KEY.to_owned()),
        ..ServeSettings::default()
    })
    .await
}

/// GET a page: its status, and its body, which must be an HTML page.
async fn page(app: &TestApp, path: &str) -> (u16, String) {
    let response = app.get(path).await;
    html(response).await
}

async fn html(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.text().await.expect("body");
    assert!(
        content_type.starts_with("text/html"),
        "not HTML ({content_type}): {body}"
    );
    assert!(body.starts_with("<!doctype html>"), "{body}");
    (status, body)
}

async fn publish(app: &TestApp, draft: &str, key: &str, origin: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/publish"))
        .form(&[("draft", draft), ("key", key)]);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.expect("POST /publish")
}

#[tokio::test]
async fn every_page_answers_html_in_chinese_with_its_assets_from_the_binary() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/?q=Atlas",
        &format!("/stories/{ATLAS_STORY}"),
        "/duplicates",
        "/check",
        "/digests",
        "/digests/d20260106-1200",
    ] {
        let (status, body) = page(&app, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains("<html lang=\"zh\">"), "{path}");
        assert!(body.contains("<meta charset=\"utf-8\">"), "{path}");
    }
    let css = app.get("/static/style.css").await;
    assert_eq!(css.status(), 200);
    assert!(css.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    assert!(css.text().await.unwrap().contains("WenQuanYi Micro Hei"));
    let page = app.get("/").await;
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
}

#[tokio::test]
async fn page_errors_are_sentences_not_json() {
    let app = spawn_app().await;
    let (status, body) = page(&app, "/stories/no-such-story").await;
    assert_eq!(status, 404);
    assert!(
        body.contains("There is no story with the id “no-such-story”"),
        "{body}"
    );

    let (status, body) = page(&app, "/?q=Atlas&since=yesterday").await;
    assert_eq!(status, 400);
    assert!(
        body.contains("Since must be a date like 2026-01-06"),
        "{body}"
    );
    // The form keeps what was typed.
    assert!(body.contains("value=\"Atlas\""), "{body}");

    let (status, body) = page(&app, "/duplicates?since=2026-01-08&until=2026-01-01").await;
    assert_eq!(status, 400);
    assert!(body.contains("is after until"), "{body}");
}

#[tokio::test]
async fn the_duplicates_page_defaults_to_the_last_week_of_the_store() {
    let app = spawn_app().await;
    let (_, body) = page(&app, "/duplicates").await;
    // The sample's newest story is of 2026-01-07, whatever today is.
    assert!(body.contains("value=\"2026-01-01\""), "{body}");
    assert!(body.contains("value=\"2026-01-07\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_model_queue_shows_busy_try_again() {
    let app = spawn_app_with_a_slow_queue_of_one(Duration::from_millis(400)).await;
    let mut requests = JoinSet::new();
    for i in 0..6 {
        let client = app.client.clone();
        let url = app.url(&format!("/?q=Nvidia%20robots%20{i}"));
        requests.spawn(async move { client.get(url).send().await.unwrap() });
    }
    let mut busy = 0;
    while let Some(response) = requests.join_next().await {
        let (status, body) = html(response.unwrap()).await;
        if status == 503 {
            assert!(body.contains("busy"), "{body}");
            assert!(body.contains("Try again"), "{body}");
            busy += 1;
        } else {
            assert_eq!(status, 200, "{body}");
        }
    }
    assert!(busy >= 1, "no request found the queue full");
}

#[tokio::test]
async fn publishing_needs_the_key_in_the_form_and_never_happens_on_a_get() {
    let app = with_key().await;
    let draft = make_digest("2026-02-01T08:00:00+08:00", "wombat", 2);
    let digest = "/v1/digests/d20260201-0800";

    let (status, body) = html(publish(&app, &draft, "", None).await).await;
    assert_eq!(status, 401);
    assert!(body.contains("needs its write key"), "{body}");
    assert!(
        body.contains("wombat story number 1"),
        "the draft is kept: {body}"
    );

    let (status, body) = html(publish(&app, &draft, "not-the-key", None).await).await;
    assert_eq!(status, 401);
    assert!(body.contains("write key is wrong"), "{body}");

    let query = format!("/publish?draft={}&key={KEY}", "x");
    let response = app.get(&query).await;
    assert_eq!(
        response.url().path(),
        "/check",
        "a GET only leads to the form"
    );
    assert_eq!(app.get(digest).await.status(), 404, "nothing was stored");

    let (status, body) = html(publish(&app, &draft, KEY, None).await).await;
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("2 new"), "{body}");
    assert_eq!(app.get(digest).await.status(), 200);
}

#[tokio::test]
async fn a_publish_form_sent_from_another_site_is_refused_even_with_the_key() {
    let app = with_key().await;
    let draft = make_digest("2026-02-02T08:00:00+08:00", "numbat", 1);
    let (status, body) = html(publish(&app, &draft, KEY, Some("https://evil.example")).await).await;
    assert_eq!(status, 403);
    assert!(body.contains("sent from another site"), "{body}");
    assert_eq!(app.get("/v1/digests/d20260202-0800").await.status(), 404);

    let same = app.base.clone();
    let (status, _) = html(publish(&app, &draft, KEY, Some(&same)).await).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn stored_markup_is_shown_as_text_on_every_page() {
    let app = spawn_app().await;
    let draft = "---\ntitle: \"2026.02.03.08 <script>alert('t')</script>\"\n\
                 date: 2026-02-03T08:00:00+08:00\ncategories: [\"Test\"]\n---\n\n\
                 1.  [<script>alert(1)</script>quokka](javascript:alert(1))\n\n    \
                 \"><img src=x onerror=alert(2)> and [a link](javascript:alert(3)) and \
                 [a good one](https://example.org/ok)\n";
    let (status, body) = html(publish(&app, draft, "", None).await).await;
    assert_eq!(status, 201, "{body}");
    let story = "/stories/d20260203-0800-01";
    for path in [story, "/digests/d20260203-0800", "/digests", "/?q=quokka"] {
        let (status, body) = page(&app, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!body.contains("<script>alert"), "{path}: {body}");
        assert!(!body.contains("<img src=x"), "{path}: {body}");
        assert!(!body.contains("href=\"javascript"), "{path}: {body}");
    }
    let (_, body) = page(&app, story).await;
    // askama escapes with numeric references, pulldown-cmark with named ones.
    assert!(
        body.contains("&#60;script&#62;alert(1)&#60;/script&#62;quokka"),
        "{body}"
    );
    assert!(
        body.contains("\"&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "{body}"
    );
    assert!(
        body.contains("<a href=\"https://example.org/ok\">a good one</a>"),
        "{body}"
    );
}

/// A `multipart/form-data` body as the check form sends it without JavaScript.
fn check_form(draft: &str, file: &str) -> (String, String) {
    const BOUNDARY: &str = "storydex-test-boundary";
    let body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"draft\"\r\n\r\n{draft}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"draft.md\"\r\n\
         Content-Type: text/markdown\r\n\r\n{file}\r\n--{BOUNDARY}--\r\n"
    );
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

async fn check(app: &TestApp, draft: &str, file: &str) -> (u16, String) {
    let (content_type, body) = check_form(draft, file);
    let response = app
        .client
        .post(app.url("/check"))
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("POST /check");
    html(response).await
}

#[tokio::test]
async fn a_picked_file_is_checked_without_javascript() {
    let app = spawn_app().await;
    let draft = make_digest("2026-02-04T08:00:00+08:00", "platypus", 3);
    let (status, body) = check(&app, "", &draft).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("3 条 items"), "{body}");
    for i in 1..=3 {
        assert!(
            body.contains(&format!("platypus story number {i}")),
            "{body}"
        );
    }
    // New items still show their closest earlier story, marked as not counted.
    assert!(
        body.contains("Closest earlier story, below the threshold"),
        "{body}"
    );
    // The file's text is put in the box, so it can be edited and published.
    assert!(body.contains("The platypus report 1 describes"), "{body}");
    assert!(body.contains("发布 Publish"), "{body}");
    assert_eq!(
        app.get("/v1/digests/d20260204-0800").await.status(),
        404,
        "a check stores nothing"
    );
}

#[tokio::test]
async fn a_draft_that_does_not_parse_names_its_line_and_stays_in_the_box() {
    let app = spawn_app().await;
    let broken = "---\ntitle: \"no date here\"\n---\n\n1.  [Head](https://example.org/1)\n";
    let (status, body) = check(&app, broken, "").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("The draft could not be read: line"), "{body}");
    assert!(body.contains("date:"), "{body}");
    assert!(body.contains("no date here"), "the draft is kept: {body}");
    assert!(!body.contains("发布 Publish"), "nothing to publish: {body}");

    let (status, body) = check(&app, "  ", "").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("There is no draft to check"), "{body}");
}

#[tokio::test]
async fn an_unknown_page_is_a_readable_sentence_for_a_browser_and_json_for_the_api() {
    let app = crate::helpers::spawn_app().await;
    let page = app
        .client
        .get(app.url("/no-such-page"))
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("request");
    assert_eq!(page.status(), 404);
    let body = page.text().await.expect("body");
    assert!(body.contains("<html"), "{body}");
    assert!(!body.contains("\"code\""), "{body}");
    let api = app
        .client
        .get(app.url("/v1/no-such-route"))
        .header("Accept", "text/html")
        .send()
        .await
        .expect("request");
    assert_eq!(api.status(), 404);
    assert!(api.text().await.expect("body").contains("route_not_found"));
}

/// Drives the router in-process as if it listened on a public address without a key:
/// the page's publish form must refuse, as the API does, and store nothing.
#[tokio::test]
async fn publishing_from_the_page_is_refused_off_loopback_without_a_key() {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use storydex::embed::fake::FakeEncoder;
    use storydex::server::{router, AppState};
    use storydex::store::Store;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), "fake-hash-384", 384).unwrap());
    let state = AppState::new(&ServeSettings::default());
    state
        .set_ready(Arc::clone(&store), Arc::new(FakeEncoder::default()), 0.9)
        .unwrap();
    state.set_local_addr("192.0.2.10:8080".parse().unwrap());
    let draft = make_digest("2026-02-06T08:00:00+08:00", "quokka", 1);
    let encoded: String = draft
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let form = format!("draft={encoded}&key=");
    let request = Request::post("/publish")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.starts_with("<!doctype html>"), "{body}");
    assert!(
        body.contains("Publishing is switched off: this server listens on a public address"),
        "{body}"
    );
    assert!(
        body.contains("quokka story number 1"),
        "the draft is kept: {body}"
    );
    assert_eq!(store.story_count().unwrap(), 0, "nothing was stored");

    // The draft form says so up front instead of offering a form that cannot work.
    let request = Request::get("/check").body(Body::empty()).unwrap();
    let response = router(state).oneshot(request).await.unwrap();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.contains("Publishing is switched off"), "{body}");
}
