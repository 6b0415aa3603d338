//! Dictionary-based translation for cross-language retrieval: an English word also
//! searches its Chinese renderings and a Chinese word its English ones, through
//! CC-CEDICT ([`Lexicon`]).
//!
//! Owns: which words of a text are translated, how much each counts (one over its
//! number of senses), the cap that keeps a long text from flooding BM25, and the FTS5
//! expression of the translations. Must not: touch SQLite.

use std::collections::HashSet;

use super::{is_cjk, is_stop_word, lexicon, Lexicon, MAX_GLOSS_WORDS};

/// A word with more senses than this is not translated: its renderings say too little.
const MAX_SENSES: usize = 8;
/// At most this many words of one text are translated (the least ambiguous first).
const MAX_TRANSLATED: usize = 12;
/// The longest Chinese word looked up, in characters.
const MAX_WORD_CHARS: usize = 6;

/// One translated word of a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// The word as the text has it (lower case, Simplified).
    pub source: String,
    /// Its renderings in the other language, each as the index terms that make it up
    /// (a Chinese rendering: its bigrams; an English one: the word).
    pub forms: Vec<Vec<String>>,
    /// `1 / senses` ([`super::Renderings::weight`]).
    pub weight: f32,
}

impl Translation {
    /// The renderings as text (a Chinese one rebuilt from its bigrams), for finding
    /// them in a snippet.
    pub fn form_texts(&self) -> Vec<String> {
        self.forms
            .iter()
            .filter_map(|terms| {
                let (first, rest) = terms.split_first()?;
                let mut text = first.clone();
                text.extend(rest.iter().filter_map(|t| t.chars().last()));
                Some(text)
            })
            .collect()
    }
}

/// The translated words of `text` with the language data in use (none without it).
pub fn translations(text: &str) -> Vec<Translation> {
    lexicon().map_or_else(Vec::new, |l| translations_with(&l, text))
}

pub(crate) fn translations_with(lexicon: &Lexicon, text: &str) -> Vec<Translation> {
    let folded = super::fold_with(lexicon, text);
    let mut out: Vec<Translation> = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |source: String, renderings: &super::Renderings, cjk_forms: bool| {
        if renderings.senses > MAX_SENSES || !seen.insert(source.clone()) {
            return;
        }
        let forms: Vec<Vec<String>> = renderings
            .forms
            .iter()
            .map(|f| {
                if cjk_forms {
                    let chars: Vec<char> = f.chars().collect();
                    chars.windows(2).map(|p| p.iter().collect()).collect()
                } else {
                    vec![f.clone()]
                }
            })
            .filter(|f: &Vec<String>| !f.is_empty())
            .collect();
        if !forms.is_empty() {
            out.push(Translation {
                source,
                forms,
                weight: renderings.weight(),
            });
        }
    };
    // English: the longest gloss first (`three mile island`, then `island`).
    let words: Vec<String> = english_words(&folded);
    let mut i = 0;
    while i < words.len() {
        let mut matched = 0;
        for n in (1..=MAX_GLOSS_WORDS.min(words.len() - i)).rev() {
            let phrase = words[i..i + n].join(" ");
            if n == 1 && is_stop_word(&phrase) {
                break;
            }
            let found = lexicon
                .chinese_of(&phrase)
                .or_else(|| singular(&phrase).and_then(|s| lexicon.chinese_of(&s)));
            if let Some(r) = found {
                add(phrase, r, true);
                matched = n;
                break;
            }
        }
        i += matched.max(1);
    }
    // Chinese: the longest dictionary word at each point of a run.
    let mut i = 0;
    while i < folded.len() {
        if !is_cjk(folded[i]) {
            i += 1;
            continue;
        }
        let run_end = (i..folded.len())
            .find(|&k| !is_cjk(folded[k]))
            .unwrap_or(folded.len());
        let mut step = 1;
        for n in (2..=MAX_WORD_CHARS.min(run_end - i)).rev() {
            let word: String = folded[i..i + n].iter().collect();
            if let Some(r) = lexicon.english_of(&word) {
                let english: Vec<&String> = r.forms.iter().filter(|w| !is_stop_word(w)).collect();
                if !english.is_empty() {
                    add(word, r, false);
                }
                step = n;
                break;
            }
            if lexicon.is_word(&word) {
                step = n;
                break;
            }
        }
        i += step;
    }
    // The least ambiguous first; the cap keeps a long post from flooding the ranking.
    out.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    out.truncate(MAX_TRANSLATED);
    out
}

/// The lower-case English words of a folded text, in order.
fn english_words(folded: &[char]) -> Vec<String> {
    folded
        .split(|c| !c.is_ascii_lowercase())
        .filter(|w| w.len() >= 2)
        .map(|w| w.iter().collect())
        .collect()
}

/// `robots` → `robot`, `batteries` → `battery`: the singular CC-CEDICT glosses.
fn singular(word: &str) -> Option<String> {
    if word.contains(' ') || word.len() < 4 {
        return None;
    }
    if let Some(stem) = word.strip_suffix("ies") {
        return Some(format!("{stem}y"));
    }
    word.strip_suffix('s')
        .filter(|s| !s.ends_with('s'))
        .map(str::to_owned)
}

/// An FTS5 `MATCH` expression asking for any rendering of the translated words of
/// `query` (each Chinese rendering as a phrase of its bigrams); `None` when nothing
/// is translated.
pub fn expansion_expression(query: &str) -> Option<String> {
    let own: HashSet<String> = super::query_terms(query).into_iter().collect();
    let mut phrases: Vec<String> = translations(query)
        .iter()
        .flat_map(|t| &t.forms)
        // A rendering the query already holds adds nothing.
        .filter(|terms| !terms.iter().all(|t| own.contains(t)))
        .map(|terms| format!("\"{}\"", terms.join(" ")))
        .collect();
    phrases.sort();
    phrases.dedup();
    (!phrases.is_empty()).then(|| phrases.join(" OR "))
}

/// The weighted share of `translations` (of one text) that another text's terms hold:
/// a word counts when the other text has all the terms of one of its renderings, with
/// its weight times `idf(word)`; 0 when there is nothing to weigh.
pub fn translated_overlap(
    translations: &[Translation],
    other_terms: &HashSet<String>,
    idf: impl Fn(&Translation) -> f32,
) -> f32 {
    let (mut shared, mut total) = (0.0f32, 0.0f32);
    for t in translations {
        let w = t.weight * idf(t);
        total += w;
        if t.forms
            .iter()
            .any(|f| f.iter().all(|term| other_terms.contains(term)))
        {
            shared += w;
        }
    }
    if total > 0.0 {
        shared / total
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_words_become_their_least_ambiguous_chinese_renderings() {
        let lex = super::super::lexicon::sample();
        let t = translations_with(&lex, "Robots and AI models on Three Mile Island");
        let sources: Vec<&str> = t.iter().map(|t| t.source.as_str()).collect();
        assert_eq!(sources[0], "robots", "one sense first: {sources:?}");
        assert!(sources.contains(&"three mile island"), "{sources:?}");
        assert!(!sources.contains(&"and"), "stop words stay");
        let robot = &t[0];
        assert_eq!(robot.forms, [vec!["机器".to_owned(), "器人".to_owned()]]);
        let model = t.iter().find(|t| t.source == "models").unwrap();
        assert!(model.weight < robot.weight);
    }

    #[test]
    fn chinese_words_become_english_words() {
        let lex = super::super::lexicon::sample();
        let t = translations_with(&lex, "新的機器人");
        assert_eq!(t[0].source, "机器人");
        assert_eq!(
            t[0].forms,
            [vec!["robot".to_owned()], vec!["android".to_owned()]]
        );
    }

    #[test]
    fn overlap_counts_a_word_found_through_any_rendering() {
        let lex = super::super::lexicon::sample();
        let t = translations_with(&lex, "robot model");
        let story: HashSet<String> = ["机器", "器人"].map(String::from).into_iter().collect();
        let o = translated_overlap(&t, &story, |_| 1.0);
        // robot (weight 1) found, model (weight 1/3) not.
        assert!((o - 0.75).abs() < 1e-6, "{o}");
        assert_eq!(translated_overlap(&[], &story, |_| 1.0), 0.0);
    }

    #[test]
    fn plurals_are_looked_up_as_the_singular() {
        assert_eq!(singular("robots").as_deref(), Some("robot"));
        assert_eq!(singular("batteries").as_deref(), Some("battery"));
        assert_eq!(singular("class"), None);
        assert_eq!(singular("ai"), None);
    }
}
