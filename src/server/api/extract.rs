//! Request extractors whose rejections are [`RequestError`]s, so malformed requests get the
//! same JSON error shape as everything else.
//!
//! Owns: content-type checks, body-size and syntax rejections. Must not: validate the
//! values themselves (that is `domain`).

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;

use crate::corpus::{self, ParseError};
use crate::server::{AppState, RequestError};

/// `Json<T>` with JSON errors: 415 without `application/json`, 400 `invalid_json`, 413.
pub(crate) struct AppJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for AppJson<T> {
    type Rejection = RequestError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, RequestError> {
        let got = content_type(request.headers());
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(RequestError::UnsupportedMediaType {
                    expected: "application/json",
                    got,
                })
            }
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(RequestError::PayloadTooLarge {
                    limit: state.max_body(),
                })
            }
            Err(e) => Err(RequestError::InvalidJson(e.body_text())),
        }
    }
}

/// `Query<T>` with a 400 `invalid_query_string` JSON rejection.
pub(crate) struct AppQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = RequestError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, RequestError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|e| RequestError::InvalidQueryString(e.body_text()))
    }
}

/// `Path<T>` with a 400 `invalid_path` JSON rejection.
pub(crate) struct AppPath<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for AppPath<T> {
    type Rejection = RequestError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, RequestError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|e| RequestError::InvalidPath(e.body_text()))
    }
}

/// Where a posted digest says it came from, in stored rows and error messages.
pub(crate) const BODY_SOURCE: &str = "request body";

/// A UTF-8 Markdown body sent as `Content-Type: text/markdown` (a `charset` other than
/// UTF-8 is refused). The content type is checked before the body is read.
pub(crate) struct MarkdownBody(pub(crate) String);

impl FromRequest<AppState> for MarkdownBody {
    type Rejection = RequestError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, RequestError> {
        let got = content_type(request.headers());
        if !is_utf8_markdown(&got) {
            return Err(RequestError::UnsupportedMediaType {
                expected: "text/markdown; charset=utf-8",
                got,
            });
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                RequestError::PayloadTooLarge {
                    limit: state.max_body(),
                }
            } else {
                RequestError::internal(e)
            }
        })?;
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => Ok(Self(text)),
            // `parse_bytes` says which line holds the first bad byte.
            Err(_) => Err(RequestError::InvalidDigest(
                corpus::parse_bytes(BODY_SOURCE, &bytes)
                    .err()
                    .unwrap_or_else(|| ParseError {
                        source_name: BODY_SOURCE.to_owned(),
                        line: 0,
                        message: "the body is not UTF-8".to_owned(),
                    }),
            )),
        }
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .map_or("nothing", |v| v.to_str().unwrap_or("a non-ASCII value"))
        .to_owned()
}

fn is_utf8_markdown(content_type: &str) -> bool {
    let mut parts = content_type.split(';').map(str::trim);
    let mime_ok = parts
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case("text/markdown"));
    mime_ok
        && parts.all(|param| match param.split_once('=') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
                let value = value.trim().trim_matches('"');
                value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")
            }
            _ => true,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_content_type_allows_parameters_but_only_utf8() {
        assert!(is_utf8_markdown("text/markdown"));
        assert!(is_utf8_markdown("Text/Markdown; charset=UTF-8"));
        assert!(is_utf8_markdown("text/markdown; variant=CommonMark"));
        assert!(!is_utf8_markdown("text/markdown; charset=gbk"));
        assert!(!is_utf8_markdown("text/plain"));
        assert!(!is_utf8_markdown("nothing"));
    }
}
