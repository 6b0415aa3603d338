//! Every error status of the API, each with its JSON `error.code`.

use serde_json::json;
use storydex::server::ServeSettings;

use crate::helpers::{assert_error, spawn_app, spawn_app_with_settings, ATLAS_STORY};

enum Body {
    None,
    Json(serde_json::Value),
    Raw(&'static str, String),
}

struct Case {
    what: &'static str,
    method: reqwest::Method,
    path: String,
    body: Body,
    status: u16,
    code: &'static str,
}

fn case(
    what: &'static str,
    method: &str,
    path: &str,
    body: Body,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        what,
        method: method.parse().unwrap(),
        path: path.to_owned(),
        body,
        status,
        code,
    }
}

#[tokio::test]
async fn bad_requests_get_the_status_and_code_the_table_promises() {
    let app = spawn_app().await;
    let long_query = "字".repeat(2_001);
    let cases = [
        case(
            "k of zero",
            "GET",
            "/v1/search?q=AI&k=0",
            Body::None,
            400,
            "invalid_k",
        ),
        case(
            "k of a thousand",
            "POST",
            "/v1/search",
            Body::Json(json!({"query": "AI", "k": 1000})),
            400,
            "invalid_k",
        ),
        case(
            "k on similar",
            "GET",
            &format!("/v1/stories/{ATLAS_STORY}/similar?k=101"),
            Body::None,
            400,
            "invalid_k",
        ),
        case(
            "since after until",
            "GET",
            "/v1/search?q=AI&since=2026-01-08&until=2026-01-07",
            Body::None,
            400,
            "invalid_date_range",
        ),
        case(
            "unparsable date",
            "POST",
            "/v1/search",
            Body::Json(json!({"query": "AI", "since": "yesterday"})),
            400,
            "invalid_date",
        ),
        case(
            "empty query",
            "POST",
            "/v1/search",
            Body::Json(json!({"query": "   "})),
            400,
            "empty_query",
        ),
        case(
            "missing q",
            "GET",
            "/v1/search",
            Body::None,
            400,
            "empty_query",
        ),
        case(
            "query over 2,000 characters",
            "POST",
            "/v1/search",
            Body::Json(json!({"query": long_query})),
            400,
            "query_too_long",
        ),
        case(
            "malformed JSON",
            "POST",
            "/v1/search",
            Body::Raw("application/json", "{\"query\": ".into()),
            400,
            "invalid_json",
        ),
        case(
            "JSON of the wrong shape",
            "POST",
            "/v1/search",
            Body::Json(json!({"q": "AI"})),
            400,
            "invalid_json",
        ),
        case(
            "k that is not a number",
            "GET",
            "/v1/search?q=AI&k=ten",
            Body::None,
            400,
            "invalid_query_string",
        ),
        case(
            "unknown query parameter",
            "GET",
            "/v1/search?query=AI",
            Body::None,
            400,
            "invalid_query_string",
        ),
        case(
            "unknown story",
            "GET",
            "/v1/stories/d19990101-0000-01",
            Body::None,
            404,
            "not_found",
        ),
        case(
            "similar of an unknown story",
            "GET",
            "/v1/stories/nope/similar",
            Body::None,
            404,
            "not_found",
        ),
        case(
            "unknown digest",
            "GET",
            "/v1/digests/d19990101-0000",
            Body::None,
            404,
            "not_found",
        ),
        case(
            "unknown route",
            "GET",
            "/v2/search",
            Body::None,
            404,
            "route_not_found",
        ),
        case(
            "wrong method",
            "DELETE",
            "/v1/search",
            Body::None,
            405,
            "method_not_allowed",
        ),
        case(
            "wrong method on a story",
            "PUT",
            &format!("/v1/stories/{ATLAS_STORY}"),
            Body::None,
            405,
            "method_not_allowed",
        ),
        case(
            "search as text",
            "POST",
            "/v1/search",
            Body::Raw("text/plain", "{\"query\":\"AI\"}".into()),
            415,
            "unsupported_media_type",
        ),
        case(
            "digest as JSON",
            "POST",
            "/v1/digests",
            Body::Json(json!({"digest": "x"})),
            415,
            "unsupported_media_type",
        ),
        case(
            "digest in another charset",
            "POST",
            "/v1/digests",
            Body::Raw("text/markdown; charset=gbk", "---".into()),
            415,
            "unsupported_media_type",
        ),
        case(
            "digest that does not parse",
            "POST",
            "/v1/digests",
            Body::Raw(
                "text/markdown",
                "---\ntitle: \"x\"\ndate: someday\n---\n".into(),
            ),
            422,
            "invalid_digest",
        ),
        case(
            "empty digest",
            "POST",
            "/v1/digests",
            Body::Raw("text/markdown", String::new()),
            422,
            "invalid_digest",
        ),
    ];
    for c in cases {
        let mut request = app.client.request(c.method.clone(), app.url(&c.path));
        request = match c.body {
            Body::None => request,
            Body::Json(v) => request.json(&v),
            Body::Raw(content_type, text) => {
                request.header("content-type", content_type).body(text)
            }
        };
        let response = request.send().await.unwrap();
        eprintln!("case: {} ({} {})", c.what, c.method, c.path);
        assert_error(response, c.status, c.code).await;
    }
}

#[tokio::test]
async fn a_digest_that_does_not_parse_is_422_naming_the_line() {
    let app = spawn_app().await;
    let digest = "---\ntitle: \"broken\"\ndate: 2026-03-01T08:00:00+08:00\n---\n\n\
                  1.  [fine](https://example.com/1)\n\n    A summary.\n\n\
                  1.  [twice](https://example.com/2)\n\n    Another.\n";
    let message = assert_error(app.post_digest(digest).await, 422, "invalid_digest").await;
    assert!(message.contains("request body:10"), "{message}");
    assert!(message.contains("appears twice"), "{message}");
    let archive = "<details><summary>x</summary>\n</details>\n";
    assert_error(app.post_digest(archive).await, 422, "invalid_digest").await;
    assert_error(
        app.get("/v1/digests/d20260301-0800").await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_app_with_settings(ServeSettings {
        max_body: 1_024,
        ..ServeSettings::default()
    })
    .await;
    let big = crate::helpers::make_digest("2026-03-02T08:00:00+08:00", "huge", 40);
    assert!(big.len() > 1_024);
    assert_error(app.post_digest(&big).await, 413, "payload_too_large").await;
    let query = json!({"query": "a ".repeat(600)});
    assert_error(app.search(query).await, 413, "payload_too_large").await;
    assert_error(
        app.get("/v1/digests/d20260302-0800").await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn the_default_body_limit_is_two_megabytes() {
    let app = spawn_app().await;
    let body = format!("{{\"query\": \"{}\"}}", "a".repeat(2 * 1024 * 1024));
    let response = app
        .client
        .post(app.url("/v1/search"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_error(response, 413, "payload_too_large").await;
}
