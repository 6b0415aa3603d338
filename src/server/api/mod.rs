//! The JSON API: search, similar stories, digests, ingest and duplicate coverage, and
//! the OpenAPI document that describes them.
//!
//! Owns: the `/v1/` routes and `/health`, `/metrics`, `/openapi.json`; the extractors
//! whose rejections are JSON errors; the bearer check in front of writes; the JSON
//! error shape. Must not: import the pages, embed on the async runtime (the state's
//! queue does that), or decide a status code (the error table does).

mod auth;
mod error;
mod extract;
mod handlers;
mod openai;
mod openapi;

use axum::routing::{get, post};
use axum::Router;

pub use error::{ErrorBody, ErrorDetail};
pub use openapi::ApiDoc;

use super::AppState;

/// The API's routes; [`super::router`] adds the fallbacks and the layers.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(handlers::health))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(handlers::openapi))
        .route(
            "/v1/search",
            get(handlers::search_get).post(handlers::search_post),
        )
        .route("/v1/stories/{id}", get(handlers::story))
        .route("/v1/stories/{id}/similar", get(handlers::similar))
        .route(
            "/v1/stories/{id}/duplicates",
            get(handlers::story_duplicates),
        )
        .route("/v1/duplicates", get(handlers::duplicates))
        .route("/v1/check", post(handlers::check))
        .route(
            "/v1/digests",
            get(handlers::digests).post(handlers::create_digest),
        )
        .route("/v1/digests/{id}", get(handlers::digest))
        .route("/v1/admin/backup", post(handlers::backup))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::models))
}
