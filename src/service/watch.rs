//! A watched folder: digests and archives written into a folder are ingested as they
//! appear or change.
//!
//! Owns: one scan of the whole folder at start, then the file-system events (through
//! `notify`), the quiet time that lets partial writes finish, which files count
//! (those [`super::is_ingestable`] accepts), what a deleted file does, and the status
//! the server shows (files ingested and failed, the last scan, the files failing now
//! with their error). Must not: write to the store itself. Every change goes through
//! the `apply` function the caller hands over, so the server can send it down the same
//! one-at-a-time write path as `POST /v1/digests`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher as _};
use time::OffsetDateTime;

use super::ingest::{collect_files, is_ingestable};
use super::{FailedFile, IngestReport, Service, ServiceError};

/// How long a watched file must stay unchanged before it is ingested, by default.
pub const DEFAULT_QUIET_MS: u64 = 500;

/// Files ingested in one write: a long first scan lets other writes in between.
const FILES_PER_WRITE: usize = 16;

/// How often the watcher looks at its stop flag while nothing happens.
const TICK: Duration = Duration::from_millis(200);

/// The `--watch` flags of `storydex serve` and `storydex ingest`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WatchSettings {
    /// Folder to watch: digest and archive files (*.md, *.txt, *.markdown, recursively)
    /// are ingested when they appear or change, after one scan of the whole folder.
    #[arg(long, env = "STORYDEX_WATCH", value_name = "DIR")]
    pub watch: Option<PathBuf>,
    /// Milliseconds a watched file must stay unchanged before it is ingested (a file
    /// renamed into place is ingested at once).
    #[arg(long, env = "STORYDEX_WATCH_QUIET_MS", default_value_t = DEFAULT_QUIET_MS)]
    pub watch_quiet_ms: u64,
    /// Remove a digest's stories when its file is deleted from the watched folder
    /// (without it, they are kept).
    #[arg(long, env = "STORYDEX_WATCH_REMOVES")]
    pub watch_removes: bool,
}

impl WatchSettings {
    /// The watcher's options, when a folder is given.
    pub fn options(&self) -> Option<WatchOptions> {
        self.watch.as_ref().map(|folder| WatchOptions {
            folder: folder.clone(),
            quiet: Duration::from_millis(self.watch_quiet_ms),
            removes: self.watch_removes,
        })
    }
}

#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub folder: PathBuf,
    pub quiet: Duration,
    pub removes: bool,
}

/// One change for the store.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchOp {
    /// Ingest these files (each as its path reads under the folder as given).
    Ingest(Vec<PathBuf>),
    /// Remove the digests read from this file, or from files under this folder.
    Remove(PathBuf),
}

#[derive(Debug, Clone)]
pub enum WatchOutcome {
    Ingested(IngestReport),
    /// Stories removed.
    Removed(usize),
}

/// Runs one [`WatchOp`]; the error is shown as the file's failure.
pub type Apply = Box<dyn FnMut(&WatchOp) -> Result<WatchOutcome, String> + Send>;

impl Service {
    /// Applies one change from a watched folder. Files gone since the event are
    /// skipped (their removal event follows).
    pub fn apply_watch_op(
        &self,
        op: &WatchOp,
        cancel: &AtomicBool,
    ) -> Result<WatchOutcome, ServiceError> {
        match op {
            WatchOp::Ingest(files) => {
                let files: Vec<PathBuf> = files.iter().filter(|f| f.is_file()).cloned().collect();
                Ok(WatchOutcome::Ingested(self.ingest_paths(
                    &files,
                    cancel,
                    &mut |_| {},
                )?))
            }
            WatchOp::Remove(path) => Ok(WatchOutcome::Removed(self.remove_source(path)?)),
        }
    }

    /// Removes every digest read from `path`, or from a file under it; returns how many
    /// stories went.
    pub fn remove_source(&self, path: &Path) -> Result<usize, ServiceError> {
        let exact = path.display().to_string();
        let under = format!("{exact}{}", std::path::MAIN_SEPARATOR);
        let mut removed = 0;
        for digest in self.store.digests()? {
            if digest.source == exact || digest.source.starts_with(&under) {
                removed += self
                    .store
                    .remove_digest(&digest.id, &self.cluster_params())?;
            }
        }
        if removed > 0 {
            self.store.save_index()?;
        }
        Ok(removed)
    }
}

/// What the watcher has done, for the page and `/metrics`.
#[derive(Debug)]
pub struct WatchStatus {
    folder: PathBuf,
    removes: bool,
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    last_scan: Option<OffsetDateTime>,
    ingested: u64,
    failed: u64,
    removed: u64,
    failing: BTreeMap<String, String>,
}

/// A copy of [`WatchStatus`] at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchSnapshot {
    pub folder: PathBuf,
    pub removes: bool,
    /// When the watcher last brought the store up to date with the folder (the first
    /// scan, then each batch of changes); `None` while the first scan runs.
    pub last_scan: Option<OffsetDateTime>,
    /// Files ingested, failed and deleted (the deleted counted whether or not their
    /// stories were removed) since the start.
    pub ingested: u64,
    pub failed: u64,
    pub removed: u64,
    /// Files whose last ingest failed, with the error (file and line), by name.
    pub failing: Vec<FailedFile>,
}

impl WatchStatus {
    fn new(folder: PathBuf, removes: bool) -> Self {
        Self {
            folder,
            removes,
            inner: Mutex::default(),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> WatchSnapshot {
        let c = self.counts();
        WatchSnapshot {
            folder: self.folder.clone(),
            removes: self.removes,
            last_scan: c.last_scan,
            ingested: c.ingested,
            failed: c.failed,
            removed: c.removed,
            failing: c
                .failing
                .iter()
                .map(|(source, error)| FailedFile {
                    source: source.clone(),
                    error: error.clone(),
                })
                .collect(),
        }
    }
}

/// A running watcher; [`Watcher::stop`] ends it after the current write.
pub struct Watcher {
    status: Arc<WatchStatus>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching `options.folder` (which must exist): events are collected from
    /// now on, then a thread scans the folder once and follows the events, sending each
    /// change through `apply`.
    pub fn spawn(options: WatchOptions, apply: Apply) -> std::io::Result<Watcher> {
        let canonical = options.folder.canonicalize().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("the watched folder {}: {e}", options.folder.display()),
            )
        })?;
        if !canonical.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!(
                    "the watched folder {} is not a folder",
                    options.folder.display()
                ),
            ));
        }
        let (tx, rx) = mpsc::channel();
        let mut notifier = notify::recommended_watcher(tx).map_err(notify_error)?;
        notifier
            .watch(&canonical, RecursiveMode::Recursive)
            .map_err(notify_error)?;
        let status = Arc::new(WatchStatus::new(options.folder.clone(), options.removes));
        let stop = Arc::new(AtomicBool::new(false));
        let mut run = Run {
            root: options.folder,
            canonical,
            quiet: options.quiet,
            removes: options.removes,
            status: Arc::clone(&status),
            apply,
            pending: HashMap::new(),
            seen: HashMap::new(),
        };
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("storydex-watch".into())
                .spawn(move || {
                    // The notifier lives as long as the thread that reads its events.
                    let _notifier = notifier;
                    run.run(&rx, &stop);
                })?
        };
        Ok(Watcher {
            status,
            stop,
            thread: Some(thread),
        })
    }

    pub fn status(&self) -> Arc<WatchStatus> {
        Arc::clone(&self.status)
    }

    /// Stops the watcher after the write in progress and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn notify_error(e: notify::Error) -> std::io::Error {
    std::io::Error::other(format!("watching the folder: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Written,
    Deleted,
}

struct Run {
    /// The folder as given (paths are stored and shown under it, as `storydex ingest`
    /// stores them) and as the events name it.
    root: PathBuf,
    canonical: PathBuf,
    quiet: Duration,
    removes: bool,
    status: Arc<WatchStatus>,
    apply: Apply,
    /// Paths waiting for their quiet time to pass.
    pending: HashMap<PathBuf, (Instant, Change)>,
    /// Each file's modification time and length when it was last ingested: one rename
    /// arrives as several events, and a file they all name is read once.
    seen: HashMap<PathBuf, (Option<SystemTime>, u64)>,
}

impl Run {
    fn run(&mut self, rx: &mpsc::Receiver<notify::Result<notify::Event>>, stop: &AtomicBool) {
        tracing::info!(folder = %self.root.display(), "watching");
        self.scan(stop);
        while !stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            let wait = self
                .pending
                .values()
                .map(|(due, _)| due.saturating_duration_since(now))
                .min()
                .unwrap_or(TICK)
                .min(TICK);
            match rx.recv_timeout(wait) {
                Ok(Ok(event)) => self.event(event),
                Ok(Err(e)) => tracing::warn!(error = %e, "watching the folder"),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            self.flush(stop);
        }
    }

    /// Ingests every file in the folder (unchanged stories cost nothing).
    fn scan(&mut self, stop: &AtomicBool) {
        let mut files = Vec::new();
        if let Err(e) = collect_files(&self.root, &mut files) {
            tracing::warn!(folder = %self.root.display(), error = %e, "scanning the watched folder");
        }
        for chunk in files.chunks(FILES_PER_WRITE) {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            self.ingest(chunk.to_vec());
        }
        self.status.counts().last_scan = Some(OffsetDateTime::now_utc());
    }

    /// The path under the folder as given.
    fn local(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.canonical) {
            Ok(rel) => self.root.join(rel),
            Err(_) => path.to_owned(),
        }
    }

    fn mark(&mut self, path: &Path, change: Change, at_once: bool) {
        let path = self.local(path);
        if path.is_dir() {
            // A folder moved or copied in: its files may predate the folder's watch.
            if change == Change::Written {
                let mut files = Vec::new();
                let _ = collect_files(&path, &mut files);
                for file in files {
                    self.pending
                        .insert(file, (Instant::now() + self.quiet, Change::Written));
                }
            }
            return;
        }
        // A deleted folder has no extension; a deleted file must look ingestable.
        let relevant = match change {
            Change::Written => is_ingestable(&path),
            Change::Deleted => is_ingestable(&path) || path.extension().is_none(),
        };
        if !relevant {
            return;
        }
        let due = if at_once {
            Instant::now()
        } else {
            Instant::now() + self.quiet
        };
        self.pending.insert(path, (due, change));
    }

    fn event(&mut self, event: notify::Event) {
        if event.need_rescan() {
            tracing::warn!("file events were lost; scanning the watched folder again");
            let root = self.canonical.clone();
            self.mark(&root, Change::Written, false);
            return;
        }
        match event.kind {
            EventKind::Create(_)
            | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any | ModifyKind::Other) => {
                for path in &event.paths {
                    self.mark(path, Change::Written, false);
                }
            }
            EventKind::Modify(ModifyKind::Name(mode)) => match (mode, &event.paths[..]) {
                (RenameMode::To, [to]) => self.mark(to, Change::Written, true),
                (RenameMode::From, [from]) => self.mark(from, Change::Deleted, false),
                (RenameMode::Both, [from, to]) => {
                    self.mark(from, Change::Deleted, false);
                    self.mark(to, Change::Written, true);
                }
                (_, paths) => {
                    for path in paths {
                        if path.exists() {
                            self.mark(path, Change::Written, true);
                        } else {
                            self.mark(path, Change::Deleted, false);
                        }
                    }
                }
            },
            EventKind::Remove(_) => {
                for path in &event.paths {
                    self.mark(path, Change::Deleted, false);
                }
            }
            _ => {}
        }
    }

    /// Handles the paths whose quiet time has passed.
    fn flush(&mut self, stop: &AtomicBool) {
        let now = Instant::now();
        let mut due: Vec<(PathBuf, Change)> = Vec::new();
        self.pending.retain(|path, (at, change)| {
            if *at <= now {
                due.push((path.clone(), *change));
                false
            } else {
                true
            }
        });
        if due.is_empty() {
            return;
        }
        due.sort_by(|a, b| a.0.cmp(&b.0));
        let mut written = Vec::new();
        for (path, change) in due {
            // The last event decides, but the file as it is now has the final word: a
            // file deleted and written again (an editor saving) is a change.
            if path.is_file() {
                written.push(path);
            } else if change == Change::Deleted || !path.exists() {
                self.deleted(path);
            }
        }
        for chunk in written.chunks(FILES_PER_WRITE) {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            self.ingest(chunk.to_vec());
        }
        self.status.counts().last_scan = Some(OffsetDateTime::now_utc());
    }

    fn deleted(&mut self, path: PathBuf) {
        self.seen.remove(&path);
        if !self.removes {
            tracing::info!(file = %path.display(), "deleted from the watched folder; its stories are kept");
            self.status.counts().removed += 1;
            return;
        }
        match (self.apply)(&WatchOp::Remove(path.clone())) {
            Ok(WatchOutcome::Removed(stories)) => {
                tracing::info!(file = %path.display(), stories, "deleted from the watched folder; its stories are removed");
                let mut c = self.status.counts();
                c.removed += 1;
                let source = path.display().to_string();
                let under = format!("{source}{}", std::path::MAIN_SEPARATOR);
                c.failing
                    .retain(|s, _| *s != source && !s.starts_with(&under));
            }
            Ok(WatchOutcome::Ingested(_)) => {}
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "removing the stories of a deleted file");
            }
        }
    }

    fn ingest(&mut self, files: Vec<PathBuf>) {
        let stamps: Vec<(PathBuf, (Option<SystemTime>, u64))> = files
            .into_iter()
            .filter_map(|f| {
                let meta = std::fs::metadata(&f).ok()?;
                Some((f, (meta.modified().ok(), meta.len())))
            })
            .filter(|(f, stamp)| self.seen.get(f) != Some(stamp))
            .collect();
        if stamps.is_empty() {
            return;
        }
        let files: Vec<PathBuf> = stamps.iter().map(|(f, _)| f.clone()).collect();
        self.seen.extend(stamps);
        let op = WatchOp::Ingest(files.clone());
        let (failed, report) = match (self.apply)(&op) {
            Ok(WatchOutcome::Ingested(report)) => {
                let failed: HashMap<String, String> = report
                    .failed
                    .iter()
                    .map(|f| (f.source.clone(), f.error.clone()))
                    .collect();
                (failed, Some(report))
            }
            Ok(WatchOutcome::Removed(_)) => (HashMap::new(), None),
            Err(error) => {
                tracing::error!(%error, files = files.len(), "ingesting from the watched folder");
                let failed = files
                    .iter()
                    .map(|f| (f.display().to_string(), error.clone()))
                    .collect();
                (failed, None)
            }
        };
        let mut c = self.status.counts();
        for file in &files {
            let source = file.display().to_string();
            match failed.get(&source) {
                Some(error) => {
                    tracing::warn!(file = %source, %error, "a watched file does not parse");
                    c.failed += 1;
                    c.failing.insert(source, error.clone());
                }
                None => {
                    c.ingested += 1;
                    c.failing.remove(&source);
                }
            }
        }
        if let Some(r) = report {
            if r.files > 0 {
                tracing::info!(
                    files = r.files,
                    new = r.new,
                    updated = r.updated,
                    unchanged = r.unchanged,
                    removed = r.removed,
                    "ingested from the watched folder"
                );
            }
        }
    }
}
