//! Duplicate coverage: same-event clusters across digests, and one story's duplicates.
//!
//! Owns: which clustering a request gets, and turning stored stories into
//! [`cluster::Item`]s. With the model's calibrated threshold (the default) the clusters
//! are the ones kept up to date at ingest by online assignment ([`crate::cluster`]
//! through the store); any other `min_score` clusters the stories of the range afresh
//! with average linkage ([`cluster::cluster`]), cached per store generation. Must not:
//! change what is stored.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

use super::{Service, ServiceError};
use crate::cluster::{self, canonical_url, Item, Params};
use crate::domain::{DateRange, ErrorCode, Invalid};
use crate::store::{StoreError, StoredStory, StoryVector};
use crate::vector::{dot, mean_unit_vector};

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

impl Service {
    pub(super) fn params(&self, min_score: Option<f32>) -> Result<Params, ServiceError> {
        if let Some(s) = min_score {
            if !(0.0..=1.0).contains(&s) || s.is_nan() {
                return Err(Invalid::new(
                    ErrorCode::InvalidMinScore,
                    format!("min_score must be between 0 and 1, got {s}"),
                )
                .into());
            }
        }
        Ok(Params::with_threshold(
            min_score.unwrap_or(self.tuning.duplicate),
        ))
    }

    /// Same-event clusters among stories published in `range`, newest `last_seen` first:
    /// each cluster with two or more members in the range, with those members.
    ///
    /// With the model's threshold (the default) this reads the clusters stored at
    /// ingest; another `min_score` clusters the range afresh (slower, cached per store
    /// generation).
    pub fn duplicates(
        &self,
        range: DateRange,
        min_score: Option<f32>,
    ) -> Result<Vec<DuplicateCluster>, ServiceError> {
        let params = self.params(min_score)?;
        let mut out = Vec::new();
        if params == self.cluster_params() {
            for (_, members) in self.store.clusters_in_range(range)? {
                let centroid = mean_unit_vector(members.iter().map(|(_, v)| v.as_slice()));
                let scored = members
                    .into_iter()
                    .map(|(story, v)| {
                        let score = dot(&v, &centroid);
                        (story, score)
                    })
                    .collect();
                out.push(describe(scored));
            }
        } else {
            for group in self.cluster_ids(range, params)? {
                let members = self.members(&group)?;
                if members.len() >= 2 {
                    out.push(describe(members));
                }
            }
        }
        out.sort_by(|a, b| {
            super::timestamp(b.last_seen)
                .cmp(&super::timestamp(a.last_seen))
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// The stored cluster a story belongs to, if it has other members (all its members,
    /// the story included).
    pub fn story_duplicates(&self, id: &str) -> Result<Option<DuplicateCluster>, ServiceError> {
        let Some((_, ids)) = self.store.cluster_of_story(id)? else {
            return Err(ServiceError::NotFound {
                what: "story",
                id: id.to_owned(),
            });
        };
        if ids.len() < 2 {
            return Ok(None);
        }
        let group = self.centroid_scores(&ids)?;
        Ok(Some(describe(self.members(&group)?)))
    }

    /// Each member's cosine to the normalised mean of the members' story vectors.
    fn centroid_scores(&self, ids: &[String]) -> Result<Vec<(String, f32)>, ServiceError> {
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let vectors = self.store.story_vectors_of(&refs)?;
        let centroid = mean_unit_vector(
            ids.iter()
                .filter_map(|id| vectors.get(id))
                .map(Vec::as_slice),
        );
        Ok(ids
            .iter()
            .filter_map(|id| vectors.get(id).map(|v| (id.clone(), dot(v, &centroid))))
            .collect())
    }

    /// The stored stories of a cluster with their centroid scores (a story deleted since
    /// the clusters were cached is left out).
    fn members(&self, group: &[(String, f32)]) -> Result<Vec<(StoredStory, f32)>, ServiceError> {
        let ids: Vec<&str> = group.iter().map(|(id, _)| id.as_str()).collect();
        let scores: HashMap<&str, f32> = group.iter().map(|(id, s)| (id.as_str(), *s)).collect();
        Ok(self
            .store
            .stories(&ids)?
            .into_iter()
            .map(|s| {
                let score = scores.get(s.id.as_str()).copied().unwrap_or(0.0);
                (s, score)
            })
            .collect())
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
}

pub(crate) fn to_item(s: &StoryVector) -> Item {
    item(
        &s.digest_id,
        s.published,
        s.url.as_deref(),
        s.vector.clone(),
    )
}

/// A story as clustering sees it: its digest, time, canonical link and vector.
pub(crate) fn item(
    digest: &str,
    published: Option<OffsetDateTime>,
    url: Option<&str>,
    vector: Vec<f32>,
) -> Item {
    Item {
        digest: digest.to_owned(),
        time: published.map(|t| t.unix_timestamp()),
        url: url.map(canonical_url),
        vector,
    }
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
