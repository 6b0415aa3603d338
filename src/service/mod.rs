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
use crate::domain::Invalid;
use crate::embed::{EmbedError, Encoder, Window};
use crate::store::{NewStory, Store, StoreError, StoredDigest, StoredStory};

mod duplicates;
mod search;
pub(crate) use duplicates::{could_have_covered, item as cluster_item, to_item as story_item};
pub use duplicates::{CheckedIngest, CheckedItem, Coverage, DuplicateCluster, MatchReason};
pub use search::{Fusion, Ranking, SearchMode, StoryHit};

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

/// The per-model knobs of the service: same-event thresholds per language pair and the
/// search ranking. From the model manifest ([`Tuning::from_spec`]); a bare number is one
/// threshold for every language pair with the default ranking (tests, fake encoders).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// Pair score for two stories in the same language (Chinese digests: zh-zh).
    pub duplicate: f32,
    /// Pair score for an English text against a Chinese story (or the other way round).
    pub duplicate_en_zh: f32,
    /// Pair score for two English texts.
    pub duplicate_en_en: f32,
    /// For an English text against a Chinese story: how much the shared names and
    /// numbers ([`crate::lexical::term_overlap`], 0..1) add to the pair score.
    pub cross_language_term_weight: f32,
    /// For an English text against a Chinese story: how much the share of the English
    /// headline's names found in the story, less one half, adds to the pair score.
    pub cross_language_name_weight: f32,
    /// Across languages (English against Chinese either way): how much the story's margin
    /// over the best candidate of another event adds to the pair score.
    pub cross_language_margin_weight: f32,
    pub ranking: Ranking,
}

impl Tuning {
    pub fn from_spec(spec: &crate::embed::ModelSpec) -> Self {
        let t = &spec.thresholds;
        Self {
            duplicate: t.duplicate,
            duplicate_en_zh: t.duplicate_en_zh.unwrap_or(t.duplicate),
            duplicate_en_en: t.duplicate_en_en.unwrap_or(t.duplicate),
            cross_language_term_weight: t.cross_language_term_weight,
            cross_language_name_weight: t.cross_language_name_weight,
            cross_language_margin_weight: t.cross_language_margin_weight,
            ranking: spec.search,
        }
    }

    /// The threshold for a pair of texts in these languages (`zh` or `en`).
    pub fn threshold(&self, a: &str, b: &str) -> f32 {
        match (a, b) {
            ("en", "en") => self.duplicate_en_en,
            ("en", _) | (_, "en") => self.duplicate_en_zh,
            _ => self.duplicate,
        }
    }
}

impl From<f32> for Tuning {
    fn from(threshold: f32) -> Self {
        Self {
            duplicate: threshold,
            duplicate_en_zh: threshold,
            duplicate_en_en: threshold,
            cross_language_term_weight: 0.0,
            cross_language_name_weight: 0.0,
            cross_language_margin_weight: 0.0,
            ranking: Ranking::default(),
        }
    }
}

pub struct Service {
    store: Arc<Store>,
    encoder: Arc<dyn Encoder>,
    tuning: Tuning,
    ranking: Ranking,
    clusters: duplicates::ClusterCache,
}

impl Service {
    pub fn new(store: Arc<Store>, encoder: Arc<dyn Encoder>, tuning: impl Into<Tuning>) -> Self {
        let tuning = tuning.into();
        Self {
            store,
            encoder,
            ranking: tuning.ranking,
            tuning,
            clusters: Default::default(),
        }
    }

    /// The same service with other ranking knobs (a variant being evaluated).
    pub fn with_ranking(mut self, ranking: Ranking) -> Self {
        self.ranking = ranking;
        self
    }

    /// Another service over the same store and encoder, ranking with other knobs (for
    /// comparing variants in one process; clusters are not shared).
    pub fn clone_with_ranking(&self, ranking: Ranking) -> Service {
        Service {
            store: Arc::clone(&self.store),
            encoder: Arc::clone(&self.encoder),
            tuning: self.tuning,
            ranking,
            clusters: Default::default(),
        }
    }

    pub fn ranking(&self) -> Ranking {
        self.ranking
    }

    pub fn tuning(&self) -> Tuning {
        self.tuning
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }

    /// The model and passage layout a story's content hash depends on.
    fn content_key(&self) -> String {
        format!(
            "{}|{}",
            self.encoder.model_id(),
            self.encoder.passage_layout()
        )
    }

    /// The knobs stored clusters are computed with (the same-language threshold).
    pub fn cluster_params(&self) -> crate::cluster::Params {
        crate::cluster::Params::with_threshold(self.tuning.duplicate)
    }

    /// Recomputes the stored clusters if they were made with other settings or some
    /// story has none (stores from before clusters were stored). Call once on start.
    pub fn ensure_clusters(&self) -> Result<Option<crate::store::ReclusterReport>, ServiceError> {
        Ok(self.store.ensure_clusters(&self.cluster_params())?)
    }

    /// Recomputes every stored cluster; says what changed.
    pub fn recluster(&self) -> Result<crate::store::ReclusterReport, ServiceError> {
        Ok(self.store.recluster(&self.cluster_params())?)
    }

    /// The same-language (zh-zh) duplicate threshold, which clusters use.
    pub fn duplicate_threshold(&self) -> f32 {
        self.tuning.duplicate
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
        let model = self.content_key();
        let mut pending: Vec<(&Story, String)> = Vec::new();
        for story in &parsed.stories {
            report.story_ids.push(story.id.clone());
            let hash = content_hash(&model, story);
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
            self.store.put_stories(&batch, &self.cluster_params())?;
            for new in &batch {
                let tokens = new.windows.iter().map(|w| w.tokens).sum();
                report.tokens += tokens;
                progress(Progress::Story { tokens, source });
            }
        }
        let keep: HashSet<&str> = parsed.stories.iter().map(|s| s.id.as_str()).collect();
        report.removed +=
            self.store
                .retain_stories(&parsed.digest.id, &keep, &self.cluster_params())?;
        report.files += 1;
        Ok(())
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
