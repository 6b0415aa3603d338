//! The JSON shape of a failed API request: `{"error":{"code","message"}}`.
//!
//! Owns: [`ErrorBody`] and how a [`RequestError`] becomes a JSON response (5xx causes are
//! logged, the client is told little; 401 and 503 get their headers). Must not: decide a
//! code or status (that is [`RequestError::code`] and the code table).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::server::error::cause_chain;
use crate::server::RequestError;

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
    /// The class of error as OpenAI's API names it (`invalid_request_error`,
    /// `authentication_error`, `permission_error`, `not_found_error`, `server_error`),
    /// so OpenAI clients read storydex's errors as they read OpenAI's.
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// OpenAI's error type for a status.
pub(crate) fn openai_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

impl IntoResponse for RequestError {
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
                code: self.code().as_str().to_owned(),
                message,
                kind: openai_type(status.as_u16()).to_owned(),
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
    use axum::http::StatusCode;

    use super::*;

    #[tokio::test]
    async fn internal_errors_tell_the_client_little() {
        let response = RequestError::internal("disk on fire at /secret/path").into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.error.code, "internal");
        assert!(!body.error.message.contains("secret"));
    }
}
