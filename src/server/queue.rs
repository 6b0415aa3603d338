//! The embedding worker: dedicated threads that run every model call, fed by a bounded
//! queue with two lanes.
//!
//! Owns: the queue, its depth gauge, and [`QueuedEncoder`], the encoder the server's
//! `Service` is built with so that ingests embed through the same queue. Must not: run on
//! or block the async runtime; async callers use [`EmbedWorker::run`], which never waits
//! for room in the queue (a full queue is an immediate [`QueueError::Full`]).
//!
//! Why one thread per core, not more: the model's kernels already spread one call over
//! rayon's pool, so extra threads would only contend; a queue makes waiting visible and
//! bounded instead.
//! Why ingests go through it batch by batch (and not as one big job): a text search then
//! waits for at most one batch of an ingest, not for the whole digest.
//! Why two lanes: a query costs milliseconds of model time, a batch of passages (an
//! ingest batch, a draft being checked) hundreds of milliseconds to seconds. In one FIFO
//! a search waited behind every batch queued before it, so under mixed traffic its p90
//! was the length of a passage batch. Every thread takes queries before passages, and
//! (with two threads or more) one thread takes only queries, so a search waits for
//! other searches, never for passages.
//! Why query texts are batched: a short query is bound by reading the model's weights,
//! not by arithmetic, so the queries waiting when a thread becomes free are embedded in
//! one forward pass ([`Encoder::embed_queries`]): one weight read serves all of them.
//! Nothing waits on purpose for a batch to fill; at low load a query runs alone, as
//! before, and under load the queue that formed anyway becomes one pass instead of many.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::embed::{EmbedError, Encoder, Window};

type Job = Box<dyn FnOnce(&dyn Encoder) + Send>;

/// Query texts embedded in one forward pass at most (`serve --query-batch`).
pub(crate) const DEFAULT_QUERY_BATCH: usize = 1;

/// A query text waiting for its vector; texts waiting together are embedded together.
struct QueryText {
    text: String,
    reply: oneshot::Sender<Result<Vec<f32>, EmbedError>>,
}

/// What a thread takes from the queue.
enum Work {
    Job(Job),
    Texts(Vec<QueryText>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QueueError {
    #[error("the embedding queue is full")]
    Full,
    #[error("the embedding worker stopped or its job panicked")]
    Stopped,
}

#[derive(Default)]
struct Lanes {
    /// Search query texts: taken first, and together.
    queries: VecDeque<QueryText>,
    /// Other model calls (passage batches of ingests and draft checks).
    passages: VecDeque<Job>,
    /// Live [`EmbedWorker`] handles; the threads stop once it is 0 and the lanes are empty.
    handles: usize,
}

impl Lanes {
    fn len(&self) -> usize {
        self.queries.len() + self.passages.len()
    }
}

struct Shared {
    lanes: Mutex<Lanes>,
    /// Signalled when a job is queued or the last handle goes.
    queued: Condvar,
    /// Signalled when a job leaves the queue.
    room: Condvar,
    capacity: usize,
    /// Query texts taken together at most.
    query_batch: usize,
    depth: Arc<AtomicUsize>,
}

impl Shared {
    fn lanes(&self) -> MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next work for a thread, waiting while there is none: a job, or the query
    /// texts at the head of the query lane (up to `query_batch`). `None` once every
    /// handle is gone and nothing is left for it.
    fn next(&self, queries_only: bool) -> Option<Work> {
        let mut lanes = self.lanes();
        loop {
            let work = if !lanes.queries.is_empty() {
                let n = lanes.queries.len().min(self.query_batch);
                Some(Work::Texts(lanes.queries.drain(..n).collect()))
            } else if !queries_only {
                lanes.passages.pop_front().map(Work::Job)
            } else {
                None
            };
            if let Some(work) = work {
                let taken = match &work {
                    Work::Job(_) => 1,
                    Work::Texts(texts) => texts.len(),
                };
                self.depth.fetch_sub(taken, Ordering::Relaxed);
                self.room.notify_all();
                return Some(work);
            }
            if lanes.handles == 0 {
                return None;
            }
            lanes = self.queued.wait(lanes).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Queues `job`; when the queue is full, fails (`wait == false`) or waits for room.
    fn push(&self, job: Job, wait: bool) -> Result<(), QueueError> {
        self.push_with(wait, |lanes| lanes.passages.push_back(job))
    }

    /// Queues a query text in the query lane, as [`Shared::push`] does a job.
    fn push_text(&self, text: QueryText, wait: bool) -> Result<(), QueueError> {
        self.push_with(wait, |lanes| lanes.queries.push_back(text))
    }

    fn push_with(&self, wait: bool, put: impl FnOnce(&mut Lanes)) -> Result<(), QueueError> {
        let mut lanes = self.lanes();
        while lanes.len() >= self.capacity {
            if !wait {
                return Err(QueueError::Full);
            }
            lanes = self.room.wait(lanes).unwrap_or_else(|p| p.into_inner());
        }
        put(&mut lanes);
        self.depth.fetch_add(1, Ordering::Relaxed);
        // All: the query-only thread must not be the only one woken for a passage job.
        self.queued.notify_all();
        Ok(())
    }
}

/// Handle to the embedding threads; cheap to clone. The threads end when the last handle
/// (including the one inside [`QueuedEncoder`]) is dropped and the queue is empty.
pub(crate) struct EmbedWorker {
    shared: Arc<Shared>,
}

impl Clone for EmbedWorker {
    fn clone(&self) -> Self {
        self.shared.lanes().handles += 1;
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for EmbedWorker {
    fn drop(&mut self) {
        let mut lanes = self.shared.lanes();
        lanes.handles -= 1;
        if lanes.handles == 0 {
            self.shared.queued.notify_all();
        }
    }
}

impl EmbedWorker {
    /// Starts `threads` worker threads. `capacity` jobs may wait while they run; `depth` counts the
    /// waiting ones (it is shared so the metrics can read it before the worker exists).
    /// Up to `query_batch` waiting query texts are embedded in one pass (1: one by one).
    pub(crate) fn spawn(
        encoder: Arc<dyn Encoder>,
        capacity: usize,
        threads: usize,
        query_batch: usize,
        depth: Arc<AtomicUsize>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            lanes: Mutex::new(Lanes {
                handles: 1,
                ..Lanes::default()
            }),
            queued: Condvar::new(),
            room: Condvar::new(),
            capacity: capacity.max(1),
            query_batch: query_batch.max(1),
            depth,
        });
        // One thread per core: a short query cannot keep two cores busy on its own, so a
        // second query runs beside it; long ingest batches share rayon's pool anyway.
        let threads = threads.max(1);
        for i in 0..threads {
            let shared = Arc::clone(&shared);
            let encoder = Arc::clone(&encoder);
            let queries_only = i == 0 && threads > 1;
            std::thread::Builder::new()
                .name(format!("storydex-embed-{i}"))
                .spawn(move || {
                    while let Some(work) = shared.next(queries_only) {
                        // A panicking model call must not take a worker with it; its
                        // callers see `Stopped` through the dropped reply channels.
                        let run = AssertUnwindSafe(|| match work {
                            Work::Job(job) => job(encoder.as_ref()),
                            Work::Texts(texts) => embed_texts(encoder.as_ref(), texts),
                        });
                        if catch_unwind(run).is_err() {
                            tracing::error!("an embedding job panicked; the worker goes on");
                        }
                    }
                })?;
        }
        Ok(Self { shared })
    }

    /// Jobs waiting in the queue (not counting the ones running).
    pub(crate) fn depth(&self) -> usize {
        self.shared.depth.load(Ordering::Relaxed)
    }

    /// Runs `f` on the worker from async code; fails at once when the queue is full.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Encoder) -> T + Send + 'static,
    ) -> Result<T, QueueError> {
        let (job, reply) = job(f);
        self.shared.push(job, false)?;
        reply.await.map_err(|_| QueueError::Stopped)
    }

    /// A query's vector, embedded together with the query texts waiting beside it; fails
    /// at once when the queue is full.
    pub(crate) async fn embed_query(
        &self,
        text: String,
    ) -> Result<Result<Vec<f32>, EmbedError>, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.shared.push_text(QueryText { text, reply }, false)?;
        answer.await.map_err(|_| QueueError::Stopped)
    }

    /// [`EmbedWorker::embed_query`] from a blocking thread, waiting for room in the queue.
    pub(crate) fn embed_query_blocking(
        &self,
        text: String,
    ) -> Result<Result<Vec<f32>, EmbedError>, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.shared.push_text(QueryText { text, reply }, true)?;
        answer.blocking_recv().map_err(|_| QueueError::Stopped)
    }

    /// Runs `f` on the worker from a blocking thread, waiting for room in the queue.
    ///
    /// Panics when called from async code (tokio's `blocking_recv` refuses): that would
    /// stall the runtime, so it is a bug.
    pub(crate) fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Encoder) -> T + Send + 'static,
    ) -> Result<T, QueueError> {
        let (job, reply) = job(f);
        self.shared.push(job, true)?;
        reply.blocking_recv().map_err(|_| QueueError::Stopped)
    }
}

/// Embeds the texts whose callers still wait, in one call, and answers each. If the
/// batched call panics, each text is tried alone, so one bad query fails only itself.
fn embed_texts(encoder: &dyn Encoder, texts: Vec<QueryText>) {
    let texts: Vec<QueryText> = texts.into_iter().filter(|t| !t.reply.is_closed()).collect();
    if texts.is_empty() {
        return;
    }
    let strs: Vec<&str> = texts.iter().map(|t| t.text.as_str()).collect();
    let together = catch_unwind(AssertUnwindSafe(|| encoder.embed_queries(&strs)));
    match together {
        Ok(vectors) if vectors.len() == texts.len() => {
            for (t, v) in texts.into_iter().zip(vectors) {
                let _ = t.reply.send(v);
            }
        }
        _ if texts.len() > 1 => {
            tracing::error!(
                texts = texts.len(),
                "a batched query call failed; retrying one by one"
            );
            for t in texts {
                // A text that panics alone drops its reply: its caller sees `Stopped`.
                if let Ok(v) = catch_unwind(AssertUnwindSafe(|| encoder.embed_query(&t.text))) {
                    let _ = t.reply.send(v);
                }
            }
        }
        _ => tracing::error!("a query embedding panicked"),
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

fn stopped(e: QueueError) -> EmbedError {
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
        self.worker
            .embed_query_blocking(text.to_owned())
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

    fn device_info(&self) -> crate::embed::DeviceInfo {
        self.inner.device_info()
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
        let worker = EmbedWorker::spawn(
            slow,
            1,
            1,
            DEFAULT_QUERY_BATCH,
            Arc::new(AtomicUsize::new(0)),
        )
        .unwrap();
        let running = tokio::spawn({
            let w = worker.clone();
            async move { w.embed_query("one".into()).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiting = tokio::spawn({
            let w = worker.clone();
            async move { w.embed_query("two".into()).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(worker.depth(), 1);
        let refused = worker.embed_query("three".into()).await;
        assert_eq!(refused.unwrap_err(), QueueError::Full);
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
            DEFAULT_QUERY_BATCH,
            Arc::new(AtomicUsize::new(0)),
        )
        .unwrap();
        let failed = worker.run(|_| -> usize { panic!("boom") }).await;
        assert_eq!(failed.unwrap_err(), QueueError::Stopped);
        assert_eq!(worker.run(|e| e.dimension()).await, Ok(8));
    }

    #[tokio::test]
    async fn a_query_does_not_wait_behind_queued_passage_batches() {
        // Three passage batches that cannot finish until the test lets them: one runs,
        // two wait. A query sent after them is answered while they are all held.
        let worker = EmbedWorker::spawn(
            Arc::new(FakeEncoder::new(8)),
            8,
            2,
            DEFAULT_QUERY_BATCH,
            Arc::new(AtomicUsize::new(0)),
        )
        .unwrap();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let mut batches = Vec::new();
        for _ in 0..3 {
            let (w, gate) = (worker.clone(), Arc::clone(&gate));
            batches.push(tokio::spawn(async move {
                w.run(move |e| {
                    let (open, opened) = &*gate;
                    let mut open = open.lock().unwrap();
                    while !*open {
                        open = opened.wait(open).unwrap();
                    }
                    e.embed_passages(&["a passage"]).map(|_| ())
                })
                .await
            }));
        }
        // One batch runs (on the thread that takes passages), two wait in the queue.
        while worker.depth() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Only a deadline against a hang: with one queue the query would wait forever.
        let vector = tokio::time::timeout(
            Duration::from_secs(60),
            worker.embed_query("a query".into()),
        )
        .await
        .expect("the query waited behind the held passage batches");
        assert_eq!(vector.unwrap().unwrap().len(), 8);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        for b in batches {
            assert!(b.await.unwrap().unwrap().is_ok());
        }
    }

    #[tokio::test]
    async fn queries_that_wait_together_are_embedded_in_one_call_up_to_the_batch_size() {
        let encoder = Arc::new(FakeEncoder::new(8));
        // One thread, held by a job until the test lets it go, so that the queries queue.
        let worker = EmbedWorker::spawn(
            Arc::clone(&encoder) as Arc<dyn Encoder>,
            64,
            1,
            4,
            Arc::new(AtomicUsize::new(0)),
        )
        .unwrap();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held = tokio::spawn({
            let (w, gate, started) = (worker.clone(), Arc::clone(&gate), Arc::clone(&started));
            async move {
                w.run(move |_| {
                    started.store(true, Ordering::SeqCst);
                    let (open, opened) = &*gate;
                    let mut open = open.lock().unwrap();
                    while !*open {
                        open = opened.wait(open).unwrap();
                    }
                })
                .await
            }
        });
        while !started.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let texts: Vec<String> = (0..6).map(|i| format!("query number {i}")).collect();
        let mut asked = Vec::new();
        for t in &texts {
            let (w, t) = (worker.clone(), t.clone());
            asked.push(tokio::spawn(async move { w.embed_query(t).await }));
            // In order: each is queued before the next is sent.
            while worker.depth() < asked.len() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        held.await.unwrap().unwrap();
        let fake = FakeEncoder::new(8);
        for (t, a) in texts.iter().zip(asked) {
            let vector = a.await.unwrap().unwrap().unwrap();
            assert_eq!(vector, fake.embed_query(t).unwrap(), "{t}: its own vector");
        }
        assert_eq!(
            encoder.query_batches(),
            [4, 2],
            "six waiting, batches of four"
        );
    }

    #[test]
    fn a_query_that_panics_in_a_batch_fails_alone() {
        let encoder = FakeEncoder::new(8).with_panic_on("boom");
        let mut answers = Vec::new();
        let texts = ["one", "boom", "three"].map(|text| {
            let (reply, answer) = oneshot::channel();
            answers.push(answer);
            QueryText {
                text: text.to_owned(),
                reply,
            }
        });
        embed_texts(&encoder, texts.into());
        let got: Vec<bool> = answers
            .into_iter()
            .map(|mut a| matches!(a.try_recv(), Ok(Ok(_))))
            .collect();
        assert_eq!(got, [true, false, true]);
    }

    #[test]
    fn the_threads_stop_when_the_last_handle_goes() {
        let worker = EmbedWorker::spawn(
            Arc::new(FakeEncoder::new(8)),
            4,
            2,
            DEFAULT_QUERY_BATCH,
            Arc::new(AtomicUsize::new(0)),
        )
        .unwrap();
        let shared = Arc::downgrade(&worker.shared);
        let copy = worker.clone();
        drop(worker);
        assert_eq!(copy.run_blocking(|e| e.dimension()), Ok(8));
        drop(copy);
        // Each thread holds the shared state until it returns.
        while shared.upgrade().is_some() {
            std::thread::yield_now();
        }
    }
}
