//! Who may write: the bearer-key check in front of every write route.
//!
//! Owns: the rule "with a key set, writes need `Authorization: Bearer <key>`; without
//! one, writes are only accepted on a loopback address". Must not: read the request body;
//! it is checked before the body is read, so a refused write has no effect at all.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

const NO_KEY_ON_PUBLIC_ADDRESS: &str =
    "writes are disabled: this server listens on a non-loopback \
     address without an API key; set STORYDEX_API_KEY (or --api-key) and send \
     `Authorization: Bearer <key>`";

/// Proof that a request may write. Every write handler takes it as its first argument;
/// extractors of the request head run before the body is read.
pub(crate) struct WriteAccess;

impl FromRequestParts<AppState> for WriteAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        check(state, &parts.headers).map(|()| WriteAccess)
    }
}

fn check(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = state.api_key() else {
        return if state.is_loopback() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(NO_KEY_ON_PUBLIC_ADDRESS))
        };
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match token {
        None => Err(ApiError::Unauthorized(
            "this write needs `Authorization: Bearer <key>`",
        )),
        // Constant-time so the comparison does not tell how much of a guess was right.
        Some(token) if bool::from(token.as_bytes().ct_eq(key.as_bytes())) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized("the bearer key is wrong")),
    }
}
