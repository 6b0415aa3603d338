//! The editors' web page: search, stories, duplicate clusters, the draft check and
//! publishing, and the digests, as server-rendered HTML that works without JavaScript.
//!
//! Owns: the page routes (mounted next to the JSON API by `server::router`), their
//! askama templates (`src/server/pages/templates/`) and the CSS and script embedded in
//! the binary, the rules that keep stored text harmless on a page ([`markdown`],
//! [`highlight`]), and the page's guards on writes: the same key rule as the API
//! ([`crate::server::access`]), with the key sent in the form body, and a same-origin
//! check on every page POST.
//! Must not: import the JSON API, contain search or ingest logic (that is `service`),
//! decide a status code (a [`RequestError`] does), or answer a person with JSON.

mod handlers;
mod highlight;
mod markdown;
mod views;

use crate::server::access::{check_write, WriteRefusal};
use crate::server::{cause_chain, AppState, RequestError};
use askama::Template;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// The page routes; `server::router` merges them in before its layers, so they share
/// the API's metrics, body limit and tracing.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(handlers::search))
        .route("/stories/{id}", get(handlers::story))
        .route("/duplicates", get(handlers::duplicates))
        .route("/check", get(handlers::check_form).post(handlers::check))
        // A GET never writes: it only leads back to the draft check.
        .route(
            "/publish",
            get(|| async { Redirect::to("/check") }).post(handlers::publish),
        )
        .route("/digests", get(handlers::digests))
        .route("/digests/{id}", get(handlers::digest))
        .route("/static/style.css", get(style))
        .route("/static/app.js", get(script))
        .layer(middleware::map_response(security_headers))
}

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/app.js");

async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}

async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
}

/// Defence in depth behind the escaping: no inline script or style runs, nothing
/// loads from elsewhere but images, and no other site may frame the page.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   img-src 'self' https: http: data:; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A page, or the error page. Failures of form pages are shown inside the form instead
/// (the editor's draft must survive a typo), so this is for the rest.
pub(crate) struct PageError(pub(crate) RequestError);

impl From<RequestError> for PageError {
    fn from(e: RequestError) -> Self {
        Self(e)
    }
}

impl From<crate::domain::Invalid> for PageError {
    fn from(e: crate::domain::Invalid) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let page = views::ErrorPage {
            title: heading(&self.0).to_owned(),
            nav: "",
            message: sentence(&self.0),
        };
        render(status, &page)
    }
}

/// A rendered template with its status. Rendering only fails on a bug in a template's
/// code (askama checks the templates at compile time).
pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><meta charset=utf-8><title>Error</title><p>The page could not be shown; the server log has the details.</p>"),
            )
                .into_response()
        }
    }
}

/// The error page's heading.
fn heading(e: &RequestError) -> &'static str {
    match e {
        RequestError::Overloaded | RequestError::NotReady => "请稍后再试 · Busy",
        RequestError::NotFound { .. } | RequestError::RouteNotFound { .. } => "找不到 · Not found",
        RequestError::Unauthorized(_) | RequestError::Forbidden(_) => "不能发布 · Not allowed",
        RequestError::Internal(_) => "出错了 · Something went wrong",
        _ => "请检查输入 · Please check the input",
    }
}

/// What went wrong as a sentence for a person, saying what to do about it.
pub(crate) fn sentence(e: &RequestError) -> String {
    match e {
        RequestError::Overloaded => "The server is busy: the model is working through other \
                                 requests. Try again in a moment. (服务器正忙，请稍后再试。)"
            .to_owned(),
        RequestError::NotReady => "The server is still starting (loading the model and the \
                               index). Try again in a few seconds."
            .to_owned(),
        RequestError::NotFound { what, id } => {
            format!("There is no {what} with the id “{id}”. It may have been removed.")
        }
        RequestError::InvalidDigest(parse) => format!(
            "The draft could not be read: line {}: {}. Fix that line and try again.",
            parse.line, parse.message
        ),
        RequestError::PayloadTooLarge { limit } => format!(
            "The draft is too large: the limit is {} KB. Split it or ask for a larger \
             --max-body.",
            limit / 1024
        ),
        RequestError::Internal(cause) => {
            tracing::error!(error = %cause_chain(cause.as_ref()), "page request failed");
            "Something went wrong on the server; its log has the details.".to_owned()
        }
        other => capitalised(&other.to_string()),
    }
}

/// `since must be a date` -> `Since must be a date.`
fn capitalised(message: &str) -> String {
    let mut chars = message.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !out.ends_with(['.', '!', '?', ')']) {
        out.push('.');
    }
    out
}

/// Refuses a page POST that a browser says came from another site.
///
/// The publish form carries the write key in its body, so a forged cross-site form
/// cannot publish without knowing the key; this check also stops other sites from
/// making a visitor's browser post drafts at all. Clients that send neither header
/// (curl, scripts) are let through: they are not a browser being tricked.
pub(crate) fn same_origin(headers: &HeaderMap) -> Result<(), RequestError> {
    const CROSS_SITE: &str = "this form was sent from another site; open the page \
                              on this server and send it from there";
    if let Some(site) = headers.get("sec-fetch-site") {
        // `none`: the person did it themselves (typed the address, a bookmark).
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return Err(RequestError::Forbidden(CROSS_SITE));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin = origin.to_str().ok();
        let matches = match (origin, host) {
            (Some(origin), Some(host)) => origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|o| o.eq_ignore_ascii_case(host)),
            _ => false,
        };
        if !matches {
            return Err(RequestError::Forbidden(CROSS_SITE));
        }
    }
    Ok(())
}

/// The page's write check: the API's rule ([`crate::server::access`]), with the key
/// typed into the publish form and refusals worded for a person.
pub(crate) fn write_allowed(state: &AppState, key: &str) -> Result<(), RequestError> {
    let key = Some(key.trim()).filter(|k| !k.is_empty());
    check_write(state, key).map_err(|refusal| match refusal {
        WriteRefusal::NoKeyOffLoopback => RequestError::Forbidden(
            "publishing is switched off: this server listens on a public address \
             without a write key; start it with --api-key (or STORYDEX_API_KEY)",
        ),
        WriteRefusal::MissingKey => RequestError::Unauthorized(
            "this server needs its write key to publish: type it into the key field",
        ),
        WriteRefusal::WrongKey => {
            RequestError::Unauthorized("the write key is wrong: check it and publish again")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn posts_from_the_page_itself_or_from_scripts_pass_the_origin_check() {
        assert!(same_origin(&headers(&[])).is_ok());
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ]))
        .is_ok());
    }

    #[test]
    fn posts_from_other_sites_are_refused() {
        for forged in [
            headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]),
            headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "https://evil.example"),
            ]),
            headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            headers(&[("origin", "http://127.0.0.1:8080")]),
        ] {
            let e = same_origin(&forged).unwrap_err();
            assert_eq!(e.status(), StatusCode::FORBIDDEN, "{forged:?}");
        }
    }

    #[test]
    fn error_sentences_say_what_to_do() {
        assert!(sentence(&RequestError::Overloaded).contains("busy"));
        assert!(sentence(&RequestError::Overloaded).contains("Try again"));
        let invalid = crate::domain::DateRange::parse(Some("yesterday"), None).unwrap_err();
        assert_eq!(
            sentence(&RequestError::Invalid(invalid)),
            "Since must be a date like 2026-01-06, got \"yesterday\"."
        );
        let internal = sentence(&RequestError::internal("disk on fire at /secret"));
        assert!(!internal.contains("secret"));
    }
}
