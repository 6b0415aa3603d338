//! The raw signals behind the evaluation, as JSON lines for refitting offline
//! (`storydex eval --dump-search`, `--dump-check`).
//!
//! Owns: what each row holds. Must not: score anything (that is the report).

use std::collections::HashSet;

use super::{EvalError, Post, Query};
use crate::cluster::{pair_score, Params};
use crate::domain::DateRange;
use crate::service::{Service, ServiceError};
use crate::vector::{dot, mean_unit_vector};

/// Everything a search ranking could be refitted from offline
/// (`storydex eval --dump-search FILE`): one `query` row per labelled query (its vector,
/// the stories allowed by its date filter and its BM25 candidates), then one `story`
/// row per stored story (its vector and every window's start and vector).
pub fn search_signals(
    service: &Service,
    queries: &[Query],
) -> Result<Vec<serde_json::Value>, EvalError> {
    let stored = service.story_vectors()?;
    let mut out = Vec::new();
    for q in queries {
        let range =
            DateRange::parse(q.since.as_deref(), q.until.as_deref()).map_err(ServiceError::from)?;
        let vector = service
            .encoder()
            .embed_query(&q.text)
            .map_err(ServiceError::from)?;
        let lexical = service.lexical_candidates(&q.text, 100, range)?;
        let allowed: Vec<&str> = stored
            .iter()
            .filter(|s| range.contains_day(s.day))
            .map(|s| s.id.as_str())
            .collect();
        out.push(serde_json::json!({
            "row": "query", "id": q.id, "split": q.split.name(), "kind": q.kind,
            "lang": q.lang, "text": q.text, "relevant": q.relevant,
            "allowed": allowed, "lexical": lexical, "vector": vector,
        }));
    }
    for s in &stored {
        let windows: Vec<serde_json::Value> = service
            .story_windows(&s.id)?
            .into_iter()
            .map(|(m, v)| serde_json::json!({"start": m.start, "end": m.end, "vector": v}))
            .collect();
        out.push(serde_json::json!({
            "row": "story", "id": s.id, "vector": s.vector, "windows": windows,
        }));
    }
    Ok(out)
}

/// One candidate of one post, with the signals a coverage rule could use (for fitting
/// rules offline: `storydex eval --dump-check FILE` writes these as JSON lines).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CandidateSignals {
    pub post: String,
    pub split: &'static str,
    pub kind: String,
    pub story: String,
    pub truth: bool,
    pub score: f32,
    pub cosine: f32,
    pub head_cosine: f32,
    pub vector_rank: usize,
    pub lexical_rank: Option<usize>,
    pub bm25: Option<f32>,
    pub top_bm25: Option<f32>,
    pub languages: String,
    pub term_overlap: f32,
    /// Best window cosine of the story against the post's headline embedded as a query.
    pub headline_query_cosine: f32,
    /// The same against the whole post (headline and body) embedded as a query.
    pub post_query_cosine: f32,
    /// Share of the post headline's names the story has ([`crate::lexical::names_found`]).
    pub headline_names: Option<f32>,
    /// The post's Latin terms: (term, stories holding it, whether this story has it).
    pub terms: Vec<(String, usize, bool)>,
    pub title: String,
}

pub fn candidate_signals(
    service: &Service,
    posts: &[Post],
) -> Result<Vec<CandidateSignals>, EvalError> {
    let params = Params::with_threshold(service.duplicate_threshold());
    let stored = service.story_vectors()?;
    let mut out = Vec::new();
    for p in posts {
        let parsed =
            crate::corpus::parse_str("post.md", &p.as_digest()).map_err(ServiceError::from)?;
        let story = &parsed.stories[0];
        let windows = service
            .encoder()
            .embed_passages(&[story.text.as_str()])
            .map_err(ServiceError::from)?;
        let vector = mean_unit_vector(windows[0].iter().map(|w| w.vector.as_slice()));
        let draft = crate::service::cluster_item(
            "post",
            story.published,
            story.url.as_deref(),
            vector.clone(),
        );
        let lexical = service.lexical_candidates(&story.text, 50, DateRange::ALL)?;
        let top_bm25 = lexical.first().map(|l| l.1);
        let headline_query = service
            .encoder()
            .embed_query(&story.headline)
            .map_err(ServiceError::from)?;
        let post_query = service
            .encoder()
            .embed_query(&story.text)
            .map_err(ServiceError::from)?;
        let latin = crate::lexical::latin_terms(&story.text);
        let names = crate::lexical::headline_names(&story.headline);
        let (total, df) = service.document_frequencies(&latin)?;
        let mut scored: Vec<(usize, f32, f32)> = stored
            .iter()
            .enumerate()
            .filter(|(_, s)| crate::service::could_have_covered(s.published, story.published))
            .map(|(i, s)| {
                let item = crate::service::story_item(s);
                let cos = dot(&vector, &s.vector);
                (i, pair_score(&draft, &item, cos, &params), cos)
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        // The best twelve by pair score, and the best ten by BM25 wherever they rank.
        let by_terms: HashSet<&str> = lexical.iter().take(10).map(|l| l.0.as_str()).collect();
        let picked = scored
            .into_iter()
            .enumerate()
            .filter(|(rank, (i, _, _))| *rank < 12 || by_terms.contains(stored[*i].id.as_str()));
        for (rank, (i, score, cosine)) in picked {
            let s = &stored[i];
            let windows = service.story_windows(&s.id)?;
            let head = windows.first().map_or(0.0, |(_, v)| dot(&vector, v));
            let best_window = |q: &[f32]| {
                windows
                    .iter()
                    .map(|(_, v)| dot(q, v))
                    .fold(f32::MIN, f32::max)
            };
            let lexical_rank = lexical.iter().position(|(id, _)| *id == s.id);
            let text = service.story(&s.id)?.text;
            let other_terms: HashSet<String> =
                crate::lexical::index_terms(&text).into_iter().collect();
            let term_overlap = crate::lexical::term_overlap(&latin, &other_terms, total, &df);
            out.push(CandidateSignals {
                post: p.id.clone(),
                split: p.split.name(),
                kind: p.kind.clone(),
                story: s.id.clone(),
                truth: p.covered_by.contains(&s.id),
                score,
                cosine,
                head_cosine: head,
                vector_rank: rank,
                lexical_rank,
                bm25: lexical_rank.map(|r| lexical[r].1),
                top_bm25,
                languages: format!(
                    "{}-{}",
                    crate::lexical::language(&story.text),
                    crate::lexical::language(&text)
                ),
                term_overlap,
                headline_query_cosine: best_window(&headline_query),
                post_query_cosine: best_window(&post_query),
                headline_names: crate::lexical::names_found(&names, &other_terms),
                terms: latin
                    .iter()
                    .map(|t| {
                        (
                            t.clone(),
                            df.get(t).copied().unwrap_or(0),
                            other_terms.contains(t),
                        )
                    })
                    .collect(),
                title: p.title.clone(),
            });
        }
    }
    Ok(out)
}
