//! The HTTP server: search, similar stories, digests, ingest and duplicate coverage over
//! JSON.
//!
//! Owns: the router, the shared [`AppState`], the settings of `storydex serve`, and the
//! rules for which thread does what: model calls run on one embedding thread behind a
//! bounded queue ([`worker`]), store reads run in `spawn_blocking`, and nothing blocking
//! runs on the async runtime. Must not: contain search or ingest logic (that is
//! `service`), or decide a status code outside [`error`].
//!
//! Start-up order: bind and [`serve`] first with a state that is not ready (`/health`
//! answers 503 `starting`), load the model and index in the background, then
//! [`AppState::set_ready`].

mod auth;
mod error;
mod extract;
mod handlers;
mod metrics;
mod openapi;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Router};
use tokio::sync::Semaphore;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

pub(crate) use error::cause_chain;
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub(crate) use handlers::check_parsed;
pub use openapi::ApiDoc;

use crate::embed::{EmbedError, Encoder};
use crate::service::{Service, ServiceError};
use crate::store::Store;
use metrics::Metrics;
use worker::{EmbedWorker, QueuedEncoder};

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
    #[arg(long, env = "STORYDEX_QUERY_BATCH", default_value_t = worker::DEFAULT_QUERY_BATCH as u32, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub query_batch: u32,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_key: None,
            queue: 64,
            max_body: 2 * 1024 * 1024,
            query_batch: worker::DEFAULT_QUERY_BATCH as u32,
        }
    }
}

/// What exists once the model and index are loaded.
struct Engine {
    service: Arc<Service>,
    worker: EmbedWorker,
}

struct Inner {
    api_key: Option<String>,
    queue: usize,
    query_batch: usize,
    max_body: usize,
    engine: OnceLock<Engine>,
    local_addr: OnceLock<SocketAddr>,
    metrics: Metrics,
    queue_depth: Arc<AtomicUsize>,
    /// Writes admitted (running or waiting); more are refused as overloaded.
    write_slots: Arc<Semaphore>,
    /// One ingest at a time: two ingests of the same digest must not interleave.
    ingest: Arc<Mutex<()>>,
}

/// Shared by all handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl AppState {
    /// A state that is not ready yet: every route but `/health`, `/metrics` and
    /// `/openapi.json` answers 503 `not_ready` until [`AppState::set_ready`].
    pub fn new(settings: &ServeSettings) -> Self {
        let queue = settings.queue.max(1) as usize;
        Self {
            inner: Arc::new(Inner {
                api_key: settings.api_key.clone().filter(|k| !k.is_empty()),
                queue,
                query_batch: settings.query_batch.max(1) as usize,
                max_body: settings.max_body,
                engine: OnceLock::new(),
                local_addr: OnceLock::new(),
                metrics: Metrics::default(),
                queue_depth: Arc::new(AtomicUsize::new(0)),
                write_slots: Arc::new(Semaphore::new(queue)),
                ingest: Arc::new(Mutex::new(())),
            }),
        }
    }

    /// Starts the embedding worker on `encoder` and makes the server ready.
    ///
    /// The server builds its own [`Service`] over `store`, whose encoder sends every model
    /// call through the worker, so ingests and searches share the one queue.
    pub fn set_ready(
        &self,
        store: Arc<Store>,
        encoder: Arc<dyn Encoder>,
        tuning: impl Into<crate::service::Tuning>,
    ) -> std::io::Result<()> {
        if self.is_ready() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the server is already ready",
            ));
        }
        let worker = EmbedWorker::spawn(
            Arc::clone(&encoder),
            self.inner.queue,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            self.inner.query_batch,
            Arc::clone(&self.inner.queue_depth),
        )?;
        let queued = QueuedEncoder::new(encoder, worker.clone());
        let service = Arc::new(Service::new(store, Arc::new(queued), tuning));
        self.inner
            .engine
            .set(Engine { service, worker })
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "the server is already ready",
                )
            })
    }

    pub fn is_ready(&self) -> bool {
        self.inner.engine.get().is_some()
    }

    /// The server's service once ready (its model calls go through the worker, so only
    /// call those from blocking threads).
    pub fn service(&self) -> Option<Arc<Service>> {
        self.inner.engine.get().map(|e| Arc::clone(&e.service))
    }

    /// Records the address the server listens on; [`serve`] does this. Writes without an
    /// API key are accepted only when this is a loopback address.
    pub fn set_local_addr(&self, addr: SocketAddr) {
        let _ = self.inner.local_addr.set(addr);
    }

    pub(crate) fn max_body(&self) -> usize {
        self.inner.max_body
    }

    pub(crate) fn api_key(&self) -> Option<&str> {
        self.inner.api_key.as_deref()
    }

    /// False while the address is unknown: refusing is the safe default.
    pub(crate) fn is_loopback(&self) -> bool {
        self.inner
            .local_addr
            .get()
            .is_some_and(|a| a.ip().to_canonical().is_loopback())
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn queue_depth(&self) -> usize {
        self.inner.engine.get().map_or(0, |e| e.worker.depth())
    }

    fn engine(&self) -> Result<&Engine, ApiError> {
        self.inner.engine.get().ok_or(ApiError::NotReady)
    }

    /// A search query's vector, embedded together with the queries waiting beside it;
    /// 503 `overloaded` when the queue is full.
    pub(crate) async fn embed_query(&self, text: String) -> Result<Vec<f32>, ApiError> {
        let worker = self.engine()?.worker.clone();
        Ok(worker.embed_query(text).await??)
    }

    /// Runs a model call over a batch of passages (a draft being checked) on the
    /// embedding worker: it waits behind queued queries, never the other way round; 503
    /// `overloaded` when the queue is full.
    pub(crate) async fn embed_passages<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Encoder) -> Result<T, EmbedError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let worker = self.engine()?.worker.clone();
        Ok(worker.run(f).await??)
    }

    /// Runs service code that only reads the store on a blocking thread.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Service) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let service = Arc::clone(&self.engine()?.service);
        tokio::task::spawn_blocking(move || f(&service))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from)
    }

    /// Runs service code that writes (and may embed, through the worker) on a blocking
    /// thread, one write at a time. At most `queue` writes may be admitted at once;
    /// more get 503 `overloaded`.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Service) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let service = Arc::clone(&self.engine()?.service);
        let permit = Arc::clone(&self.inner.write_slots)
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded)?;
        let ingest = Arc::clone(&self.inner.ingest);
        // The permit and the lock live in the blocking task, not in this future: a client
        // that hangs up must not let the next write start while this one still runs.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _one_at_a_time = ingest.lock().unwrap_or_else(|p| p.into_inner());
            f(&service)
        })
        .await
        .map_err(ApiError::internal)?
    }
}

/// The full router. Tests may drive it in-process (`tower::ServiceExt::oneshot`); note
/// that writes without an API key are then refused unless
/// [`AppState::set_local_addr`] was given a loopback address.
pub fn router(state: AppState) -> Router {
    let max_body = state.max_body();
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
        .merge(crate::web::router())
        .fallback(handlers::route_not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        // `Router::layer` wraps each route, so the metrics see the matched template.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        // Failures are logged where they are understood: `ApiError` logs 5xx causes, and
        // an expected 503 (overloaded, starting) is not worth an error line per request.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::DEBUG)))
        .with_state(state)
}

/// Serves until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    state.set_local_addr(addr);
    if state.api_key().is_none() && !state.is_loopback() {
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

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
