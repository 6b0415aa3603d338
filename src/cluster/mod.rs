//! Duplicate coverage: which stories of different digests report the same event.
//!
//! Owns: the pair score (cosine, same link, time gap), candidate pairs from a kNN index
//! (never all N² pairs), and both ways of grouping stories: online assignment
//! ([`choose_cluster`]: each story, in publication order, joins the cluster it matches
//! best on average; the store keeps these clusters at ingest) and batch average-linkage
//! clustering ([`cluster`]: a set of stories grouped afresh, for a threshold other than
//! the model's). Which one a request gets is the service's choice. Pure functions over
//! vectors and metadata; must not touch the store or the model.
//!
//! Why average linkage: the model scores unrelated stories of one field high (0.85-0.93
//! for Chinese AI news), so single linkage chains A~B~C into one blob. A merge here must
//! keep the *mean* score between the two groups above the threshold, and a cluster holds
//! at most one story per digest (a digest does not repeat itself).

use std::collections::HashMap;

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::vector::{dot, normalize};

/// One story as clustering sees it.
#[derive(Debug, Clone)]
pub struct Item {
    pub digest: String,
    /// Unix seconds of publication, if known.
    pub time: Option<i64>,
    /// Canonical link (see [`canonical_url`]), if any.
    pub url: Option<String>,
    /// Unit-length story vector.
    pub vector: Vec<f32>,
}

/// The knobs of the same-event decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Pair score at and above which two stories may be the same event (per model).
    pub threshold: f32,
    /// Added when both stories link to the same source: strong evidence, never the only one.
    pub same_url_bonus: f32,
    /// Days apart that cost nothing: a digest every few hours re-covers within days.
    pub grace_days: f32,
    /// Subtracted per day beyond the grace period, so look-alike stories weeks apart
    /// (two Intel earnings, two DeepSeek releases) stay apart.
    pub penalty_per_day: f32,
    /// Neighbours asked of the index per story.
    pub neighbors: usize,
}

impl Params {
    /// Days apart beyond which no pair can reach the threshold (a cosine of 1 with the
    /// same-source bonus, less the time penalty); `None` without a penalty.
    pub fn reach_days(&self) -> Option<f32> {
        (self.penalty_per_day > 0.0).then(|| {
            self.grace_days
                + ((1.0 + self.same_url_bonus - self.threshold) / self.penalty_per_day).max(0.0)
        })
    }

    pub fn with_threshold(threshold: f32) -> Self {
        Self {
            threshold,
            same_url_bonus: 0.04,
            grace_days: 3.0,
            penalty_per_day: 0.01,
            neighbors: 16,
        }
    }
}

/// A group of two or more stories from two or more digests.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// Indices into the items, with each member's cosine to the cluster centroid,
    /// best first.
    pub members: Vec<(usize, f32)>,
    /// The member closest to the centroid: its headline names the cluster.
    pub representative: usize,
}

/// Lower-cased link without scheme, `www.`, query string, fragment or trailing slash.
pub fn canonical_url(url: &str) -> String {
    let s = url.trim();
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    let s = s.split(['?', '#']).next().unwrap_or(s);
    let s = s.strip_prefix("www.").unwrap_or(s);
    s.trim_end_matches('/').to_lowercase()
}

/// How likely two stories are the same event, on the cosine scale.
pub fn pair_score(a: &Item, b: &Item, cosine: f32, p: &Params) -> f32 {
    // Rounding can put the cosine of two identical unit vectors a hair above 1.
    let mut score = cosine.clamp(-1.0, 1.0);
    if let (Some(x), Some(y)) = (&a.url, &b.url) {
        if x == y {
            score += p.same_url_bonus;
        }
    }
    if let (Some(x), Some(y)) = (a.time, b.time) {
        let days = (x - y).abs() as f32 / 86_400.0;
        score -= (days - p.grace_days).max(0.0) * p.penalty_per_day;
    }
    score
}

/// Up to this many items, [`knn`] compares every pair: exact, and on 2 cores about as
/// fast as building a graph for so few.
const EXACT_KNN_MAX: usize = 4096;

/// Candidate neighbours of every item: every pair compared up to [`EXACT_KNN_MAX`]
/// items, else from an HNSW index over the item vectors. Returns, per item, the `k`
/// best `(other, cosine)` pairs, best first (the item itself excluded).
pub fn knn(items: &[Item], k: usize) -> Result<Vec<Vec<(usize, f32)>>, String> {
    let Some(first) = items.first() else {
        return Ok(Vec::new());
    };
    if items.len() <= EXACT_KNN_MAX {
        use rayon::prelude::*;
        let norms: Vec<f32> = items
            .iter()
            .map(|it| {
                crate::vector::dot(&it.vector, &it.vector)
                    .sqrt()
                    .max(f32::MIN_POSITIVE)
            })
            .collect();
        return Ok((0..items.len())
            .into_par_iter()
            .map(|i| {
                let mut all: Vec<(usize, f32)> = items
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(j, other)| {
                        let dot = crate::vector::dot(&items[i].vector, &other.vector);
                        (j, dot / (norms[i] * norms[j]))
                    })
                    .collect();
                all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                all.truncate(k);
                all
            })
            .collect());
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let index = Index::new(&IndexOptions {
        dimensions: first.vector.len(),
        metric: MetricKind::Cos,
        quantization: ScalarKind::F32,
        connectivity: 16,
        expansion_add: 64,
        expansion_search: 64,
        multi: false,
    })
    .map_err(|e| e.to_string())?;
    index
        .reserve_capacity_and_threads(items.len(), threads)
        .map_err(|e| e.to_string())?;
    // usearch supports concurrent adds once capacity and threads are reserved; searches
    // start only after every add has finished (the scopes below do not overlap).
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|s| -> Result<(), String> {
        let handles: Vec<_> = items
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                let index = &index;
                s.spawn(move || -> Result<(), String> {
                    for (i, item) in part.iter().enumerate() {
                        index
                            .add((c * chunk + i) as u64, &item.vector)
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| "an index thread panicked".to_owned())??;
        }
        Ok(())
    })?;
    let want = (k + 1).min(items.len());
    std::thread::scope(|s| -> Result<Vec<Vec<(usize, f32)>>, String> {
        let handles: Vec<_> = items
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                let index = &index;
                s.spawn(move || -> Result<Vec<Vec<(usize, f32)>>, String> {
                    part.iter()
                        .enumerate()
                        .map(|(i, item)| {
                            let me = c * chunk + i;
                            let found = index
                                .search(&item.vector, want)
                                .map_err(|e| e.to_string())?;
                            Ok(found
                                .keys
                                .iter()
                                .zip(&found.distances)
                                .filter(|(key, _)| **key as usize != me)
                                .map(|(key, d)| (*key as usize, 1.0 - d))
                                .collect())
                        })
                        .collect()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(items.len());
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| "a search thread panicked".to_owned())??,
            );
        }
        Ok(all)
    })
}

struct Group {
    members: Vec<usize>,
}

/// Groups items into same-event clusters from their candidate neighbours.
pub fn cluster(items: &[Item], neighbors: &[Vec<(usize, f32)>], p: &Params) -> Vec<Cluster> {
    // Candidate pairs above the threshold, each once, strongest first.
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (i, list) in neighbors.iter().enumerate() {
        for &(j, _) in list {
            if j <= i
                && neighbors
                    .get(j)
                    .is_some_and(|l| l.iter().any(|&(x, _)| x == i))
            {
                continue; // seen from j's side
            }
            let (a, b) = (&items[i], &items[j]);
            if a.digest == b.digest {
                continue;
            }
            let score = pair_score(a, b, dot(&a.vector, &b.vector), p);
            if score >= p.threshold {
                pairs.push((score, i.min(j), i.max(j)));
            }
        }
    }
    pairs.sort_by(|x, y| y.0.total_cmp(&x.0).then((x.1, x.2).cmp(&(y.1, y.2))));
    pairs.dedup_by(|x, y| x.1 == y.1 && x.2 == y.2);

    let mut group_of: HashMap<usize, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (_, i, j) in pairs {
        let gi = group_of.get(&i).copied();
        let gj = group_of.get(&j).copied();
        if gi.is_some() && gi == gj {
            continue;
        }
        let left: Vec<usize> = gi.map_or(vec![i], |g| groups[g].members.clone());
        let right: Vec<usize> = gj.map_or(vec![j], |g| groups[g].members.clone());
        if !can_merge(items, &left, &right, p) {
            continue;
        }
        let target = match (gi, gj) {
            (Some(g), _) | (None, Some(g)) => g,
            (None, None) => {
                groups.push(Group {
                    members: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let mut merged = left;
        merged.extend(right);
        if let (Some(a), Some(b)) = (gi, gj) {
            let other = if target == a { b } else { a };
            groups[other].members.clear();
        }
        for &m in &merged {
            group_of.insert(m, target);
        }
        groups[target].members = merged;
    }
    let mut out: Vec<Cluster> = groups
        .into_iter()
        .filter(|g| g.members.len() >= 2)
        .map(|g| describe(items, g.members))
        .collect();
    out.sort_by_key(|c| c.members.iter().map(|m| m.0).min());
    out
}

/// The cluster a new story joins, given the clusters of its earlier candidates: the one
/// with the highest mean pair score against all its members, if that mean reaches the
/// threshold and the cluster has no story of the new story's digest. Ties go to the
/// first option (callers pass them in a stable order). `None`: a cluster of its own.
pub fn choose_cluster(
    story: &Item,
    options: &[(String, Vec<Item>)],
    p: &Params,
) -> Option<(String, f32)> {
    let mut best: Option<(String, f32)> = None;
    for (id, members) in options {
        if members.is_empty() || members.iter().any(|m| m.digest == story.digest) {
            continue;
        }
        let mean = members
            .iter()
            .map(|m| pair_score(story, m, dot(&story.vector, &m.vector), p))
            .sum::<f32>()
            / members.len() as f32;
        if mean >= p.threshold && best.as_ref().is_none_or(|b| mean > b.1) {
            best = Some((id.clone(), mean));
        }
    }
    best
}

/// One story per digest, and the mean pair score across the two sides above threshold.
fn can_merge(items: &[Item], left: &[usize], right: &[usize], p: &Params) -> bool {
    let digests_overlap = left
        .iter()
        .any(|&a| right.iter().any(|&b| items[a].digest == items[b].digest));
    if digests_overlap {
        return false;
    }
    let mut total = 0.0;
    for &a in left {
        for &b in right {
            let (x, y) = (&items[a], &items[b]);
            total += pair_score(x, y, dot(&x.vector, &y.vector), p);
        }
    }
    total / (left.len() * right.len()) as f32 >= p.threshold
}

fn describe(items: &[Item], members: Vec<usize>) -> Cluster {
    let dim = items[members[0]].vector.len();
    let mut centroid = vec![0.0f32; dim];
    for &m in &members {
        centroid
            .iter_mut()
            .zip(&items[m].vector)
            .for_each(|(c, v)| *c += v);
    }
    normalize(&mut centroid);
    let mut scored: Vec<(usize, f32)> = members
        .into_iter()
        .map(|m| (m, dot(&items[m].vector, &centroid)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Cluster {
        representative: scored[0].0,
        members: scored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(digest: &str, day: i64, v: &[f32]) -> Item {
        let mut vector = v.to_vec();
        normalize(&mut vector);
        Item {
            digest: digest.into(),
            time: Some(day * 86_400),
            url: None,
            vector,
        }
    }

    fn exhaustive(items: &[Item]) -> Vec<Vec<(usize, f32)>> {
        (0..items.len())
            .map(|i| {
                (0..items.len())
                    .filter(|&j| j != i)
                    .map(|j| (j, dot(&items[i].vector, &items[j].vector)))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn canonical_url_ignores_scheme_www_query_and_case() {
        assert_eq!(
            canonical_url("https://www.X.com/a/status/1?s=20#top"),
            "x.com/a/status/1"
        );
        assert_eq!(canonical_url("http://x.com/a/"), "x.com/a");
    }

    #[test]
    fn same_link_raises_and_a_long_gap_lowers_the_pair_score() {
        let p = Params::with_threshold(0.9);
        let mut a = item("d1", 0, &[1.0, 0.0]);
        let mut b = item("d2", 1, &[1.0, 0.0]);
        assert_eq!(pair_score(&a, &b, 0.9, &p), 0.9);
        a.url = Some("x.com/1".into());
        b.url = Some("x.com/1".into());
        assert!((pair_score(&a, &b, 0.9, &p) - 0.94).abs() < 1e-6);
        b.time = Some(20 * 86_400);
        assert!(pair_score(&a, &b, 0.9, &p) < 0.9 - 0.1);
    }

    #[test]
    fn a_chain_of_similar_stories_does_not_merge_its_ends() {
        // a~b and b~c are close, a and c are not: average linkage keeps c out.
        let items = vec![
            item("d1", 0, &[1.0, 0.0, 0.0]),
            item("d2", 0, &[0.9, 0.43, 0.0]),
            item("d3", 0, &[0.62, 0.78, 0.0]),
        ];
        let p = Params::with_threshold(0.88);
        let clusters = cluster(&items, &exhaustive(&items), &p);
        assert_eq!(clusters.len(), 1);
        let mut ids: Vec<usize> = clusters[0].members.iter().map(|m| m.0).collect();
        ids.sort();
        assert_eq!(ids, vec![0, 1]);
    }

    #[test]
    fn a_cluster_never_holds_two_stories_of_one_digest() {
        let items = vec![
            item("d1", 0, &[1.0, 0.0]),
            item("d1", 0, &[1.0, 0.01]),
            item("d2", 0, &[1.0, 0.02]),
        ];
        let clusters = cluster(&items, &exhaustive(&items), &Params::with_threshold(0.9));
        assert_eq!(clusters.len(), 1);
        assert_eq!(clusters[0].members.len(), 2);
    }

    #[test]
    fn a_new_story_joins_the_cluster_it_matches_best_on_average() {
        let p = Params::with_threshold(0.9);
        let story = item("d3", 2, &[1.0, 0.05, 0.0]);
        let close = vec![
            item("d1", 0, &[1.0, 0.0, 0.0]),
            item("d2", 1, &[1.0, 0.1, 0.0]),
        ];
        let mixed = vec![
            item("d1", 0, &[1.0, 0.0, 0.0]),
            item("d2", 1, &[0.0, 1.0, 0.0]),
        ];
        let options = vec![
            ("mixed".to_owned(), mixed),
            ("close".to_owned(), close.clone()),
        ];
        let (id, score) = choose_cluster(&story, &options, &p).unwrap();
        assert_eq!(id, "close");
        assert!(score > 0.99);
        // Never two stories of one digest in a cluster.
        let same_digest = item("d2", 2, &[1.0, 0.05, 0.0]);
        assert_eq!(
            choose_cluster(&same_digest, &[("close".into(), close)], &p),
            None
        );
    }

    #[test]
    fn knn_from_the_index_finds_the_exact_nearest_neighbour() {
        let items: Vec<Item> = (0..200)
            .map(|i| {
                let a = i as f32 * 0.03;
                item("d", 0, &[a.cos(), a.sin(), 0.1])
            })
            .collect();
        let found = knn(&items, 3).unwrap();
        assert_eq!(found.len(), 200);
        for (i, list) in found.iter().enumerate() {
            assert!(list.iter().all(|&(j, _)| j != i));
            let best = list[0].0 as i64;
            assert!((best - i as i64).abs() == 1, "item {i}: {list:?}");
        }
    }
}
