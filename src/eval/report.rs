//! The text report `storydex eval` prints: every split, with the language data on and
//! off, the ranking variants of `--sweep`, and the check's calibration.
//!
//! Owns: running the scorers of [`super`] over the splits and formatting the rows.
//! Must not: score anything itself.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use super::*;

/// What `storydex eval` prints: search per split and mode (the v1 ranking and the plain
/// single-vector baseline beside them), the check on English posts, the score
/// distributions, and with `sweep` the ranking variants on the tuning splits.
pub fn report(
    service: &Service,
    sets: &Path,
    sweep: bool,
    verbose: bool,
) -> Result<String, EvalError> {
    let mut queries = load_queries(&sets.join("search.toml"))?;
    let mut posts = load_posts(&sets.join("check_en.toml"))?;
    for blind in ["blind4", "blind5", "blind6", "blind7"] {
        let dir = sets.join("blind");
        queries.extend(load_queries(&dir.join(format!("search_{blind}.toml")))?);
        posts.extend(load_posts(&dir.join(format!("check_{blind}.toml")))?);
    }
    let repeats = load_repeats(&sets.join("repeats_zh.toml"))?;
    let mut vectors = HashMap::new();
    // The whole report with the language data (folding and translation) and without,
    // in one run: the lexical index is rebuilt for each.
    let lexicon = crate::lexical::lexicon();
    let mut summary: Vec<(Split, &str, SearchScore, CheckScore)> = Vec::new();
    let mut sections = String::new();
    for (label, data) in [("on", lexicon.clone()), ("off", None)] {
        if label == "off" && lexicon.is_none() {
            continue;
        }
        crate::lexical::use_lexicon(data);
        service.refresh_lexical_index()?;
        let _ = writeln!(
            sections,
            "==== language data (Traditional/Simplified folding, CC-CEDICT translation) {label}\n"
        );
        let (text, rows) = report_section(
            service,
            &queries,
            &posts,
            &repeats,
            sweep && label == "on",
            verbose,
            &mut vectors,
        )?;
        sections.push_str(&text);
        summary.extend(rows.into_iter().map(|(split, s, c)| (split, label, s, c)));
        if label == "on" {
            sections.push_str(&calibration_report(service, &posts)?);
        }
    }
    crate::lexical::use_lexicon(lexicon);
    service.refresh_lexical_index()?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "summary: hybrid search and the English-post check per split, language data on / off"
    );
    let _ = writeln!(
        out,
        "  split     data  queries  MRR@10  hit@1  hit@10  | posts  found first  false alarms  check verdicts (covered / different)"
    );
    for split in Split::ALL {
        for (s, label, search, check) in summary.iter().filter(|r| r.0 == split) {
            let _ = writeln!(
                out,
                "  {:<9} {:<4}  {:>7}  {:.3}   {:>2}/{:<2}  {:>2}/{:<2}  | {:>5}  {:>5}/{:<5}  {:>5}/{:<6}  {}/{}",
                s.name(),
                label,
                search.queries,
                search.mrr10,
                search.hit1,
                search.queries,
                search.hit10,
                search.queries,
                check.covered + check.different,
                check.found_first,
                check.covered,
                check.false_alarms,
                check.different,
                check.check_covered,
                check.check_different,
            );
        }
    }
    out.push('\n');
    out.push_str(&sections);
    Ok(out)
}

/// One language-data condition of [`report`]: search per split and mode, the check per
/// split, the score distributions and, with `sweep`, the ranking variants; with the
/// hybrid search and check scores per split for the summary.
#[allow(clippy::type_complexity)]
fn report_section(
    service: &Service,
    queries: &[Query],
    posts: &[Post],
    repeats: &[(String, String)],
    sweep: bool,
    verbose: bool,
    vectors: &mut HashMap<String, Vec<f32>>,
) -> Result<(String, Vec<(Split, SearchScore, CheckScore)>), EvalError> {
    let current = service.ranking();
    let mut hybrid: HashMap<Split, SearchScore> = HashMap::new();
    let mut checks: Vec<(Split, SearchScore, CheckScore)> = Vec::new();
    let mut out = String::new();
    let header = "  ranking                               queries  MRR@10  hit@1   hit@10  nDCG@10";
    for split in Split::ALL {
        if !queries.iter().any(|q| q.split == split) {
            continue;
        }
        let _ = writeln!(out, "search, {} split", split.name());
        let _ = writeln!(out, "{header}");
        let v1 = Ranking {
            deep_window_penalty: 0.0,
            collection_shift: 0.0,
            ..current
        };
        let baseline = Ranking {
            deep_window_penalty: 1.0,
            collection_shift: 0.0,
            ..current
        };
        let uncalibrated = current.with_collection_shift(0.0);
        let rows: [(&str, Ranking, SearchMode); 7] = [
            ("v1: vector, max over windows", v1, SearchMode::Vector),
            (
                "baseline: vector, first window only",
                baseline,
                SearchMode::Vector,
            ),
            (
                "vector, kinds not calibrated",
                uncalibrated,
                SearchMode::Vector,
            ),
            ("vector", current, SearchMode::Vector),
            ("lexical (BM25)", current, SearchMode::Lexical),
            (
                "hybrid, kinds not calibrated",
                uncalibrated,
                SearchMode::Hybrid,
            ),
            ("hybrid (default)", current, SearchMode::Hybrid),
        ];
        for (name, ranking, mode) in rows {
            let tuned = with_ranking(service, ranking);
            let s = score_search(&tuned, queries, Some(split), mode, vectors)?;
            let _ = writeln!(out, "{}", search_row(name, &s));
            if name == "hybrid (default)" {
                hybrid.insert(split, s.clone());
            }
            if mode == SearchMode::Hybrid {
                let kinds: Vec<String> = s
                    .by_kind
                    .iter()
                    .map(|(k, n, mrr)| format!("{k} {mrr:.2} ({n})"))
                    .collect();
                let _ = writeln!(out, "    MRR@10 by kind: {}", kinds.join(", "));
                for (id, text, top) in &s.misses {
                    if verbose || split != Split::Tune {
                        let _ = writeln!(out, "    not first: {id} {text}: top {top:?}");
                    }
                }
            }
        }
        let _ = writeln!(out);
    }
    for split in Split::ALL {
        if !posts.iter().any(|p| p.split == split) {
            continue;
        }
        let c = score_check(service, posts, Some(split))?;
        let _ = writeln!(
            out,
            "check, English posts against the Chinese archive, {} split\n  covered events found first {}/{} (any rank {}), false alarms {}/{}, recall {:.3}, precision {:.3}",
            split.name(),
            c.found_first,
            c.covered,
            c.found_any,
            c.false_alarms,
            c.different,
            c.recall(),
            c.precision()
        );
        let _ = writeln!(
            out,
            "  verdict check (editor compares): {} of the covered posts without coverage found, {} of the different ones",
            c.check_covered, c.check_different
        );
        for m in &c.misses {
            let _ = writeln!(out, "    {m}");
        }
        checks.push((split, hybrid.remove(&split).unwrap_or_default(), c));
    }
    for (split, s) in hybrid {
        checks.push((split, s, CheckScore::default()));
    }
    let pairs: Vec<(&str, &str)> = repeats
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let _ = writeln!(out, "\npair scores by language pair (tune split)");
    out.push_str(&score_distributions(
        service,
        posts,
        Some(Split::Tune),
        &pairs,
    )?);
    if verbose {
        for split in [Split::Heldout, Split::Fresh, Split::Fresh2, Split::Fresh3] {
            if !posts.iter().any(|p| p.split == split) {
                continue;
            }
            let _ = writeln!(out, "pair scores by language pair ({} split)", split.name());
            out.push_str(&score_distributions(service, posts, Some(split), &pairs)?);
        }
    }
    if sweep {
        // What ranking changes are chosen on: the tune half and `fresh`. The other
        // splits are only reported.
        let tuning: Vec<Query> = queries
            .iter()
            .filter(|q| matches!(q.split, Split::Tune | Split::Fresh))
            .cloned()
            .collect();
        let _ = writeln!(
            out,
            "\nranking variants, tuning splits: tune and fresh (hybrid unless named)"
        );
        let _ = writeln!(out, "{header}");
        for (name, ranking) in sweep_variants(current) {
            let tuned = with_ranking(service, ranking);
            let s = score_search(&tuned, &tuning, None, SearchMode::Hybrid, vectors)?;
            let _ = writeln!(out, "{}", search_row(&name, &s));
            if name.starts_with("deep") {
                let s = score_search(&tuned, &tuning, None, SearchMode::Vector, vectors)?;
                let _ = writeln!(out, "{}", search_row(&format!("  vector {name}"), &s));
            }
        }
    }
    Ok((out, checks))
}

fn search_row(name: &str, s: &SearchScore) -> String {
    format!(
        "  {name:<38} {:>7}  {:.3}   {:>2}/{:<2}   {:>2}/{:<2}   {:.3}",
        s.queries, s.mrr10, s.hit1, s.queries, s.hit10, s.queries, s.ndcg10
    )
}

/// A view of `service` ranking with other knobs (same store, same encoder).
fn with_ranking(service: &Service, ranking: Ranking) -> Service {
    service.clone_with_ranking(ranking)
}

/// The check's confidence against the labelled posts of the tuning splits (`tune` and
/// `fresh`): the logistic fit of "the top candidate reports the post's event" on its
/// score less threshold (what the manifest's `confidence_slope` and
/// `confidence_intercept` hold), its five-fold cross-validated reliability, and the
/// reliability of the confidence in use on every split.
fn calibration_report(service: &Service, posts: &[Post]) -> Result<String, EvalError> {
    let mut points: Vec<(Split, f64, bool, f32)> = Vec::new();
    for p in posts {
        let checked = service.check_text(&format!("{}.md", p.id), &p.as_digest())?;
        let Some(item) = checked.first() else {
            continue;
        };
        let Some(top) = item.previous_coverage.first().or(item.nearest.as_ref()) else {
            continue;
        };
        let same = p.covered_by.contains(&top.story.id);
        points.push((
            p.split,
            f64::from(top.score - top.reason.threshold),
            same,
            top.confidence,
        ));
    }
    let tuning: Vec<(f64, bool)> = points
        .iter()
        .filter(|p| matches!(p.0, Split::Tune | Split::Fresh))
        .map(|p| (p.1, p.2))
        .collect();
    let mut out = String::new();
    let (slope, intercept) = fit_logistic(&tuning);
    let _ = writeln!(
        out,
        "\nconfidence: logistic fit on the tuning splits' top candidates (n={}): slope {slope:.1}, intercept {intercept:.2} (in use: {:.1}, {:.2})",
        tuning.len(),
        service.tuning().confidence_slope,
        service.tuning().confidence_intercept
    );
    // Five folds, every fifth point held out in turn.
    let mut held: Vec<(f64, bool)> = Vec::new();
    for fold in 0..5 {
        let train: Vec<(f64, bool)> = tuning
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 5 != fold)
            .map(|(_, p)| *p)
            .collect();
        let (a, b) = fit_logistic(&train);
        held.extend(
            tuning
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 5 == fold)
                .map(|(_, &(x, y))| (1.0 / (1.0 + (-(a * x + b)).exp()), y)),
        );
    }
    let _ = writeln!(
        out,
        "  five-fold cross-validated reliability (tuning splits): {}",
        reliability(&held)
    );
    for split in Split::ALL {
        let inuse: Vec<(f64, bool)> = points
            .iter()
            .filter(|p| p.0 == split)
            .map(|p| (f64::from(p.3), p.2))
            .collect();
        if !inuse.is_empty() {
            let _ = writeln!(
                out,
                "  {:<8} confidence in use: {}",
                split.name(),
                reliability(&inuse)
            );
        }
    }
    Ok(out)
}

/// Predicted against observed, in bins of predicted probability.
fn reliability(points: &[(f64, bool)]) -> String {
    let bins = [
        (0.0, 0.1),
        (0.1, 0.3),
        (0.3, 0.5),
        (0.5, 0.7),
        (0.7, 0.9),
        (0.9, 1.01),
    ];
    let parts: Vec<String> = bins
        .iter()
        .filter_map(|&(lo, hi)| {
            let inside: Vec<&(f64, bool)> =
                points.iter().filter(|(p, _)| *p >= lo && *p < hi).collect();
            (!inside.is_empty()).then(|| {
                let mean = inside.iter().map(|(p, _)| p).sum::<f64>() / inside.len() as f64;
                let same = inside.iter().filter(|(_, y)| *y).count();
                format!("{:.2}→{}/{}", mean, same, inside.len())
            })
        })
        .collect();
    let brier = points
        .iter()
        .map(|(p, y)| (p - f64::from(u8::from(*y))).powi(2))
        .sum::<f64>()
        / points.len().max(1) as f64;
    format!("{} (predicted→same/n), Brier {brier:.3}", parts.join("  "))
}

/// Logistic regression of `y` on `x` (Newton's method, a little ridge so separable
/// points still give finite weights): `(slope, intercept)`.
fn fit_logistic(points: &[(f64, bool)]) -> (f64, f64) {
    let (mut a, mut b) = (0.0f64, 0.0f64);
    for _ in 0..50 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-4, 0.0, 1e-4);
        for &(x, y) in points {
            let p = 1.0 / (1.0 + (-(a * x + b)).exp());
            let r = p - f64::from(u8::from(y));
            ga += r * x;
            gb += r;
            let w = p * (1.0 - p);
            haa += w * x * x;
            hab += w * x;
            hbb += w;
        }
        ga += 1e-4 * a;
        gb += 1e-4 * b;
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-12 {
            break;
        }
        a -= (hbb * ga - hab * gb) / det;
        b -= (haa * gb - hab * ga) / det;
    }
    (a, b)
}
