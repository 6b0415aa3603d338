//! The OpenAPI document served at `/openapi.json`, generated from the handlers'
//! `#[utoipa::path]` attributes and the DTOs' `ToSchema` derives.
//!
//! Owns: the list of documented paths and the bearer security scheme. Must not: describe
//! anything by hand that the annotations can say.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{handlers, openai};

/// The API description; `ApiDoc::openapi()` builds it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "storydex",
        description = "Related stories and duplicate coverage for an archive of AI news digests. \
                       Every error is `{\"error\":{\"code\",\"message\"}}`."
    ),
    paths(
        handlers::search_post,
        handlers::search_get,
        handlers::story,
        handlers::similar,
        handlers::digests,
        handlers::digest,
        handlers::create_digest,
        handlers::duplicates,
        handlers::story_duplicates,
        handlers::check,
        handlers::health,
        handlers::metrics,
        handlers::openapi,
        handlers::backup,
        openai::embeddings,
        openai::models,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "search", description = "Free-text search in Chinese or English"),
        (name = "stories", description = "Stored stories and their neighbours"),
        (name = "digests", description = "Digests: list, read, ingest"),
        (name = "duplicates", description = "Duplicate coverage: same-event clusters, drafts checked against the archive"),
        (name = "meta", description = "Health, metrics, this document"),
        (name = "openai", description = "OpenAI-compatible embeddings, for tools that speak OpenAI's API"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
