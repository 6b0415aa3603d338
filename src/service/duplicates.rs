//! Duplicate coverage use-cases: clusters across digests, one story's duplicates, and
//! "was this already covered?" for a draft digest.
//!
//! Owns: turning stored stories into [`cluster::Item`]s, caching clusters per store
//! generation, and the draft check. Must not: change what is stored.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

use super::{Service, ServiceError};
use crate::cluster::{self, canonical_url, pair_score, Item, Params};
use crate::corpus::{self, Story};
use crate::domain::{DateRange, Invalid};
use crate::store::{StoreError, StoredStory, StoryVector};

/// A same-event cluster ready for display.
#[derive(Debug, Clone, PartialEq)]
pub struct DuplicateCluster {
    /// Stable while the cluster keeps its earliest story: `dup-<earliest story id>`.
    pub id: String,
    /// Headline of the member closest to the cluster centroid.
    pub title: String,
    pub first_seen: Option<OffsetDateTime>,
    pub last_seen: Option<OffsetDateTime>,
    /// Members with their cosine to the cluster centroid, best first.
    pub stories: Vec<(StoredStory, f32)>,
}

/// An earlier story that already covered a draft item.
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    pub story: StoredStory,
    /// Pair score (cosine adjusted for same link and time gap).
    pub score: f32,
}

/// One item of a checked draft and where it was covered before.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedItem {
    pub story: Story,
    pub previous_coverage: Vec<Coverage>,
}

/// Clusters computed for one store generation and one set of knobs.
#[derive(Default)]
pub(crate) struct ClusterCache {
    entry: Mutex<Option<CacheEntry>>,
}

struct CacheEntry {
    generation: i64,
    params: Params,
    range: DateRange,
    clusters: Vec<Vec<(String, f32)>>,
}

/// Stories compared per draft item: the nearest windows in the index.
const CHECK_CANDIDATES: usize = 40;
/// At most this many earlier stories are listed per draft item.
const MAX_COVERAGE: usize = 10;

impl Service {
    fn params(&self, min_score: Option<f32>) -> Result<Params, ServiceError> {
        if let Some(s) = min_score {
            if !(0.0..=1.0).contains(&s) || s.is_nan() {
                return Err(Invalid::new(
                    "invalid_min_score",
                    format!("min_score must be between 0 and 1, got {s}"),
                )
                .into());
            }
        }
        Ok(Params::with_threshold(
            min_score.unwrap_or(self.duplicate_threshold),
        ))
    }

    /// Same-event clusters among stories published in `range`, newest `last_seen` first.
    pub fn duplicates(
        &self,
        range: DateRange,
        min_score: Option<f32>,
    ) -> Result<Vec<DuplicateCluster>, ServiceError> {
        let params = self.params(min_score)?;
        let groups = self.cluster_ids(range, params)?;
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            let ids: Vec<&str> = group.iter().map(|(id, _)| id.as_str()).collect();
            let stories = self.store.stories(&ids)?;
            let scores: HashMap<&str, f32> =
                group.iter().map(|(id, s)| (id.as_str(), *s)).collect();
            let members: Vec<(StoredStory, f32)> = stories
                .into_iter()
                .map(|s| {
                    let score = scores.get(s.id.as_str()).copied().unwrap_or(0.0);
                    (s, score)
                })
                .collect();
            if members.len() >= 2 {
                out.push(describe(members));
            }
        }
        out.sort_by(|a, b| {
            super::timestamp(b.last_seen)
                .cmp(&super::timestamp(a.last_seen))
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// The cluster a stored story belongs to, if any (other members only).
    pub fn story_duplicates(&self, id: &str) -> Result<Option<DuplicateCluster>, ServiceError> {
        // 404 for unknown ids rather than "no duplicates".
        self.story(id)?;
        let params = self.params(None)?;
        let groups = self.cluster_ids(DateRange::ALL, params)?;
        let Some(group) = groups.into_iter().find(|g| g.iter().any(|(s, _)| s == id)) else {
            return Ok(None);
        };
        let ids: Vec<&str> = group.iter().map(|(id, _)| id.as_str()).collect();
        let scores: HashMap<&str, f32> = group.iter().map(|(id, s)| (id.as_str(), *s)).collect();
        let members = self
            .store
            .stories(&ids)?
            .into_iter()
            .map(|s| {
                let score = scores.get(s.id.as_str()).copied().unwrap_or(0.0);
                (s, score)
            })
            .collect();
        Ok(Some(describe(members)))
    }

    /// Clusters as story ids with centroid scores, cached per store generation.
    fn cluster_ids(
        &self,
        range: DateRange,
        params: Params,
    ) -> Result<Vec<Vec<(String, f32)>>, ServiceError> {
        let generation = self.store.generation()?;
        let mut cache = self
            .clusters
            .entry
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = cache.as_ref() {
            if hit.generation == generation && hit.params == params && hit.range == range {
                return Ok(hit.clusters.clone());
            }
        }
        let stories: Vec<StoryVector> = self
            .store
            .story_vectors()?
            .into_iter()
            .filter(|s| range.contains_day(s.day))
            .collect();
        let items: Vec<Item> = stories.iter().map(to_item).collect();
        let neighbors = cluster::knn(&items, params.neighbors).map_err(StoreError::Index)?;
        let clusters: Vec<Vec<(String, f32)>> = cluster::cluster(&items, &neighbors, &params)
            .into_iter()
            .map(|c| {
                c.members
                    .into_iter()
                    .map(|(i, score)| (stories[i].id.clone(), score))
                    .collect()
            })
            .collect();
        *cache = Some(CacheEntry {
            generation,
            params,
            range,
            clusters: clusters.clone(),
        });
        Ok(clusters)
    }

    /// For each item of a draft digest (not stored), the earlier stories of other digests
    /// that report the same event, best first.
    pub fn check_text(&self, source: &str, text: &str) -> Result<Vec<CheckedItem>, ServiceError> {
        let parsed = corpus::parse_str(source, text)?;
        let texts: Vec<&str> = parsed.stories.iter().map(|s| s.text.as_str()).collect();
        let windows = self.encoder.embed_passages(&texts)?;
        let mut out = Vec::with_capacity(parsed.stories.len());
        for (story, windows) in parsed.stories.into_iter().zip(windows) {
            let vector = mean_vector(windows.iter().map(|w| w.vector.as_slice()));
            let previous_coverage = self.previous_coverage(&story, &vector)?;
            out.push(CheckedItem {
                story,
                previous_coverage,
            });
        }
        Ok(out)
    }

    /// Stored stories of other digests, published no later than `story`, that pass the
    /// duplicate threshold against it.
    pub(crate) fn previous_coverage(
        &self,
        story: &Story,
        vector: &[f32],
    ) -> Result<Vec<Coverage>, ServiceError> {
        let params = self.params(None)?;
        let draft = Item {
            digest: story.digest_id.clone(),
            time: story.published.map(|t| t.unix_timestamp()),
            url: story.url.as_deref().map(canonical_url),
            vector: vector.to_vec(),
        };
        let candidates = self.best_windows(&[vector.to_vec()], CHECK_CANDIDATES, |m| {
            m.digest_id != story.digest_id
        })?;
        let mut found = Vec::new();
        for hit in candidates {
            let windows = self.store.story_windows(&hit.meta.story_id)?;
            let other_vector = mean_vector(windows.iter().map(|(_, v)| v.as_slice()));
            let Some(other) = self.store.story(&hit.meta.story_id)? else {
                continue;
            };
            let later = match (other.published, story.published) {
                (Some(o), Some(d)) => o > d,
                _ => false,
            };
            if later {
                continue;
            }
            let item = Item {
                digest: other.digest_id.clone(),
                time: other.published.map(|t| t.unix_timestamp()),
                url: other.url.as_deref().map(canonical_url),
                vector: other_vector,
            };
            let score = pair_score(
                &draft,
                &item,
                cluster::dot(&draft.vector, &item.vector),
                &params,
            );
            if score >= params.threshold {
                found.push(Coverage {
                    story: other,
                    score,
                });
            }
        }
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        found.truncate(MAX_COVERAGE);
        Ok(found)
    }
}

fn to_item(s: &StoryVector) -> Item {
    Item {
        digest: s.digest_id.clone(),
        time: s.published.map(|t| t.unix_timestamp()),
        url: s.url.as_deref().map(canonical_url),
        vector: s.vector.clone(),
    }
}

/// Normalised mean of unit vectors: one vector for a multi-window story.
pub(crate) fn mean_vector<'a>(vectors: impl Iterator<Item = &'a [f32]>) -> Vec<f32> {
    let mut sum: Vec<f32> = Vec::new();
    for v in vectors {
        if sum.is_empty() {
            sum = v.to_vec();
        } else {
            sum.iter_mut().zip(v).for_each(|(a, b)| *a += b);
        }
    }
    crate::embed::normalize(&mut sum);
    sum
}

fn describe(mut members: Vec<(StoredStory, f32)>) -> DuplicateCluster {
    members.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.id.cmp(&b.0.id)));
    let title = members[0].0.headline.clone();
    let times = members.iter().filter_map(|(s, _)| s.published);
    let first_seen = times.clone().min();
    let last_seen = times.max();
    let earliest = members
        .iter()
        .min_by(|a, b| {
            super::timestamp(a.0.published)
                .cmp(&super::timestamp(b.0.published))
                .then_with(|| a.0.id.cmp(&b.0.id))
        })
        .map(|(s, _)| s.id.clone())
        .unwrap_or_default();
    DuplicateCluster {
        id: format!("dup-{earliest}"),
        title,
        first_seen,
        last_seen,
        stories: members,
    }
}
