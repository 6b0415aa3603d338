//! The embedding worker: one dedicated thread that runs every model call, fed by a
//! bounded queue.
//!
//! Owns: the queue, its depth gauge, and [`QueuedEncoder`], the encoder the server's
//! `Service` is built with so that ingests embed through the same queue. Must not: run on
//! or block the async runtime; async callers use [`EmbedWorker::run`], which never waits
//! for room in the queue (a full queue is an immediate [`WorkerError::Full`]).
//!
//! Why one thread per core, not more: the model's kernels already spread one call over
//! rayon's pool, so extra threads would only contend; a queue makes waiting visible and
//! bounded instead.
//! Why ingests go through it batch by batch (and not as one big job): a text search then
//! waits for at most one batch of an ingest, not for the whole digest.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::embed::{EmbedError, Encoder, Window};

type Job = Box<dyn FnOnce(&dyn Encoder) + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WorkerError {
    #[error("the embedding queue is full")]
    Full,
    #[error("the embedding worker stopped or its job panicked")]
    Stopped,
}

/// Handle to the embedding thread; cheap to clone. The thread ends when the last handle
/// (including the one inside [`QueuedEncoder`]) is dropped.
#[derive(Clone)]
pub(crate) struct EmbedWorker {
    tx: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
}

impl EmbedWorker {
    /// Starts `threads` worker threads. `capacity` jobs may wait while they run; `depth` counts the
    /// waiting ones (it is shared so the metrics can read it before the worker exists).
    pub(crate) fn spawn(
        encoder: Arc<dyn Encoder>,
        capacity: usize,
        threads: usize,
        depth: Arc<AtomicUsize>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        // One thread per core: a short query cannot keep two cores busy on its own, so a
        // second query runs beside it; long ingest batches share rayon's pool anyway.
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let encoder = Arc::clone(&encoder);
            let thread_depth = Arc::clone(&depth);
            std::thread::Builder::new()
                .name(format!("storydex-embed-{i}"))
                .spawn(move || loop {
                    // The lock is held only while taking one job off the queue.
                    let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(job) = next else { break };
                    thread_depth.fetch_sub(1, Ordering::Relaxed);
                    // A panicking model call must not take a worker with it; its caller
                    // sees `Stopped` through the dropped reply channel.
                    if catch_unwind(AssertUnwindSafe(|| job(encoder.as_ref()))).is_err() {
                        tracing::error!("an embedding job panicked; the worker goes on");
                    }
                })?;
        }
        Ok(Self { tx, depth })
    }

    /// Jobs waiting in the queue (not counting the one running).
    pub(crate) fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Runs `f` on the worker from async code; fails at once when the queue is full.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Encoder) -> T + Send + 'static,
    ) -> Result<T, WorkerError> {
        let (job, reply) = job(f);
        self.depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                return Err(match e {
                    TrySendError::Full(_) => WorkerError::Full,
                    TrySendError::Disconnected(_) => WorkerError::Stopped,
                });
            }
        }
        reply.await.map_err(|_| WorkerError::Stopped)
    }

    /// Runs `f` on the worker from a blocking thread, waiting for room in the queue.
    ///
    /// Panics when called from async code (tokio's `blocking_recv` refuses): that would
    /// stall the runtime, so it is a bug.
    pub(crate) fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Encoder) -> T + Send + 'static,
    ) -> Result<T, WorkerError> {
        let (job, reply) = job(f);
        self.depth.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(job).is_err() {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            return Err(WorkerError::Stopped);
        }
        reply.blocking_recv().map_err(|_| WorkerError::Stopped)
    }
}

fn job<T: Send + 'static>(
    f: impl FnOnce(&dyn Encoder) -> T + Send + 'static,
) -> (Job, oneshot::Receiver<T>) {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |encoder| {
        // The client went away while the job waited: skip the model call.
        if tx.is_closed() {
            return;
        }
        let _ = tx.send(f(encoder));
    });
    (job, rx)
}

/// An [`Encoder`] whose model calls run on the worker thread.
///
/// The server's `Service` is built with it, so service code that embeds (ingest) queues
/// behind and between searches instead of running beside them. Only call its `embed_*`
/// methods from blocking threads (`spawn_blocking`).
pub(crate) struct QueuedEncoder {
    inner: Arc<dyn Encoder>,
    worker: EmbedWorker,
}

impl QueuedEncoder {
    pub(crate) fn new(inner: Arc<dyn Encoder>, worker: EmbedWorker) -> Self {
        Self { inner, worker }
    }
}

fn stopped(e: WorkerError) -> EmbedError {
    EmbedError::Candle(candle_core::Error::Msg(e.to_string()))
}

impl Encoder for QueuedEncoder {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let text = text.to_owned();
        self.worker
            .run_blocking(move |e| e.embed_query(&text))
            .map_err(stopped)?
    }

    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<Window>>, EmbedError> {
        let texts: Vec<String> = texts.iter().map(|t| (*t).to_owned()).collect();
        self.worker
            .run_blocking(move |e| {
                let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                e.embed_passages(&texts)
            })
            .map_err(stopped)?
    }

    fn count_tokens(&self, text: &str) -> Result<usize, EmbedError> {
        // Tokenizing is cheap and thread-safe; it does not need the model's thread.
        self.inner.count_tokens(text)
    }

    fn passage_layout(&self) -> String {
        self.inner.passage_layout()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::embed::fake::FakeEncoder;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_instead_of_waiting() {
        let slow = Arc::new(FakeEncoder::new(8).with_delay(Duration::from_millis(300)));
        let worker = EmbedWorker::spawn(slow, 1, 1, Arc::new(AtomicUsize::new(0))).unwrap();
        let running = tokio::spawn({
            let w = worker.clone();
            async move { w.run(|e| e.embed_query("one")).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiting = tokio::spawn({
            let w = worker.clone();
            async move { w.run(|e| e.embed_query("two")).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(worker.depth(), 1);
        let refused = worker.run(|e| e.embed_query("three")).await;
        assert_eq!(refused.unwrap_err(), WorkerError::Full);
        assert!(running.await.unwrap().unwrap().is_ok());
        assert!(waiting.await.unwrap().unwrap().is_ok());
        assert_eq!(worker.depth(), 0);
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_stop_the_worker() {
        let worker = EmbedWorker::spawn(
            Arc::new(FakeEncoder::new(8)),
            4,
            2,
            Arc::new(AtomicUsize::new(0)),
        )
        .unwrap();
        let failed = worker.run(|_| -> usize { panic!("boom") }).await;
        assert_eq!(failed.unwrap_err(), WorkerError::Stopped);
        assert_eq!(worker.run(|e| e.dimension()).await, Ok(8));
    }
}
