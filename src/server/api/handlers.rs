//! Route handlers: extract, validate into domain types, call the service, shape the reply.
//!
//! Owns: the mapping between HTTP requests and service calls. Must not: decide status
//! codes for errors (return [`RequestError`]), embed on the async runtime (the state's
//! `search` and `check_draft` embed on the queue), or call the service outside
//! `AppState::read`/`write`.

// utoipa's `#[utoipa::path]` emits a `pub struct __path_<handler>` for each handler.
#![allow(unreachable_pub)]

use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};

use super::auth::WriteAccess;
use super::extract::{AppJson, AppPath, AppQuery, MarkdownBody, BODY_SOURCE};
use super::ErrorBody;
use crate::api::{
    CheckResponse, CheckedItemView, ClusterView, CoverageView, CreatedItem, DigestCreated,
    DigestDetail, DigestView, DigestsResponse, DuplicatesResponse, HealthResponse, Hit,
    HitsResponse, SearchRequest, SearchResponse, StoryDuplicatesResponse, StoryView,
};
use crate::corpus::{ParseError, ParsedFile};
use crate::domain::{DateRange, ErrorCode, Invalid, QueryText, TopK};
use crate::server::{AppState, RequestError};
use crate::service::{CheckedIngest, SearchMode};

/// Query parameters of `GET /v1/search`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchParams {
    /// Chinese or English text, 1 to 2,000 characters, not all blank.
    #[param(required = true, min_length = 1, max_length = 2000, pattern = r"\S")]
    q: Option<String>,
    /// How many stories to return, 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    k: Option<usize>,
    /// Only stories published on or after this day (`YYYY-MM-DD`).
    #[param(schema_with = crate::api::day_param_schema)]
    since: Option<String>,
    /// Only stories published on or before this day (`YYYY-MM-DD`); not before `since`.
    #[param(schema_with = crate::api::day_param_schema)]
    until: Option<String>,
    /// `hybrid` (default), `vector` or `lexical`; any case, empty means the default.
    mode: Option<String>,
}

/// Query parameters of `GET /v1/stories/{id}/similar`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SimilarParams {
    /// How many stories to return, 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    k: Option<usize>,
    /// Only stories published on or after this day (`YYYY-MM-DD`).
    #[param(schema_with = crate::api::day_param_schema)]
    since: Option<String>,
    /// Only stories published on or before this day (`YYYY-MM-DD`); not before `since`.
    #[param(schema_with = crate::api::day_param_schema)]
    until: Option<String>,
    /// Only stories from other digests than the story's own.
    #[serde(default)]
    other_digests: bool,
}

/// Query parameters of `GET /v1/duplicates`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DuplicatesParams {
    /// Only stories published on or after this day (`YYYY-MM-DD`).
    #[param(schema_with = crate::api::day_param_schema)]
    since: Option<String>,
    /// Only stories published on or before this day (`YYYY-MM-DD`); not before `since`.
    #[param(schema_with = crate::api::day_param_schema)]
    until: Option<String>,
    /// Pair score two stories must reach to be the same event, 0 to 1 (default: the
    /// model's calibrated threshold). The default answers from the clusters kept up to
    /// date at ingest (online assignment: each new story joins the cluster it matches);
    /// any other value clusters the stories of the range afresh with average linkage
    /// (slower on the first request, then cached until the next ingest).
    #[param(value_type = Option<f32>, minimum = 0, maximum = 1)]
    min_score: Option<String>,
}

/// A number, or `invalid_min_score` (not `invalid_query_string`): whether it lies in
/// 0..=1 is the service's rule. An empty value is refused like any other non-number
/// (the parameter is a number; leaving it out means the model's threshold).
fn min_score(raw: Option<&str>) -> Result<Option<f32>, RequestError> {
    let Some(raw) = raw.map(str::trim) else {
        return Ok(None);
    };
    raw.parse::<f32>().map(Some).map_err(|_| {
        Invalid::new(
            ErrorCode::InvalidMinScore,
            format!(
                "min_score must be a number between 0 and 1, got {raw:?}; leave it out \
                 for the model's duplicate threshold"
            ),
        )
        .into()
    })
}

/// The request body example of the digest routes (also what API fuzzers post first).
const EXAMPLE_DIGEST: &str = "---\ntitle: \"2026.02.01.08 过去4小时全球AI发生了什么？\"\n\
date: 2026-02-01T08:00:00+08:00\ncategories: [\"AI Industry\"]\n---\n\n\
1.  [Boston Dynamics Atlas robots start work in Hyundai's car plant](https://example.org/atlas)\n\n\
    The electric Atlas humanoid moves parts on a real production line.\n";

/// A posted digest (`POST /v1/digests`, `POST /v1/check`). Archives are refused: their
/// ids derive from the file name, which a request body does not have.
fn parse_digest(text: &str) -> Result<ParsedFile, ParseError> {
    crate::service::parse_draft(
        BODY_SOURCE,
        text,
        "this is an archive; the API takes one digest (front matter starting with ---); \
         ingest archives with `storydex ingest`",
    )
}

fn filter(
    k: Option<usize>,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<(TopK, DateRange), RequestError> {
    let k = k.map_or(Ok(TopK::DEFAULT), TopK::new)?;
    Ok((k, DateRange::parse(since, until)?))
}

/// Stories most similar to a query
#[utoipa::path(
    post, path = "/v1/search", tag = "search",
    request_body = SearchRequest,
    responses(
        (status = 200, body = SearchResponse),
        (status = 400, description = "invalid_k, invalid_date, invalid_date_range, invalid_mode, empty_query, query_too_long, invalid_json", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 503, description = "overloaded or not_ready", body = ErrorBody),
    )
)]
pub(crate) async fn search_post(
    State(state): State<AppState>,
    AppJson(request): AppJson<SearchRequest>,
) -> Result<Json<SearchResponse>, RequestError> {
    search(
        &state,
        &request.query,
        request.k,
        request.since.as_deref(),
        request.until.as_deref(),
        request.mode.as_deref(),
    )
    .await
}

/// Stories most similar to a query (query-string form)
#[utoipa::path(
    get, path = "/v1/search", tag = "search",
    params(SearchParams),
    responses(
        (status = 200, body = SearchResponse),
        (status = 400, description = "invalid parameter", body = ErrorBody),
        (status = 503, description = "overloaded or not_ready", body = ErrorBody),
    )
)]
pub(crate) async fn search_get(
    State(state): State<AppState>,
    AppQuery(params): AppQuery<SearchParams>,
) -> Result<Json<SearchResponse>, RequestError> {
    search(
        &state,
        params.q.as_deref().unwrap_or(""),
        params.k,
        params.since.as_deref(),
        params.until.as_deref(),
        params.mode.as_deref(),
    )
    .await
}

async fn search(
    state: &AppState,
    query: &str,
    k: Option<usize>,
    since: Option<&str>,
    until: Option<&str>,
    mode: Option<&str>,
) -> Result<Json<SearchResponse>, RequestError> {
    let started = Instant::now();
    let (k, range) = filter(k, since, until)?;
    let mode: SearchMode = mode.unwrap_or("").parse()?;
    let query = QueryText::new(query)?;
    let hits = state.search(query, k, range, mode).await?;
    Ok(Json(SearchResponse {
        mode: mode.as_str().to_owned(),
        hits: hits.into_iter().map(Hit::from).collect(),
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
    }))
}

/// One stored story
#[utoipa::path(
    get, path = "/v1/stories/{id}", tag = "stories",
    params(("id" = String, Path, description = "Story id, like d20260106-1200-04")),
    responses((status = 200, body = StoryView), (status = 404, body = ErrorBody))
)]
pub(crate) async fn story(
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
) -> Result<Json<StoryView>, RequestError> {
    let story = state.read(move |service| service.story(&id)).await?;
    Ok(Json(story.into()))
}

/// Stories similar to a stored one (from its stored vectors; no model call)
#[utoipa::path(
    get, path = "/v1/stories/{id}/similar", tag = "stories",
    params(("id" = String, Path, description = "Story id"), SimilarParams),
    responses(
        (status = 200, body = HitsResponse),
        (status = 400, description = "invalid parameter", body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn similar(
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
    AppQuery(params): AppQuery<SimilarParams>,
) -> Result<Json<HitsResponse>, RequestError> {
    let (k, range) = filter(params.k, params.since.as_deref(), params.until.as_deref())?;
    let hits = state
        .read(move |service| service.similar(&id, k, range, params.other_digests))
        .await?;
    Ok(Json(HitsResponse {
        hits: hits.into_iter().map(Hit::from).collect(),
    }))
}

/// All digests and archives, newest first
#[utoipa::path(
    get, path = "/v1/digests", tag = "digests",
    responses((status = 200, body = DigestsResponse))
)]
pub(crate) async fn digests(
    State(state): State<AppState>,
) -> Result<Json<DigestsResponse>, RequestError> {
    let digests = state.read(|service| service.digests()).await?;
    Ok(Json(DigestsResponse {
        digests: digests.into_iter().map(DigestView::from).collect(),
    }))
}

/// One digest with its stories
#[utoipa::path(
    get, path = "/v1/digests/{id}", tag = "digests",
    params(("id" = String, Path, description = "Digest id, like d20260106-1200")),
    responses((status = 200, body = DigestDetail), (status = 404, body = ErrorBody))
)]
pub(crate) async fn digest(
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
) -> Result<Json<DigestDetail>, RequestError> {
    let (digest, stories) = state.read(move |service| service.digest(&id)).await?;
    Ok(Json(DigestDetail {
        digest: digest.into(),
        items: stories.into_iter().map(StoryView::from).collect(),
    }))
}

/// Ingest one digest (Markdown); posting the same digest again changes nothing
#[utoipa::path(
    post, path = "/v1/digests", tag = "digests",
    request_body(content = String, content_type = "text/markdown", description = "One digest: front matter, then numbered items", example = json!(EXAMPLE_DIGEST)),
    security(("bearer" = [])),
    responses(
        (status = 201, body = DigestCreated),
        (status = 401, description = "missing or wrong bearer key", body = ErrorBody),
        (status = 403, description = "no API key set and not on loopback", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, description = "not text/markdown", body = ErrorBody),
        (status = 422, description = "the digest does not parse; the message names the line", body = ErrorBody),
        (status = 503, description = "overloaded or not_ready", body = ErrorBody),
    )
)]
pub(crate) async fn create_digest(
    _write: WriteAccess,
    State(state): State<AppState>,
    MarkdownBody(text): MarkdownBody,
) -> Result<impl IntoResponse, RequestError> {
    let CheckedIngest {
        parsed,
        report,
        previous_coverage,
    } = state
        .write(move |service| {
            let parsed = parse_digest(&text).map_err(RequestError::InvalidDigest)?;
            Ok(service.ingest_checked(parsed)?)
        })
        .await?;
    let created = DigestCreated {
        digest: parsed.digest.id.clone(),
        stories: parsed.stories.iter().map(|s| s.id.clone()).collect(),
        items: parsed
            .stories
            .iter()
            .zip(previous_coverage)
            .map(|(s, coverage)| CreatedItem {
                id: s.id.clone(),
                title: s.headline.clone(),
                previous_coverage: coverage.into_iter().map(CoverageView::from).collect(),
            })
            .collect(),
        new: report.new,
        updated: report.updated,
        unchanged: report.unchanged,
        removed: report.removed,
    };
    let location = format!("/v1/digests/{}", created.digest);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created),
    ))
}

/// Same-event clusters: stories of different digests that report the same event
///
/// Without `min_score` (or with the model's threshold) the clusters are the ones kept at
/// ingest by online assignment; with another `min_score` the stories of the range are
/// clustered afresh by average linkage, so the same stories may group differently.
#[utoipa::path(
    get, path = "/v1/duplicates", tag = "duplicates",
    params(DuplicatesParams),
    responses(
        (status = 200, body = DuplicatesResponse),
        (status = 400, description = "invalid_min_score, invalid_date, invalid_date_range, invalid_query_string", body = ErrorBody),
        (status = 503, description = "not_ready", body = ErrorBody),
    )
)]
pub(crate) async fn duplicates(
    State(state): State<AppState>,
    AppQuery(params): AppQuery<DuplicatesParams>,
) -> Result<Json<DuplicatesResponse>, RequestError> {
    let range = DateRange::parse(params.since.as_deref(), params.until.as_deref())?;
    let min_score = min_score(params.min_score.as_deref())?;
    let clusters = state
        .read(move |service| service.duplicates(range, min_score))
        .await?;
    Ok(Json(DuplicatesResponse {
        clusters: clusters.into_iter().map(ClusterView::from).collect(),
    }))
}

/// The other stories of a stored story's same-event cluster (no model call)
#[utoipa::path(
    get, path = "/v1/stories/{id}/duplicates", tag = "duplicates",
    params(("id" = String, Path, description = "Story id")),
    responses(
        (status = 200, body = StoryDuplicatesResponse),
        (status = 404, body = ErrorBody),
    )
)]
pub(crate) async fn story_duplicates(
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
) -> Result<Json<StoryDuplicatesResponse>, RequestError> {
    let (id, cluster) = state
        .read(move |service| {
            let cluster = service.story_duplicates(&id)?;
            Ok((id, cluster))
        })
        .await?;
    Ok(Json(StoryDuplicatesResponse::new(id, cluster)))
}

/// Which items of a draft digest were already covered by earlier digests; nothing is stored
#[utoipa::path(
    post, path = "/v1/check", tag = "duplicates",
    request_body(content = String, content_type = "text/markdown", description = "One digest: front matter, then numbered items", example = json!(EXAMPLE_DIGEST)),
    responses(
        (status = 200, body = CheckResponse),
        (status = 413, body = ErrorBody),
        (status = 415, description = "not text/markdown", body = ErrorBody),
        (status = 422, description = "the digest does not parse; the message names the line", body = ErrorBody),
        (status = 503, description = "overloaded or not_ready", body = ErrorBody),
    )
)]
pub(crate) async fn check(
    State(state): State<AppState>,
    MarkdownBody(text): MarkdownBody,
) -> Result<Json<CheckResponse>, RequestError> {
    let parsed = tokio::task::spawn_blocking(move || parse_digest(&text))
        .await
        .map_err(RequestError::internal)?
        .map_err(RequestError::InvalidDigest)?;
    let digest = parsed.digest.id.clone();
    let items = state.check_draft(parsed).await?;
    Ok(Json(CheckResponse {
        digest,
        items: items.into_iter().map(CheckedItemView::from).collect(),
    }))
}

/// Ready when the model and index are loaded
#[utoipa::path(
    get, path = "/health", tag = "meta",
    responses(
        (status = 200, description = "ready", body = HealthResponse),
        (status = 503, description = "still starting", body = HealthResponse),
    )
)]
pub(crate) async fn health(
    State(state): State<AppState>,
) -> Result<impl IntoResponse, RequestError> {
    let Some(service) = state.service() else {
        let starting = HealthResponse {
            status: "starting".to_owned(),
            stories: 0,
            model: None,
            encoder: None,
        };
        return Ok((StatusCode::SERVICE_UNAVAILABLE, Json(starting)));
    };
    let stories = state.read(|service| service.story_count()).await?;
    Ok((
        StatusCode::OK,
        Json(HealthResponse {
            status: "ok".to_owned(),
            stories,
            model: Some(service.model_id().to_owned()),
            encoder: Some(service.encoder().device_info()),
        }),
    ))
}

/// Prometheus metrics (text exposition format)
#[utoipa::path(
    get, path = "/metrics", tag = "meta",
    responses((status = 200, content_type = "text/plain", body = String))
)]
pub(crate) async fn metrics(
    State(state): State<AppState>,
) -> Result<impl IntoResponse, RequestError> {
    let stories = if state.is_ready() {
        state.read(|service| service.story_count()).await?
    } else {
        0
    };
    let encoder = state.service().map(|s| s.encoder().device_info());
    let watch = state.watch_status().map(|w| w.snapshot());
    let text = state.metrics().render(
        state.queue_depth(),
        stories,
        encoder.as_ref(),
        watch.as_ref(),
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}

/// This API's OpenAPI document
#[utoipa::path(
    get, path = "/openapi.json", tag = "meta",
    responses((status = 200, content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(super::ApiDoc::openapi())
}

/// What `POST /v1/admin/backup` wrote.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BackupCreated {
    /// The backup's folder (on the server's disk).
    pub dir: String,
    pub stories: usize,
    pub windows: usize,
    /// The store's write generation the backup is as of.
    pub generation: i64,
    /// Whether the vector index came with it (else it is rebuilt from SQLite on open).
    pub index: bool,
    pub bytes: u64,
}

/// Back up the live store into a new folder of `--backup-dir`
#[utoipa::path(
    post, path = "/v1/admin/backup", tag = "meta",
    security(("bearer" = [])),
    responses(
        (status = 201, body = BackupCreated),
        (status = 401, description = "missing or wrong bearer key", body = ErrorBody),
        (status = 403, description = "no API key set and not on loopback", body = ErrorBody),
        (status = 409, description = "backups_off: the server was started without --backup-dir", body = ErrorBody),
        (status = 503, description = "not_ready", body = ErrorBody),
    )
)]
pub(crate) async fn backup(
    _write: WriteAccess,
    State(state): State<AppState>,
) -> Result<impl IntoResponse, RequestError> {
    let report = state.backup().await?;
    Ok((
        StatusCode::CREATED,
        Json(BackupCreated {
            dir: report.dir.display().to_string(),
            stories: report.stories,
            windows: report.windows,
            generation: report.generation,
            index: report.index,
            bytes: report.bytes,
        }),
    ))
}
