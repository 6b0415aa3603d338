//! The calibrated knobs: same-event thresholds per language pair and the search ranking.
//!
//! Owns: the `[thresholds]` and `[search]` tables of a model manifest as plain data, and
//! [`Tuning`], the form the service uses. Must not: import anything from the rest of the
//! crate: the model manifest (`embed`) reads these tables, and the service reads them,
//! so this module sits below both.

use serde::Deserialize;

/// Scores calibrated per model: cosines from different models are not comparable.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Pair score at and above which two stories in the same language (Chinese
    /// digest items) report the same event.
    pub duplicate: f32,
    /// The same for an English text against a Chinese story (default: `duplicate`).
    #[serde(default)]
    pub duplicate_en_zh: Option<f32>,
    /// The same for two English texts (default: `duplicate`).
    #[serde(default)]
    pub duplicate_en_en: Option<f32>,
    /// Added to an English-Chinese pair score per unit of shared names and numbers
    /// (IDF-weighted share of the English text's Latin terms found in the story).
    #[serde(default)]
    pub cross_language_term_weight: f32,
    /// Added to an English-Chinese pair score per unit of the English headline's names
    /// found in the story, less one half ([`crate::lexical::headline_names`]): a headline
    /// naming what the story does not is most likely another event on the same topic.
    #[serde(default)]
    pub cross_language_name_weight: f32,
    /// Added to a cross-language pair score (an English draft against a Chinese story or
    /// the other way round) per unit of the story's margin: how far its pair score stands
    /// above the best candidate of another event in its language (its own duplicate
    /// cluster aside, within ±0.1). A post about the same event has one clear match; a
    /// post about another event on the same topic matches several stories about as well.
    #[serde(default)]
    pub cross_language_margin_weight: f32,
    /// Added to a cross-language pair score per unit of translated-term overlap: the
    /// share of the draft's dictionary-translated words (weighted by rarity and one over
    /// their senses, [`crate::lexical::translated_overlap`]) that the story holds.
    #[serde(default)]
    pub cross_language_translation_weight: f32,
    /// The calibrated probability that a pair reports the same event is
    /// `1 / (1 + exp(-(confidence_slope * (score - threshold) + confidence_intercept)))`:
    /// logistic regression on the tuning splits (`scripts/eval` prints the fit and its
    /// cross-validated reliability).
    #[serde(default = "default_confidence_slope")]
    pub confidence_slope: f32,
    #[serde(default)]
    pub confidence_intercept: f32,
    /// Below its threshold, a story whose confidence reaches this is put in front of
    /// the editor: verdict `check` rather than `new`.
    #[serde(default = "default_check_confidence")]
    pub check_confidence: f32,
}

fn default_confidence_slope() -> f32 {
    60.0
}

fn default_check_confidence() -> f32 {
    0.25
}

/// The knobs of the ranking, tuned with `storydex eval` on the tuning half of the
/// labelled queries (`data/eval/search.toml`); the held-out half is only reported.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ranking {
    /// Subtracted from the cosine of every window but a story's first: the first window
    /// holds the headline and the lede, and a 40-window episode should not outrank a
    /// news item just because one of its many windows came close.
    pub deep_window_penalty: f32,
    /// Reciprocal-rank-fusion constant: larger flattens the difference between ranks.
    pub rrf_k: f32,
    /// Weight of the lexical ranking against the vector ranking's 1.0.
    pub lexical_weight: f32,
    /// The share of `lexical_weight` an English query that names nothing gets
    /// ([`crate::lexical::names_something`]): its plain words match Chinese stories only
    /// through the Latin names they keep (`face` in Hugging Face).
    pub plain_english_lexical_share: f32,
    /// Weight of the BM25 of the query's translations ([`crate::lexical::translations`]:
    /// an English word's Chinese renderings, a Chinese word's English ones) added to the
    /// BM25 of its own terms. 0 leaves them out.
    pub translation_weight: f32,
    /// Stories taken from each ranking before fusing.
    pub candidates: usize,
    /// How the two rankings are fused.
    pub fusion: Fusion,
    /// `linear` fusion: weight of the BM25 score scaled to 0..1 by the best BM25 of the
    /// query, added to the (penalised) cosine.
    pub linear_lexical_weight: f32,
    /// Per-query calibration of the source kinds: each kind's cosines (digest items,
    /// archive episodes) are lowered by this share of the mean of that kind's own best
    /// `candidates` before the kinds are ranked together. One query scores a whole kind
    /// higher or lower (style, length, script), so without it an episode wins by being an
    /// episode. 0 ranks by plain cosine.
    pub collection_shift: f32,
}

impl Ranking {
    /// These knobs with another [`Ranking::collection_shift`] (0: kinds not calibrated).
    pub fn with_collection_shift(self, collection_shift: f32) -> Self {
        Self {
            collection_shift,
            ..self
        }
    }
}

impl Default for Ranking {
    fn default() -> Self {
        Self {
            deep_window_penalty: 0.02,
            rrf_k: 60.0,
            lexical_weight: 1.0,
            plain_english_lexical_share: 1.0,
            translation_weight: 0.5,
            candidates: 50,
            fusion: Fusion::Rrf,
            linear_lexical_weight: 0.1,
            collection_shift: 0.0,
        }
    }
}

/// How hybrid search combines the vector and the lexical ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    /// Reciprocal rank fusion: ranks only, robust to score scales.
    Rrf,
    /// Cosine plus a weighted, normalised BM25: keeps how close the scores are.
    Linear,
    /// Distribution-based score fusion: each ranking's scores are scaled by their own
    /// spread over the candidates (mean ± 3 standard deviations to 0..1) and added,
    /// BM25 weighted by `lexical_weight`. A lexical match that stands far above the rest
    /// (an exact name or figure) counts for more than its rank alone says.
    Dbsf,
}

/// The per-model knobs of the service: same-event thresholds per language pair and the
/// search ranking. From the model manifest ([`Tuning::from_manifest`]); a bare number is one
/// threshold for every language pair with the default ranking (tests, fake encoders).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// Pair score for two stories in the same language (Chinese digests: zh-zh).
    pub duplicate: f32,
    /// Pair score for an English text against a Chinese story (or the other way round).
    pub duplicate_en_zh: f32,
    /// Pair score for two English texts.
    pub duplicate_en_en: f32,
    /// For an English text against a Chinese story: how much the shared names and
    /// numbers ([`crate::lexical::term_overlap`], 0..1) add to the pair score.
    pub cross_language_term_weight: f32,
    /// For an English text against a Chinese story: how much the share of the English
    /// headline's names found in the story, less one half, adds to the pair score.
    pub cross_language_name_weight: f32,
    /// Across languages (English against Chinese either way): how much the story's margin
    /// over the best candidate of another event adds to the pair score.
    pub cross_language_margin_weight: f32,
    /// Across languages: how much the translated-term overlap (0..1) adds to the pair
    /// score.
    pub cross_language_translation_weight: f32,
    /// The logistic calibration of (pair score less threshold) to a probability.
    pub confidence_slope: f32,
    pub confidence_intercept: f32,
    /// The confidence from which a story under its threshold is a `check`.
    pub check_confidence: f32,
    pub ranking: Ranking,
}

impl Tuning {
    /// The knobs of a model manifest: its `[thresholds]` and `[search]` tables.
    pub fn from_manifest(t: &Thresholds, ranking: Ranking) -> Self {
        Self {
            duplicate: t.duplicate,
            duplicate_en_zh: t.duplicate_en_zh.unwrap_or(t.duplicate),
            duplicate_en_en: t.duplicate_en_en.unwrap_or(t.duplicate),
            cross_language_term_weight: t.cross_language_term_weight,
            cross_language_name_weight: t.cross_language_name_weight,
            cross_language_margin_weight: t.cross_language_margin_weight,
            cross_language_translation_weight: t.cross_language_translation_weight,
            confidence_slope: t.confidence_slope,
            confidence_intercept: t.confidence_intercept,
            check_confidence: t.check_confidence,
            ranking,
        }
    }

    /// The probability that a pair with this score against this threshold reports the
    /// same event.
    pub fn confidence(&self, score: f32, threshold: f32) -> f32 {
        let z = self.confidence_slope * (score - threshold) + self.confidence_intercept;
        1.0 / (1.0 + (-z).exp())
    }

    /// The threshold for a pair of texts in these languages (`zh` or `en`).
    pub fn threshold(&self, a: &str, b: &str) -> f32 {
        match (a, b) {
            ("en", "en") => self.duplicate_en_en,
            ("en", _) | (_, "en") => self.duplicate_en_zh,
            _ => self.duplicate,
        }
    }
}

impl From<f32> for Tuning {
    fn from(threshold: f32) -> Self {
        Self {
            duplicate: threshold,
            duplicate_en_zh: threshold,
            duplicate_en_en: threshold,
            cross_language_term_weight: 0.0,
            cross_language_name_weight: 0.0,
            cross_language_margin_weight: 0.0,
            cross_language_translation_weight: 0.0,
            confidence_slope: default_confidence_slope(),
            confidence_intercept: 0.0,
            check_confidence: default_check_confidence(),
            ranking: Ranking::default(),
        }
    }
}
