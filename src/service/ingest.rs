//! Ingest: files, folders or one posted digest into the store, idempotently.
//!
//! Owns: which stories are new, changed, unchanged or gone (a content hash over
//! everything stored about a story and the model's passage layout), embedding and
//! committing a few stories at a time (a crash loses at most one batch, a search waits
//! for at most one), and the checked ingest (each story's earlier coverage, as the store
//! stood before it). Must not: parse formats itself (that is `corpus`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use sha2::{Digest as _, Sha256};

use super::check::Coverage;
use super::{Service, ServiceError};
use crate::corpus::{self, ParseError, ParsedFile, Story};
use crate::embed::{EmbedError, Window};
use crate::store::NewStory;

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

/// What [`Service::ingest_checked`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedIngest {
    pub parsed: ParsedFile,
    pub report: IngestReport,
    /// One list per story of `parsed`, in digest order: earlier stories of other digests
    /// that reported the same event, best first, as the store stood before the ingest.
    pub previous_coverage: Vec<Vec<Coverage>>,
}

/// How many stories are embedded before each commit: a crash loses at most this many.
const COMMIT_EVERY: usize = 8;
impl Service {
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

    /// Ingests one parsed digest, and for each of its stories finds the earlier coverage
    /// against the store as it was before (so that a digest never covers itself).
    ///
    /// Each story is embedded once: new and changed ones here, a batch at a time so that
    /// searches sharing the model slip in between; unchanged ones keep their stored
    /// vectors. The ingest then stores those same windows.
    pub fn ingest_checked(&self, parsed: ParsedFile) -> Result<CheckedIngest, ServiceError> {
        let started = Instant::now();
        let stored = self.store.story_hashes(&parsed.digest.id)?;
        let model = self.content_key();
        let mut vectors: HashMap<&str, Vec<f32>> = HashMap::new();
        let mut to_embed: Vec<&Story> = Vec::new();
        for story in &parsed.stories {
            let unchanged = stored.get(&story.id) == Some(&content_hash(&model, story));
            // An unchanged story keeps its stored story vector (the mean of its windows).
            let stored_vector = if unchanged {
                self.store
                    .story_vectors_of(&[story.id.as_str()])?
                    .remove(&story.id)
            } else {
                None
            };
            match stored_vector {
                Some(vector) => {
                    vectors.insert(&story.id, vector);
                }
                None => to_embed.push(story),
            }
        }
        let mut embedded: HashMap<String, Vec<Window>> = HashMap::with_capacity(to_embed.len());
        for chunk in to_embed.chunks(COMMIT_EVERY) {
            let texts: Vec<&str> = chunk.iter().map(|s| s.text.as_str()).collect();
            let windows = self.encoder.embed_passages(&texts)?;
            for (story, windows) in chunk.iter().zip(windows) {
                let vector = crate::embed::story_vector(&windows);
                vectors.insert(&story.id, vector);
                embedded.insert(story.id.clone(), windows);
            }
        }
        let mut previous_coverage = Vec::with_capacity(parsed.stories.len());
        for story in &parsed.stories {
            let coverage = match vectors.get(story.id.as_str()) {
                Some(vector) => self.previous_coverage(story, vector)?,
                None => Vec::new(),
            };
            previous_coverage.push(coverage);
        }
        let mut report = IngestReport::default();
        self.ingest_embedded(
            &parsed,
            embedded,
            &mut report,
            &AtomicBool::new(false),
            &mut |_| {},
        )?;
        self.store.save_index()?;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(CheckedIngest {
            parsed,
            report,
            previous_coverage,
        })
    }

    /// [`Service::ingest_checked`] for a digest given as text.
    pub fn ingest_text_checked(
        &self,
        source: &str,
        text: &str,
    ) -> Result<CheckedIngest, ServiceError> {
        self.ingest_checked(corpus::parse_str(source, text)?)
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

/// Files (sorted) under `path`, recursively, that [`is_ingestable`] accepts; a file
/// named directly is taken whatever its name. Hidden folders are skipped.
pub(crate) fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
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
            if !is_hidden(&entry) {
                collect_files(&entry, out)?;
            }
        } else if is_ingestable(&entry) {
            out.push(entry);
        }
    }
    Ok(())
}

/// Whether a file found in a folder is a digest or archive to ingest: `.md`, `.txt` or
/// `.markdown`, and not a dotfile (editor locks like `.#a.md`, hidden swap files).
/// Editor temporaries (`a.md~`, `a.md.tmp`) fail the extension test.
pub fn is_ingestable(path: &Path) -> bool {
    !is_hidden(path)
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "md" | "txt" | "markdown"))
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::embed::fake::FakeEncoder;
    use crate::embed::Encoder;
    use crate::store::Store;

    /// The fake encoder, counting the passages it embeds.
    fn digest(date: &str, items: &[&str]) -> String {
        let mut out = format!("---\ntitle: \"t\"\ndate: {date}\n---\n\n");
        for (i, text) in items.iter().enumerate() {
            let n = i + 1;
            out.push_str(&format!(
                "{n}.  [{text}](https://example.com/{date}/{n})\n\n    {text}, in detail.\n\n"
            ));
        }
        out
    }

    #[test]
    fn only_digest_files_are_ingested_from_a_folder_not_dotfiles_or_editor_temporaries() {
        for name in ["a.md", "sub/b.txt", "c.markdown"] {
            assert!(is_ingestable(Path::new(name)), "{name}");
        }
        for name in [
            ".#a.md",
            ".a.md.swp",
            ".hidden.md",
            "a.md~",
            "a.md.tmp",
            "a.json",
            "a",
        ] {
            assert!(!is_ingestable(Path::new(name)), "{name}");
        }
    }

    #[test]
    fn a_checked_ingest_embeds_each_story_once_and_never_covers_itself() {
        let dir = tempfile::tempdir().unwrap();
        let encoder = Arc::new(FakeEncoder::default());
        let store = Store::open(dir.path(), encoder.model_id(), encoder.dimension()).unwrap();
        let service = Service::new(Arc::new(store), encoder.clone(), 0.9);
        let first = digest(
            "2026-01-06T12:00:00+08:00",
            &[
                "Atlas robot enters the car factory",
                "A wombat opens a bakery",
            ],
        );
        let checked = service.ingest_text_checked("first", &first).unwrap();
        assert_eq!(encoder.passages_embedded(), 2);
        assert_eq!(checked.report.new, 2);
        assert_eq!(checked.previous_coverage, vec![Vec::new(), Vec::new()]);

        // The same digest again: stored vectors are reused, and its own stories (now
        // stored, identical) are not earlier coverage.
        let again = service.ingest_text_checked("first", &first).unwrap();
        assert_eq!(encoder.passages_embedded(), 2);
        assert_eq!(again.report.unchanged, 2);
        assert_eq!(again.previous_coverage, vec![Vec::new(), Vec::new()]);

        // A later digest repeating the first story: one model call per new story.
        let second = digest(
            "2026-01-07T12:00:00+08:00",
            &["Atlas robot enters the car factory"],
        );
        let checked = service.ingest_text_checked("second", &second).unwrap();
        assert_eq!(encoder.passages_embedded(), 3);
        let found: Vec<&str> = checked.previous_coverage[0]
            .iter()
            .map(|c| c.story.id.as_str())
            .collect();
        assert_eq!(found, ["d20260106-1200-01"]);
        assert!(checked.previous_coverage[0][0].score > 0.99);
        assert_eq!(service.story_count().unwrap(), 3);
    }
}
