//! English words and names: stop words, the Latin-script terms and headline names an
//! English text shares with a Chinese summary of the same event, and how much of them a
//! story has.
//!
//! Owns: the stop-word lists (one for marking a snippet, a longer one for telling
//! stories apart) and the name rules. Must not: touch SQLite.

use super::{
    amount_terms, class, fold_width, is_acronym_plural, is_cjk, is_joiner, query_terms, word_end,
    Class,
};

/// English function words: too common to mark in a snippet or to tell two stories apart.
const FUNCTION_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it", "of", "on",
    "or", "the", "to", "was", "with",
];

/// Further English words too common to tell two stories apart (but still marked in a
/// snippet: a person searching for "new" wants to see it).
const COMMON_WORDS: &[&str] = &[
    "about", "after", "all", "also", "been", "before", "being", "but", "can", "has", "have", "her",
    "his", "how", "into", "its", "just", "more", "new", "not", "now", "one", "our", "out", "over",
    "said", "say", "says", "than", "that", "their", "them", "they", "this", "were", "what", "when",
    "which", "who", "why", "will", "you", "your",
];

/// Whether a lower-cased English word is too common to mark in a snippet.
pub fn is_function_word(word: &str) -> bool {
    FUNCTION_WORDS.contains(&word)
}

/// Whether a lower-cased English word is too common to tell two stories apart.
pub fn is_stop_word(word: &str) -> bool {
    FUNCTION_WORDS.contains(&word) || COMMON_WORDS.contains(&word)
}

/// The distinct Latin-script terms of a text (names, numbers, words), without stop
/// words: what an English post and a Chinese summary of the same event share.
pub fn latin_terms(text: &str) -> Vec<String> {
    let mut terms: Vec<String> = query_terms(text)
        .into_iter()
        .filter(|t| !t.chars().any(is_cjk) && !is_stop_word(t))
        .collect();
    terms.sort();
    terms.dedup();
    terms
}

/// The IDF-weighted share of `terms` that `other_terms` also has: 1.0 when the other text
/// names every name and number of this one, 0.0 when it names none. Terms no stored
/// story has (`df` 0) carry no weight: they cannot be evidence either way.
pub fn term_overlap(
    terms: &[String],
    other_terms: &std::collections::HashSet<String>,
    stories: usize,
    df: &std::collections::HashMap<String, usize>,
) -> f32 {
    let idf = |t: &String| -> f32 {
        let d = df.get(t).copied().unwrap_or(0);
        if d == 0 {
            0.0
        } else {
            ((stories as f32) / (1.0 + d as f32)).ln().max(0.0)
        }
    };
    let total: f32 = terms.iter().map(idf).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let shared: f32 = terms
        .iter()
        .filter(|t| other_terms.contains(*t))
        .map(idf)
        .sum();
    shared / total
}

/// Names a Chinese summary writes in characters that no alias can stand for: `US` (美国)
/// is also the pronoun "us", so it is neither an alias term nor a name to look for.
/// Other places (`China`, `Indian`) are found through [`name_aliases`](super::name_aliases).
const UNFINDABLE_NAMES: &[&str] = &["us", "usa"];

/// The names in an English headline, lower-cased: words with a digit (`GPT-5`, `9B`,
/// `2026`), with a capital after their first letter (`DeepMind`, `NVIDIA`, `iPhone`), or
/// capitalised anywhere but at the start (`... with Boston Dynamics`). A possessive `'s`
/// is dropped; stop words and [`UNFINDABLE_NAMES`] are skipped. These are the words a
/// Chinese summary of the same event keeps in Latin letters or writes as a name of
/// [`name_aliases`](super::name_aliases), so a headline whose names the story lacks is most likely about
/// another event on the same topic.
pub fn headline_names(headline: &str) -> Vec<String> {
    let chars: Vec<char> = headline.chars().map(fold_width).collect();
    let mut out: Vec<String> = Vec::new();
    let mut first = true;
    let mut i = 0;
    while i < chars.len() {
        if class(chars[i]) != Class::Word {
            i += 1;
            continue;
        }
        let start = i;
        i = word_end(&chars, i);
        let word = &chars[start..i];
        // `Nvidia's` and `Nvidia’s`: the `s` after the apostrophe is no word of its own.
        if matches!(chars.get(i), Some('\'' | '\u{2019}'))
            && chars
                .get(i + 1)
                .is_some_and(|c| c.eq_ignore_ascii_case(&'s'))
            && chars.get(i + 2).is_none_or(|&c| class(c) != Class::Word)
        {
            i += 2;
        }
        let at_start = std::mem::replace(&mut first, false);
        let word = if is_acronym_plural(word) {
            &word[..word.len() - 1]
        } else {
            word
        };
        let digit = word.iter().any(|c| c.is_numeric());
        let inner_capital = word.iter().skip(1).any(|c| c.is_uppercase());
        let capitalised = word[0].is_uppercase();
        if !(digit || inner_capital || (capitalised && !at_start)) {
            continue;
        }
        let name: String = word.iter().flat_map(|c| c.to_lowercase()).collect();
        if is_stop_word(&name) || UNFINDABLE_NAMES.contains(&name.as_str()) {
            continue;
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Whether an English query names anything: a word with a capital letter, a digit or a
/// joiner (`Musk`, `gpt-5`, `9B`). A capital counts at the start too: keyword queries
/// often begin with a name (`Nvidia earnings`); ignoring a sentence-initial capital
/// measured the same on every labelled split. A query of plain lower-case words (`job
/// candidates using face swap`) names nothing; against Chinese stories its words match
/// only the Latin names those keep (`face` in Hugging Face), which says little about the
/// story.
pub fn names_something(query: &str) -> bool {
    let chars: Vec<char> = query.chars().map(fold_width).collect();
    chars.iter().enumerate().any(|(i, &c)| {
        c.is_uppercase()
            || (c.is_numeric() && !is_cjk(c))
            || (is_joiner(c)
                && i > 0
                && class(chars[i - 1]) == Class::Word
                && chars.get(i + 1).is_some_and(|&n| class(n) == Class::Word))
    })
}

/// The share of `names` (from [`headline_names`]) that a story's [`index_terms`](super::index_terms) hold;
/// `None` when there is no name to look for. Two names next to each other also count
/// as found when the story writes them as one word (`Hugging Face` as `Huggingface`,
/// `Deep Mind` as `DeepMind`), as Chinese text often does.
pub fn names_found(
    names: &[String],
    story_terms: &std::collections::HashSet<String>,
) -> Option<f32> {
    if names.is_empty() {
        return None;
    }
    let mut found: Vec<bool> = names
        .iter()
        .map(|n| {
            // `900m` in the headline is `9亿` in the story: both are `_n900000000`.
            story_terms.contains(n) || amount_terms(n).iter().any(|a| story_terms.contains(a))
        })
        .collect();
    for i in 1..names.len() {
        if story_terms.contains(&format!("{}{}", names[i - 1], names[i])) {
            found[i - 1] = true;
            found[i] = true;
        }
    }
    Some(found.iter().filter(|&&f| f).count() as f32 / names.len() as f32)
}
