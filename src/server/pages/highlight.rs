//! The query's words marked in a result snippet.
//!
//! Owns: which parts of a snippet count as the query's words, and the escaped HTML with
//! `<mark>` around them. Must not: emit any unescaped text from the snippet or the
//! query: both come from people.
//!
//! Chinese has no spaces between words and there is no segmenter here, so a run of CJK
//! characters in the query stands for every substring of it of two or more characters:
//! "波士顿动力人形机器人" marks "人形机器人" in a snippet that says only that. Other
//! words (Latin letters, digits) match case-insensitively at the start of a word, so
//! "robot" marks the "robot" of "robots" but nothing inside "Forrobot".

use std::collections::HashSet;

use crate::lexical::{is_cjk, is_function_word};

/// Longest CJK substring looked for: long enough for names like 英伟达黄仁勋, short
/// enough that a 2,000-character query stays cheap.
const MAX_CJK: usize = 8;

/// HTML-escapes text for element content and quoted attribute values.
pub(crate) fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// What to look for: Latin/digit words (lowercased ASCII) and CJK substrings.
struct Terms {
    words: Vec<Vec<char>>,
    cjk: HashSet<String>,
    /// Length in chars of the longest CJK term.
    longest_cjk: usize,
}

impl Terms {
    fn of(query: &str) -> Self {
        let mut words: Vec<Vec<char>> = Vec::new();
        let mut cjk = HashSet::new();
        let mut word = String::new();
        let mut run: Vec<char> = Vec::new();
        let flush_word = |word: &mut String, words: &mut Vec<Vec<char>>| {
            let w = word.to_ascii_lowercase();
            if w.chars().count() >= 2 && !is_function_word(&w) {
                let chars: Vec<char> = w.chars().collect();
                if !words.contains(&chars) {
                    words.push(chars);
                }
            }
            word.clear();
        };
        let flush_run = |run: &mut Vec<char>, cjk: &mut HashSet<String>| {
            for start in 0..run.len() {
                for end in start + 2..=(start + MAX_CJK).min(run.len()) {
                    cjk.insert(run[start..end].iter().collect());
                }
            }
            run.clear();
        };
        // Traditional and Simplified alike: both sides are folded, one character for one.
        for c in crate::lexical::fold_text(query) {
            if is_cjk(c) {
                flush_word(&mut word, &mut words);
                run.push(c);
            } else if c.is_alphanumeric() {
                flush_run(&mut run, &mut cjk);
                word.push(c);
            } else {
                flush_word(&mut word, &mut words);
                flush_run(&mut run, &mut cjk);
            }
        }
        flush_word(&mut word, &mut words);
        flush_run(&mut run, &mut cjk);
        // Names asked for in English, as a Chinese snippet writes them (`Musk`: 马斯克).
        let mut longest_cjk = MAX_CJK;
        // And the Chinese renderings of its English words (`robot`: 机器人).
        let translated = crate::lexical::translations(query)
            .into_iter()
            .flat_map(|t| t.form_texts())
            .filter(|f| f.chars().all(is_cjk));
        for form in crate::lexical::chinese_forms(query)
            .into_iter()
            .map(|f| crate::lexical::fold_text(&f).into_iter().collect())
            .chain(translated)
        {
            longest_cjk = longest_cjk.max(form.chars().count());
            cjk.insert(form);
        }
        // Longest first, so "robots" wins over "robot" at the same place.
        words.sort_by_key(|w| std::cmp::Reverse(w.len()));
        Self {
            words,
            cjk,
            longest_cjk,
        }
    }

    /// Length in chars of the longest term that starts at `chars[i]`, if any.
    fn match_at(&self, chars: &[char], i: usize) -> Option<usize> {
        if is_cjk(chars[i]) {
            let longest = self.longest_cjk.min(chars.len() - i);
            return (2..=longest).rev().find(|&n| {
                self.cjk
                    .contains(&chars[i..i + n].iter().collect::<String>())
            });
        }
        let at_word_start = i == 0 || !chars[i - 1].is_alphanumeric() || is_cjk(chars[i - 1]);
        if !at_word_start {
            return None;
        }
        self.words
            .iter()
            .find(|w| {
                chars.len() - i >= w.len()
                    && w.iter()
                        .zip(&chars[i..])
                        .all(|(a, b)| a.eq_ignore_ascii_case(b))
            })
            .map(Vec::len)
    }
}

/// `text` as escaped HTML with the query's words wrapped in `<mark>`.
pub(crate) fn highlight(text: &str, query: &str) -> String {
    let terms = Terms::of(query);
    let chars: Vec<char> = text.chars().collect();
    // Matched on the folded text (Simplified, lower case), marked on the text as written.
    let folded = crate::lexical::fold_text(text);
    // Marked ranges in char indices, adjacent ones merged.
    let mut marks: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < folded.len() {
        match terms.match_at(&folded, i) {
            Some(n) => {
                match marks.last_mut() {
                    Some((_, end)) if *end == i => *end = i + n,
                    _ => marks.push((i, i + n)),
                }
                i += n;
            }
            None => i += 1,
        }
    }
    let mut out = String::with_capacity(text.len() + marks.len() * 13);
    let mut done = 0;
    let piece = |from: usize, to: usize| chars[from..to].iter().collect::<String>();
    for (start, end) in marks {
        escape(&piece(done, start), &mut out);
        out.push_str("<mark>");
        escape(&piece(start, end), &mut out);
        out.push_str("</mark>");
        done = end;
    }
    escape(&piece(done, chars.len()), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chinese_query_marks_the_words_it_shares_with_the_snippet() {
        let html = highlight(
            "Boston Dynamics展示了其新型全电动Atlas人形机器人",
            "波士顿动力人形机器人",
        );
        assert_eq!(
            html,
            "Boston Dynamics展示了其新型全电动Atlas<mark>人形机器人</mark>"
        );
    }

    #[test]
    fn names_asked_for_in_english_are_marked_where_chinese_writes_them() {
        assert_eq!(
            highlight("马斯克起诉OpenAI", "Musk sues OpenAI"),
            "<mark>马斯克</mark>起诉<mark>OpenAI</mark>"
        );
    }

    #[test]
    fn english_words_match_case_insensitively_at_word_starts() {
        let html = highlight(
            "Boston Dynamics robots, not Forrobot, in the factory",
            "boston ROBOT in the factories",
        );
        assert_eq!(
            html,
            "<mark>Boston</mark> Dynamics <mark>robot</mark>s, not Forrobot, in the factory"
        );
    }

    #[test]
    fn mixed_queries_mark_both_scripts_and_merge_neighbours() {
        let html = highlight("新款Atlas人形机器人进入企业生产", "Atlas人形机器人");
        assert_eq!(html, "新款<mark>Atlas人形机器人</mark>进入企业生产");
    }

    #[test]
    fn snippet_and_query_are_escaped_before_marking() {
        let html = highlight("<script>alert(1)</script> & \"quotes\"", "script alert");
        assert_eq!(
            html,
            "&lt;<mark>script</mark>&gt;<mark>alert</mark>(1)&lt;/<mark>script</mark>&gt; \
             &amp; &quot;quotes&quot;"
        );
        // A query full of markup marks nothing and injects nothing.
        let html = highlight("a <b> c", "<b>");
        assert_eq!(html, "a &lt;b&gt; c");
    }

    #[test]
    fn no_query_words_means_plain_escaped_text() {
        assert_eq!(highlight("AI 新闻", "?"), "AI 新闻");
        assert_eq!(highlight("", "波士顿"), "");
    }
}
