//! The state every request shares: settings, the service once loaded, the embedding
//! queue, the write slots.
//!
//! Owns: the rules for which thread does what. Model calls run on the embedding threads
//! behind a bounded queue ([`super::queue`]), store reads run in `spawn_blocking`, writes
//! run one at a time, and nothing blocking runs on the async runtime. Must not: shape a
//! response (the API and the pages do that) or contain use-case logic (that is
//! `service`).
//!
//! Start-up order: bind and serve first with a state that is not ready (`/health`
//! answers 503 `starting`), load the model and index in the background, then
//! [`AppState::set_ready`].

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Semaphore;

use super::metrics::Metrics;
use super::queue::{EmbedWorker, QueuedEncoder};
use super::{RequestError, ServeSettings};
use crate::corpus::ParsedFile;
use crate::domain::{DateRange, QueryText, TopK};
use crate::embed::{EmbedError, Encoder, Role};
use crate::service::{
    CheckedItem, DraftCheck, SearchMode, Service, ServiceError, StoryHit, WatchOp, WatchOptions,
    WatchStatus, Watcher,
};
use crate::store::Store;

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
    backup_dir: Option<std::path::PathBuf>,
    engine: OnceLock<Engine>,
    local_addr: OnceLock<SocketAddr>,
    metrics: Metrics,
    queue_depth: Arc<AtomicUsize>,
    /// Writes admitted (running or waiting); more are refused as overloaded.
    write_slots: Arc<Semaphore>,
    /// One ingest at a time: two ingests of the same digest must not interleave.
    ingest: Arc<Mutex<()>>,
    /// The watched folder's status, when `--watch` is on.
    watch: OnceLock<Arc<WatchStatus>>,
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
                backup_dir: settings.backup_dir.clone(),
                engine: OnceLock::new(),
                local_addr: OnceLock::new(),
                metrics: Metrics::default(),
                queue_depth: Arc::new(AtomicUsize::new(0)),
                write_slots: Arc::new(Semaphore::new(queue)),
                ingest: Arc::new(Mutex::new(())),
                watch: OnceLock::new(),
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

    /// Records the address the server listens on; [`super::serve`] does this. Writes
    /// without an API key are accepted only when this is a loopback address.
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

    /// Starts watching a folder (the server must be ready). Each change goes through
    /// [`AppState::write`], as `POST /v1/digests` does: one write at a time, embedding
    /// on the queue behind searches. `runtime` runs those writes; the watcher's own
    /// thread waits for them.
    pub fn start_watch(
        &self,
        options: WatchOptions,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<Watcher> {
        if !self.is_ready() {
            return Err(std::io::Error::other("the server is not ready"));
        }
        let state = self.clone();
        let watcher = Watcher::spawn(
            options,
            Box::new(move |op: &WatchOp| loop {
                let op = op.clone();
                let written = runtime.block_on(state.write(move |service| {
                    Ok(service.apply_watch_op(&op, &std::sync::atomic::AtomicBool::new(false))?)
                }));
                match written {
                    // Every write slot is taken: wait for one rather than lose the change.
                    Err(RequestError::Overloaded) => {
                        std::thread::sleep(std::time::Duration::from_millis(250));
                    }
                    Err(e) => return Err(crate::server::cause_chain(&e)),
                    Ok(outcome) => return Ok(outcome),
                }
            }),
        )?;
        let _ = self.inner.watch.set(watcher.status());
        Ok(watcher)
    }

    pub(crate) fn watch_status(&self) -> Option<&WatchStatus> {
        self.inner.watch.get().map(Arc::as_ref)
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn queue_depth(&self) -> usize {
        self.inner.engine.get().map_or(0, |e| e.worker.depth())
    }

    fn engine(&self) -> Result<&Engine, RequestError> {
        self.inner.engine.get().ok_or(RequestError::NotReady)
    }

    /// A search query's vector, embedded together with the queries waiting beside it;
    /// 503 `overloaded` when the queue is full.
    async fn embed_query(&self, text: String) -> Result<Vec<f32>, RequestError> {
        let worker = self.engine()?.worker.clone();
        Ok(worker.embed_query(text).await??)
    }

    /// Runs a model call over a batch of passages on the embedding worker: it waits
    /// behind queued queries, never the other way round; 503 `overloaded` when the queue
    /// is full.
    async fn embed_passages<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Encoder) -> Result<T, EmbedError> + Send + 'static,
    ) -> Result<T, RequestError> {
        let worker = self.engine()?.worker.clone();
        Ok(worker.run(f).await??)
    }

    /// A search, for the API and the page alike: the query embedded on the queue (when
    /// the mode needs its vector), then ranked on a blocking thread.
    pub(crate) async fn search(
        &self,
        query: QueryText,
        k: TopK,
        range: DateRange,
        mode: SearchMode,
    ) -> Result<Vec<StoryHit>, RequestError> {
        let vector = if mode.needs_vector() {
            Some(self.embed_query(query.as_str().to_owned()).await?)
        } else {
            None
        };
        self.read(move |service| service.search_with(&query, vector.as_deref(), k, range, mode))
            .await
    }

    /// Checks a parsed draft (nothing stored): its stories are embedded on the queue a
    /// batch at a time ([`DraftCheck`]), then compared with the store.
    pub(crate) async fn check_draft(
        &self,
        parsed: ParsedFile,
    ) -> Result<Vec<CheckedItem>, RequestError> {
        let mut draft = DraftCheck::new(parsed);
        while let Some(texts) = draft.next_batch() {
            let embedded = self
                .embed_passages(move |encoder| {
                    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                    encoder.embed_passages(&texts)
                })
                .await?;
            draft.add_embedded(embedded);
        }
        self.read(move |service| service.finish_check(draft)).await
    }

    /// Vectors for texts from outside (the OpenAI-compatible endpoint), with the tokens
    /// the model read for each. Queries go on the query lane, embedded together with the
    /// queries waiting beside them; passages go on the passage lane in one job, and a
    /// passage longer than one window gets the normalised mean of its windows, the
    /// vector storydex keeps for a story.
    pub(crate) async fn embed_texts(
        &self,
        texts: Vec<String>,
        role: Role,
    ) -> Result<Vec<(Vec<f32>, usize)>, RequestError> {
        match role {
            Role::Query => {
                let worker = self.engine()?.worker.clone();
                let service = Arc::clone(&self.engine()?.service);
                let mut jobs = tokio::task::JoinSet::new();
                for (i, text) in texts.into_iter().enumerate() {
                    let (worker, service) = (worker.clone(), Arc::clone(&service));
                    jobs.spawn(async move {
                        let tokens = service.encoder().count_tokens(&text);
                        let vector = worker.embed_query(text).await;
                        (i, vector, tokens)
                    });
                }
                let mut out = Vec::with_capacity(jobs.len());
                while let Some(done) = jobs.join_next().await {
                    let (i, vector, tokens) = done.map_err(RequestError::internal)?;
                    let tokens = tokens.map_err(RequestError::internal)?;
                    out.push((i, vector??, tokens));
                }
                out.sort_by_key(|(i, _, _)| *i);
                Ok(out.into_iter().map(|(_, v, t)| (v, t)).collect())
            }
            Role::Passage => {
                self.embed_passages(move |encoder| {
                    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                    Ok(encoder
                        .embed_passages(&texts)?
                        .into_iter()
                        .map(|windows| {
                            let tokens = windows.iter().map(|w| w.tokens).sum();
                            (crate::embed::story_vector(&windows), tokens)
                        })
                        .collect())
                })
                .await
            }
        }
    }

    /// A backup of the store into a new timestamped folder of `--backup-dir`
    /// ([`crate::store::backup`]): consistent as of one commit, while writes go on.
    pub(crate) async fn backup(&self) -> Result<crate::store::BackupReport, RequestError> {
        let Some(root) = self.inner.backup_dir.clone() else {
            return Err(RequestError::Invalid(crate::domain::Invalid::new(
                crate::domain::ErrorCode::BackupsOff,
                "backups are off on this server; start it with --backup-dir DIR (or \
                 STORYDEX_BACKUP_DIR), or run `storydex backup --data DIR OUT` beside it",
            )));
        };
        let service = Arc::clone(&self.engine()?.service);
        tokio::task::spawn_blocking(move || {
            let data = service.data_dir();
            let stamp = time::OffsetDateTime::now_utc()
                .format(time::macros::format_description!(
                    "[year][month][day]T[hour][minute][second]Z"
                ))
                .map_err(RequestError::internal)?;
            let mut out = root.join(&stamp);
            let mut n = 1;
            while out.exists() {
                n += 1;
                out = root.join(format!("{stamp}-{n}"));
            }
            crate::store::backup(&data, &out).map_err(RequestError::internal)
        })
        .await
        .map_err(RequestError::internal)?
    }

    /// Runs service code that only reads the store on a blocking thread.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Service) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, RequestError> {
        let service = Arc::clone(&self.engine()?.service);
        tokio::task::spawn_blocking(move || f(&service))
            .await
            .map_err(RequestError::internal)?
            .map_err(RequestError::from)
    }

    /// Runs service code that writes (and may embed, through the worker) on a blocking
    /// thread, one write at a time. At most `queue` writes may be admitted at once;
    /// more get 503 `overloaded`.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Service) -> Result<T, RequestError> + Send + 'static,
    ) -> Result<T, RequestError> {
        let service = Arc::clone(&self.engine()?.service);
        let permit = Arc::clone(&self.inner.write_slots)
            .try_acquire_owned()
            .map_err(|_| RequestError::Overloaded)?;
        let ingest = Arc::clone(&self.inner.ingest);
        // The permit and the lock live in the blocking task, not in this future: a client
        // that hangs up must not let the next write start while this one still runs.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _one_at_a_time = ingest.lock().unwrap_or_else(|p| p.into_inner());
            f(&service)
        })
        .await
        .map_err(RequestError::internal)?
    }
}
