//! JSON shapes shared by the HTTP API and the CLI's `--json` output.
//!
//! Owns: field names, which are a contract with scripts. Must not: contain logic beyond
//! converting service values into these shapes.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::corpus::SourceKind;
use crate::service::{CheckedItem, Coverage, DuplicateCluster, IngestReport, StoryHit};
use crate::store::{StoredDigest, StoredStory};

fn rfc3339(t: Option<OffsetDateTime>) -> Option<String> {
    t.and_then(|t| t.format(&Rfc3339).ok())
}

/// One story in a list of results.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Hit {
    pub id: String,
    /// The ranking score: the cosine in `vector` mode, BM25 in `lexical` mode, and in
    /// `hybrid` mode the fused score: each ranking's score scaled by its spread over the
    /// candidates (about 0 to 1 each, above 1 for a clear outlier), weighted and summed,
    /// then divided by the sum of the weights. Results are sorted by it, except that in
    /// `vector` mode each source kind's level for the query is taken off first (digest
    /// items and archive episodes score on different scales), so an item may sit above
    /// an episode whose cosine is a little higher.
    pub score: f32,
    /// Cosine similarity between the query and the story's best-matching window (null in
    /// `lexical` mode).
    pub cosine: Option<f32>,
    /// BM25 of the query's terms in the story (null when no term matched).
    pub bm25: Option<f32>,
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
            cosine: h.cosine,
            bm25: h.bm25,
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
    /// The ranking used: `vector`, `lexical` or `hybrid`.
    pub mode: String,
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

/// The OpenAPI schema of a `since`/`until` day: a `YYYY-MM-DD` date or empty (no
/// bound), and in a JSON body also null.
pub(crate) fn day_schema(nullable: bool) -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
    let mut any = AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(0)),
        );
    if nullable {
        any = any.item(ObjectBuilder::new().schema_type(Type::Null));
    }
    any.description(Some("A day, `YYYY-MM-DD`; empty means no bound"))
        .build()
        .into()
}

pub(crate) fn day_param_schema() -> utoipa::openapi::schema::Schema {
    day_schema(false)
}

fn day_body_schema() -> utoipa::openapi::schema::Schema {
    day_schema(true)
}

/// Body of `POST /v1/search`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Chinese or English text, 1 to 2,000 characters, not all blank.
    #[schema(min_length = 1, max_length = 2000, pattern = r"\S")]
    pub query: String,
    /// How many stories to return, 1 to 100 (default 10).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub k: Option<usize>,
    /// Only stories published on or after this day (`YYYY-MM-DD`).
    #[serde(default)]
    #[schema(schema_with = day_body_schema)]
    pub since: Option<String>,
    /// Only stories published on or before this day (`YYYY-MM-DD`); not before `since`.
    #[serde(default)]
    #[schema(schema_with = day_body_schema)]
    pub until: Option<String>,
    /// `hybrid` (default: vectors and exact terms fused), `vector` or `lexical`; any
    /// case, and empty means the default. A plain string, not an enum, in this document:
    /// the server reads it leniently, and an enum would call `HYBRID` invalid.
    #[serde(default)]
    pub mode: Option<String>,
}

/// `GET /health`: `status` is `ok` once the model and index are loaded, `starting` before.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    pub status: String,
    /// Stories in the store (0 while starting).
    pub stories: usize,
    /// Id of the loaded model; null while starting.
    pub model: Option<String>,
    /// Where the model runs: device, precision, engine; null while starting.
    pub encoder: Option<crate::embed::DeviceInfo>,
}

/// One story of a digest that was just ingested.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedItem {
    pub id: String,
    pub title: String,
    /// Earlier stories from other digests reporting the same event, best first (found
    /// before this digest was stored).
    pub previous_coverage: Vec<CoverageView>,
}

/// `POST /v1/digests`: what ingesting one digest did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DigestCreated {
    /// Id of the digest (the same each time the same digest is posted).
    pub digest: String,
    /// Ids of its stories, in digest order.
    pub stories: Vec<String>,
    /// The same stories with their titles, in digest order.
    pub items: Vec<CreatedItem>,
    pub new: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Stories stored for this digest before that it no longer contains.
    pub removed: usize,
}

/// A member of a duplicate cluster.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterStory {
    pub id: String,
    pub title: String,
    pub url: Option<String>,
    pub published: Option<String>,
    pub digest: String,
    /// Cosine similarity to the cluster centroid.
    pub score: f32,
}

/// Stories of different digests that report the same event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterView {
    pub id: String,
    /// The most representative headline (the member closest to the centroid).
    pub title: String,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub stories: Vec<ClusterStory>,
}

impl From<DuplicateCluster> for ClusterView {
    fn from(c: DuplicateCluster) -> Self {
        Self {
            id: c.id,
            title: c.title,
            first_seen: rfc3339(c.first_seen),
            last_seen: rfc3339(c.last_seen),
            stories: c
                .stories
                .into_iter()
                .map(|(s, score)| ClusterStory {
                    id: s.id,
                    title: s.headline,
                    url: s.url,
                    published: rfc3339(s.published),
                    digest: s.digest_id,
                    score,
                })
                .collect(),
        }
    }
}

/// `GET /v1/duplicates`: clusters, newest `last_seen` first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DuplicatesResponse {
    pub clusters: Vec<ClusterView>,
}

/// `GET /v1/stories/{id}/duplicates`: the other stories of the story's cluster.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoryDuplicatesResponse {
    pub story: String,
    /// Id of the story's cluster (as `GET /v1/duplicates` without dates names it), or
    /// null when no other digest reported the same event.
    pub cluster: Option<String>,
    /// The cluster's other members, closest to its centroid first; empty when none.
    pub duplicates: Vec<ClusterStory>,
}

impl StoryDuplicatesResponse {
    pub fn new(story: String, cluster: Option<DuplicateCluster>) -> Self {
        let Some(cluster) = cluster.map(ClusterView::from) else {
            return Self {
                story,
                cluster: None,
                duplicates: Vec::new(),
            };
        };
        let duplicates = cluster
            .stories
            .into_iter()
            .filter(|s| s.id != story)
            .collect();
        Self {
            story,
            cluster: Some(cluster.id),
            duplicates,
        }
    }
}

/// An earlier story that already reported the same event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CoverageView {
    pub id: String,
    pub title: String,
    pub url: Option<String>,
    pub published: Option<String>,
    pub digest: String,
    /// Pair score: cosine, raised for the same link, lowered for a long time gap; across
    /// languages also the shared names and the margin over other events.
    pub score: f32,
    /// The calibrated probability (0..1) that the two report the same event, fitted on
    /// the labelled tuning sets (docs/quality.md).
    pub confidence: f32,
    /// Why it counts as the same event (for a `nearest` story: how far it fell short).
    pub reason: MatchReasonView,
}

/// The evidence behind a coverage match.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MatchReasonView {
    /// Cosine of the two stories' vectors.
    pub cosine: f32,
    /// Both link to the same source.
    pub same_link: bool,
    /// Days between the two publications (null when either is undated).
    pub days_apart: Option<f32>,
    /// The checked item's language, then the stored story's: `zh-zh`, `en-zh`,
    /// `zh-en` or `en-en`.
    pub languages: String,
    /// The threshold of that language pair, which `score` reached (for a `nearest`
    /// story: fell short of).
    pub threshold: f32,
    /// Across languages: the share of the checked text's names and numbers (weighted by
    /// rarity) that the stored story also has; it adds to `score`. Null otherwise.
    pub term_overlap: Option<f32>,
    /// Across languages, when the checked item's headline names anything (words with
    /// digits or capitals, `Gemini`, `GPT-5`, `2026`): the share of those names the stored
    /// story has. It adds to `score` (centred on one half). Null otherwise.
    pub headline_names: Option<f32>,
    /// Across languages: the share of the checked text's dictionary-translated words
    /// (CC-CEDICT; weighted by rarity and one over their senses) that the stored story
    /// holds in its own language; it adds to `score`. Null otherwise.
    pub translated_overlap: Option<f32>,
    /// Across languages: how far the stored story's score stands above the best
    /// candidate of another event (another duplicate cluster) in its language, within
    /// ±0.1; the model's `cross_language_margin_weight` of it (0.5 for e5-small) adds to
    /// `score`, so a story that merely shares a topic with several others counts less.
    /// Null otherwise.
    pub margin: Option<f32>,
    /// The same in one sentence.
    pub summary: String,
}

impl From<Coverage> for CoverageView {
    fn from(c: Coverage) -> Self {
        let summary = c.reason.describe();
        Self {
            id: c.story.id,
            title: c.story.headline,
            url: c.story.url,
            published: rfc3339(c.story.published),
            digest: c.story.digest_id,
            score: c.score,
            confidence: c.confidence,
            reason: MatchReasonView {
                cosine: c.reason.cosine,
                same_link: c.reason.same_link,
                days_apart: c.reason.days_apart,
                languages: c.reason.languages,
                threshold: c.reason.threshold,
                term_overlap: c.reason.term_overlap,
                headline_names: c.reason.headline_names,
                translated_overlap: c.reason.translated_overlap,
                margin: c.reason.margin,
                summary,
            },
        }
    }
}

/// One item of a checked or posted digest, with where it was covered before.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckedItemView {
    pub id: String,
    pub position: u32,
    pub title: String,
    pub url: Option<String>,
    /// Earlier stories from other digests reporting the same event, best first.
    pub previous_coverage: Vec<CoverageView>,
    /// When `previous_coverage` is empty: the earlier story that came closest to its
    /// threshold (its `score` is below `reason.threshold`), for an editor to judge a near
    /// miss. Not counted as coverage. Null when there was no candidate at all.
    pub nearest: Option<CoverageView>,
    /// `covered` (an earlier story reached its threshold), `check` (none did, but the
    /// nearest is likely the same event: an editor should compare the two) or `new`.
    pub verdict: String,
}

impl From<CheckedItem> for CheckedItemView {
    fn from(c: CheckedItem) -> Self {
        Self {
            id: c.story.id,
            position: c.story.position,
            title: c.story.headline,
            url: c.story.url,
            previous_coverage: c.previous_coverage.into_iter().map(Into::into).collect(),
            nearest: c.nearest.map(Into::into),
            verdict: c.verdict.as_str().to_owned(),
        }
    }
}

/// `POST /v1/check`: a draft digest's items and where each was covered before.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckResponse {
    /// Id the digest would have if it were posted (nothing was stored).
    pub digest: String,
    pub items: Vec<CheckedItemView>,
}
