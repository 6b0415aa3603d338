//! The one place where errors become HTTP status codes.
//!
//! Owns: [`ApiError`], its stable machine-readable codes, its statuses and the JSON shape
//! `{"error":{"code","message"}}` every failed request gets. Must not: be bypassed by a
//! handler building its own error response.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::corpus::ParseError;
use crate::domain::Invalid;
use crate::embed::EmbedError;
use crate::service::ServiceError;

/// Every failed request's body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for scripts: `invalid_k`, `not_found`, `overloaded`, ...
    pub code: String,
    /// For people: what went wrong and how to fix it.
    pub message: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything a request can fail with. The status and code of each variant are decided in
/// [`ApiError::status`] and [`ApiError::code`] and nowhere else.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter failed validation (`k`, dates, query text); its code comes from `domain`.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidQueryString(String),
    #[error("{0}")]
    InvalidPath(String),
    #[error("no {what} with id {id:?}")]
    NotFound { what: &'static str, id: String },
    #[error("no route {path}; see /openapi.json for the API")]
    RouteNotFound { path: String },
    #[error("{method} is not allowed on {path}; see /openapi.json for the API")]
    MethodNotAllowed { method: String, path: String },
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("expected Content-Type: {expected}, got {got}")]
    UnsupportedMediaType { expected: &'static str, got: String },
    #[error("the digest could not be parsed: {0}")]
    InvalidDigest(#[source] ParseError),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("the embedding queue is full; retry in a second")]
    Overloaded,
    #[error("the server is still loading the model and index; retry in a second")]
    NotReady,
    /// Something broke on our side; the cause is logged, the client is told little.
    #[error("internal error: {0}")]
    Internal(#[source] BoxError),
}

impl ApiError {
    pub fn internal(e: impl Into<BoxError>) -> Self {
        Self::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_)
            | Self::InvalidJson(_)
            | Self::InvalidQueryString(_)
            | Self::InvalidPath(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound { .. } | Self::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidDigest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Overloaded | Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(invalid) => invalid.code,
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidQueryString(_) => "invalid_query_string",
            Self::InvalidPath(_) => "invalid_path",
            Self::NotFound { .. } => "not_found",
            Self::RouteNotFound { .. } => "route_not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType { .. } => "unsupported_media_type",
            Self::InvalidDigest(_) => "invalid_digest",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::Overloaded => "overloaded",
            Self::NotReady => "not_ready",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<super::worker::WorkerError> for ApiError {
    fn from(e: super::worker::WorkerError) -> Self {
        match e {
            super::worker::WorkerError::Full => Self::Overloaded,
            e @ super::worker::WorkerError::Stopped => Self::internal(e),
        }
    }
}

impl From<EmbedError> for ApiError {
    fn from(e: EmbedError) -> Self {
        ServiceError::Embed(e).into()
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(invalid) => Self::Invalid(invalid),
            ServiceError::NotFound { what, id } => Self::NotFound { what, id },
            ServiceError::Parse(parse) => Self::InvalidDigest(parse),
            // Text that trims to something yet has no tokens (only symbols, say).
            ServiceError::Embed(EmbedError::EmptyText) => Self::Invalid(Invalid::new(
                "empty_query",
                "the query has no words the model can read",
            )),
            e @ (ServiceError::Embed(_) | ServiceError::Store(_)) => Self::internal(e),
        }
    }
}

/// `error: outer: inner: ...`, so a log line carries the whole story.
pub(crate) fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status.is_server_error() && matches!(self, Self::Internal(_)) {
            tracing::error!(error = %cause_chain(&self), "request failed");
            "internal error; the server log has the details".to_owned()
        } else {
            self.to_string()
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Overloaded | Self::NotReady => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_map_to_client_and_server_statuses() {
        let invalid: ApiError = ServiceError::Invalid(Invalid::new("invalid_k", "k")).into();
        assert_eq!(
            (invalid.status(), invalid.code()),
            (StatusCode::BAD_REQUEST, "invalid_k")
        );
        let missing: ApiError = ServiceError::NotFound {
            what: "story",
            id: "x".into(),
        }
        .into();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let parse: ApiError = ServiceError::Parse(ParseError {
            source_name: "body".into(),
            line: 3,
            message: "bad".into(),
        })
        .into();
        assert_eq!(parse.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(parse.to_string().contains("body:3"));
    }

    #[tokio::test]
    async fn internal_errors_tell_the_client_little() {
        let response = ApiError::internal("disk on fire at /secret/path").into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.error.code, "internal");
        assert!(!body.error.message.contains("secret"));
    }
}
