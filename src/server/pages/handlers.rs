//! Page handlers: read the request, call the service through [`AppState`] (model calls
//! on the embedding queue, store reads on blocking threads), hand a view to its
//! template.
//!
//! Owns: what each page fetches and how a form's failure is shown (inside the form,
//! keeping what the editor typed). Must not: embed on the async runtime, call the
//! service outside `AppState::read`/`write`, or write on a GET.

use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Form, Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use time::{Date, Duration};

use super::views::{
    CheckPage, CheckedDraft, CheckedRow, ClusterRow, DigestPage, DigestRow, DigestsPage,
    DuplicatesPage, HitRow, PublishedPage, SearchPage, StoryPage, StoryRow, WatchView,
};
use super::{render, same_origin, sentence, write_allowed, PageError};
use crate::corpus::ParsedFile;
use crate::domain::{DateRange, ErrorCode, Invalid, QueryText, TopK};
use crate::server::access::writes_disabled;
use crate::server::{AppState, RequestError};
use crate::service::{CheckedIngest, SearchMode, Service, ServiceError, Verdict};

/// Where a draft from the page says it came from, in stored rows and messages.
const PAGE_SOURCE: &str = "web page";
/// Results on the search page unless `k` says otherwise.
const SEARCH_K: usize = 20;
/// Similar stories on a story's page.
const SIMILAR_K: usize = 8;
/// The duplicates page's default range: this many days up to the newest stored story.
const DEFAULT_DAYS: i64 = 7;

/// The search modes, default first: `value` for `mode=`, and a label for people.
const SEARCH_MODES: &[(&str, &str)] = &[
    ("hybrid", "混合 hybrid: meaning + exact words"),
    ("vector", "语义 vector: meaning only"),
    ("lexical", "关键词 lexical: exact words only"),
];

fn query_error(e: QueryRejection) -> RequestError {
    RequestError::InvalidQueryString(e.body_text())
}

fn path_error(e: PathRejection) -> RequestError {
    RequestError::InvalidPath(e.body_text())
}

/// `/` and `/?q=...`: the search box, and results when there is a query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SearchParams {
    q: Option<String>,
    since: Option<String>,
    until: Option<String>,
    mode: Option<String>,
    k: Option<String>,
}

pub(crate) async fn search(
    State(state): State<AppState>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let Query(params) = params.map_err(query_error)?;
    let q = params.q.unwrap_or_default();
    let mut page = SearchPage {
        title: if q.trim().is_empty() {
            "搜索 Search".to_owned()
        } else {
            format!("{} · 搜索", q.trim())
        },
        nav: "search",
        since: params.since.unwrap_or_default(),
        until: params.until.unwrap_or_default(),
        mode: params.mode.unwrap_or_default(),
        modes: SEARCH_MODES,
        searched: false,
        error: None,
        hits: Vec::new(),
        took_ms: String::new(),
        q,
    };
    if page.q.trim().is_empty() {
        return Ok(render(StatusCode::OK, &page));
    }
    let started = std::time::Instant::now();
    let k = params.k.as_deref();
    match run_search(&state, &page.q, &page.since, &page.until, &page.mode, k).await {
        Ok(hits) => {
            page.searched = true;
            page.hits = hits;
            page.took_ms = format!("{:.0}", started.elapsed().as_secs_f64() * 1000.0);
            Ok(render(StatusCode::OK, &page))
        }
        Err(e) => {
            page.error = Some(sentence(&e));
            Ok(render(e.status(), &page))
        }
    }
}

fn top_k(raw: Option<&str>, default: usize) -> Result<TopK, RequestError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(TopK::new(default)?),
        Some(raw) => {
            let k = raw.parse::<usize>().map_err(|_| {
                Invalid::new(
                    ErrorCode::InvalidK,
                    format!("the number of results must be a whole number, got {raw:?}"),
                )
            })?;
            Ok(TopK::new(k)?)
        }
    }
}

async fn run_search(
    state: &AppState,
    q: &str,
    since: &str,
    until: &str,
    mode: &str,
    k: Option<&str>,
) -> Result<Vec<HitRow>, RequestError> {
    let k = top_k(k, SEARCH_K)?;
    let range = DateRange::parse(Some(since), Some(until))?;
    let mode: SearchMode = mode.parse()?;
    let query = QueryText::new(q)?;
    let hits = state.search(query.clone(), k, range, mode).await?;
    Ok(hits
        .into_iter()
        .map(|h| HitRow::new(h, Some(query.as_str())))
        .collect())
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct StoryParams {
    /// `1`: similar stories may come from the story's own digest too.
    same_digest: Option<String>,
}

/// `/stories/{id}`: the story, its similar stories and its duplicate cluster.
pub(crate) async fn story(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<StoryParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let Path(id) = id.map_err(path_error)?;
    let Query(params) = params.map_err(query_error)?;
    let same_digest = params.same_digest.is_some_and(|v| v == "1" || v == "true");
    let k = TopK::new(SIMILAR_K)?;
    let (story, similar, cluster) = state
        .read(move |service| {
            let story = service.story(&id)?;
            let similar = service.similar(&id, k, DateRange::ALL, !same_digest)?;
            let cluster = service.story_duplicates(&id)?;
            Ok((story, similar, cluster))
        })
        .await?;
    let page = StoryPage::new(story, similar, cluster, same_digest);
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DuplicatesParams {
    since: Option<String>,
    until: Option<String>,
}

/// `/duplicates`: same-event clusters over a date range, newest first. Without
/// parameters the range is the last seven days of the store (not of the clock: an
/// archive is often browsed long after it was written); empty fields mean all dates.
pub(crate) async fn duplicates(
    State(state): State<AppState>,
    params: Result<Query<DuplicatesParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let Query(params) = params.map_err(query_error)?;
    let defaulted = params.since.is_none() && params.until.is_none();
    let (since, until, range_note) = if defaulted {
        match state.read(latest_day).await? {
            Some(latest) => {
                let first = latest.saturating_sub(Duration::days(DEFAULT_DAYS - 1));
                (
                    first.to_string(),
                    latest.to_string(),
                    format!(
                        "The last {DEFAULT_DAYS} days of the archive, up to its newest story \
                         ({latest}). 默认显示存档中最近 {DEFAULT_DAYS} 天。"
                    ),
                )
            }
            None => (String::new(), String::new(), String::new()),
        }
    } else {
        let since = params.since.unwrap_or_default();
        let until = params.until.unwrap_or_default();
        let note = if since.trim().is_empty() && until.trim().is_empty() {
            "All dates. 全部日期。".to_owned()
        } else {
            String::new()
        };
        (since, until, note)
    };
    let mut page = DuplicatesPage {
        title: "重复报道 Duplicates".to_owned(),
        nav: "duplicates",
        since,
        until,
        range_note,
        error: None,
        clusters: Vec::new(),
    };
    let range = match DateRange::parse(Some(page.since.trim()), Some(page.until.trim())) {
        Ok(range) => range,
        Err(e) => {
            let e = RequestError::from(e);
            page.error = Some(sentence(&e));
            return Ok(render(e.status(), &page));
        }
    };
    let clusters = state
        .read(move |service| service.duplicates(range, None))
        .await?;
    page.clusters = clusters
        .into_iter()
        .map(|c| ClusterRow::new(c, None))
        .collect();
    Ok(render(StatusCode::OK, &page))
}

/// The local date of the newest stored story, from the digests' dates (an archive has
/// none of its own, so its entries are looked at).
fn latest_day(service: &Service) -> Result<Option<Date>, ServiceError> {
    let mut latest: Option<Date> = None;
    for digest in service.digests()? {
        let dates: Vec<Date> = match digest.published {
            Some(t) => vec![t.date()],
            None => service
                .digest(&digest.id)?
                .1
                .iter()
                .filter_map(|s| s.published.map(|t| t.date()))
                .collect(),
        };
        for date in dates {
            latest = latest.max(Some(date));
        }
    }
    Ok(latest)
}

fn check_page(state: &AppState, draft: String) -> CheckPage {
    CheckPage {
        title: "检查草稿 Check a draft".to_owned(),
        nav: "check",
        draft,
        error: None,
        checked: None,
        publish: false,
        key_needed: state.api_key().is_some(),
        publish_disabled: writes_disabled(state),
    }
}

/// `GET /check`: the empty draft form.
pub(crate) async fn check_form(State(state): State<AppState>) -> Response {
    render(StatusCode::OK, &check_page(&state, String::new()))
}

/// `POST /check` (multipart: the `draft` textarea and an optional `file`): every item
/// of the draft marked new or covered. Nothing is stored.
pub(crate) async fn check(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let mut page = check_page(&state, String::new());
    let result = async {
        same_origin(&headers)?;
        let form = form.map_err(|e| RequestError::InvalidQueryString(e.body_text()))?;
        page.draft = read_draft(&state, form).await?;
        if page.draft.trim().is_empty() {
            return Err(Invalid::new(
                ErrorCode::EmptyDraft,
                "there is no draft to check: paste a digest into the box or pick its file",
            )
            .into());
        }
        let parsed = parse_draft(&page.draft)?;
        check_draft(&state, parsed).await
    }
    .await;
    match result {
        Ok(checked) => {
            page.checked = Some(checked);
            page.publish = !page.publish_disabled;
            render(StatusCode::OK, &page)
        }
        Err(e) => {
            page.error = Some(sentence(&e));
            render(e.status(), &page)
        }
    }
}

/// The draft of the check form: the picked file if there is one (the script already
/// copies it into the box when JavaScript runs), else the box.
async fn read_draft(state: &AppState, mut form: Multipart) -> Result<String, RequestError> {
    let mut text = String::new();
    let mut file: Option<Vec<u8>> = None;
    loop {
        let field = form
            .next_field()
            .await
            .map_err(|e| multipart_error(state, e))?;
        let Some(field) = field else { break };
        match field.name() {
            Some("draft") => text = field.text().await.map_err(|e| multipart_error(state, e))?,
            Some("file") => {
                let bytes = field.bytes().await.map_err(|e| multipart_error(state, e))?;
                if !bytes.is_empty() {
                    file = Some(bytes.to_vec());
                }
            }
            _ => {}
        }
    }
    match file {
        None => Ok(text),
        Some(bytes) => String::from_utf8(bytes).map_err(|_| {
            Invalid::new(
                ErrorCode::InvalidFile,
                "the picked file is not UTF-8 text: save the digest as UTF-8 and pick it again",
            )
            .into()
        }),
    }
}

fn multipart_error(state: &AppState, e: axum::extract::multipart::MultipartError) -> RequestError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        RequestError::PayloadTooLarge {
            limit: state.max_body(),
        }
    } else {
        RequestError::InvalidQueryString(e.body_text())
    }
}

/// One digest in the digest format. Archives are refused: their ids come from the file
/// name, which a pasted text does not have.
fn parse_draft(text: &str) -> Result<ParsedFile, RequestError> {
    crate::service::parse_draft(
        PAGE_SOURCE,
        text,
        "this is not a digest: a digest starts with front matter (a line `---`, then title \
         and date), then numbered items; video archives are added with `storydex ingest`",
    )
    .map_err(RequestError::InvalidDigest)
}

async fn check_draft(state: &AppState, parsed: ParsedFile) -> Result<CheckedDraft, RequestError> {
    let digest_id = parsed.digest.id.clone();
    let items = state.check_draft(parsed).await?;
    let rows = items
        .into_iter()
        .map(|item| {
            CheckedRow::new(
                &item.story,
                item.previous_coverage,
                item.nearest,
                item.verdict,
            )
        })
        .collect();
    Ok(CheckedDraft::new(digest_id, rows))
}

#[derive(Debug, Deserialize)]
pub(crate) struct PublishForm {
    #[serde(default)]
    draft: String,
    #[serde(default)]
    key: String,
}

/// `POST /publish` (form: `draft`, `key`): stores the checked draft, as
/// `POST /v1/digests` does, if the key is right.
pub(crate) async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<PublishForm>, FormRejection>,
) -> Response {
    let mut page = check_page(&state, String::new());
    let result = async {
        same_origin(&headers)?;
        let Form(form) = form.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                RequestError::PayloadTooLarge {
                    limit: state.max_body(),
                }
            } else {
                RequestError::InvalidQueryString(e.body_text())
            }
        })?;
        page.draft = form.draft;
        write_allowed(&state, &form.key)?;
        let parsed = parse_draft(&page.draft)?;
        state
            .write(move |service| Ok(service.ingest_checked(parsed)?))
            .await
    }
    .await;
    match result {
        Ok(CheckedIngest {
            parsed,
            report,
            previous_coverage,
        }) => {
            let items = parsed
                .stories
                .iter()
                .zip(previous_coverage)
                .map(|(story, coverage)| {
                    let verdict = if coverage.is_empty() {
                        Verdict::New
                    } else {
                        Verdict::Covered
                    };
                    CheckedRow::new(story, coverage, None, verdict)
                })
                .collect();
            let page = PublishedPage {
                title: format!("已发布 Published · {}", parsed.digest.title),
                nav: "check",
                digest_id: parsed.digest.id,
                digest_title: parsed.digest.title,
                new: report.new,
                updated: report.updated,
                unchanged: report.unchanged,
                removed: report.removed,
                items,
            };
            render(StatusCode::CREATED, &page)
        }
        Err(e) => {
            page.error = Some(sentence(&e));
            // The draft stays, with the publish form, so a mistyped key costs one retry.
            page.publish = !page.draft.trim().is_empty() && !page.publish_disabled;
            render(e.status(), &page)
        }
    }
}

/// `/digests`: every stored digest and archive, newest first.
pub(crate) async fn digests(State(state): State<AppState>) -> Result<Response, PageError> {
    let digests = state.read(|service| service.digests()).await?;
    let page = DigestsPage {
        title: "简报 Digests".to_owned(),
        nav: "digests",
        digests: digests.into_iter().map(DigestRow::new).collect(),
        watch: state.watch_status().map(|w| WatchView::new(w.snapshot())),
    };
    Ok(render(StatusCode::OK, &page))
}

/// `/digests/{id}`: one digest and its items.
pub(crate) async fn digest(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, PageError> {
    let Path(id) = id.map_err(path_error)?;
    let (digest, stories) = state.read(move |service| service.digest(&id)).await?;
    let digest = DigestRow::new(digest);
    let page = DigestPage {
        title: digest.title.clone(),
        nav: "digests",
        digest,
        items: stories.into_iter().map(StoryRow::new).collect(),
    };
    Ok(render(StatusCode::OK, &page))
}
