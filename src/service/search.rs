//! Search and similar stories: vector, lexical and hybrid rankings of stories.
//!
//! Owns: turning window hits into story hits (a story's score is its head window's, or
//! a deeper window's less a penalty, so long episodes do not win by having many
//! windows), fusing the vector and BM25 rankings, and choosing the snippet. Must not:
//! embed (callers pass the query vector, so the HTTP layer can embed on its queue).

use std::collections::HashMap;
use std::str::FromStr;

use super::{Service, ServiceError, SNIPPET_CHARS};
use crate::corpus::SourceKind;
use crate::domain::{DateRange, ErrorCode, Invalid, QueryText, TopK};
use crate::store::{StoredStory, WindowHit, WindowMeta};
use crate::tuning::Fusion;

/// Which ranking a search uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// Cosine similarity of the query vector to the stories' windows.
    Vector,
    /// BM25 over the stories' terms (names and numbers found exactly).
    Lexical,
    /// Both, fused as the manifest's `[search]` says (the default).
    #[default]
    Hybrid,
}

impl SearchMode {
    pub const NAMES: &'static str = "vector, lexical or hybrid";

    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Vector => "vector",
            SearchMode::Lexical => "lexical",
            SearchMode::Hybrid => "hybrid",
        }
    }

    /// Whether the mode needs the query embedded.
    pub fn needs_vector(self) -> bool {
        self != SearchMode::Lexical
    }
}

impl FromStr for SearchMode {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        match s.trim().to_ascii_lowercase().as_str() {
            "vector" => Ok(SearchMode::Vector),
            "lexical" => Ok(SearchMode::Lexical),
            "hybrid" | "" => Ok(SearchMode::Hybrid),
            other => Err(Invalid::new(
                ErrorCode::InvalidMode,
                format!("mode must be {}, got {other:?}", Self::NAMES),
            )),
        }
    }
}

/// A source kind needs this many stories in a search's range to be calibrated on its
/// own; a smaller one takes the largest kind's level (a mean over a few is no level).
const CALIBRATION_MIN_STORIES: usize = 10;

/// `(s - (mean - 3 sd)) / 6 sd` over `scores`: 0..1 for a normal spread, above 1 for an
/// outlier, never below 0 (a weak match must not count less than none). A list without
/// spread maps every score to one half.
fn spread_scaler(scores: &[f32]) -> impl Fn(f32) -> f32 {
    let n = scores.len().max(1) as f32;
    let mean = scores.iter().sum::<f32>() / n;
    let sd = (scores.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / n).sqrt();
    move |s| {
        if sd > f32::EPSILON * mean.abs().max(1.0) {
            ((s - (mean - 3.0 * sd)) / (6.0 * sd)).max(0.0)
        } else {
            0.5
        }
    }
}

/// What to take off each source kind's scores, from each kind's scores best first: `shift`
/// x the mean of its best `n`, where `n` is `candidates` or the fewest any kind has (the
/// same `n` for every kind: a kind's best 50 sit higher than all 34 of another). A kind
/// with fewer than [`CALIBRATION_MIN_STORIES`] takes the largest kind's level.
fn kind_levels(scores: &[(SourceKind, Vec<f32>)], shift: f32, candidates: usize) -> Levels {
    let n = scores
        .iter()
        .map(|(_, s)| s.len())
        .filter(|&len| len >= CALIBRATION_MIN_STORIES)
        .min()
        .unwrap_or(1)
        .min(candidates)
        .max(1);
    let mean_of_best = |s: &[f32]| {
        let best = &s[..s.len().min(n)];
        best.iter().sum::<f32>() / best.len().max(1) as f32
    };
    let fallback = scores
        .iter()
        .max_by_key(|(_, s)| s.len())
        .map_or(0.0, |(_, s)| mean_of_best(s));
    let mut levels = Levels::default();
    for (kind, s) in scores {
        let level = if s.len() >= CALIBRATION_MIN_STORIES {
            mean_of_best(s)
        } else {
            fallback
        };
        levels.set(*kind, shift * level);
    }
    levels
}

/// The calibration taken off each source kind's scores in one search (0 when off).
#[derive(Debug, Default, Clone, Copy)]
struct Levels {
    digest: f32,
    archive: f32,
}

impl Levels {
    fn of(&self, kind: SourceKind) -> f32 {
        match kind {
            SourceKind::Digest => self.digest,
            SourceKind::Archive => self.archive,
        }
    }

    fn set(&mut self, kind: SourceKind, level: f32) {
        match kind {
            SourceKind::Digest => self.digest = level,
            SourceKind::Archive => self.archive = level,
        }
    }
}

/// One story in a result list.
#[derive(Debug, Clone, PartialEq)]
pub struct StoryHit {
    pub story: StoredStory,
    /// The ranking score of the mode used: cosine (vector), BM25 (lexical), or the fused
    /// score divided by the sum of the fusion's weights (hybrid). In vector mode the order
    /// also takes each source kind's level off ([`Ranking::collection_shift`](crate::tuning::Ranking::collection_shift)), so a digest
    /// item may rank above an episode with a slightly higher cosine.
    pub score: f32,
    /// Cosine similarity of the best-matching window (absent in lexical mode).
    pub cosine: Option<f32>,
    /// BM25 of the story's terms, when it matched any query term.
    pub bm25: Option<f32>,
    /// The best-matching passage of the story.
    pub snippet: String,
}

/// A story's best window for a query, after the deep-window penalty.
pub(super) struct Ranked {
    pub(super) hit: WindowHit,
    /// Cosine with the penalty applied: the score shown for the story.
    pub(super) adjusted: f32,
    /// `adjusted` less its source kind's calibration: what the vector ranking sorts by
    /// (equal to `adjusted` where no calibration applies).
    calibrated: f32,
}

impl Service {
    /// Stories for a free-text query (Chinese or English), embedding it here.
    pub fn search(
        &self,
        query: &QueryText,
        k: TopK,
        range: DateRange,
        mode: SearchMode,
    ) -> Result<Vec<StoryHit>, ServiceError> {
        let vector = if mode.needs_vector() {
            Some(self.encoder.embed_query(query.as_str())?)
        } else {
            None
        };
        self.search_with(query, vector.as_deref(), k, range, mode)
    }

    /// Stories for a query whose vector the caller already computed (`None` only in
    /// lexical mode).
    pub fn search_with(
        &self,
        query: &QueryText,
        vector: Option<&[f32]>,
        k: TopK,
        range: DateRange,
        mode: SearchMode,
    ) -> Result<Vec<StoryHit>, ServiceError> {
        let vector_needed = || {
            ServiceError::Invalid(Invalid::new(
                ErrorCode::InvalidMode,
                format!("{} search needs the query's vector", mode.as_str()),
            ))
        };
        match mode {
            SearchMode::Vector => {
                let vector = vector.ok_or_else(vector_needed)?;
                let (ranked, _) = self.ranked_by_vector(vector, k.get(), range)?;
                let hits = ranked
                    .into_iter()
                    .map(|r| {
                        (
                            r.hit.meta.story_id.to_string(),
                            r.adjusted,
                            Some(r.hit),
                            None,
                        )
                    })
                    .collect();
                self.hydrate(hits, Some(query.as_str()), None)
            }
            SearchMode::Lexical => {
                let found = self.lexical_ranking(query.as_str(), k.get(), range)?;
                let hits = found
                    .into_iter()
                    .map(|(id, bm25)| (id, bm25, None, Some(bm25)))
                    .collect();
                self.hydrate(hits, Some(query.as_str()), None)
            }
            SearchMode::Hybrid => {
                let vector = vector.ok_or_else(vector_needed)?;
                self.hybrid(query, vector, k, range)
            }
        }
    }

    fn hybrid(
        &self,
        query: &QueryText,
        vector: &[f32],
        k: TopK,
        range: DateRange,
    ) -> Result<Vec<StoryHit>, ServiceError> {
        let mut r = self.ranking;
        if crate::lexical::language(query.as_str()) == "en"
            && !crate::lexical::names_something(query.as_str())
        {
            r.lexical_weight *= r.plain_english_lexical_share;
        }
        let want = r.candidates.max(k.get());
        let (by_vector, levels) = self.ranked_by_vector(vector, want, range)?;
        let by_terms = self.lexical_ranking(query.as_str(), want, range)?;
        struct Fused {
            score: f32,
            window: Option<WindowHit>,
            bm25: Option<f32>,
        }
        let mut fused: HashMap<String, Fused> = HashMap::new();
        let top_bm25 = by_terms.first().map_or(1.0, |t| t.1.max(f32::EPSILON));
        let linear = r.fusion == Fusion::Linear;
        let dbsf = r.fusion == Fusion::Dbsf;
        let cosines: Vec<f32> = by_vector.iter().map(|v| v.calibrated).collect();
        let scale_cosine = spread_scaler(&cosines);
        // A story without any query term has BM25 0: the spread is measured over as many
        // stories as the vector side takes, so a name only two stories contain stands out
        // (over the two alone, the better scored 0.67 and an exact name lost to a cosine).
        let mut bm25s: Vec<f32> = by_terms.iter().map(|t| t.1).collect();
        bm25s.resize(bm25s.len().max(by_vector.len()), 0.0);
        let scale_bm25 = spread_scaler(&bm25s);
        for (rank, ranked) in by_vector.into_iter().enumerate() {
            let score = if linear {
                ranked.calibrated
            } else if dbsf {
                scale_cosine(ranked.calibrated)
            } else {
                1.0 / (r.rrf_k + rank as f32 + 1.0)
            };
            fused.insert(
                ranked.hit.meta.story_id.to_string(),
                Fused {
                    score,
                    window: Some(ranked.hit),
                    bm25: None,
                },
            );
        }
        for (rank, (id, bm25)) in by_terms.into_iter().enumerate() {
            let entry = match fused.entry(id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    // Found by its terms only: its cosine still counts in score fusion.
                    let score = if linear {
                        self.story_cosine(e.key(), vector, &levels)?.unwrap_or(0.0)
                    } else if dbsf {
                        self.story_cosine(e.key(), vector, &levels)?
                            .map_or(0.0, &scale_cosine)
                    } else {
                        0.0
                    };
                    e.insert(Fused {
                        score,
                        window: None,
                        bm25: None,
                    })
                }
            };
            entry.score += if linear {
                r.linear_lexical_weight * bm25 / top_bm25
            } else if dbsf {
                r.lexical_weight * scale_bm25(bm25)
            } else {
                r.lexical_weight / (r.rrf_k + rank as f32 + 1.0)
            };
            entry.bm25 = Some(bm25);
        }
        let best = if linear {
            1.0
        } else if dbsf {
            1.0 + r.lexical_weight
        } else {
            (1.0 + r.lexical_weight) / (r.rrf_k + 1.0)
        };
        let mut ranked: Vec<(String, Fused)> = fused.into_iter().collect();
        ranked.sort_by(|a, b| b.1.score.total_cmp(&a.1.score).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(k.get());
        let hits = ranked
            .into_iter()
            .map(|(id, f)| (id, f.score / best, f.window, f.bm25))
            .collect();
        self.hydrate(hits, Some(query.as_str()), Some(vector))
    }

    /// The lexical ranking of a query: the BM25 of its own terms plus, weighted by
    /// [`Ranking::translation_weight`], the BM25 of its translations (FTS5 weighs every
    /// term of one expression alike, so the translations are a second expression).
    pub(crate) fn lexical_ranking(
        &self,
        query: &str,
        count: usize,
        range: DateRange,
    ) -> Result<Vec<(String, f32)>, ServiceError> {
        let own = self.store.search_lexical(query, count, range, None)?;
        let weight = self.ranking.translation_weight;
        let expansion = match crate::lexical::expansion_expression(query) {
            Some(expression) if weight > 0.0 => {
                self.store.search_match(&expression, count, range, None)?
            }
            _ => return Ok(own),
        };
        let mut scores: HashMap<String, f32> = own.into_iter().collect();
        for (id, bm25) in expansion {
            *scores.entry(id).or_default() += weight * bm25;
        }
        let mut ranked: Vec<(String, f32)> = scores.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(count);
        Ok(ranked)
    }

    /// A story's best penalised window cosine against `vector`, less its kind's level
    /// (`None`: no window).
    fn story_cosine(
        &self,
        id: &str,
        vector: &[f32],
        levels: &Levels,
    ) -> Result<Option<f32>, ServiceError> {
        let penalty = self.ranking.deep_window_penalty;
        Ok(self
            .store
            .story_windows(id)?
            .iter()
            .map(|(m, w)| {
                let c = crate::vector::dot(vector, w);
                let c = if m.start == 0 { c } else { c - penalty };
                c - levels.of(m.kind)
            })
            .reduce(f32::max))
    }

    /// The vector ranking of a query: the best `want` stories in `range` by their
    /// calibrated score, with the level taken off each source kind. Each kind is searched
    /// on its own (its best `max(want, candidates)` stories), its level is
    /// `collection_shift` x the mean score of its best `n` (`candidates`, or fewer when a
    /// kind has fewer in range: the same `n` for every kind), and the kinds are merged.
    /// One search over everything when calibration is off.
    fn ranked_by_vector(
        &self,
        vector: &[f32],
        want: usize,
        range: DateRange,
    ) -> Result<(Vec<Ranked>, Levels), ServiceError> {
        let r = self.ranking;
        let queries = [vector.to_vec()];
        let present: Vec<SourceKind> = [SourceKind::Digest, SourceKind::Archive]
            .into_iter()
            .filter(|&kind| self.store.kind_in_range(kind, range))
            .collect();
        if present.is_empty() {
            // Nothing in range: no search needs to look.
            return Ok((Vec::new(), Levels::default()));
        }
        if r.collection_shift == 0.0 || present.len() < 2 {
            // Not calibrated, or one kind: a level taken off every story changes no order.
            let ranked = self.ranked_windows(&queries, want, None, range, |_| true)?;
            return Ok((ranked, Levels::default()));
        }
        let per_kind = want.max(r.candidates);
        let mut kinds: Vec<(SourceKind, Vec<Ranked>)> = Vec::new();
        for kind in present {
            let ranked = self.ranked_windows(&queries, per_kind, Some(kind), range, |_| true)?;
            if !ranked.is_empty() {
                kinds.push((kind, ranked));
            }
        }
        let scores: Vec<(SourceKind, Vec<f32>)> = kinds
            .iter()
            .map(|(kind, ranked)| (*kind, ranked.iter().map(|x| x.adjusted).collect()))
            .collect();
        let levels = kind_levels(&scores, r.collection_shift, r.candidates);
        let mut merged = Vec::new();
        for (kind, ranked) in kinds {
            let shift = levels.of(kind);
            merged.extend(ranked.into_iter().map(|x| Ranked {
                calibrated: x.adjusted - shift,
                ..x
            }));
        }
        merged.sort_by(|a, b| {
            b.calibrated
                .total_cmp(&a.calibrated)
                .then_with(|| a.hit.meta.story_id.cmp(&b.hit.meta.story_id))
        });
        merged.truncate(want);
        Ok((merged, levels))
    }

    /// Window hits for `queries` as one best window per story, at most `k` stories,
    /// best first by the penalised cosine.
    ///
    /// The index is asked for more windows than `k`, and widened until the `k`th story is
    /// settled: no window left unfetched could beat it. A window the index did not return
    /// scores at most the last one it did, and the deep-window penalty can lift a head
    /// window from below that line above deep windows fetched before it, so `k` stories
    /// among the fetched windows are not yet the best `k`. Settling widens to at most
    /// `16k + 256` windows; finding `k` stories at all widens as far as the index goes.
    pub(super) fn best_windows(
        &self,
        queries: &[Vec<f32>],
        k: usize,
        keep: impl Fn(&WindowMeta) -> bool,
    ) -> Result<Vec<WindowHit>, ServiceError> {
        Ok(self
            .ranked_windows(queries, k, None, DateRange::ALL, keep)?
            .into_iter()
            .map(|r| r.hit)
            .collect())
    }

    pub(super) fn ranked_windows(
        &self,
        queries: &[Vec<f32>],
        k: usize,
        kind: Option<SourceKind>,
        range: DateRange,
        keep: impl Fn(&WindowMeta) -> bool,
    ) -> Result<Vec<Ranked>, ServiceError> {
        let penalty = self.ranking.deep_window_penalty;
        let total = self.store.window_count();
        let settle_limit = k * 16 + 256;
        let exact = self.store.searches_exactly(kind);
        let first = if exact { settle_limit } else { k * 4 + 16 };
        let mut want = first.min(total.max(1));
        loop {
            let mut best: HashMap<String, Ranked> = HashMap::new();
            // The best score an unfetched window could have, over all queries.
            let mut unseen = f32::NEG_INFINITY;
            // An exact search that returned fewer than asked has seen every match.
            let mut exhausted = exact;
            let slices: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
            for hits in self
                .store
                .search_windows_many(&slices, want, kind, range, &keep)?
            {
                exhausted &= hits.len() < want;
                if hits.len() >= want {
                    let last = hits.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
                    unseen = unseen.max(last);
                }
                for hit in hits {
                    let adjusted = if hit.meta.start == 0 {
                        hit.score
                    } else {
                        hit.score - penalty
                    };
                    match best.get(&*hit.meta.story_id) {
                        Some(b) if b.adjusted >= adjusted => {}
                        _ => {
                            let ranked = Ranked {
                                hit,
                                adjusted,
                                calibrated: adjusted,
                            };
                            best.insert(ranked.hit.meta.story_id.to_string(), ranked);
                        }
                    }
                }
            }
            let mut ranked: Vec<Ranked> = best.into_values().collect();
            ranked.sort_by(|a, b| {
                b.adjusted
                    .total_cmp(&a.adjusted)
                    .then_with(|| a.hit.meta.story_id.cmp(&b.hit.meta.story_id))
            });
            let enough = ranked.len() >= k;
            // Settling costs a wider search; past a bound (most of the sample, a few
            // thousand windows at scale) the order of the last places is left as found.
            let settled =
                k == 0 || (enough && (ranked[k - 1].adjusted >= unseen || want >= settle_limit));
            if settled || exhausted || want >= total {
                ranked.truncate(k);
                return Ok(ranked);
            }
            want = (want * 4).min(total);
        }
    }

    /// Stored stories for ranked ids, with their snippets. A story without a window hit
    /// (found only by its terms) gets its best window against `vector` when there is
    /// one, else its first.
    pub(super) fn hydrate(
        &self,
        hits: Vec<(String, f32, Option<WindowHit>, Option<f32>)>,
        query: Option<&str>,
        vector: Option<&[f32]>,
    ) -> Result<Vec<StoryHit>, ServiceError> {
        let ids: Vec<&str> = hits.iter().map(|h| h.0.as_str()).collect();
        let stories = self.store.stories(&ids)?;
        let mut by_id: HashMap<String, StoredStory> =
            stories.into_iter().map(|s| (s.id.clone(), s)).collect();
        let mut out = Vec::with_capacity(hits.len());
        for (id, score, window, bm25) in hits {
            let Some(story) = by_id.remove(&id) else {
                continue;
            };
            let (span, cosine) = match window {
                Some(w) => (Some((w.meta.start, w.meta.end)), Some(w.score)),
                None => match vector {
                    Some(v) => {
                        let best = self
                            .store
                            .story_windows(&id)?
                            .into_iter()
                            .map(|(m, w)| ((m.start, m.end), crate::vector::dot(v, &w)))
                            .max_by(|a, b| a.1.total_cmp(&b.1));
                        (best.map(|b| b.0), best.map(|b| b.1))
                    }
                    None => (None, None),
                },
            };
            let (start, end) = span.unwrap_or((0, story.text.len()));
            let snippet = snippet(&story.text, start, end, query);
            out.push(StoryHit {
                story,
                score,
                cosine,
                bm25,
                snippet,
            });
        }
        Ok(out)
    }
}

/// A readable passage of `text[start..end]`: where the query's terms are densest when
/// there is a query, else the start; cut on character boundaries.
pub(crate) fn snippet(text: &str, start: usize, end: usize, query: Option<&str>) -> String {
    let window = text.get(start..end.min(text.len())).unwrap_or(text).trim();
    let chars: Vec<char> = window.chars().collect();
    let from = query.map_or(0, |q| densest_start(&chars, q));
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    out.extend(chars[from..].iter().take(SNIPPET_CHARS));
    if chars.len() > from + SNIPPET_CHARS {
        out.push('…');
    }
    out
}

/// The character offset to start a snippet at so it shows the most distinct query
/// terms, moved back to the start of its sentence when that is near.
fn densest_start(chars: &[char], query: &str) -> usize {
    // Lower case and Simplified, one character for one: offsets stay those of `chars`.
    let lower: Vec<char> = crate::lexical::fold_text(&chars.iter().collect::<String>());
    if lower.len() != chars.len() || chars.len() <= SNIPPET_CHARS {
        return 0;
    }
    // The query's terms, the Chinese forms of the names it asks for in English and the
    // Chinese renderings of its English words.
    let terms: Vec<Vec<char>> = crate::lexical::query_terms(query)
        .into_iter()
        .chain(crate::lexical::chinese_forms(query))
        .chain(
            crate::lexical::translations(query)
                .into_iter()
                .flat_map(|t| t.form_texts()),
        )
        .map(|t| crate::lexical::fold_text(&t))
        .collect();
    // (position, term) of every occurrence.
    let mut hits: Vec<(usize, usize)> = Vec::new();
    for (t, term) in terms.iter().enumerate() {
        if term.is_empty() || term.len() > lower.len() {
            continue;
        }
        for i in 0..=lower.len() - term.len() {
            if lower[i..i + term.len()] == term[..] {
                hits.push((i, t));
            }
        }
    }
    hits.sort_unstable();
    let span = SNIPPET_CHARS * 3 / 4;
    let mut best = (0usize, 0usize);
    for (i, &(pos, _)) in hits.iter().enumerate() {
        let mut seen: Vec<usize> = hits[i..]
            .iter()
            .take_while(|(p, _)| *p < pos + span)
            .map(|&(_, t)| t)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() > best.0 {
            best = (seen.len(), pos);
        }
    }
    if best.0 == 0 {
        return 0;
    }
    // Back to a sentence start within 60 characters, else 20 characters of context.
    let pos = best.1;
    let floor = pos.saturating_sub(60);
    let start = (floor..pos)
        .rev()
        .find(|&i| matches!(chars[i], '。' | '！' | '？' | '\n' | '.' | '!' | '?'))
        .map_or(pos.saturating_sub(20), |i| i + 1)
        .min(chars.len().saturating_sub(SNIPPET_CHARS));
    // Never start inside a Latin word ("…on Dynamics"): back to its first letter.
    let mut start = start;
    let latin = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let limit = start.saturating_sub(24);
    while start > limit && latin(chars[start - 1]) && latin(chars[start]) {
        start -= 1;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_by_name_and_unknown_ones_say_what_is_allowed() {
        assert_eq!("Vector".parse::<SearchMode>().unwrap(), SearchMode::Vector);
        assert_eq!("".parse::<SearchMode>().unwrap(), SearchMode::Hybrid);
        let err = "fuzzy".parse::<SearchMode>().unwrap_err();
        assert_eq!(err.code, "invalid_mode");
        assert!(err.message.contains("vector, lexical or hybrid"));
    }

    #[test]
    fn snippets_cut_long_windows_on_a_character_boundary() {
        let text = "英".repeat(400);
        let s = snippet(&text, 0, text.len(), None);
        assert_eq!(s.chars().count(), SNIPPET_CHARS + 1);
        assert!(s.ends_with('…'));
        assert_eq!(snippet("short text", 0, 10, Some("text")), "short text");
    }

    #[test]
    fn snippets_never_start_inside_a_latin_word() {
        let text = format!(
            "{}。Boston Dynamics推出新款Atlas人形机器人。{}",
            "无关".repeat(300),
            "其他".repeat(300)
        );
        let s = snippet(&text, 0, text.len(), Some("人形机器人"));
        assert!(s.starts_with("…Boston Dynamics"), "{s}");
    }

    #[test]
    fn each_kind_is_levelled_by_the_same_number_of_its_best_scores() {
        let digest = vec![0.9, 0.8, 0.7, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5];
        let archive: Vec<f32> = (0..40).map(|i| 0.95 - i as f32 * 0.001).collect();
        let levels = kind_levels(
            &[
                (SourceKind::Digest, digest.clone()),
                (SourceKind::Archive, archive.clone()),
            ],
            0.5,
            50,
        );
        // Ten each: the digest's ten, the archive's best ten (not its forty).
        let mean = |s: &[f32]| s.iter().sum::<f32>() / s.len() as f32;
        assert!((levels.of(SourceKind::Digest) - 0.5 * mean(&digest)).abs() < 1e-6);
        assert!((levels.of(SourceKind::Archive) - 0.5 * mean(&archive[..10])).abs() < 1e-6);
        // A kind with too few stories in range takes the largest kind's level.
        let few = kind_levels(
            &[
                (SourceKind::Digest, vec![0.99, 0.98]),
                (SourceKind::Archive, archive.clone()),
            ],
            0.5,
            20,
        );
        assert_eq!(few.of(SourceKind::Digest), few.of(SourceKind::Archive));
        assert!((few.of(SourceKind::Archive) - 0.5 * mean(&archive[..20])).abs() < 1e-6);
        // Off: nothing is taken off.
        let off = kind_levels(&[(SourceKind::Archive, archive)], 0.0, 50);
        assert_eq!(off.of(SourceKind::Archive), 0.0);
    }

    #[test]
    fn calibrating_kinds_leaves_a_store_of_one_kind_in_the_same_order() {
        use crate::embed::fake::FakeEncoder;
        use crate::embed::Encoder;
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let encoder = Arc::new(FakeEncoder::default());
        let store =
            crate::store::Store::open(dir.path(), encoder.model_id(), encoder.dimension()).unwrap();
        let plain = Service::new(Arc::new(store), encoder, 0.9);
        let words = [
            "robot", "chip", "model", "funding", "humanoid", "factory", "agent",
        ];
        let mut digest = "---\ntitle: \"t\"\ndate: 2026-01-06T12:00:00+08:00\n---\n\n".to_owned();
        for i in 0..14 {
            let text = format!("{} {} news {i}", words[i % 7], words[(i * 3 + 1) % 7]);
            digest.push_str(&format!(
                "{n}.  [{text}](https://example.com/{n})\n\n    {text}, in detail.\n\n",
                n = i + 1
            ));
        }
        plain.ingest_text("d.md", &digest).unwrap();
        let calibrated = plain.clone_with_ranking(plain.ranking().with_collection_shift(0.5));
        let plain = plain.clone_with_ranking(plain.ranking().with_collection_shift(0.0));
        let query = QueryText::new("humanoid robot factory").unwrap();
        for mode in [SearchMode::Vector, SearchMode::Hybrid] {
            let ids = |s: &Service| -> Vec<String> {
                s.search(&query, TopK::new(10).unwrap(), DateRange::ALL, mode)
                    .unwrap()
                    .into_iter()
                    .map(|h| h.story.id)
                    .collect()
            };
            assert_eq!(ids(&plain).len(), 10);
            assert_eq!(ids(&plain), ids(&calibrated), "{mode:?}");
        }
    }

    #[test]
    fn a_query_word_longer_than_the_passage_is_simply_not_found() {
        let text = "新闻".repeat(400);
        let query = "a".repeat(1500);
        assert!(snippet(&text, 0, text.len(), Some(&query)).starts_with("新闻"));
    }

    #[test]
    fn snippets_show_where_the_query_terms_are() {
        let text = format!(
            "{}。Atlas机器人最大搬运能力达50公斤，具备56个自由度。{}",
            "无关内容".repeat(100),
            "其他".repeat(300)
        );
        let s = snippet(&text, 0, text.len(), Some("Atlas 50公斤"));
        assert!(s.starts_with("…Atlas机器人"), "{s}");
        // A name asked for in English is found where the Chinese text names it.
        let text = format!(
            "{}。马斯克称特斯拉机器人明年量产。{}",
            "无关内容".repeat(100),
            "其他".repeat(300)
        );
        let s = snippet(&text, 0, text.len(), Some("Musk on Tesla robots"));
        assert!(s.starts_with("…马斯克称"), "{s}");
    }
}
