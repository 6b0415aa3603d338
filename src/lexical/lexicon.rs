//! The language data: OpenCC's Traditional-to-Simplified tables and the CC-CEDICT
//! Chinese-English dictionary, read from a folder (`models/lexicon/`, fetched by
//! `scripts/fetch-lexicon`).
//!
//! Owns: reading the tables and answering three questions: the Simplified form of a
//! character (one character for one, so positions in a text stay where they were),
//! the mainland words behind Taiwan and Hong Kong vocabulary (`軟體` → `软件`), and
//! the renderings of a word in the other language (`robot` → `机器人`, with how
//! ambiguous the word is). Must not: touch SQLite or know how terms are ranked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The files the folder must hold.
pub const LEXICON_FILES: [&str; 6] = [
    "TSCharacters.txt",
    "TSPhrases.txt",
    "TWPhrasesRev.txt",
    "TWVariantsRev.txt",
    "HKVariantsRev.txt",
    "cedict_ts.u8",
];

/// Renderings kept per English word: the most central ones (the word is an entry's
/// first sense; entries with fewer senses first). The ambiguity weight still counts all.
const RENDERINGS_KEPT: usize = 3;
/// English glosses of at most this many words are looked up (`artificial intelligence`).
pub(crate) const MAX_GLOSS_WORDS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum LexiconError {
    #[error(
        "the language data is missing: {path} not found; run scripts/fetch-lexicon \
         (or point --lexicon-dir / STORYDEX_LEXICON_DIR at a folder that has it)"
    )]
    Missing { path: PathBuf },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One word's renderings in the other language.
#[derive(Debug, Clone, PartialEq)]
pub struct Renderings {
    /// The most central renderings, best first (Simplified Chinese, or lower-case
    /// English words).
    pub forms: Vec<String>,
    /// How many renderings the word has in all: a word with twenty senses says less
    /// than one with one.
    pub senses: usize,
}

impl Renderings {
    /// `1 / senses`: the weight of a match through this word.
    pub fn weight(&self) -> f32 {
        1.0 / self.senses.max(1) as f32
    }
}

/// OpenCC's tables and CC-CEDICT, parsed.
#[derive(Debug)]
pub struct Lexicon {
    /// Traditional and regional variant characters → the Simplified character.
    chars: HashMap<char, char>,
    /// The other Simplified readings of a character with several (`哩`: also `里`).
    alternates: HashMap<char, Vec<char>>,
    /// Phrases whose characters convert otherwise than one by one (`乾燥` → `干燥`),
    /// keyed by the character-converted form; same length on both sides.
    phrases: aho_corasick::AhoCorasick,
    phrase_targets: Vec<Vec<char>>,
    /// Taiwan and Hong Kong words (Simplified) → the mainland word (`软体` → `软件`).
    regional: aho_corasick::AhoCorasick,
    regional_targets: Vec<String>,
    /// English gloss (lower case, one to three words) → its Chinese renderings.
    english: HashMap<String, Renderings>,
    /// Chinese word (Simplified) → its one-word English glosses.
    chinese: HashMap<String, Renderings>,
    /// A fingerprint of the tables, stamped on the lexical index.
    pub(crate) id: String,
}

impl Lexicon {
    /// Reads the tables from `dir`; a missing file says how to fetch it.
    pub fn load(dir: &Path) -> Result<Self, LexiconError> {
        let read = |name: &str| -> Result<String, LexiconError> {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    LexiconError::Missing { path }
                } else {
                    LexiconError::Read { path, source }
                }
            })
        };
        let [ts_chars, ts_phrases, tw_phrases, tw_variants, hk_variants, cedict] =
            LEXICON_FILES.map(read);
        Ok(Self::from_tables(&Tables {
            ts_characters: &ts_chars?,
            ts_phrases: &ts_phrases?,
            regional_phrases: &tw_phrases?,
            variants: &[&tw_variants?, &hk_variants?],
            cedict: &cedict?,
        }))
    }

    /// Parses tables already read (tests build small ones).
    pub fn from_tables(t: &Tables<'_>) -> Self {
        let mut chars = HashMap::new();
        let mut alternates: HashMap<char, Vec<char>> = HashMap::new();
        for (from, to) in table_lines(t.ts_characters) {
            let (Some(from), mut targets) = (one_char(from), to.iter().filter_map(|t| one_char(t)))
            else {
                continue;
            };
            if let Some(first) = targets.next() {
                if first != from {
                    chars.insert(from, first);
                }
                let rest: Vec<char> = targets.filter(|&c| c != first).collect();
                if !rest.is_empty() {
                    alternates.insert(from, rest);
                }
            }
        }
        // Regional variants (`裏`, `眾`) to the standard Traditional character, then on
        // to Simplified.
        for table in t.variants {
            for (from, to) in table_lines(table) {
                let (Some(from), Some(to)) = (one_char(from), to.first().and_then(|t| one_char(t)))
                else {
                    continue;
                };
                let simplified = chars.get(&to).copied().unwrap_or(to);
                if simplified != from {
                    chars.entry(from).or_insert(simplified);
                }
            }
        }
        let by_char = |s: &str| -> Vec<char> {
            s.chars()
                .map(|c| chars.get(&c).copied().unwrap_or(c))
                .collect()
        };
        let mut phrase_keys = Vec::new();
        let mut phrase_targets = Vec::new();
        for (from, to) in table_lines(t.ts_phrases) {
            let Some(to) = to.first() else { continue };
            let key = by_char(from);
            let target: Vec<char> = to.chars().collect();
            if key.len() == target.len() && key != target {
                phrase_keys.push(key.into_iter().collect::<String>());
                phrase_targets.push(target);
            }
        }
        let mut regional_keys = Vec::new();
        let mut regional_targets = Vec::new();
        for (from, to) in table_lines(t.regional_phrases) {
            let Some(to) = to.first() else { continue };
            let (key, target): (String, String) = (
                by_char(from).into_iter().collect(),
                by_char(to).into_iter().collect(),
            );
            if key != target && key.chars().count() >= 2 {
                regional_keys.push(key);
                regional_targets.push(target);
            }
        }
        let matcher = |keys: &[String]| {
            aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .build(keys)
                .expect("phrase tables build a matcher: this is a bug")
        };
        let (english, chinese) = dictionary(t.cedict, &by_char);
        let id = format!(
            "cc{}-en{}-zh{}-ph{}-rg{}",
            chars.len(),
            english.len(),
            chinese.len(),
            phrase_keys.len(),
            regional_keys.len()
        );
        Self {
            chars,
            alternates,
            phrases: matcher(&phrase_keys),
            phrase_targets,
            regional: matcher(&regional_keys),
            regional_targets,
            english,
            chinese,
            id,
        }
    }

    /// `text` with every Traditional or variant character in its Simplified form, one
    /// character for one (phrases that convert otherwise, `乾燥` → `干燥`, as a whole).
    pub fn simplify(&self, text: &[char]) -> Vec<char> {
        let mut out: Vec<char> = text
            .iter()
            .map(|c| self.chars.get(c).copied().unwrap_or(*c))
            .collect();
        if self.phrase_targets.is_empty() || !out.iter().any(|&c| super::is_cjk(c)) {
            return out;
        }
        let s: String = out.iter().collect();
        // Byte offsets of the matches, as character offsets.
        let starts: Vec<usize> = s.char_indices().map(|(b, _)| b).collect();
        for m in self.phrases.find_iter(&s) {
            let at = starts.partition_point(|&b| b < m.start());
            for (k, &c) in self.phrase_targets[m.pattern().as_usize()]
                .iter()
                .enumerate()
            {
                out[at + k] = c;
            }
        }
        out
    }

    /// The other Simplified readings of a (Traditional) character, if it has several.
    pub fn alternates(&self, c: char) -> &[char] {
        self.alternates.get(&c).map_or(&[], Vec::as_slice)
    }

    /// The mainland words behind the Taiwan and Hong Kong words of a Simplified text.
    pub fn mainland_words<'a>(&'a self, simplified: &'a str) -> impl Iterator<Item = &'a str> {
        self.regional
            .find_iter(simplified)
            .map(|m| self.regional_targets[m.pattern().as_usize()].as_str())
    }

    /// The Chinese renderings of an English word or phrase (lower case).
    pub fn chinese_of(&self, english: &str) -> Option<&Renderings> {
        self.english.get(english)
    }

    /// The one-word English glosses of a Chinese word (Simplified).
    pub fn english_of(&self, chinese: &str) -> Option<&Renderings> {
        self.chinese.get(chinese)
    }

    /// Whether a Chinese word (Simplified) is a dictionary headword.
    pub fn is_word(&self, chinese: &str) -> bool {
        self.chinese.contains_key(chinese)
    }
}

/// The text of each table (the folder's files, or small ones in tests).
pub struct Tables<'a> {
    pub ts_characters: &'a str,
    pub ts_phrases: &'a str,
    pub regional_phrases: &'a str,
    pub variants: &'a [&'a str],
    pub cedict: &'a str,
}

/// OpenCC lines: `key<TAB>value value ...`, `#` comments.
fn table_lines(text: &str) -> impl Iterator<Item = (&str, Vec<&str>)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.trim(), v.split_whitespace().collect()))
}

fn one_char(s: &str) -> Option<char> {
    let mut chars = s.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some(c)
}

/// A CC-CEDICT sense as a gloss to look up: lower case, `to`/`a`/`the` and
/// parentheses dropped; `None` when it is no plain English word or phrase of at most
/// [`MAX_GLOSS_WORDS`] words (`CL:個`, `variant of 裡`, `surname Li`).
fn gloss(sense: &str) -> Option<String> {
    let lower = sense.trim().to_lowercase();
    for skip in [
        "cl:",
        "variant of",
        "old variant",
        "see ",
        "surname",
        "abbr",
        "used in",
        "also written",
        "also pr",
        "japanese variant",
        "erhua",
        "[",
    ] {
        if lower.starts_with(skip) {
            return None;
        }
    }
    let mut text = String::with_capacity(lower.len());
    let mut depth = 0;
    for c in lower.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => text.push(c),
            _ => {}
        }
    }
    let mut words: Vec<&str> = text.split_whitespace().collect();
    if let Some(first) = words.first() {
        if matches!(*first, "to" | "a" | "an" | "the") {
            words.remove(0);
        }
    }
    let plain = |w: &str| w.chars().all(|c| c.is_ascii_lowercase() || c == '-');
    (!words.is_empty() && words.len() <= MAX_GLOSS_WORDS && words.iter().all(|w| plain(w)))
        .then(|| words.join(" "))
}

/// English gloss → Chinese renderings, and Chinese word → English glosses.
fn dictionary(
    cedict: &str,
    by_char: &dyn Fn(&str) -> Vec<char>,
) -> (HashMap<String, Renderings>, HashMap<String, Renderings>) {
    // (gloss, word, whether the gloss is the word's first sense, the word's senses)
    let mut english: HashMap<String, Vec<(String, bool, usize)>> = HashMap::new();
    let mut chinese: HashMap<String, Vec<String>> = HashMap::new();
    for line in cedict.lines().filter(|l| !l.starts_with('#')) {
        let Some((head, senses)) = line.split_once(" /") else {
            continue;
        };
        let mut parts = head.split(' ');
        let (Some(_traditional), Some(simplified)) = (parts.next(), parts.next()) else {
            continue;
        };
        // The converter's form, so a lookup of folded text finds it.
        let word: String = by_char(simplified).into_iter().collect();
        if word.chars().count() < 2 || !word.chars().all(super::is_cjk) {
            continue;
        }
        let senses: Vec<&str> = senses.trim_end_matches('/').split('/').collect();
        let glosses: Vec<String> = senses.iter().filter_map(|s| gloss(s)).collect();
        for (i, g) in glosses.iter().enumerate() {
            english
                .entry(g.clone())
                .or_default()
                .push((word.clone(), i == 0, senses.len()));
        }
        let one_word = glosses.iter().filter(|g| !g.contains(' ')).cloned();
        let entry = chinese.entry(word).or_default();
        for g in one_word {
            if !entry.contains(&g) {
                entry.push(g);
            }
        }
    }
    let english = english
        .into_iter()
        .map(|(gloss, mut words)| {
            // First senses first, then words with fewer senses; the dictionary's order
            // breaks ties.
            words.sort_by_key(|(_, first, senses)| (!first, *senses));
            let mut forms: Vec<String> = Vec::new();
            for (w, _, _) in words {
                if !forms.contains(&w) {
                    forms.push(w);
                }
            }
            let senses = forms.len();
            forms.truncate(RENDERINGS_KEPT);
            (gloss, Renderings { forms, senses })
        })
        .collect();
    let chinese = chinese
        .into_iter()
        .filter(|(_, g)| !g.is_empty())
        .map(|(word, mut glosses)| {
            let senses = glosses.len();
            glosses.truncate(RENDERINGS_KEPT);
            (
                word,
                Renderings {
                    forms: glosses,
                    senses,
                },
            )
        })
        .collect();
    (english, chinese)
}

/// A small lexicon for unit tests: a few lines of each table.
#[cfg(test)]
pub(crate) fn sample() -> Lexicon {
    Lexicon::from_tables(&Tables {
        ts_characters: "島\t岛\n體\t体\n軟\t软\n機\t机\n器\t器\n哩\t哩 里\n裡\t里\n發\t发\n\
                        乾\t干 乾\n燥\t燥\n輝\t辉\n達\t达\n晶\t晶\n網\t网\n絡\t络\n",
        ts_phrases: "乾燥\t干燥\n",
        regional_phrases: "軟體\t軟件\n網路\t網絡\n",
        variants: &["裏\t裡\n"],
        cedict: "機器人 机器人 [ji1 qi4 ren2] /mechanical person/robot/android/\n\
                 模型 模型 [mo2 xing2] /model/mold/matrix/pattern/\n\
                 典型 典型 [dian3 xing2] /model/typical case/archetype/typical/representative/\n\
                 原型 原型 [yuan2 xing2] /model/prototype/archetype/\n\
                 人工智能 人工智能 [ren2 gong1 zhi4 neng2] /artificial intelligence/AI/\n\
                 芯片 芯片 [xin1 pian4] /computer chip/microchip/\n\
                 三哩島 三哩岛 [san1 li3 dao3] /Three Mile Island/\n\
                 軟件 软件 [ruan3 jian4] /(computer) software/\n\
                 里 里 [li3] /li (Chinese mile)/\n",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(lex: &Lexicon, text: &str) -> String {
        lex.simplify(&text.chars().collect::<Vec<_>>())
            .into_iter()
            .collect()
    }

    #[test]
    fn traditional_text_becomes_simplified_one_character_for_one() {
        let lex = sample();
        assert_eq!(s(&lex, "三哩島的機器人"), "三哩岛的机器人");
        assert_eq!(
            s(&lex, "裏面"),
            "里面",
            "a regional variant, then Simplified"
        );
        assert_eq!(s(&lex, "乾燥"), "干燥", "a phrase table entry");
        assert_eq!(s(&lex, "乾"), "干");
        assert_eq!(s(&lex, "机器人 GPT-5"), "机器人 GPT-5", "Simplified stays");
        assert_eq!(lex.alternates('哩'), ['里']);
    }

    #[test]
    fn taiwan_words_lead_to_the_mainland_word() {
        let lex = sample();
        let words: Vec<&str> = lex.mainland_words("新的软体和网路").collect();
        assert_eq!(words, ["软件", "网络"]);
    }

    #[test]
    fn english_words_have_chinese_renderings_weighted_by_ambiguity() {
        let lex = sample();
        let robot = lex.chinese_of("robot").unwrap();
        assert_eq!(
            (robot.forms.as_slice(), robot.senses),
            (&["机器人".to_owned()][..], 1)
        );
        let model = lex.chinese_of("model").unwrap();
        assert_eq!(model.senses, 3);
        assert_eq!(
            model.forms[..2],
            ["原型".to_owned(), "模型".to_owned()],
            "first senses first, fewer senses before more"
        );
        assert!(model.weight() < robot.weight());
        assert_eq!(
            lex.chinese_of("artificial intelligence").unwrap().forms,
            ["人工智能"]
        );
        assert_eq!(lex.chinese_of("software").unwrap().forms, ["软件"]);
        assert!(
            lex.chinese_of("li").is_none(),
            "one-character words are left out"
        );
        assert_eq!(
            lex.english_of("机器人").unwrap().forms,
            ["robot", "android"]
        );
    }

    #[test]
    fn glosses_drop_particles_parentheses_and_references() {
        assert_eq!(gloss("to infer").as_deref(), Some("infer"));
        assert_eq!(gloss("(computer) software").as_deref(), Some("software"));
        assert_eq!(gloss("software (computer)").as_deref(), Some("software"));
        assert_eq!(gloss("CL:個|个[ge4]"), None);
        assert_eq!(gloss("variant of 裡|里[li3]"), None);
        assert_eq!(gloss("a very long english phrase here"), None);
    }

    #[test]
    fn a_missing_folder_says_how_to_fetch_the_data() {
        let e = Lexicon::load(Path::new("/nonexistent/lexicon")).unwrap_err();
        assert!(e.to_string().contains("scripts/fetch-lexicon"), "{e}");
    }
}
