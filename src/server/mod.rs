//! The HTTP server: the JSON API ([`api`]) and the editors' pages (`pages`) side by
//! side over one [`AppState`].
//!
//! Owns: the settings of `storydex serve`, the shared state (`state`), the embedding
//! queue (`queue`), who may write (`access`), what a request can fail with
//! (`error`), the metrics middleware, router assembly, serving and shutdown, and the
//! start-up of `storydex serve` ([`run`]). Must not: contain use-case logic (that is
//! `service`). `api` and `pages` never import each other; what both need lives here.

pub(crate) mod access;
pub mod api;
mod error;
mod metrics;
mod pages;
mod queue;
mod run;
mod shutdown;
mod state;

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::IntoResponse;
use axum::{middleware, Router};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

pub use api::{ApiDoc, ErrorBody, ErrorDetail};
pub(crate) use error::cause_chain;
pub use error::RequestError;
pub use run::{run, Loaded};
pub use shutdown::shutdown_signal;
pub use state::AppState;

/// Settings of `storydex serve` (each also readable from a `STORYDEX_*` variable).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeSettings {
    /// Address to listen on. Loopback by default; on any other address writes need
    /// --api-key.
    #[arg(long, env = "STORYDEX_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Key that writes (POST /v1/digests) must send as `Authorization: Bearer <key>`.
    /// Without it, writes are accepted only when listening on a loopback address.
    #[arg(long, env = "STORYDEX_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Embedding jobs that may wait for the model; further requests get 503 overloaded
    /// at once instead of waiting.
    #[arg(long, env = "STORYDEX_QUEUE", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub queue: u32,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "STORYDEX_MAX_BODY", default_value_t = 2 * 1024 * 1024)]
    pub max_body: usize,
    /// Search queries waiting together that are embedded in one forward pass at most
    /// (1: each on its own). Nothing waits for a batch to fill.
    #[arg(long, env = "STORYDEX_QUERY_BATCH", default_value_t = queue::DEFAULT_QUERY_BATCH as u32, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub query_batch: u32,
    /// Folder that `POST /v1/admin/backup` (write key) writes backups into, one
    /// timestamped folder each. Without it, that route answers 409 `backups_off`.
    #[arg(long, env = "STORYDEX_BACKUP_DIR")]
    pub backup_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub watch: crate::service::WatchSettings,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_key: None,
            queue: 64,
            max_body: 2 * 1024 * 1024,
            query_batch: queue::DEFAULT_QUERY_BATCH as u32,
            backup_dir: None,
            watch: crate::service::WatchSettings {
                watch_quiet_ms: crate::service::DEFAULT_QUIET_MS,
                ..Default::default()
            },
        }
    }
}

/// The full router. Tests may drive it in-process (`tower::ServiceExt::oneshot`); note
/// that writes without an API key are then refused unless
/// [`AppState::set_local_addr`] was given a loopback address.
pub fn router(state: AppState) -> Router {
    let max_body = state.max_body();
    Router::new()
        .merge(api::routes())
        .merge(pages::routes())
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // `Router::layer` wraps each route, so the metrics see the matched template.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        // Failures are logged where they are understood: `RequestError` logs 5xx causes,
        // and an expected 503 (overloaded, starting) is not worth an error line per
        // request.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::DEBUG)))
        .with_state(state)
}

/// An unknown path: the JSON error for API clients, a readable page for a browser
/// (outside `/v1/`, when it asks for HTML).
async fn route_not_found(uri: Uri, headers: HeaderMap) -> axum::response::Response {
    let error = RequestError::RouteNotFound {
        path: uri.path().to_owned(),
    };
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html && !uri.path().starts_with("/v1/") {
        pages::PageError(error).into_response()
    } else {
        error.into_response()
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> RequestError {
    RequestError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// Serves until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    state.set_local_addr(addr);
    if access::writes_disabled(&state) {
        tracing::warn!(
            %addr,
            "no API key on a non-loopback address: writes are refused; set STORYDEX_API_KEY"
        );
    }
    tracing::info!(%addr, "listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
