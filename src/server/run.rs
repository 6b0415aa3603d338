//! `storydex serve` from start to stop: listen first (so `/health` answers 503
//! `starting`), load the model and store on a background thread, serve until SIGINT or
//! SIGTERM, let in-flight requests finish, stop the folder watch (`--watch`), then save
//! the index.
//!
//! Owns: the start-up order and stopping a server whose model cannot load (it would
//! answer 503 forever). Must not: parse arguments (the CLI hands over the settings and
//! how to load the model).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use super::{serve, shutdown_signal, AppState, ServeSettings};
use crate::embed::Encoder;
use crate::service::{Tuning, Watcher};
use crate::store::{Store, WriterLock};

/// What the server serves: the store opened for the model, the model, its knobs.
pub type Loaded = (Store, Arc<dyn Encoder>, Tuning);

/// Serves the store in `data` until SIGINT or SIGTERM. `load` (the model and the store)
/// runs on the loader thread while the server already listens.
pub fn run(
    settings: ServeSettings,
    data: PathBuf,
    load: impl FnOnce() -> anyhow::Result<Loaded> + Send + 'static,
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
        let watch = settings.watch.options();
        let runtime = tokio::runtime::Handle::current();
        let watcher = Arc::new(Mutex::new(None::<Watcher>));
        let watching = Arc::clone(&watcher);
        std::thread::Builder::new()
            .name("storydex-load".into())
            .spawn(move || {
                let ready = make_ready(load, &loading).and_then(|()| match watch {
                    Some(options) => {
                        let started = loading
                            .start_watch(options, runtime)
                            .context("starting the folder watch")?;
                        *watching.lock().unwrap_or_else(|p| p.into_inner()) = Some(started);
                        Ok(())
                    }
                    None => Ok(()),
                });
                let _ = loaded_tx.send(ready);
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
        // The watcher's writes run on this runtime: stop it while the runtime still runs.
        let stopping = watcher.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(watcher) = stopping {
            tokio::task::spawn_blocking(move || watcher.stop())
                .await
                .context("stopping the folder watch")?;
        }
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

/// Loads the model and the store and makes the server ready.
fn make_ready(
    load: impl FnOnce() -> anyhow::Result<Loaded>,
    state: &AppState,
) -> anyhow::Result<()> {
    let (store, encoder, tuning) = load()?;
    let stories = store.story_count()?;
    state.set_ready(Arc::new(store), encoder, tuning)?;
    tracing::info!(stories, "ready");
    Ok(())
}
