//! Duplicate coverage use-cases: clusters across digests, one story's duplicates, and
//! "was this already covered?" for a draft digest.
//!
//! Owns: turning stored stories into [`cluster::Item`]s, caching clusters per store
//! generation, the draft check, and the checked ingest (previous coverage computed
//! before the digest is stored). Must not: change what is stored, except through the
//! ingest in `service`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Instant;

use time::OffsetDateTime;

use super::{IngestReport, Service, ServiceError};
use crate::cluster::{self, canonical_url, pair_score, Item, Params};
use crate::corpus::{self, ParsedFile, Story};
use crate::domain::{DateRange, Invalid};
use crate::embed::Window;
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
    /// Pair score (cosine adjusted for same link and time gap, plus the cross-language
    /// signals of [`MatchReason`]).
    pub score: f32,
    /// What the score is made of: why it counts as the same event, or, for a
    /// [`CheckedItem::nearest`], how far it fell short.
    pub reason: MatchReason,
}

/// The evidence behind a [`Coverage`]: what the score is made of and what it had to reach.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchReason {
    /// Cosine of the two stories' vectors.
    pub cosine: f32,
    /// Both link to the same source (after dropping scheme, `www.`, query and fragment).
    pub same_link: bool,
    /// Days between the two publications, when both are dated.
    pub days_apart: Option<f32>,
    /// `zh-zh`, `en-zh`, `zh-en` or `en-en`: the draft's language, then the story's.
    pub languages: String,
    /// The threshold of that language pair, which `score` reached (or, for a
    /// [`CheckedItem::nearest`], fell short of).
    pub threshold: f32,
    /// For a cross-language pair: the IDF-weighted share of the English text's names and
    /// numbers that the other story also has (part of the score).
    pub term_overlap: Option<f32>,
    /// For a cross-language pair whose English headline names anything: the share of
    /// those names the other story has (part of the score, centred on one half).
    pub headline_names: Option<f32>,
    /// For a cross-language pair: how far the story's pair score stands above the best
    /// candidate of another event in the story's language (negative when another event
    /// scores higher; within ±0.1; part of the score).
    pub margin: Option<f32>,
}

impl MatchReason {
    /// One line for people: `en-zh 0.861 >= 0.84, cosine 0.861, other link, 0.3 days apart`.
    pub fn describe(&self) -> String {
        let link = if self.same_link {
            "same link"
        } else {
            "other link"
        };
        let days = self
            .days_apart
            .map_or(String::new(), |d| format!(", {d:.1} days apart"));
        let terms = self.term_overlap.map_or(String::new(), |o| {
            format!(", {:.0}% of names shared", o * 100.0)
        });
        let names = self.headline_names.map_or(String::new(), |o| {
            format!(", {:.0}% of headline names found", o * 100.0)
        });
        let margin = self.margin.map_or(String::new(), |m| {
            format!(", {m:+.3} against the best other event")
        });
        format!(
            "{} threshold {:.3}, cosine {:.3}{terms}{names}{margin}, {link}{days}",
            self.languages, self.threshold, self.cosine
        )
    }
}

/// One item of a checked draft and where it was covered before.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedItem {
    pub story: Story,
    pub previous_coverage: Vec<Coverage>,
    /// When no earlier story reached its threshold: the one that came closest (highest
    /// score less threshold), with why it did not count. Not coverage: it lets an editor
    /// judge a near miss, which the cross-language check cannot always tell apart.
    pub nearest: Option<Coverage>,
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
/// The most a story's margin over other events can count: past it a story stands alone
/// (covered posts in the labelled sets stood at most 0.096 above the rest). Without a cap
/// an undated story among candidates that the time gap pushes far down (an episode beside
/// stories months older than the draft) would count as a certain match.
const MAX_MARGIN: f32 = 0.1;

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
                let centroid =
                    crate::embed::mean_unit_vector(members.iter().map(|(_, v)| v.as_slice()));
                let scored = members
                    .into_iter()
                    .map(|(story, v)| {
                        let score = cluster::dot(&v, &centroid);
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
        let centroid = crate::embed::mean_unit_vector(
            ids.iter()
                .filter_map(|id| vectors.get(id))
                .map(Vec::as_slice),
        );
        Ok(ids
            .iter()
            .filter_map(|id| {
                vectors
                    .get(id)
                    .map(|v| (id.clone(), cluster::dot(v, &centroid)))
            })
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

    /// For each item of a draft digest (not stored), the earlier stories of other digests
    /// that report the same event, best first.
    pub fn check_text(&self, source: &str, text: &str) -> Result<Vec<CheckedItem>, ServiceError> {
        let parsed = corpus::parse_str(source, text)?;
        let texts: Vec<&str> = parsed.stories.iter().map(|s| s.text.as_str()).collect();
        let windows = self.encoder.embed_passages(&texts)?;
        self.check_embedded(parsed.stories, windows)
    }

    /// [`Service::check_text`] for stories already embedded elsewhere (the HTTP server
    /// embeds on its own queue): `windows[i]` are the windows of `stories[i]`.
    pub fn check_embedded(
        &self,
        stories: Vec<Story>,
        windows: Vec<Vec<Window>>,
    ) -> Result<Vec<CheckedItem>, ServiceError> {
        debug_assert_eq!(stories.len(), windows.len(), "one window list per story");
        let mut out = Vec::with_capacity(stories.len());
        for (story, windows) in stories.into_iter().zip(windows) {
            let vector =
                crate::embed::mean_unit_vector(windows.iter().map(|w| w.vector.as_slice()));
            let (previous_coverage, nearest) = self.coverage_and_nearest(&story, &vector)?;
            out.push(CheckedItem {
                story,
                previous_coverage,
                nearest,
            });
        }
        Ok(out)
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
            let unchanged = stored.get(&story.id) == Some(&super::content_hash(&model, story));
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
        for chunk in to_embed.chunks(super::COMMIT_EVERY) {
            let texts: Vec<&str> = chunk.iter().map(|s| s.text.as_str()).collect();
            let windows = self.encoder.embed_passages(&texts)?;
            for (story, windows) in chunk.iter().zip(windows) {
                let vector =
                    crate::embed::mean_unit_vector(windows.iter().map(|w| w.vector.as_slice()));
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

    /// Stored stories of other digests that could have covered `story` already (published
    /// before it or within the digest period after it, [`could_have_covered`]), whose pair
    /// score against it reaches the threshold of their language pair.
    pub(crate) fn previous_coverage(
        &self,
        story: &Story,
        vector: &[f32],
    ) -> Result<Vec<Coverage>, ServiceError> {
        Ok(self.coverage_and_nearest(story, vector)?.0)
    }

    /// [`Service::previous_coverage`], and when it is empty the candidate that came
    /// closest to its threshold.
    fn coverage_and_nearest(
        &self,
        story: &Story,
        vector: &[f32],
    ) -> Result<(Vec<Coverage>, Option<Coverage>), ServiceError> {
        let params = self.params(None)?;
        let draft_language = crate::lexical::language(&story.text);
        let draft = item(
            &story.digest_id,
            story.published,
            story.url.as_deref(),
            vector.to_vec(),
        );
        let candidates = self.best_windows(&[vector.to_vec()], CHECK_CANDIDATES, |m| {
            *m.digest_id != *story.digest_id
        })?;
        // Names and numbers of the draft, for pairs across languages.
        let latin = crate::lexical::latin_terms(&story.text);
        let names = crate::lexical::headline_names(&story.headline);
        let (stories, df) = if self.tuning.cross_language_term_weight > 0.0 {
            self.store.document_frequencies(&latin)?
        } else {
            (0, HashMap::new())
        };
        // First every candidate that could be earlier coverage, with its pair score.
        struct Candidate {
            story: StoredStory,
            item: Item,
            cosine: f32,
            score: f32,
            language: &'static str,
        }
        let mut eligible: Vec<Candidate> = Vec::new();
        for hit in candidates {
            let Some(other) = self.store.story(&hit.meta.story_id)? else {
                continue;
            };
            if !could_have_covered(other.published, story.published) {
                continue;
            }
            let Some(other_vector) = self
                .store
                .story_vectors_of(&[other.id.as_str()])?
                .remove(&other.id)
            else {
                continue;
            };
            let other_item = item(
                &other.digest_id,
                other.published,
                other.url.as_deref(),
                other_vector,
            );
            let cosine = cluster::dot(&draft.vector, &other_item.vector);
            let score = pair_score(&draft, &other_item, cosine, &params);
            let language = crate::lexical::language(&other.text);
            eligible.push(Candidate {
                story: other,
                item: other_item,
                cosine,
                score,
                language,
            });
        }
        // Then how far each stands above the best candidate of another event in its own
        // language (pair scores within a language run higher than across): stories of
        // one stored duplicate cluster are one event.
        let weigh_margin = self.tuning.cross_language_margin_weight > 0.0
            && eligible.iter().any(|c| c.language != draft_language);
        let clusters = if weigh_margin {
            let ids: Vec<&str> = eligible.iter().map(|c| c.story.id.as_str()).collect();
            self.store.cluster_ids_of(&ids)?
        } else {
            HashMap::new()
        };
        let margins = if weigh_margin {
            let events: Vec<(&str, &str)> = eligible
                .iter()
                .map(|c| {
                    let event = clusters.get(&c.story.id).unwrap_or(&c.story.id);
                    (c.language, event.as_str())
                })
                .collect();
            let scores: Vec<f32> = eligible.iter().map(|c| c.score).collect();
            margins(&scores, &events)
        } else {
            Vec::new()
        };
        let mut found = Vec::new();
        let mut nearest: Option<Coverage> = None;
        for (i, candidate) in eligible.into_iter().enumerate() {
            let other_language = candidate.language;
            let threshold = self.tuning.threshold(draft_language, other_language);
            let cross = draft_language != other_language;
            let weigh_terms = self.tuning.cross_language_term_weight > 0.0;
            // Fitted on English headlines (a Chinese one names little in Latin letters).
            let weigh_names =
                self.tuning.cross_language_name_weight > 0.0 && draft_language == "en";
            let (term_overlap, headline_names) = if cross && (weigh_terms || weigh_names) {
                let other_terms: HashSet<String> =
                    crate::lexical::index_terms(&candidate.story.text)
                        .into_iter()
                        .collect();
                let overlap = weigh_terms
                    .then(|| crate::lexical::term_overlap(&latin, &other_terms, stories, &df));
                let found = if weigh_names {
                    crate::lexical::names_found(&names, &other_terms)
                } else {
                    None
                };
                (overlap, found)
            } else {
                (None, None)
            };
            let margin = (cross && weigh_margin).then(|| margins[i]);
            let score = candidate.score
                + cross_language_bonus(&self.tuning, term_overlap, headline_names, margin);
            let closer = |n: &Coverage| score - threshold > n.score - n.reason.threshold;
            if score >= threshold || nearest.as_ref().is_none_or(closer) {
                let reason = MatchReason {
                    cosine: candidate.cosine,
                    same_link: draft.url.is_some() && draft.url == candidate.item.url,
                    days_apart: draft
                        .time
                        .zip(candidate.item.time)
                        .map(|(a, b)| (a - b).abs() as f32 / 86_400.0),
                    languages: format!("{draft_language}-{other_language}"),
                    threshold,
                    term_overlap,
                    headline_names,
                    margin,
                };
                let coverage = Coverage {
                    story: candidate.story,
                    score,
                    reason,
                };
                if score >= threshold {
                    found.push(coverage);
                } else {
                    nearest = Some(coverage);
                }
            }
        }
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        found.truncate(MAX_COVERAGE);
        let nearest = if found.is_empty() { nearest } else { None };
        Ok((found, nearest))
    }
}

/// How far each candidate's score stands above the best candidate of another event in
/// the same language (`events[i]`: the candidate's language and its duplicate cluster, or
/// its own id), within ±[`MAX_MARGIN`]; 0 when no other event is a candidate.
fn margins(scores: &[f32], events: &[(&str, &str)]) -> Vec<f32> {
    scores
        .iter()
        .zip(events)
        .map(|(score, (language, event))| {
            scores
                .iter()
                .zip(events)
                .filter(|(_, (l, e))| l == language && e != event)
                .map(|(other, _)| score - other)
                .reduce(f32::min)
                .map_or(0.0, |m| m.clamp(-MAX_MARGIN, MAX_MARGIN))
        })
        .collect()
}

/// How long after a draft a stored story may be published and still count as earlier
/// coverage: a digest ("过去4小时全球AI发生了什么？") reports the sources of the four hours
/// before its own time, so an English post from 11:20 was covered by the 12:00 digest. A
/// quarter of an hour short of four hours, because digests go out a few seconds or
/// minutes late (12:00:56, 16:00:09): the next digest, four hours on, must not count (a
/// backfill must not call the later of two repeats the earlier one's coverage).
pub(crate) const COVERAGE_LEAD: time::Duration = time::Duration::minutes(4 * 60 - 15);

/// Whether a story published at `other` can be earlier coverage of a draft published at
/// `draft`: published before the draft, or within [`COVERAGE_LEAD`] after it. Undated
/// either side: yes.
pub(crate) fn could_have_covered(
    other: Option<OffsetDateTime>,
    draft: Option<OffsetDateTime>,
) -> bool {
    match (other, draft) {
        // A draft dated at the end of time has no "after": every earlier story counts.
        (Some(o), Some(d)) => d.checked_add(COVERAGE_LEAD).is_none_or(|limit| o < limit),
        _ => true,
    }
}

/// What the shared names add to an English-Chinese pair score: the weighted term
/// overlap, plus the weighted share of headline names found less one half (a headline
/// without names adds nothing either way), plus the weighted margin over the best
/// candidate of another event.
pub(crate) fn cross_language_bonus(
    tuning: &crate::service::Tuning,
    term_overlap: Option<f32>,
    headline_names: Option<f32>,
    margin: Option<f32>,
) -> f32 {
    term_overlap.map_or(0.0, |o| tuning.cross_language_term_weight * o)
        + headline_names.map_or(0.0, |f| tuning.cross_language_name_weight * (f - 0.5))
        + margin.map_or(0.0, |m| tuning.cross_language_margin_weight * m)
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
    fn a_story_stands_out_only_against_other_events() {
        // Two stories of one cluster (the same event reported twice) do not compete.
        let zh = |event| ("zh", event);
        let m = margins(
            &[0.90, 0.89, 0.85, 0.84],
            &[zh("c1"), zh("c1"), zh("b"), zh("a")],
        );
        assert!((m[0] - 0.05).abs() < 1e-6, "{m:?}");
        assert!((m[1] - 0.04).abs() < 1e-6, "{m:?}");
        // Below the best other event: negative.
        assert!((m[2] + 0.05).abs() < 1e-6, "{m:?}");
        // A lone candidate, and margins past the cap either way.
        assert_eq!(margins(&[0.9], &[zh("a")]), vec![0.0]);
        let m = margins(&[0.9, -2.0], &[zh("a"), zh("b")]);
        assert_eq!(m, vec![MAX_MARGIN, -MAX_MARGIN]);
        // A story in another language is no rival: its scores run on another scale.
        assert_eq!(
            margins(&[0.85, 0.95], &[zh("a"), ("en", "b")]),
            vec![0.0, 0.0]
        );
    }

    #[test]
    fn a_digest_covers_the_sources_of_the_four_hours_before_it() {
        let at = |t: &str| {
            Some(OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap())
        };
        let post = at("2026-01-06T11:20:00+08:00");
        // The 12:00 digest reported an 11:20 post; so did any digest before it.
        assert!(could_have_covered(at("2026-01-06T12:00:00+08:00"), post));
        assert!(could_have_covered(at("2026-01-05T12:00:00+08:00"), post));
        assert!(could_have_covered(at("2026-01-06T15:04:59+08:00"), post));
        // Four hours on is the next digest's period, not this post's coverage, even when
        // the digests went out a little late.
        let digest = at("2026-01-06T12:00:56+08:00");
        assert!(!could_have_covered(at("2026-01-06T16:00:09+08:00"), digest));
        assert!(!could_have_covered(at("2026-01-06T15:20:00+08:00"), post));
        // A draft at the end of time: no overflow, earlier stories count.
        let last = at("9999-12-31T22:00:00+08:00");
        assert!(could_have_covered(at("2026-01-06T12:00:00+08:00"), last));
        assert!(!could_have_covered(at("2026-01-07T00:00:00+08:00"), post));
        assert!(could_have_covered(None, post));
        assert!(could_have_covered(at("2026-01-07T00:00:00+08:00"), None));
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
        assert_eq!(service.store().story_count().unwrap(), 3);
    }
}
