//! JSON shapes shared by the HTTP API and the CLI's `--json` output.
//!
//! Owns: field names, which are a contract with scripts. Must not: contain logic beyond
//! converting service values into these shapes.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::corpus::SourceKind;
use crate::service::{IngestReport, StoryHit};
use crate::store::{StoredDigest, StoredStory};

fn rfc3339(t: Option<OffsetDateTime>) -> Option<String> {
    t.and_then(|t| t.format(&Rfc3339).ok())
}

/// One story in a list of results.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Hit {
    pub id: String,
    /// Cosine similarity between the query and the story's best-matching window.
    pub score: f32,
    pub title: String,
    pub url: Option<String>,
    /// RFC 3339, or null for undated archive entries.
    pub published: Option<String>,
    /// Id of the digest the story belongs to.
    pub digest: String,
    /// The best-matching passage of the story.
    pub snippet: String,
}

impl From<StoryHit> for Hit {
    fn from(h: StoryHit) -> Self {
        Self {
            id: h.story.id,
            score: h.score,
            title: h.story.headline,
            url: h.story.url,
            published: rfc3339(h.story.published),
            digest: h.story.digest_id,
            snippet: h.snippet,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    pub hits: Vec<Hit>,
    pub took_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HitsResponse {
    pub hits: Vec<Hit>,
}

/// A stored story with its digest.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoryView {
    pub id: String,
    pub title: String,
    pub author: Option<String>,
    pub url: Option<String>,
    pub published: Option<String>,
    pub position: u32,
    pub tags: Vec<String>,
    /// The summary as written (Markdown).
    pub summary: String,
    pub digest: DigestRef,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DigestRef {
    pub id: String,
    pub title: String,
}

impl From<StoredStory> for StoryView {
    fn from(s: StoredStory) -> Self {
        Self {
            id: s.id,
            title: s.headline,
            author: s.author,
            url: s.url,
            published: rfc3339(s.published),
            position: s.position,
            tags: s.tags,
            summary: s.display,
            digest: DigestRef {
                id: s.digest_id,
                title: s.digest_title,
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DigestView {
    pub id: String,
    /// `digest` or `archive`.
    pub kind: String,
    pub title: String,
    pub published: Option<String>,
    pub categories: Vec<String>,
    pub source: String,
    pub stories: usize,
}

impl From<StoredDigest> for DigestView {
    fn from(d: StoredDigest) -> Self {
        Self {
            id: d.id,
            kind: match d.kind {
                SourceKind::Digest => "digest",
                SourceKind::Archive => "archive",
            }
            .to_owned(),
            title: d.title,
            published: rfc3339(d.published),
            categories: d.categories,
            source: d.source,
            stories: d.stories,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DigestsResponse {
    pub digests: Vec<DigestView>,
}

/// One digest with its stories.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DigestDetail {
    #[serde(flatten)]
    pub digest: DigestView,
    pub items: Vec<StoryView>,
}

/// Counts of what an ingest did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IngestSummary {
    pub files: usize,
    pub new: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    pub failed: Vec<FailedView>,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub interrupted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FailedView {
    pub source: String,
    pub error: String,
}

impl From<&IngestReport> for IngestSummary {
    fn from(r: &IngestReport) -> Self {
        Self {
            files: r.files,
            new: r.new,
            updated: r.updated,
            unchanged: r.unchanged,
            removed: r.removed,
            failed: r
                .failed
                .iter()
                .map(|f| FailedView {
                    source: f.source.clone(),
                    error: f.error.clone(),
                })
                .collect(),
            tokens: r.tokens,
            seconds: r.seconds,
            tokens_per_s: if r.seconds > 0.0 {
                r.tokens as f64 / r.seconds
            } else {
                0.0
            },
            interrupted: r.interrupted,
        }
    }
}
