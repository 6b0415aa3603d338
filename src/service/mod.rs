//! The use-cases: ingest, search, similar stories, digests, duplicate coverage.
//!
//! Owns: the rules that combine parsing, embedding and the store (idempotent ingest,
//! grouping window hits into story hits, snippets). Must not: know about HTTP or the
//! terminal; the CLI and the HTTP layer both call this.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::corpus::{self, ParseError, ParsedFile, Story};
use crate::domain::{DateRange, Invalid, QueryText, TopK};
use crate::embed::{EmbedError, Encoder, Window};
use crate::store::{NewStory, Store, StoreError, StoredDigest, StoredStory, WindowHit, WindowMeta};

mod duplicates;
pub use duplicates::{CheckedIngest, CheckedItem, Coverage, DuplicateCluster};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("no {what} with id {id:?}")]
    NotFound { what: &'static str, id: String },
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("embedding failed: {0}")]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One story in a result list.
#[derive(Debug, Clone, PartialEq)]
pub struct StoryHit {
    pub story: StoredStory,
    /// Cosine similarity of the best-matching window.
    pub score: f32,
    /// The best-matching passage of the story.
    pub snippet: String,
}

/// What an ingest did, per story.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestReport {
    pub files: usize,
    pub new: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    pub failed: Vec<FailedFile>,
    pub tokens: usize,
    pub seconds: f64,
    /// Ids of the stories of the ingested files, in file order.
    pub story_ids: Vec<String>,
    /// True when the ingest stopped early on request; what was done is committed.
    pub interrupted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailedFile {
    pub source: String,
    pub error: String,
}

/// Progress events for a progress bar.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    /// Stories to look at in total (sent once per file as it is parsed).
    Stories(usize),
    /// A story was handled (embedded or found unchanged).
    Story {
        tokens: usize,
        source: &'a str,
    },
    Failed {
        source: &'a str,
        error: &'a str,
    },
}

/// How many stories are embedded before each commit: a crash loses at most this many.
const COMMIT_EVERY: usize = 8;
/// Snippets longer than this many characters are cut.
const SNIPPET_CHARS: usize = 280;

pub struct Service {
    store: Arc<Store>,
    encoder: Arc<dyn Encoder>,
    duplicate_threshold: f32,
    clusters: duplicates::ClusterCache,
}

impl Service {
    pub fn new(store: Arc<Store>, encoder: Arc<dyn Encoder>, duplicate_threshold: f32) -> Self {
        Self {
            store,
            encoder,
            duplicate_threshold,
            clusters: Default::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }

    pub fn duplicate_threshold(&self) -> f32 {
        self.duplicate_threshold
    }

    /// Ingests files and folders (recursively, `.md`/`.txt`/`.markdown`). A file that fails
    /// to parse is reported and skipped; the others still go in.
    pub fn ingest_paths(
        &self,
        paths: &[PathBuf],
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<IngestReport, ServiceError> {
        let started = Instant::now();
        let mut report = IngestReport::default();
        let mut files = Vec::new();
        for path in paths {
            collect_files(path, &mut files).map_err(|e| {
                ServiceError::Parse(ParseError {
                    source_name: path.display().to_string(),
                    line: 0,
                    message: e.to_string(),
                })
            })?;
        }
        for file in files {
            if cancel.load(Ordering::Relaxed) {
                report.interrupted = true;
                break;
            }
            let source = file.display().to_string();
            match corpus::parse_file(&file) {
                Ok(parsed) => {
                    progress(Progress::Stories(parsed.stories.len()));
                    self.ingest_parsed(&parsed, &mut report, cancel, progress)?;
                }
                Err(e) => {
                    let error = e.to_string();
                    progress(Progress::Failed {
                        source: &source,
                        error: &error,
                    });
                    report.failed.push(FailedFile { source, error });
                }
            }
        }
        self.store.save_index()?;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Ingests one digest given as text (HTTP `POST /v1/digests`).
    pub fn ingest_text(
        &self,
        source: &str,
        text: &str,
    ) -> Result<(ParsedFile, IngestReport), ServiceError> {
        let started = Instant::now();
        let parsed = corpus::parse_str(source, text)?;
        let mut report = IngestReport::default();
        self.ingest_parsed(&parsed, &mut report, &AtomicBool::new(false), &mut |_| {})?;
        self.store.save_index()?;
        report.seconds = started.elapsed().as_secs_f64();
        Ok((parsed, report))
    }

    fn ingest_parsed(
        &self,
        parsed: &ParsedFile,
        report: &mut IngestReport,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<(), ServiceError> {
        self.ingest_embedded(parsed, HashMap::new(), report, cancel, progress)
    }

    /// [`Service::ingest_parsed`] with some windows already computed (story id ->
    /// windows, as the checked ingest has them); new and changed stories not in
    /// `embedded` are embedded here.
    fn ingest_embedded(
        &self,
        parsed: &ParsedFile,
        mut embedded: HashMap<String, Vec<Window>>,
        report: &mut IngestReport,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<(), ServiceError> {
        let source = parsed.digest.source.as_str();
        let stored = self.store.story_hashes(&parsed.digest.id)?;
        self.store.put_digest(&parsed.digest)?;
        let model = self.encoder.model_id();
        let mut pending: Vec<(&Story, String)> = Vec::new();
        for story in &parsed.stories {
            report.story_ids.push(story.id.clone());
            let hash = content_hash(model, story);
            match stored.get(&story.id) {
                Some(old) if *old == hash => {
                    report.unchanged += 1;
                    progress(Progress::Story { tokens: 0, source });
                }
                Some(_) => {
                    report.updated += 1;
                    pending.push((story, hash));
                }
                None => {
                    report.new += 1;
                    pending.push((story, hash));
                }
            }
        }
        for chunk in pending.chunks(COMMIT_EVERY) {
            if cancel.load(Ordering::Relaxed) {
                report.interrupted = true;
                return Ok(());
            }
            let texts: Vec<&str> = chunk
                .iter()
                .filter(|(s, _)| !embedded.contains_key(&s.id))
                .map(|(s, _)| s.text.as_str())
                .collect();
            let mut fresh = if texts.is_empty() {
                Vec::new()
            } else {
                self.encoder.embed_passages(&texts)?
            }
            .into_iter();
            let mut batch: Vec<NewStory<'_>> = Vec::with_capacity(chunk.len());
            for (story, hash) in chunk {
                let windows = match embedded.remove(&story.id) {
                    Some(windows) => windows,
                    None => fresh.next().ok_or_else(|| {
                        EmbedError::Candle(candle_core::Error::Msg(format!(
                            "the encoder returned fewer results than the {} texts it was given",
                            texts.len()
                        )))
                    })?,
                };
                batch.push(NewStory {
                    story,
                    hash: hash.clone(),
                    windows,
                });
            }
            self.store.put_stories(&batch)?;
            for new in &batch {
                let tokens = new.windows.iter().map(|w| w.tokens).sum();
                report.tokens += tokens;
                progress(Progress::Story { tokens, source });
            }
        }
        let keep: HashSet<&str> = parsed.stories.iter().map(|s| s.id.as_str()).collect();
        report.removed += self.store.retain_stories(&parsed.digest.id, &keep)?;
        report.files += 1;
        Ok(())
    }

    /// Stories most similar to a free-text query (Chinese or English).
    pub fn search(
        &self,
        query: &QueryText,
        k: TopK,
        range: DateRange,
    ) -> Result<Vec<StoryHit>, ServiceError> {
        let vector = self.encoder.embed_query(query.as_str())?;
        self.search_vector(&vector, k, range)
    }

    /// Stories nearest to an already computed query vector.
    pub fn search_vector(
        &self,
        vector: &[f32],
        k: TopK,
        range: DateRange,
    ) -> Result<Vec<StoryHit>, ServiceError> {
        let best = self.best_windows(&[vector.to_vec()], k.get(), |m| range.contains_day(m.day))?;
        self.hydrate(best)
    }

    /// Stories similar to a stored one, from its stored vectors (no model call).
    pub fn similar(
        &self,
        id: &str,
        k: TopK,
        range: DateRange,
        other_digests_only: bool,
    ) -> Result<Vec<StoryHit>, ServiceError> {
        let windows = self.store.story_windows(id)?;
        let Some((first, _)) = windows.first() else {
            return Err(ServiceError::NotFound {
                what: "story",
                id: id.to_owned(),
            });
        };
        let digest_id = first.digest_id.clone();
        let queries: Vec<Vec<f32>> = windows.into_iter().map(|(_, v)| v).collect();
        let best = self.best_windows(&queries, k.get(), |m| {
            m.story_id != id
                && (!other_digests_only || m.digest_id != digest_id)
                && range.contains_day(m.day)
        })?;
        self.hydrate(best)
    }

    /// Up to `k` stories, each with its best window over all `queries`, best first.
    ///
    /// Windows are grouped by story, so the index is asked for more windows than `k`;
    /// if grouping leaves fewer than `k` stories the request is widened until the
    /// index has nothing more to give.
    fn best_windows(
        &self,
        queries: &[Vec<f32>],
        k: usize,
        keep: impl Fn(&WindowMeta) -> bool,
    ) -> Result<Vec<WindowHit>, ServiceError> {
        let total = self.store.window_count();
        let mut want = (k * 4 + 16).min(total.max(1));
        loop {
            let mut best: HashMap<String, WindowHit> = HashMap::new();
            for q in queries {
                for hit in self.store.search_windows(q, want, &keep)? {
                    match best.get(&hit.meta.story_id) {
                        Some(b) if b.score >= hit.score => {}
                        _ => {
                            best.insert(hit.meta.story_id.clone(), hit);
                        }
                    }
                }
            }
            if best.len() >= k || want >= total {
                let mut hits: Vec<WindowHit> = best.into_values().collect();
                hits.sort_by(|a, b| {
                    b.score
                        .total_cmp(&a.score)
                        .then_with(|| a.meta.story_id.cmp(&b.meta.story_id))
                });
                hits.truncate(k);
                return Ok(hits);
            }
            want = (want * 4).min(total);
        }
    }

    fn hydrate(&self, hits: Vec<WindowHit>) -> Result<Vec<StoryHit>, ServiceError> {
        let ids: Vec<&str> = hits.iter().map(|h| h.meta.story_id.as_str()).collect();
        let stories = self.store.stories(&ids)?;
        let mut by_id: HashMap<String, StoredStory> =
            stories.into_iter().map(|s| (s.id.clone(), s)).collect();
        Ok(hits
            .into_iter()
            .filter_map(|hit| {
                let story = by_id.remove(&hit.meta.story_id)?;
                let snippet = snippet(&story.text, hit.meta.start, hit.meta.end);
                Some(StoryHit {
                    story,
                    score: hit.score,
                    snippet,
                })
            })
            .collect())
    }

    pub fn story(&self, id: &str) -> Result<StoredStory, ServiceError> {
        self.store.story(id)?.ok_or_else(|| ServiceError::NotFound {
            what: "story",
            id: id.to_owned(),
        })
    }

    pub fn digests(&self) -> Result<Vec<StoredDigest>, ServiceError> {
        Ok(self.store.digests()?)
    }

    pub fn digest(&self, id: &str) -> Result<(StoredDigest, Vec<StoredStory>), ServiceError> {
        self.store
            .digest(id)?
            .ok_or_else(|| ServiceError::NotFound {
                what: "digest",
                id: id.to_owned(),
            })
    }
}

/// Changes whenever anything stored about the story, or the model, changes.
fn content_hash(model_id: &str, s: &Story) -> String {
    let mut h = Sha256::new();
    let published = s.published.map(|t| t.unix_timestamp().to_string());
    for part in [
        model_id,
        &s.digest_id,
        &s.position.to_string(),
        &s.headline,
        s.author.as_deref().unwrap_or(""),
        s.url.as_deref().unwrap_or(""),
        published.as_deref().unwrap_or(""),
        &s.tags.join("\u{1f}"),
        &s.display,
        &s.text,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    format!("{:x}", h.finalize())
}

/// The text of a window, cut to a readable length on a character boundary.
fn snippet(text: &str, start: usize, end: usize) -> String {
    let window = text.get(start..end.min(text.len())).unwrap_or(text).trim();
    let mut out: String = window.chars().take(SNIPPET_CHARS).collect();
    if window.chars().nth(SNIPPET_CHARS).is_some() {
        out.push('…');
    }
    out
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_files(&entry, out)?;
        } else if entry
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "md" | "txt" | "markdown"))
        {
            out.push(entry);
        }
    }
    Ok(())
}

/// Seconds since the Unix epoch of an optional time (for sorting; undated sorts first).
pub fn timestamp(t: Option<OffsetDateTime>) -> i64 {
    t.map_or(i64::MIN, |t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_cuts_long_windows_on_a_character_boundary() {
        let text = "英".repeat(400);
        let s = snippet(&text, 0, text.len());
        assert_eq!(s.chars().count(), SNIPPET_CHARS + 1);
        assert!(s.ends_with('…'));
        assert_eq!(snippet("short text", 0, 10), "short text");
    }
}
