//! "Was this already covered?": a draft digest checked against the archive; nothing is
//! stored.
//!
//! Owns: reading a draft (one digest, never an archive), embedding it a batch at a time
//! ([`DraftCheck`]: the server feeds the batches to its queue, the CLI to the model),
//! the coverage rule (which stored stories could have covered an item, the pair score
//! with its cross-language signals and per-language-pair thresholds) and the nearest
//! miss. Must not: write to the store.

use std::collections::{HashMap, HashSet};

use time::OffsetDateTime;

use super::duplicates::item;
use super::{Service, ServiceError, Tuning};
use crate::cluster::{pair_score, Item};
use crate::corpus::{self, ParseError, ParsedFile, SourceKind, Story};
use crate::embed::Window;
use crate::store::StoredStory;
use crate::vector::dot;

/// An earlier story that already covered a draft item.
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    pub story: StoredStory,
    /// Pair score (cosine adjusted for same link and time gap, plus the cross-language
    /// signals of [`MatchReason`]).
    pub score: f32,
    /// The calibrated probability that the two report the same event
    /// ([`Tuning::confidence`]).
    pub confidence: f32,
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
    /// For a cross-language pair, with language data: the share of the draft's
    /// dictionary-translated words that the story holds in its own language, weighted by
    /// rarity and one over each word's senses (part of the score).
    pub translated_overlap: Option<f32>,
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
        let translated = self.translated_overlap.map_or(String::new(), |o| {
            format!(", {:.0}% of translated words shared", o * 100.0)
        });
        let margin = self.margin.map_or(String::new(), |m| {
            format!(", {m:+.3} against the best other event")
        });
        format!(
            "{} threshold {:.3}, cosine {:.3}{terms}{translated}{names}{margin}, {link}{days}",
            self.languages, self.threshold, self.cosine
        )
    }
}

/// What the check concludes about one draft item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// An earlier story reached its threshold: the event is already covered.
    Covered,
    /// None reached it, but the nearest is likely the same event: the editor decides.
    Check,
    /// Nothing earlier is likely the same event.
    New,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Covered => "covered",
            Verdict::Check => "check",
            Verdict::New => "new",
        }
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
    /// Covered, check or new.
    pub verdict: Verdict,
}

/// Stories per model call when checking a draft, as an ingest commits them: a search
/// waits for at most one such batch.
const CHECK_BATCH: usize = 8;

/// Stories compared per draft item: the nearest windows in the index.
const CHECK_CANDIDATES: usize = 40;
/// At most this many earlier stories are listed per draft item.
const MAX_COVERAGE: usize = 10;
/// The most a story's margin over other events can count: past it a story stands alone
/// (covered posts in the labelled sets stood at most 0.096 above the rest). Without a cap
/// an undated story among candidates that the time gap pushes far down (an episode beside
/// stories months older than the draft) would count as a certain match.
const MAX_MARGIN: f32 = 0.1;

/// Reads a draft: one digest in the digest format. An archive is refused with
/// `archive_refusal` as the message: its ids come from the file name, which a pasted or
/// posted text does not have.
pub fn parse_draft(
    source: &str,
    text: &str,
    archive_refusal: &str,
) -> Result<ParsedFile, ParseError> {
    let parsed = corpus::parse_str(source, text)?;
    if parsed.digest.kind == SourceKind::Archive {
        return Err(ParseError {
            source_name: source.to_owned(),
            line: 1,
            message: archive_refusal.to_owned(),
        });
    }
    Ok(parsed)
}

/// A draft being checked: its stories, and the windows of those embedded so far.
///
/// The model calls are the caller's: [`DraftCheck::next_batch`] says which texts to embed
/// next (a few stories at a time, so that searches sharing the model slip in between),
/// [`DraftCheck::add_embedded`] takes their windows, and [`Service::finish_check`] compares
/// the embedded draft with the store.
#[derive(Debug)]
pub struct DraftCheck {
    stories: Vec<Story>,
    windows: Vec<Vec<Window>>,
}

impl DraftCheck {
    pub fn new(parsed: ParsedFile) -> Self {
        Self {
            windows: Vec::with_capacity(parsed.stories.len()),
            stories: parsed.stories,
        }
    }

    /// The texts of the next stories to embed, or `None` once all are embedded.
    pub fn next_batch(&self) -> Option<Vec<String>> {
        let done = self.windows.len();
        (done < self.stories.len()).then(|| {
            self.stories[done..(done + CHECK_BATCH).min(self.stories.len())]
                .iter()
                .map(|s| s.text.clone())
                .collect()
        })
    }

    /// The windows of the batch [`DraftCheck::next_batch`] gave, in its order.
    pub fn add_embedded(&mut self, windows: Vec<Vec<Window>>) {
        self.windows.extend(windows);
    }
}

impl Service {
    /// For each item of a draft digest (not stored), the earlier stories of other digests
    /// that report the same event, best first.
    pub fn check_text(&self, source: &str, text: &str) -> Result<Vec<CheckedItem>, ServiceError> {
        // One model call for the whole draft: the CLI has the model to itself (the server
        // embeds a batch at a time, [`DraftCheck`]).
        let parsed = corpus::parse_str(source, text)?;
        let texts: Vec<&str> = parsed.stories.iter().map(|s| s.text.as_str()).collect();
        let windows = self.encoder.embed_passages(&texts)?;
        self.check_embedded(parsed.stories, windows)
    }

    /// Compares an embedded draft with the store (the HTTP server embeds it on its own
    /// queue, [`DraftCheck`]).
    pub fn finish_check(&self, draft: DraftCheck) -> Result<Vec<CheckedItem>, ServiceError> {
        self.check_embedded(draft.stories, draft.windows)
    }

    /// [`Service::check_text`] for stories already embedded elsewhere: `windows[i]` are
    /// the windows of `stories[i]`.
    pub fn check_embedded(
        &self,
        stories: Vec<Story>,
        windows: Vec<Vec<Window>>,
    ) -> Result<Vec<CheckedItem>, ServiceError> {
        debug_assert_eq!(stories.len(), windows.len(), "one window list per story");
        let mut out = Vec::with_capacity(stories.len());
        for (story, windows) in stories.into_iter().zip(windows) {
            let vector = crate::embed::story_vector(&windows);
            let (previous_coverage, nearest) = self.coverage_and_nearest(&story, &vector)?;
            let verdict = if !previous_coverage.is_empty() {
                Verdict::Covered
            } else if nearest
                .as_ref()
                .is_some_and(|n| n.confidence >= self.tuning.check_confidence)
            {
                Verdict::Check
            } else {
                Verdict::New
            };
            out.push(CheckedItem {
                story,
                previous_coverage,
                nearest,
                verdict,
            });
        }
        Ok(out)
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
        let weigh_translations = self.tuning.cross_language_translation_weight > 0.0;
        let translations = if weigh_translations {
            crate::lexical::translations(&story.text)
        } else {
            Vec::new()
        };
        let (stories, df) = if self.tuning.cross_language_term_weight > 0.0 || weigh_translations {
            let mut terms = latin.clone();
            terms.extend(translations.iter().flat_map(|t| t.forms.concat()));
            self.store.document_frequencies(&terms)?
        } else {
            (0, HashMap::new())
        };
        let translation_idf =
            |t: &crate::lexical::Translation| -> f32 { rendering_idf(t, stories, &df) };
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
            let cosine = dot(&draft.vector, &other_item.vector);
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
            let (term_overlap, headline_names, translated_overlap) = if cross
                && (weigh_terms || weigh_names || weigh_translations)
            {
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
                let translated = (weigh_translations && !translations.is_empty()).then(|| {
                    crate::lexical::translated_overlap(&translations, &other_terms, translation_idf)
                });
                (overlap, found, translated)
            } else {
                (None, None, None)
            };
            let margin = (cross && weigh_margin).then(|| margins[i]);
            let score = candidate.score
                + cross_language_bonus(&self.tuning, term_overlap, headline_names, margin)
                + translated_overlap
                    .map_or(0.0, |o| self.tuning.cross_language_translation_weight * o);
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
                    translated_overlap,
                    headline_names,
                    margin,
                };
                let coverage = Coverage {
                    story: candidate.story,
                    score,
                    confidence: self.tuning.confidence(score, threshold),
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

/// How rare a translated word's renderings are: the IDF of its rarest rendering that
/// some story holds, a rendering counting as rare as its rarest term (an upper bound
/// on the phrase's own IDF); 0 when no story holds any (no evidence either way).
fn rendering_idf(
    t: &crate::lexical::Translation,
    stories: usize,
    df: &HashMap<String, usize>,
) -> f32 {
    t.forms
        .iter()
        .filter_map(|form| {
            form.iter()
                .map(|term| df.get(term).copied().unwrap_or(0))
                .min()
                .filter(|&d| d > 0)
        })
        .map(|d| ((stories as f32) / (1.0 + d as f32)).ln().max(0.0))
        .fold(0.0, f32::max)
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
    tuning: &Tuning,
    term_overlap: Option<f32>,
    headline_names: Option<f32>,
    margin: Option<f32>,
) -> f32 {
    term_overlap.map_or(0.0, |o| tuning.cross_language_term_weight * o)
        + headline_names.map_or(0.0, |f| tuning.cross_language_name_weight * (f - 0.5))
        + margin.map_or(0.0, |m| tuning.cross_language_margin_weight * m)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_draft_is_embedded_a_few_stories_at_a_time_in_order() {
        let mut text = "---\ntitle: \"t\"\ndate: 2026-01-06T12:00:00+08:00\n---\n\n".to_owned();
        for n in 1..=10 {
            text.push_str(&format!(
                "{n}.  [Story {n}](https://example.com/{n})\n\n    Story {n}, in detail.\n\n"
            ));
        }
        let mut draft = DraftCheck::new(corpus::parse_str("draft", &text).unwrap());
        let mut sizes = Vec::new();
        while let Some(texts) = draft.next_batch() {
            assert!(texts[0].contains(&format!("Story {}", sizes.iter().sum::<usize>() + 1)));
            sizes.push(texts.len());
            draft.add_embedded(vec![Vec::new(); texts.len()]);
        }
        assert_eq!(sizes, [CHECK_BATCH, 10 - CHECK_BATCH]);
        assert_eq!(draft.windows.len(), draft.stories.len());
    }

    #[test]
    fn an_archive_is_not_a_draft() {
        let archive = include_str!("../../data/sample/003_ac231d0ff860caab.txt");
        let e = parse_draft("pasted", archive, "not a digest").unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (1, "not a digest"));
        let digest = "---\ntitle: \"t\"\ndate: 2026-01-06T12:00:00+08:00\n---\n\n1.  [A](https://a.example)\n\n    A.\n";
        assert!(parse_draft("pasted", digest, "not a digest").is_ok());
    }
}
