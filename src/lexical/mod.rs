//! Terms for the lexical (full-text) index: how a story or a query becomes words.
//!
//! Owns: text analysis only. Chinese, Japanese and Korean runs become overlapping
//! character bigrams (the CJK analyzer of Lucene and Elasticsearch; no dictionary to
//! ship, and a name the segmenter has never seen is still found). Latin runs become
//! lower-cased words in which names with digits and hyphens stay whole (`gpt-5`,
//! `hf-mem`, `qwen2.5-vl`), and their parts are indexed too, so `GPT 5` still finds
//! `GPT-5` while `GPT-5` does not match every story that says "GPT" and "5" apart.
//! Must not: touch SQLite; the store feeds these terms to FTS5 and ranks with BM25.
//!
//! The terms are written to FTS5 separated by spaces; its `unicode61` tokenizer with
//! [`FTS5_TOKENCHARS`] keeps each term whole (CJK characters are letters to it).

/// Bumped whenever the analysis, or what the store indexes, changes, so stores rebuild
/// their lexical index.
pub const ANALYZER_VERSION: u32 = 7;

/// The characters, besides letters and digits, that a term may contain; FTS5 is told to
/// treat them as part of a token.
pub const FTS5_TOKENCHARS: &str = "-._";

mod lexicon;
mod names;
mod translate;
use lexicon::MAX_GLOSS_WORDS;
pub use lexicon::{Lexicon, LexiconError, Renderings, Tables, LEXICON_FILES};
pub use names::{
    headline_names, is_function_word, is_stop_word, latin_terms, names_found, names_something,
    term_overlap,
};
pub use translate::{expansion_expression, translated_overlap, translations, Translation};

/// The language data every analysis uses ([`use_lexicon`]); none until the binary loads
/// it, so unit tests and fake-model tests analyse without it.
static LEXICON: std::sync::RwLock<Option<std::sync::Arc<Lexicon>>> = std::sync::RwLock::new(None);

/// Makes `lexicon` the language data of every analysis from now on (`None`: none, no
/// Traditional/Simplified folding and no translation). A store stamps its lexical index
/// with [`analyzer_stamp`], so one opened after a change rebuilds it.
pub fn use_lexicon(lexicon: Option<std::sync::Arc<Lexicon>>) {
    *LEXICON
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = lexicon;
}

/// The language data in use, if any.
pub fn lexicon() -> Option<std::sync::Arc<Lexicon>> {
    LEXICON
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// What the lexical index was built with: the analyzer version and, when language data
/// is in use, its fingerprint.
pub fn analyzer_stamp() -> String {
    match lexicon() {
        Some(lexicon) => format!("{ANALYZER_VERSION}+{}", lexicon.id),
        None => ANALYZER_VERSION.to_string(),
    }
}

/// `text` lower-cased, full width folded and, with language data, in Simplified
/// characters: one character for one (a character whose lower case is longer stays as
/// it is), so offsets into it are offsets into `text`.
pub fn fold_text(text: &str) -> Vec<char> {
    match lexicon() {
        Some(lexicon) => fold_with(&lexicon, text),
        None => fold_plain(text),
    }
}

/// [`fold_text`] with the given language data.
fn fold_with(lexicon: &Lexicon, text: &str) -> Vec<char> {
    lexicon.simplify(&fold_plain(text))
}

/// [`fold_text`] without language data.
fn fold_plain(text: &str) -> Vec<char> {
    text.chars()
        .map(|c| {
            let c = fold_width(c);
            let mut lower = c.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(l), None) => l,
                _ => c,
            }
        })
        .collect()
}

/// Characters that join the parts of one name: `gpt-5`, `node.js`, `qwen2.5`, `hf_mem`.
fn is_joiner(c: char) -> bool {
    matches!(c, '-' | '.' | '_')
}

/// Han ideographs, kana and hangul: scripts written without spaces between words.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0x20000..=0x2FA1F) // extensions B..F, compatibility supplement
}

/// Full-width ASCII (`ＧＰＴ－５`) as plain ASCII, then lower case.
fn fold(c: char) -> impl Iterator<Item = char> {
    fold_width(c).to_lowercase()
}

/// Whether `word` is the plural of an acronym (`GPUs`, `TPUs`, `LLMs`, `H100s`): capitals
/// and digits, at least one a capital, then one lower-case `s`; a stem of two needs two
/// capitals (`AIs`, not `K8s`). Chinese text writes the singular (`GPU`), so the plural
/// is read as it.
fn is_acronym_plural(word: &[char]) -> bool {
    let Some((&'s', stem)) = word.split_last() else {
        return false;
    };
    let capitals = stem.iter().filter(|c| c.is_ascii_uppercase()).count();
    stem.iter()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && capitals >= 1
        && (stem.len() >= 3 || capitals >= 2)
}

/// `text` (full-width folded) with the `s` of every acronym plural dropped, and those
/// plurals as written, lower-cased.
fn without_acronym_plurals(text: &str) -> (Vec<char>, Vec<String>) {
    let mut chars: Vec<char> = text.chars().map(fold_width).collect();
    let mut drop = Vec::new();
    let mut plurals = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if class(chars[i]) == Class::Word {
            let start = i;
            i = word_end(&chars, i);
            if is_acronym_plural(&chars[start..i]) {
                drop.push(i - 1);
                plurals.push(
                    chars[start..i]
                        .iter()
                        .flat_map(|c| c.to_lowercase())
                        .collect(),
                );
            }
        } else {
            i += 1;
        }
    }
    // One pass, however many plurals a long episode holds.
    let mut drop = drop.into_iter().peekable();
    let mut at = 0;
    chars.retain(|_| {
        let keep = drop.next_if_eq(&at).is_none();
        at += 1;
        keep
    });
    (chars, plurals)
}

/// Full-width ASCII as plain ASCII, case kept; the full-width comma stays (in Chinese it
/// separates clauses, never thousands).
fn fold_width(c: char) -> char {
    match c as u32 {
        0xFF0C => c,
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFF01 + 0x21).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    }
}

/// `zh` when at least a fifth of a text's letters are CJK, else `en`.
pub fn language(text: &str) -> &'static str {
    let (mut cjk, mut letters) = (0usize, 0usize);
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        letters += 1;
        cjk += usize::from(is_cjk(c));
    }
    if letters > 0 && cjk * 5 >= letters {
        "zh"
    } else {
        "en"
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Class {
    Cjk,
    Word,
    Joiner,
    Other,
}

fn class(c: char) -> Class {
    if is_cjk(c) {
        Class::Cjk
    } else if c.is_alphanumeric() {
        Class::Word
    } else if is_joiner(c) {
        Class::Joiner
    } else {
        Class::Other
    }
}

/// Whole terms in text order, as a query uses them: CJK bigrams and whole names.
pub fn query_terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    analyze(text, &mut |term, whole| {
        if whole {
            out.push(term.to_owned());
        }
    });
    out
}

/// Every term of a stored text: whole names and their parts, and CJK bigrams.
pub fn index_terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    analyze(text, &mut |term, _| out.push(term.to_owned()));
    out
}

/// Space-separated [`index_terms`], the form FTS5 stores.
pub fn index_text(text: &str) -> String {
    index_terms(text).join(" ")
}

/// Calls `emit(term, whole)` for each term; `whole` is false for the parts of a joined
/// name, which are indexed but never asked for on their own. A name written in Chinese
/// characters also yields its English name's terms ([`name_aliases`]).
fn analyze(text: &str, emit: &mut dyn FnMut(&str, bool)) {
    analyze_with(lexicon().as_deref(), text, emit);
}

/// [`analyze`] with the given language data: Traditional characters read as Simplified
/// (a character with two Simplified readings, `哩`, is also indexed under the other),
/// and a Taiwan or Hong Kong word also as the mainland word (`軟體`: `软件`).
fn analyze_with(lexicon: Option<&Lexicon>, text: &str, emit: &mut dyn FnMut(&str, bool)) {
    let (singular, plurals) = without_acronym_plurals(text);
    let folded: Vec<char> = singular.into_iter().flat_map(fold).collect();
    let Some(lexicon) = lexicon else {
        analyze_folded(&folded, emit);
        return analyze_names(&folded, &plurals, emit);
    };
    let simplified = lexicon.simplify(&folded);
    analyze_folded(&simplified, emit);
    let mut buf = String::new();
    for (i, &c) in folded.iter().enumerate() {
        for &alt in lexicon.alternates(c) {
            for pair in [
                i.checked_sub(1).map(|p| [simplified[p], alt]),
                simplified.get(i + 1).map(|&n| [alt, n]),
            ]
            .into_iter()
            .flatten()
            {
                if pair.iter().all(|&c| is_cjk(c)) {
                    buf.clear();
                    buf.extend(pair);
                    emit(&buf, false);
                }
            }
        }
    }
    if simplified.iter().any(|&c| is_cjk(c)) {
        let text: String = simplified.iter().collect();
        for word in lexicon.mainland_words(&text) {
            let chars: Vec<char> = word.chars().collect();
            cjk_bigrams(&chars, emit);
        }
    }
    analyze_names(&folded, &plurals, emit);
}

/// The acronym plurals as written, and the English names of the Chinese names in a
/// folded text.
fn analyze_names(folded: &[char], plurals: &[String], emit: &mut dyn FnMut(&str, bool)) {
    // The plural as written stays a part term, so a text that writes `gpus` in lower
    // case (which is no acronym to the rule) still finds it.
    for plural in plurals {
        emit(plural, false);
    }
    if folded.iter().any(|&c| is_cjk(c)) {
        let folded: String = folded.iter().collect();
        let aliases = name_aliases();
        for found in aliases.forms.find_iter(&folded) {
            for &alias in &aliases.names_of_form[found.pattern().as_usize()] {
                for (term, whole) in &aliases.terms[alias] {
                    emit(term, *whole);
                }
            }
        }
    }
}

/// The names of `src/lexical/name_aliases.txt`: English names and the Chinese forms that stand
/// for them.
struct NameAliases {
    /// Each line's English names' terms, as [`analyze`] reads them (`whole` flag beside).
    terms: Vec<Vec<(String, bool)>>,
    /// Each line's English names, as their whole terms (`Fed`, `Federal Reserve`).
    names: Vec<Vec<Vec<String>>>,
    /// Every Chinese form, matched leftmost-longest: `苹果公司` is one mention of Apple,
    /// `美超微` is Supermicro and not also `超微` (AMD).
    forms: aho_corasick::AhoCorasick,
    /// For each form (by pattern index), the names it stands for.
    names_of_form: Vec<Vec<usize>>,
    /// The forms, by pattern index.
    forms_text: Vec<String>,
}

/// [`NameAliases`], read once.
fn name_aliases() -> &'static NameAliases {
    static ALIASES: std::sync::OnceLock<NameAliases> = std::sync::OnceLock::new();
    ALIASES.get_or_init(|| parse_aliases(include_str!("name_aliases.txt")))
}

/// Lines `English name = 中文名, 中文名`; `#` starts a comment.
fn parse_aliases(text: &str) -> NameAliases {
    let mut terms = Vec::new();
    let mut names = Vec::new();
    let mut forms: Vec<String> = Vec::new();
    let mut names_of_form: Vec<Vec<usize>> = Vec::new();
    for line in text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
    {
        let (english, chinese) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("name_aliases.txt: no `=` in {line:?}"));
        let mut name_terms = Vec::new();
        let mut variants = Vec::new();
        for variant in english.split('|') {
            let folded: Vec<char> = variant.chars().flat_map(fold).collect();
            let mut whole_terms = Vec::new();
            analyze_folded(&folded, &mut |t, whole| {
                name_terms.push((t.to_owned(), whole));
                if whole {
                    whole_terms.push(t.to_owned());
                }
            });
            variants.push(whole_terms);
        }
        let name = terms.len();
        terms.push(name_terms);
        names.push(variants);
        for form in chinese.split([',', '，']) {
            let form: String = form.trim().chars().flat_map(fold).collect();
            if form.is_empty() {
                continue;
            }
            match forms.iter().position(|f| *f == form) {
                Some(i) => names_of_form[i].push(name),
                None => {
                    forms.push(form);
                    names_of_form.push(vec![name]);
                }
            }
        }
    }
    let matcher = aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostLongest)
        .build(&forms)
        .expect("name_aliases.txt: the forms build a matcher");
    NameAliases {
        terms,
        names,
        forms: matcher,
        names_of_form,
        forms_text: forms,
    }
}

/// The Chinese forms of the names a query asks for in English (`Musk`: 马斯克, 馬斯克;
/// `Federal Reserve`: 美联储, ...), for finding and marking them in a Chinese text. A
/// name counts when the query holds every word of one of its English names.
pub fn chinese_forms(query: &str) -> Vec<String> {
    let asked: std::collections::HashSet<String> = query_terms(query).into_iter().collect();
    let aliases = name_aliases();
    let mut out = Vec::new();
    for (form, names) in aliases.names_of_form.iter().enumerate() {
        let wanted = names.iter().any(|&n| {
            aliases.names[n]
                .iter()
                .any(|variant| !variant.is_empty() && variant.iter().all(|t| asked.contains(t)))
        });
        if wanted {
            out.push(aliases.forms_text[form].clone());
        }
    }
    out
}

fn analyze_folded(folded: &[char], emit: &mut dyn FnMut(&str, bool)) {
    let mut i = 0;
    while i < folded.len() {
        match class(folded[i]) {
            Class::Cjk => {
                let start = i;
                while i < folded.len() && class(folded[i]) == Class::Cjk {
                    i += 1;
                }
                cjk_bigrams(&folded[start..i], emit);
            }
            Class::Word => {
                let start = i;
                i = word_end(folded, i);
                word(&folded[start..i], emit);
            }
            Class::Joiner | Class::Other => i += 1,
        }
    }
    amounts(folded, emit);
}

/// Emits one term per amount written with a multiplier or thousands separators, as its
/// value: `900万`, `9 million`, `9,000,000` and `9m` all become `_n9000000`, so an
/// English query finds the Chinese story's figure (and the other way round). Plain
/// numbers (`2026`, `16tb`) are already terms as written.
fn amounts(chars: &[char], emit: &mut dyn FnMut(&str, bool)) {
    let mut i = 0;
    while i < chars.len() {
        let starts_number = chars[i].is_ascii_digit()
            && (i == 0 || !matches!(class(chars[i - 1]), Class::Word | Class::Joiner));
        if !starts_number {
            i += 1;
            continue;
        }
        let (value, grouped, end) = number(chars, i);
        i = end;
        // `9 million`, but not `100 m` (metres) or `5 M&A`: a one-letter multiplier must
        // be glued to its number.
        let multiplier = match multiplier(chars, end) {
            None if chars.get(end) == Some(&' ') => multiplier(chars, end + 1)
                .filter(|&(_, after)| is_cjk(chars[end + 1]) || after - (end + 1) > 2),
            found => found,
        };
        let value = match multiplier {
            Some((m, after)) => {
                i = after;
                value * m
            }
            None if grouped => value,
            None => continue,
        };
        if value.is_finite() && (1_000.0..1e16).contains(&value) {
            emit(&amount_term(value), true);
        }
    }
}

/// The term for an amount: `_n` and its value. No word starts with `_`, so it cannot be
/// mistaken for a name such as Intel's `N5000`.
fn amount_term(value: f64) -> String {
    format!("_n{}", value.round() as u64)
}

/// The amount terms of a text (`_n9000000` for `9 million`), for matching a headline's
/// figure against a story's.
pub fn amount_terms(text: &str) -> Vec<String> {
    let folded: Vec<char> = text.chars().flat_map(fold).collect();
    let mut out = Vec::new();
    amounts(&folded, &mut |term, _| out.push(term.to_owned()));
    out
}

/// The number at `chars[start..]` (digits, `,` before each group of three after a first
/// group of at most three, one decimal point): its value, whether it had thousands
/// separators, and where it ends.
fn number(chars: &[char], start: usize) -> (f64, bool, usize) {
    let mut text = String::new();
    let mut grouped = false;
    let mut i = start;
    let digits_at =
        |k: usize, n: usize| (k..k + n).all(|p| chars.get(p).is_some_and(char::is_ascii_digit));
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            text.push(c);
            i += 1;
        } else if c == ','
            && digits_at(i + 1, 3)
            && !digits_at(i + 4, 1)
            && !text.contains('.')
            && (grouped || text.len() <= 3)
        {
            grouped = true;
            i += 1;
        } else if c == '.' && !text.contains('.') && digits_at(i + 1, 1) {
            text.push(c);
            i += 1;
        } else {
            break;
        }
    }
    (text.parse().unwrap_or(f64::NAN), grouped, i)
}

/// A multiplier at `chars[at..]` (`万`, `亿`, `万亿`, `thousand`, `million`, `billion`,
/// `trillion`, or a `k`/`m`/`b`/`bn` suffix ending the word) and where it ends.
fn multiplier(chars: &[char], at: usize) -> Option<(f64, usize)> {
    match chars.get(at)? {
        '千' => return Some((1e3, at + 1)),
        '万' if chars.get(at + 1) == Some(&'亿') => return Some((1e12, at + 2)),
        '万' => return Some((1e4, at + 1)),
        '亿' => return Some((1e8, at + 1)),
        _ => {}
    }
    let end = (at..chars.len())
        .find(|&k| !chars[k].is_ascii_alphabetic())
        .unwrap_or(chars.len());
    let word: String = chars[at..end].iter().collect();
    let m = match word.as_str() {
        "k" | "thousand" => 1e3,
        "m" | "mn" | "million" | "millions" => 1e6,
        "b" | "bn" | "billion" | "billions" => 1e9,
        "trillion" | "trillions" => 1e12,
        _ => return None,
    };
    Some((m, end))
}

/// Where the word starting at `chars[start]` ends: word characters, and a joiner only
/// between two of them (`gpt-5`, `qwen2.5`, but not the `-` of `AI -`).
fn word_end(chars: &[char], start: usize) -> usize {
    let mut i = start;
    while i < chars.len() {
        match class(chars[i]) {
            Class::Word => i += 1,
            Class::Joiner if chars.get(i + 1).is_some_and(|&c| class(c) == Class::Word) => i += 1,
            _ => break,
        }
    }
    i
}

fn cjk_bigrams(run: &[char], emit: &mut dyn FnMut(&str, bool)) {
    let mut buf = String::new();
    if run.len() == 1 {
        buf.push(run[0]);
        emit(&buf, true);
        return;
    }
    for pair in run.windows(2) {
        buf.clear();
        buf.extend(pair);
        emit(&buf, true);
    }
}

fn word(chars: &[char], emit: &mut dyn FnMut(&str, bool)) {
    let whole: String = chars.iter().collect();
    emit(&whole, true);
    if chars.iter().any(|&c| is_joiner(c)) {
        // Parts split at hyphens and underscores; a dot between digits is a version
        // number (`2.5`) and stays.
        for part in whole.split(['-', '_']).filter(|p| !p.is_empty()) {
            if part != whole {
                emit(part, false);
            }
        }
    }
}

/// An FTS5 `MATCH` expression asking for any of the query's terms (BM25 ranks the
/// stories that have more, and rarer, of them first). `None` when the query has no term.
pub fn match_expression(query: &str) -> Option<String> {
    let mut terms = query_terms(query);
    terms.sort();
    terms.dedup();
    if terms.is_empty() {
        return None;
    }
    // Terms hold only letters, digits and joiners, never a double quote; quoting keeps
    // FTS5 from reading `-` or a keyword like `or` as syntax.
    Some(
        terms
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(" OR "),
    )
}

#[cfg(test)]
mod tests;
