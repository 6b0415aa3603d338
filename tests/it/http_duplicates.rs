//! Duplicate coverage over HTTP with the fake encoder: clusters, one story's duplicates,
//! the draft check, and the previous coverage a posted digest reports.
//!
//! The fake encoder gives identical texts identical vectors, so an item copied from the
//! sample (with its link moved elsewhere) is certain to be found as the same event.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::helpers::{
    assert_error, make_digest, sample_dir, spawn_app, TestApp, ATLAS_DIGEST, ATLAS_STORY,
    ATLAS_TITLE,
};

/// The sample digest the Atlas story comes from (2026-01-06 12:00).
const SAMPLE_000: &str = "000_ce41d89debbb0a4e.txt";

/// Item `n` of a sample digest as written (headline line and summary), numbered
/// `as_number`, its link moved from x.com to another host.
fn sample_item(file: &str, n: usize, as_number: usize) -> String {
    let text = std::fs::read_to_string(sample_dir().join(file)).expect("read the sample");
    let number = |line: &str| -> Option<usize> {
        let (n, rest) = line.split_once('.')?;
        rest.trim_start().starts_with('[').then(|| n.parse().ok())?
    };
    let mut lines = text.lines().skip_while(|l| number(l) != Some(n));
    let first = lines.next().expect("the sample has that item");
    let mut item = format!("{as_number}.{}\n", &first[first.find('.').unwrap() + 1..]);
    for line in lines.take_while(|l| number(l).is_none()) {
        item.push_str(line);
        item.push('\n');
    }
    item.trim_end()
        .replace("https://x.com/", "https://example.org/mirror/")
        + "\n\n"
}

/// A digest published at `date` whose items are `items` of sample digest 000, in order.
fn digest_copying(date: &str, items: &[usize]) -> String {
    let mut out = make_digest(date, "copies", 0);
    for (i, n) in items.iter().enumerate() {
        out.push_str(&sample_item(SAMPLE_000, *n, i + 1));
    }
    out
}

async fn post_created(app: &TestApp, markdown: &str) -> Value {
    let response = app.post_digest(markdown).await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 201, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn check(app: &TestApp, content_type: &str, markdown: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/check"))
        .header("content-type", content_type)
        .body(markdown.to_owned())
        .send()
        .await
        .expect("POST /v1/check")
}

fn coverage_ids(item: &Value) -> Vec<&str> {
    coverage_like_ids(&item["previous_coverage"])
}

/// The `id`s of a JSON array of stories.
fn coverage_like_ids(stories: &Value) -> Vec<&str> {
    stories
        .as_array()
        .expect("an array of stories")
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect()
}

fn cluster_ids(cluster: &Value) -> Vec<&str> {
    let mut ids: Vec<&str> = cluster["stories"]
        .as_array()
        .expect("stories is an array")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    ids
}

fn time_of(value: &Value) -> Option<OffsetDateTime> {
    value
        .as_str()
        .map(|s| OffsetDateTime::parse(s, &Rfc3339).expect("RFC 3339"))
}

async fn story_count(app: &TestApp) -> u64 {
    app.get_json("/health").await["stories"].as_u64().unwrap()
}

#[test]
fn a_copied_sample_item_keeps_its_text_but_not_its_link() {
    let item = sample_item(SAMPLE_000, 5, 2);
    assert!(item.starts_with(&format!("2.  [{ATLAS_TITLE}](https://example.org/mirror/")));
    assert!(item.contains("最大搬运能力达50公斤"));
    assert!(!item.contains("x.com"));
    assert!(!item.contains("谷歌发布论文"), "only one item: {item}");
}

#[tokio::test]
async fn duplicates_lists_clusters_across_digests_newest_first() {
    let app = spawn_app().await;
    // Atlas (000-05) repeated on Jan 7 and Jan 9; the hf-mem story (000-02) on Jan 8.
    // The sample's own Atlas repeat (001-03, same link) is already in the cluster.
    post_created(&app, &digest_copying("2026-01-07T12:00:09+08:00", &[5])).await;
    post_created(&app, &digest_copying("2026-01-08T12:00:09+08:00", &[2])).await;
    post_created(&app, &digest_copying("2026-01-09T08:00:00+08:00", &[5])).await;

    let body = app.get_json("/v1/duplicates").await;
    let clusters = body["clusters"].as_array().unwrap();
    let atlas = clusters
        .iter()
        .find(|c| cluster_ids(c).contains(&ATLAS_STORY))
        .unwrap_or_else(|| panic!("no Atlas cluster: {body:#}"));
    assert_eq!(
        cluster_ids(atlas),
        [
            ATLAS_STORY,
            "d20260107-0000-03",
            "d20260107-1200-01",
            "d20260109-0800-01"
        ]
    );
    assert_eq!(atlas["id"], format!("dup-{ATLAS_STORY}"));
    assert_eq!(atlas["title"], ATLAS_TITLE);
    assert!(atlas["first_seen"]
        .as_str()
        .unwrap()
        .starts_with("2026-01-06T12:00:09"));
    assert!(atlas["last_seen"]
        .as_str()
        .unwrap()
        .starts_with("2026-01-09T08:00:00"));
    let member = &atlas["stories"][0];
    for field in ["id", "title", "url", "published", "digest"] {
        assert!(member[field].is_string(), "{field} in {member}");
    }
    assert!(member["score"].as_f64().unwrap() > 0.9);
    let hf_mem = clusters
        .iter()
        .find(|c| cluster_ids(c).contains(&"d20260108-1200-01"))
        .unwrap_or_else(|| panic!("no hf-mem cluster: {body:#}"));
    assert_eq!(
        cluster_ids(hf_mem),
        ["d20260106-1200-02", "d20260108-1200-01"]
    );

    let last_seen: Vec<Option<OffsetDateTime>> =
        clusters.iter().map(|c| time_of(&c["last_seen"])).collect();
    assert!(
        last_seen.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {last_seen:?}"
    );
    assert_eq!(clusters[0]["id"], atlas["id"], "Jan 9 is the newest");

    // A date range keeps the stored clusters' members published in it (two or more).
    let recent = app
        .get_json("/v1/duplicates?since=2026-01-07&until=2026-01-09")
        .await;
    let recent = recent["clusters"].as_array().unwrap();
    assert!(recent
        .iter()
        .all(|c| !cluster_ids(c).contains(&ATLAS_STORY)));
    assert!(recent.iter().any(|c| cluster_ids(c)
        == [
            "d20260107-0000-03",
            "d20260107-1200-01",
            "d20260109-0800-01"
        ]));
    // The hf-mem cluster (Jan 6 and Jan 8) has one member in Jan 6-7: not listed.
    let early = app
        .get_json("/v1/duplicates?since=2026-01-06&until=2026-01-07")
        .await;
    assert!(early["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| !cluster_ids(c).contains(&"d20260106-1200-02")));
    // An explicit min_score is accepted (identical texts score about 1).
    let strict = app.get_json("/v1/duplicates?min_score=0.99").await;
    assert!(strict["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| cluster_ids(c).contains(&ATLAS_STORY)));
}

#[tokio::test]
async fn duplicates_refuses_a_min_score_outside_zero_to_one_and_bad_dates() {
    let app = spawn_app().await;
    for bad in ["1.5", "-0.1", "abc", "NaN", "inf", ""] {
        let message = assert_error(
            app.get(&format!("/v1/duplicates?min_score={bad}")).await,
            400,
            "invalid_min_score",
        )
        .await;
        assert!(message.contains("between 0 and 1"), "{bad}: {message}");
    }
    assert_error(
        app.get("/v1/duplicates?since=yesterday").await,
        400,
        "invalid_date",
    )
    .await;
    assert_error(
        app.get("/v1/duplicates?since=2026-01-08&until=2026-01-07")
            .await,
        400,
        "invalid_date_range",
    )
    .await;
    assert_error(
        app.get("/v1/duplicates?threshold=0.9").await,
        400,
        "invalid_query_string",
    )
    .await;
    app.get_json("/v1/duplicates?min_score=0&since=&until=")
        .await;
}

#[tokio::test]
async fn story_duplicates_lists_the_other_members_of_its_cluster() {
    let app = spawn_app().await;
    assert_error(
        app.get("/v1/stories/d19990101-0000-01/duplicates").await,
        404,
        "not_found",
    )
    .await;

    let created = post_created(&app, &digest_copying("2026-01-07T12:00:09+08:00", &[5])).await;
    let copy = created["items"][0]["id"].as_str().unwrap().to_owned();
    let body = app
        .get_json(&format!("/v1/stories/{ATLAS_STORY}/duplicates"))
        .await;
    assert_eq!(body["story"], ATLAS_STORY);
    assert_eq!(body["cluster"], format!("dup-{ATLAS_STORY}"));
    // The copy, and the sample's own repeat of the story (001-03); never the story itself.
    let mut ids = coverage_like_ids(&body["duplicates"]);
    ids.sort_unstable();
    assert_eq!(ids, ["d20260107-0000-03", copy.as_str()], "{body:#}");
    let duplicates = body["duplicates"].as_array().unwrap();
    let copied = duplicates
        .iter()
        .find(|d| d["id"] == copy.as_str())
        .unwrap();
    assert_eq!(copied["digest"], "d20260107-1200");
    assert_eq!(copied["title"], ATLAS_TITLE);
    assert!(copied["url"]
        .as_str()
        .unwrap()
        .starts_with("https://example.org/mirror/"));
    assert!(copied["published"]
        .as_str()
        .unwrap()
        .starts_with("2026-01-07T12:00:09"));
    assert!(copied["score"].as_f64().unwrap() > 0.9);
    // And the other way round.
    let back = app
        .get_json(&format!("/v1/stories/{copy}/duplicates"))
        .await;
    assert_eq!(back["cluster"], body["cluster"]);
    let mut ids = coverage_like_ids(&back["duplicates"]);
    ids.sort_unstable();
    assert_eq!(ids, [ATLAS_STORY, "d20260107-0000-03"], "{back:#}");

    // A story nobody else reported: an empty list, not a 404.
    let lonely = post_created(
        &app,
        &make_digest("2026-01-10T08:00:00+08:00", "platypus", 1),
    )
    .await;
    let lonely = lonely["items"][0]["id"].as_str().unwrap();
    let body = app
        .get_json(&format!("/v1/stories/{lonely}/duplicates"))
        .await;
    assert_eq!(body["story"], lonely);
    assert!(body["cluster"].is_null(), "{body:#}");
    assert_eq!(body["duplicates"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn check_finds_earlier_coverage_and_stores_nothing() {
    let app = spawn_app().await;
    let digests_before = app.get_json("/v1/digests").await;
    let stories_before = story_count(&app).await;

    // Atlas again a day later, next to a story nobody covered before.
    let mut draft = digest_copying("2026-01-07T12:00:09+08:00", &[5]);
    draft.push_str(
        "2.  [Wombat Labs ships a zyxwv quokka](https://example.com/wombat)\n\n    \
         Nothing in the sample talks about wombats or quokkas.\n",
    );
    let response = check(&app, "text/markdown; charset=utf-8", &draft).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["digest"], "d20260107-1200");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let atlas = &items[0];
    assert_eq!(atlas["id"], "d20260107-1200-01");
    assert_eq!(atlas["position"], 1);
    assert_eq!(atlas["title"], ATLAS_TITLE);
    assert!(atlas["url"]
        .as_str()
        .unwrap()
        .starts_with("https://example.org/mirror/"));
    let first = &atlas["previous_coverage"][0];
    assert_eq!(first["id"], ATLAS_STORY, "{body:#}");
    assert_eq!(first["title"], ATLAS_TITLE);
    assert_eq!(first["digest"], ATLAS_DIGEST);
    assert!(first["url"].as_str().unwrap().starts_with("https://x.com/"));
    assert!(first["published"]
        .as_str()
        .unwrap()
        .starts_with("2026-01-06T12:00:09"));
    assert!(first["score"].as_f64().unwrap() > 0.99, "{first}");
    assert!(
        atlas["nearest"].is_null(),
        "a covered item has no near miss: {atlas:#}"
    );
    assert_eq!(coverage_ids(&items[1]), Vec::<&str>::new());
    // The new item still names its closest earlier story, below the threshold, for the
    // editor to judge.
    let nearest = &items[1]["nearest"];
    assert!(nearest["id"].is_string(), "{body:#}");
    let (score, threshold) = (
        nearest["score"].as_f64().unwrap(),
        nearest["reason"]["threshold"].as_f64().unwrap(),
    );
    assert!(score < threshold, "{nearest}");
    assert!(nearest["reason"]["summary"].is_string(), "{nearest}");

    assert_eq!(app.get_json("/v1/digests").await, digests_before);
    assert_eq!(story_count(&app).await, stories_before);
    assert_error(
        app.get("/v1/digests/d20260107-1200").await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.get("/v1/stories/d20260107-1200-01").await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn check_takes_only_a_markdown_digest() {
    let app = spawn_app().await;
    let draft = digest_copying("2026-01-07T12:00:09+08:00", &[5]);
    for content_type in [
        "application/json",
        "text/plain",
        "text/markdown; charset=gbk",
    ] {
        assert_error(
            check(&app, content_type, &draft).await,
            415,
            "unsupported_media_type",
        )
        .await;
    }
    let broken = "---\ntitle: \"x\"\ndate: someday\n---\n";
    assert_error(
        check(&app, "text/markdown", broken).await,
        422,
        "invalid_digest",
    )
    .await;
    assert_error(
        check(&app, "text/markdown", "").await,
        422,
        "invalid_digest",
    )
    .await;
    let archive = "<details>\n<summary>600. [2025-03-23] An archived talk</summary><br>\n\n\
                   A summary of the talk.\n</details>\n";
    let message = assert_error(
        check(&app, "text/markdown", archive).await,
        422,
        "invalid_digest",
    )
    .await;
    assert!(message.contains("archive"), "{message}");
    assert_error(app.get("/v1/check").await, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn a_posted_digest_reports_the_earlier_stories_it_repeats() {
    let app = spawn_app().await;
    let digest = digest_copying("2026-01-07T12:00:09+08:00", &[5]);
    let created = post_created(&app, &digest).await;
    assert_eq!(created["digest"], "d20260107-1200");
    let item = &created["items"][0];
    assert_eq!(item["id"], "d20260107-1200-01");
    assert_eq!(item["title"], ATLAS_TITLE);
    let first = &item["previous_coverage"][0];
    assert_eq!(first["id"], ATLAS_STORY, "{created:#}");
    assert_eq!(first["digest"], ATLAS_DIGEST);
    assert_eq!(first["title"], ATLAS_TITLE);
    assert!(first["score"].as_f64().unwrap() > 0.99, "{first}");

    // Posting it again finds the same earlier story, never the digest's own copy.
    let again = post_created(&app, &digest).await;
    assert_eq!(again["unchanged"], 1);
    let ids = coverage_ids(&again["items"][0]);
    assert_eq!(ids.first(), Some(&ATLAS_STORY), "{again:#}");
    assert!(
        ids.iter().all(|id| !id.starts_with("d20260107-1200")),
        "{ids:?}"
    );
}

#[tokio::test]
async fn previous_coverage_leaves_out_the_digests_own_and_later_stories() {
    let app = spawn_app().await;
    post_created(&app, &digest_copying("2026-01-07T12:00:09+08:00", &[5])).await;

    // The same story dated before every other copy: nothing earlier covered it.
    let earlier = post_created(&app, &digest_copying("2026-01-05T08:00:00+08:00", &[5, 5])).await;
    for item in earlier["items"].as_array().unwrap() {
        let ids = coverage_ids(item);
        assert!(!ids.contains(&ATLAS_STORY), "a later story: {ids:?}");
        assert!(
            !ids.contains(&"d20260107-1200-01"),
            "a later story: {ids:?}"
        );
        assert!(
            ids.iter().all(|id| !id.starts_with("d20260105-0800")),
            "its own digest: {ids:?}"
        );
    }

    // Dated after all of them, it lists every earlier copy.
    let later = post_created(&app, &digest_copying("2026-01-08T08:00:00+08:00", &[5])).await;
    let mut ids = coverage_ids(&later["items"][0]);
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "d20260105-0800-01",
            "d20260105-0800-02",
            ATLAS_STORY,
            "d20260107-1200-01"
        ],
        "{later:#}"
    );
    let scores: Vec<f64> = later["items"][0]["previous_coverage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
}

#[tokio::test]
async fn duplicate_routes_are_documented_and_counted_under_their_templates() {
    let app = spawn_app().await;
    app.get_json("/v1/duplicates").await;
    app.get_json(&format!("/v1/stories/{ATLAS_STORY}/duplicates"))
        .await;
    let draft = digest_copying("2026-01-07T12:00:09+08:00", &[5]);
    assert_eq!(check(&app, "text/markdown", &draft).await.status(), 200);
    let text = app.get("/metrics").await.text().await.unwrap();
    for route in ["/v1/duplicates", "/v1/stories/{id}/duplicates", "/v1/check"] {
        let method = if route == "/v1/check" { "POST" } else { "GET" };
        let line = format!(
            r#"storydex_http_requests_total{{route="{route}",method="{method}",status="200"}} 1"#
        );
        assert!(text.contains(&line), "missing {line}:\n{text}");
    }
    assert!(
        !text.contains(ATLAS_STORY),
        "raw paths must not become labels"
    );

    let doc = app.get_json("/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths["/v1/duplicates"]["get"].is_object());
    assert!(paths["/v1/stories/{id}/duplicates"]["get"].is_object());
    assert!(paths["/v1/check"]["post"]["requestBody"]["content"]["text/markdown"].is_object());
    let params: Vec<&str> = paths["/v1/duplicates"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["since", "until", "min_score"]);
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for schema in [
        "DuplicatesResponse",
        "ClusterView",
        "StoryDuplicatesResponse",
        "CheckResponse",
        "CoverageView",
    ] {
        assert!(schemas.contains_key(schema), "missing schema {schema}");
    }
    let created_item = &schemas["CreatedItem"]["properties"];
    assert!(created_item["previous_coverage"].is_object());
}
