//! Quality evaluation on labelled sets (`data/eval/`): search ranking and the "already
//! covered?" check, per split, so what is tuned on (`tune`, `fresh`) is never what is
//! reported as held out (`heldout`, and the blind `fresh2` and `fresh3`).
//!
//! Owns: reading the labelled sets, the metrics (MRR@10, hit@1, hit@10, nDCG@10,
//! precision/recall of the check) and the score distributions per language pair. Must
//! not: change what is stored; it only reads through [`Service`].

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use crate::cluster::{pair_score, Item, Params};
use crate::domain::{DateRange, QueryText, TopK};
use crate::service::{Ranking, SearchMode, Service, ServiceError};
use crate::vector::mean_unit_vector;

mod dump;
mod report;
pub use dump::{candidate_signals, search_signals, CandidateSignals};
pub use report::report;

/// Which half of a labelled set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Tune,
    Heldout,
    /// Written blind from the sample alone; settings are chosen on it with `tune`.
    Fresh,
    /// Written blind from the sample alone: held out, only reported.
    Fresh2,
    /// Written blind as an editor's sources read (primary announcements; short keyword
    /// queries): held out, only reported; its misses have been read, so it is no longer
    /// blind.
    Fresh3,
    /// Sets written from `data/sample/` alone by someone who never ran storydex
    /// (`data/eval/blind/`): keyword queries and primary-source posts...
    Blind4,
    /// ...and paraphrases with few shared words, Traditional-only facts asked in
    /// Simplified, figures written another way. Both were measured once as blind sets;
    /// their misses have since been read, so they are held out but no longer blind.
    Blind5,
    /// Blind: search-box queries and sources as an editor pastes them (announcements and
    /// informal posts)...
    Blind6,
    /// ...and paraphrases with few shared words, Traditional-only facts asked in
    /// Simplified, figures written another way. Measured once, after the ranking and
    /// the check were frozen.
    Blind7,
}

impl Split {
    /// Every split, in the order the report prints them.
    pub const ALL: [Split; 9] = [
        Split::Tune,
        Split::Heldout,
        Split::Fresh,
        Split::Fresh2,
        Split::Fresh3,
        Split::Blind4,
        Split::Blind5,
        Split::Blind6,
        Split::Blind7,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Split::Tune => "tune",
            Split::Heldout => "heldout",
            Split::Fresh => "fresh",
            Split::Fresh2 => "fresh2",
            Split::Fresh3 => "fresh3",
            Split::Blind4 => "blind4",
            Split::Blind5 => "blind5",
            Split::Blind6 => "blind6",
            Split::Blind7 => "blind7",
        }
    }
}

/// One labelled search query (`data/eval/search.toml`).
#[derive(Debug, Clone, Deserialize)]
pub struct Query {
    pub id: String,
    pub split: Split,
    pub lang: String,
    pub kind: String,
    pub text: String,
    /// Every story that answers the query.
    pub relevant: Vec<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

/// One English source post (`data/eval/check_en.toml`).
#[derive(Debug, Clone, Deserialize)]
pub struct Post {
    pub id: String,
    pub split: Split,
    /// `covered` (the event is already stored) or `different` (same topic, other event).
    pub kind: String,
    pub published: String,
    pub title: String,
    pub body: String,
    pub url: String,
    #[serde(default)]
    pub covered_by: Vec<String>,
    #[serde(default)]
    pub related: Option<String>,
    #[serde(default)]
    pub variant_of: Option<String>,
}

impl Post {
    pub fn is_covered(&self) -> bool {
        self.kind == "covered"
    }

    /// The post as a one-item draft digest, as an editor would paste it.
    pub fn as_digest(&self) -> String {
        format!(
            "---\ntitle: \"check {id}\"\ndate: {date}\n---\n\n1.  [{title}]({url})\n\n    {body}\n",
            id = self.id,
            date = self.published,
            title = self.title.replace(['[', ']'], ""),
            url = self.url,
            body = self.body.replace('\n', " "),
        )
    }
}

#[derive(Debug, Deserialize)]
struct SearchSet {
    query: Vec<Query>,
}

#[derive(Debug, Deserialize)]
struct CheckSet {
    post: Vec<Post>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {message}")]
    Set { path: String, message: String },
    #[error(transparent)]
    Service(#[from] ServiceError),
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EvalError> {
    let set_error = |message: String| EvalError::Set {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| set_error(e.to_string()))?;
    toml::from_str(&text).map_err(|e| set_error(e.to_string()))
}

pub fn load_queries(path: &Path) -> Result<Vec<Query>, EvalError> {
    Ok(read_toml::<SearchSet>(path)?.query)
}

pub fn load_posts(path: &Path) -> Result<Vec<Post>, EvalError> {
    Ok(read_toml::<CheckSet>(path)?.post)
}

/// Ranking quality over a set of queries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchScore {
    pub queries: usize,
    pub mrr10: f64,
    pub hit1: usize,
    pub hit10: usize,
    pub ndcg10: f64,
    /// Queries with no relevant story in the top 10: (query id, text, top 3 ids).
    pub misses: Vec<(String, String, Vec<String>)>,
    /// (kind, queries, MRR@10) per query kind.
    pub by_kind: Vec<(String, usize, f64)>,
}

/// Runs every query of `split` (all when `None`) in `mode` with `ranking`, embedding each
/// query once per call.
pub fn score_search(
    service: &Service,
    queries: &[Query],
    split: Option<Split>,
    mode: SearchMode,
    vectors: &mut HashMap<String, Vec<f32>>,
) -> Result<SearchScore, EvalError> {
    let mut score = SearchScore::default();
    let mut kinds: HashMap<String, (usize, f64)> = HashMap::new();
    for q in queries
        .iter()
        .filter(|q| split.is_none_or(|s| q.split == s))
    {
        let text = QueryText::new(&q.text).map_err(ServiceError::from)?;
        let range =
            DateRange::parse(q.since.as_deref(), q.until.as_deref()).map_err(ServiceError::from)?;
        let vector = if mode.needs_vector() {
            if !vectors.contains_key(&q.text) {
                let v = service
                    .encoder()
                    .embed_query(&q.text)
                    .map_err(ServiceError::from)?;
                vectors.insert(q.text.clone(), v);
            }
            vectors.get(&q.text).cloned()
        } else {
            None
        };
        let k = TopK::new(10).map_err(ServiceError::from)?;
        let hits = service.search_with(&text, vector.as_deref(), k, range, mode)?;
        let ids: Vec<String> = hits.into_iter().map(|h| h.story.id).collect();
        let relevant: HashSet<&str> = q.relevant.iter().map(String::as_str).collect();
        let first = ids.iter().position(|id| relevant.contains(id.as_str()));
        let rr = first.map_or(0.0, |r| 1.0 / (r + 1) as f64);
        score.queries += 1;
        score.mrr10 += rr;
        score.hit1 += usize::from(first == Some(0));
        score.hit10 += usize::from(first.is_some());
        let dcg: f64 = ids
            .iter()
            .enumerate()
            .filter(|(_, id)| relevant.contains(id.as_str()))
            .map(|(i, _)| 1.0 / ((i + 2) as f64).log2())
            .sum();
        let ideal: f64 = (0..relevant.len().min(10))
            .map(|i| 1.0 / ((i + 2) as f64).log2())
            .sum();
        score.ndcg10 += if ideal > 0.0 { dcg / ideal } else { 0.0 };
        let entry = kinds.entry(q.kind.clone()).or_default();
        entry.0 += 1;
        entry.1 += rr;
        if first != Some(0) {
            score.misses.push((
                q.id.clone(),
                format!(
                    "{} (rank {})",
                    q.text,
                    first.map_or("-".to_owned(), |r| (r + 1).to_string())
                ),
                ids.into_iter().take(3).collect(),
            ));
        }
    }
    if score.queries > 0 {
        score.mrr10 /= score.queries as f64;
        score.ndcg10 /= score.queries as f64;
    }
    let mut by_kind: Vec<(String, usize, f64)> = kinds
        .into_iter()
        .map(|(k, (n, rr))| (k, n, rr / n as f64))
        .collect();
    by_kind.sort_by(|a, b| a.0.cmp(&b.0));
    score.by_kind = by_kind;
    Ok(score)
}

/// How the check did on English source posts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckScore {
    pub covered: usize,
    /// Covered posts whose first listed coverage is one of their covering stories.
    pub found_first: usize,
    /// Covered posts with any covering story listed.
    pub found_any: usize,
    pub different: usize,
    /// Different-event posts that were reported as covered.
    pub false_alarms: usize,
    /// Covered posts without coverage found whose verdict is `check` (put in front of
    /// the editor).
    pub check_covered: usize,
    /// Different-event posts whose verdict is `check`.
    pub check_different: usize,
    /// Lines describing each miss and false alarm.
    pub misses: Vec<String>,
}

impl CheckScore {
    pub fn recall(&self) -> f64 {
        ratio(self.found_first, self.covered)
    }

    /// Of the posts reported covered, how many really were (with the right story first).
    pub fn precision(&self) -> f64 {
        let reported = self.found_first + self.false_alarms + (self.found_any - self.found_first);
        ratio(self.found_first, reported)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// Runs `/v1/check`'s logic on each post of `split` as a one-item draft digest.
pub fn score_check(
    service: &Service,
    posts: &[Post],
    split: Option<Split>,
) -> Result<CheckScore, EvalError> {
    let mut score = CheckScore::default();
    for p in posts.iter().filter(|p| split.is_none_or(|s| p.split == s)) {
        let checked = service.check_text(&format!("{}.md", p.id), &p.as_digest())?;
        let coverage = checked
            .first()
            .map(|c| c.previous_coverage.clone())
            .unwrap_or_default();
        let to_check = checked
            .first()
            .is_some_and(|c| c.verdict == crate::service::Verdict::Check);
        let listed: Vec<String> = coverage
            .iter()
            .map(|c| format!("{} {:.3} ({})", c.story.id, c.score, c.reason.describe()))
            .collect();
        if p.is_covered() {
            score.covered += 1;
            let truth: HashSet<&str> = p.covered_by.iter().map(String::as_str).collect();
            let first_ok = coverage
                .first()
                .is_some_and(|c| truth.contains(c.story.id.as_str()));
            let any_ok = coverage.iter().any(|c| truth.contains(c.story.id.as_str()));
            score.found_first += usize::from(first_ok);
            score.check_covered += usize::from(to_check);
            score.found_any += usize::from(any_ok);
            if !first_ok {
                score.misses.push(format!(
                    "missed  {} [{}] {:?}: expected {:?}, listed {:?}",
                    p.id,
                    p.split.name(),
                    p.title,
                    p.covered_by,
                    listed
                ));
            }
        } else {
            score.different += 1;
            score.check_different += usize::from(to_check);
            if !coverage.is_empty() {
                score.false_alarms += 1;
                score.misses.push(format!(
                    "false alarm  {} [{}] {:?}: listed {:?}",
                    p.id,
                    p.split.name(),
                    p.title,
                    listed
                ));
            }
        }
    }
    Ok(score)
}

/// Same-event and different-event pair scores per language pair, as text.
///
/// - `en-zh`: each post against its covering stories (same) and against every other
///   stored story (different; the best one per post is what a threshold must beat);
/// - `en-en`: a post and its `variant_of` rendering (same) and posts about other events
///   (different, best per post);
/// - `zh-zh`: the stored `repeats` pairs (same) and every other pair of stories of
///   different digests (different, best per story).
pub fn score_distributions(
    service: &Service,
    posts: &[Post],
    split: Option<Split>,
    repeats: &[(&str, &str)],
) -> Result<String, EvalError> {
    let params = Params::with_threshold(service.duplicate_threshold());
    let stored = service.story_vectors()?;
    let stored_items: Vec<Item> = stored.iter().map(crate::service::story_item).collect();
    let posts: Vec<&Post> = posts
        .iter()
        .filter(|p| split.is_none_or(|s| p.split == s))
        .collect();
    let mut post_items: Vec<Item> = Vec::with_capacity(posts.len());
    for p in &posts {
        let checked =
            crate::corpus::parse_str("post.md", &p.as_digest()).map_err(ServiceError::from)?;
        let story = &checked.stories[0];
        let windows = service
            .encoder()
            .embed_passages(&[story.text.as_str()])
            .map_err(ServiceError::from)?;
        post_items.push(crate::service::cluster_item(
            &format!("post-{}", p.id),
            story.published,
            story.url.as_deref(),
            mean_unit_vector(windows[0].iter().map(|w| w.vector.as_slice())),
        ));
    }
    let score =
        |a: &Item, b: &Item| pair_score(a, b, crate::vector::dot(&a.vector, &b.vector), &params);
    let mut out = String::new();

    // en-zh
    let (mut same, mut best_other) = (Vec::new(), Vec::new());
    for (p, item) in posts.iter().zip(&post_items) {
        let truth: HashSet<&str> = p.covered_by.iter().map(String::as_str).collect();
        let mut best = f32::MIN;
        for (s, other) in stored.iter().zip(&stored_items) {
            let v = score(item, other);
            if truth.contains(s.id.as_str()) {
                same.push(v);
            } else {
                best = best.max(v);
            }
        }
        best_other.push(best);
    }
    let _ = writeln!(out, "  en-zh same event      {}", quantiles(same));
    let _ = writeln!(out, "  en-zh best different  {}", quantiles(best_other));

    // en-en
    let index: HashMap<&str, usize> = posts
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    let event = |i: usize| -> &str {
        posts[i]
            .variant_of
            .as_deref()
            .filter(|v| index.contains_key(v))
            .unwrap_or(&posts[i].id)
    };
    let (mut same, mut best_other) = (Vec::new(), Vec::new());
    for i in 0..posts.len() {
        let mut best = f32::MIN;
        for j in 0..posts.len() {
            if i == j {
                continue;
            }
            let v = score(&post_items[i], &post_items[j]);
            let covers_same = !posts[i].covered_by.is_empty()
                && posts[i]
                    .covered_by
                    .iter()
                    .any(|c| posts[j].covered_by.contains(c));
            if event(i) == event(j) {
                if i < j {
                    same.push(v);
                }
            } else if !covers_same {
                best = best.max(v);
            }
        }
        if posts[i].variant_of.is_some() {
            best_other.push(best);
        }
    }
    let _ = writeln!(out, "  en-en same event      {}", quantiles(same));
    let _ = writeln!(out, "  en-en best different  {}", quantiles(best_other));

    // zh-zh
    let pos: HashMap<&str, usize> = stored
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let truth: HashSet<(usize, usize)> = repeats
        .iter()
        .filter_map(|(a, b)| Some((*pos.get(a)?, *pos.get(b)?)))
        .flat_map(|(a, b)| [(a, b), (b, a)])
        .collect();
    let (mut same, mut best_other) = (Vec::new(), Vec::new());
    for i in 0..stored.len() {
        let mut best = f32::MIN;
        for j in 0..stored.len() {
            if stored[i].digest_id == stored[j].digest_id {
                continue;
            }
            let v = score(&stored_items[i], &stored_items[j]);
            if truth.contains(&(i, j)) {
                if i < j {
                    same.push(v);
                }
            } else {
                best = best.max(v);
            }
        }
        if best > f32::MIN && stored[i].digest_id.starts_with('d') {
            best_other.push(best);
        }
    }
    let _ = writeln!(out, "  zh-zh same event      {}", quantiles(same));
    let _ = writeln!(
        out,
        "  zh-zh best different  {} (digest items)",
        quantiles(best_other)
    );
    Ok(out)
}

fn quantiles(mut v: Vec<f32>) -> String {
    if v.is_empty() {
        return "n=0".into();
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!(
        "n={:<3} min {:.3}  p10 {:.3}  p50 {:.3}  p90 {:.3}  max {:.3}",
        v.len(),
        q(0.0),
        q(0.1),
        q(0.5),
        q(0.9),
        q(1.0)
    )
}

/// The ranking variants `storydex eval --sweep` compares on the tuning splits.
pub fn sweep_variants(base: Ranking) -> Vec<(String, Ranking)> {
    let mut out = vec![("current".to_owned(), base)];
    for penalty in [0.0, 0.01, 0.02, 0.03, 0.05, 1.0] {
        out.push((
            format!("deep_window_penalty={penalty}"),
            Ranking {
                deep_window_penalty: penalty,
                ..base
            },
        ));
    }
    for weight in [0.05, 0.1, 0.15, 0.2, 0.3] {
        out.push((
            format!("linear fusion, lexical weight {weight}"),
            Ranking {
                fusion: crate::service::Fusion::Linear,
                linear_lexical_weight: weight,
                ..base
            },
        ));
    }
    for lexical_weight in [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.7] {
        out.push((
            format!("dbsf fusion, lexical weight {lexical_weight}"),
            Ranking {
                fusion: crate::service::Fusion::Dbsf,
                lexical_weight,
                ..base
            },
        ));
    }
    for shift in [0.0, 0.25, 0.5, 0.75, 1.0] {
        out.push((
            format!("collection_shift={shift}"),
            base.with_collection_shift(shift),
        ));
    }
    // The three knobs that move together: a deep window's penalty matters less once the
    // kinds are calibrated, and the lexical weight depends on both.
    for penalty in [0.0, 0.005, 0.01, 0.015] {
        for shift in [0.5, 0.75, 1.0] {
            for lexical_weight in [0.35, 0.45, 0.55] {
                out.push((
                    format!("penalty {penalty} shift {shift} lexical {lexical_weight}"),
                    Ranking {
                        deep_window_penalty: penalty,
                        collection_shift: shift,
                        lexical_weight,
                        ..base
                    },
                ));
            }
        }
    }
    for candidates in [20, 30, 100] {
        out.push((
            format!("candidates={candidates}"),
            Ranking { candidates, ..base },
        ));
    }
    for rrf_k in [10.0, 20.0, 30.0, 60.0] {
        for lexical_weight in [0.3, 0.5, 0.7, 1.0] {
            out.push((
                format!("rrf_k={rrf_k} lexical_weight={lexical_weight}"),
                Ranking {
                    fusion: crate::service::Fusion::Rrf,
                    rrf_k,
                    lexical_weight,
                    ..base
                },
            ));
        }
    }
    out
}

#[derive(Debug, Deserialize)]
struct RepeatSet {
    pairs: Vec<(String, String)>,
}

pub fn load_repeats(path: &Path) -> Result<Vec<(String, String)>, EvalError> {
    Ok(read_toml::<RepeatSet>(path)?.pairs)
}
