//! `storydex serve` from start to stop: listen first (so `/health` answers 503
//! `starting`), load the model and store on a background thread, serve until SIGINT or
//! SIGTERM, let in-flight requests finish, then save the index.
//!
//! Owns: the start-up order and stopping a server whose model cannot load (it would
//! answer 503 forever). Must not: parse arguments (the CLI hands over the settings and
//! how to load the model).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use super::{serve, shutdown_signal, AppState, ServeSettings};
use crate::embed::{CandleEncoder, Encoder};
use crate::service::Tuning;
use crate::store::{Store, WriterLock};

/// Serves the store in `data` until SIGINT or SIGTERM. `load_encoder` runs on the loader
/// thread while the server already listens.
pub fn run(
    settings: ServeSettings,
    data: PathBuf,
    load_encoder: impl FnOnce() -> anyhow::Result<CandleEncoder> + Send + 'static,
) -> anyhow::Result<()> {
    // Before listening: a second writer must fail before it looks like a server.
    let _lock = WriterLock::acquire(&data, "storydex serve")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let state = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("listening on {}", settings.addr))?;
        let state = AppState::new(&settings);
        let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
        let loading = state.clone();
        std::thread::Builder::new()
            .name("storydex-load".into())
            .spawn(move || {
                let _ = loaded_tx.send(load(&data, load_encoder, &loading));
            })
            .context("starting the loader thread")?;
        // A server whose model cannot load would answer 503 forever: stop it instead.
        let load_error = Arc::new(Mutex::new(None::<anyhow::Error>));
        let shutdown = {
            let load_error = Arc::clone(&load_error);
            async move {
                tokio::select! {
                    () = shutdown_signal() => {}
                    loaded = loaded_rx => match loaded {
                        Ok(Ok(())) => shutdown_signal().await,
                        Ok(Err(e)) => *load_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e),
                        Err(_) => {
                            *load_error.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(anyhow::anyhow!("the loader thread panicked"));
                        }
                    }
                }
            }
        };
        serve(listener, state.clone(), shutdown).await?;
        if let Some(e) = load_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e.context("loading the model and store"));
        }
        anyhow::Ok(state)
    })?;
    if let Some(service) = state.service() {
        service.save_index().context("saving the vector index")?;
        tracing::info!("index saved; bye");
    }
    Ok(())
}

/// Loads the model, opens the store and makes the server ready.
fn load(
    data: &std::path::Path,
    load_encoder: impl FnOnce() -> anyhow::Result<CandleEncoder>,
    state: &AppState,
) -> anyhow::Result<()> {
    let encoder = load_encoder()?;
    let tuning = Tuning::from_spec(encoder.spec());
    let store = Store::open(data, encoder.model_id(), encoder.dimension())
        .with_context(|| format!("opening the store in {}", data.display()))?;
    let stories = store.story_count()?;
    if let Some(r) =
        store.ensure_clusters(&crate::cluster::Params::with_threshold(tuning.duplicate))?
    {
        tracing::info!(
            stories = r.stories,
            clusters = r.clusters_after,
            "clusters recomputed"
        );
    }
    state.set_ready(Arc::new(store), Arc::new(encoder), tuning)?;
    tracing::info!(stories, "ready");
    Ok(())
}
