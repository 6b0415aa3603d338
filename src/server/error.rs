//! What a request can fail with, for both the JSON API and the pages.
//!
//! Owns: [`RequestError`], the one mapping from each failure to its [`ErrorCode`] (and so
//! to its HTTP status, from the table in [`crate::error_code`]), and the conversions from
//! the service's and the queue's errors. Must not: shape a response body (the API writes
//! JSON, the pages write HTML) or be bypassed by a handler choosing its own status.

use axum::http::StatusCode;

use super::queue::QueueError;
use crate::corpus::ParseError;
use crate::domain::Invalid;
use crate::embed::EmbedError;
use crate::error_code::ErrorCode;
use crate::service::ServiceError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything a request can fail with. The code of each variant is decided in
/// [`RequestError::code`] and its status by the code, nowhere else.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A parameter failed validation (`k`, dates, query text); it carries its own code.
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

impl RequestError {
    pub fn internal(e: impl Into<BoxError>) -> Self {
        Self::Internal(e.into())
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(invalid) => invalid.code,
            Self::InvalidJson(_) => ErrorCode::InvalidJson,
            Self::InvalidQueryString(_) => ErrorCode::InvalidQueryString,
            Self::InvalidPath(_) => ErrorCode::InvalidPath,
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::RouteNotFound { .. } => ErrorCode::RouteNotFound,
            Self::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            Self::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::UnsupportedMediaType { .. } => ErrorCode::UnsupportedMediaType,
            Self::InvalidDigest(_) => ErrorCode::InvalidDigest,
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::Overloaded => ErrorCode::Overloaded,
            Self::NotReady => ErrorCode::NotReady,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code().http_status())
            .expect("the error code table holds valid statuses; this is a bug")
    }
}

impl From<QueueError> for RequestError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Full => Self::Overloaded,
            e @ QueueError::Stopped => Self::internal(e),
        }
    }
}

impl From<EmbedError> for RequestError {
    fn from(e: EmbedError) -> Self {
        ServiceError::Embed(e).into()
    }
}

impl From<ServiceError> for RequestError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(invalid) => Self::Invalid(invalid),
            ServiceError::NotFound { what, id } => Self::NotFound { what, id },
            ServiceError::Parse(parse) => Self::InvalidDigest(parse),
            // Text that trims to something yet has no tokens (only symbols, say).
            ServiceError::Embed(EmbedError::EmptyText) => Self::Invalid(Invalid::new(
                ErrorCode::EmptyQuery,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_map_to_client_and_server_statuses() {
        let invalid: RequestError =
            ServiceError::Invalid(Invalid::new(ErrorCode::InvalidK, "k")).into();
        assert_eq!(
            (invalid.status(), invalid.code().as_str()),
            (StatusCode::BAD_REQUEST, "invalid_k")
        );
        let missing: RequestError = ServiceError::NotFound {
            what: "story",
            id: "x".into(),
        }
        .into();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let parse: RequestError = ServiceError::Parse(ParseError {
            source_name: "body".into(),
            line: 3,
            message: "bad".into(),
        })
        .into();
        assert_eq!(parse.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(parse.to_string().contains("body:3"));
    }

    #[test]
    fn every_variant_keeps_the_status_it_always_had() {
        let cases = [
            (RequestError::InvalidJson(String::new()), 400),
            (RequestError::Unauthorized(""), 401),
            (RequestError::Forbidden(""), 403),
            (
                RequestError::RouteNotFound {
                    path: String::new(),
                },
                404,
            ),
            (
                RequestError::MethodNotAllowed {
                    method: String::new(),
                    path: String::new(),
                },
                405,
            ),
            (RequestError::PayloadTooLarge { limit: 1 }, 413),
            (
                RequestError::UnsupportedMediaType {
                    expected: "",
                    got: String::new(),
                },
                415,
            ),
            (RequestError::Overloaded, 503),
            (RequestError::NotReady, 503),
            (RequestError::internal("x"), 500),
        ];
        for (e, status) in cases {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
        }
    }
}
