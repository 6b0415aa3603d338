//! The bearer-key check in front of every write route.
//!
//! Owns: reading `Authorization: Bearer <key>` and the API's wording of a refusal; the
//! rule itself is [`crate::server::access`]. Must not: read the request body; it is
//! checked before the body is read, so a refused write has no effect at all.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use crate::server::access::{check_write, WriteRefusal};
use crate::server::{AppState, RequestError};

const NO_KEY_ON_PUBLIC_ADDRESS: &str =
    "writes are disabled: this server listens on a non-loopback \
     address without an API key; set STORYDEX_API_KEY (or --api-key) and send \
     `Authorization: Bearer <key>`";

/// Proof that a request may write. Every write handler takes it as its first argument;
/// extractors of the request head run before the body is read.
pub(crate) struct WriteAccess;

impl FromRequestParts<AppState> for WriteAccess {
    type Rejection = RequestError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, RequestError> {
        check_write(state, bearer_token(&parts.headers))
            .map(|()| WriteAccess)
            .map_err(|refusal| match refusal {
                WriteRefusal::NoKeyOffLoopback => RequestError::Forbidden(NO_KEY_ON_PUBLIC_ADDRESS),
                WriteRefusal::MissingKey => {
                    RequestError::Unauthorized("this write needs `Authorization: Bearer <key>`")
                }
                WriteRefusal::WrongKey => RequestError::Unauthorized("the bearer key is wrong"),
            })
    }
}

/// The token of an `Authorization: Bearer <token>` header (any case of `Bearer`).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}
