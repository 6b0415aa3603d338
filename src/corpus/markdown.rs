//! Turning the Markdown of summaries and episode bodies into plain text for embedding.
//!
//! Owns: [`strip_markdown`] and the small text helpers the two parsers share (dedenting,
//! paragraph joining). Must not: know about either file format, or drop words: every
//! rule here removes markup only, so Chinese text, `GPT-4o`, `C++` or `3*4` come out as
//! they went in.
//!
//! This is deliberately not a CommonMark implementation. The input is machine-written
//! Markdown with a handful of constructs (emphasis, inline code, links, headings, lists,
//! the odd HTML tag), and the output only feeds an embedding model, so a hand-rolled
//! scanner that is conservative about ambiguous delimiters is the better trade.

/// Markdown (and stray HTML) reduced to plain text: one output line per non-empty
/// input line, joined with `"\n"`.
///
/// Removes `**`/`__`/`~~` emphasis, single `*`/`_` emphasis where it is clearly emphasis,
/// the backticks of inline code (keeping the code), link and image targets (keeping the
/// text), heading marks, list bullets and numbers, block quotes, horizontal rules, code
/// fences and HTML tags. Blank lines disappear and runs of spaces become one space.
pub fn strip_markdown(s: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut in_fence = false;
    for raw in s.lines() {
        let line = raw.trim();
        if line.starts_with("```") || line.starts_with("~~~") {
            // Fence lines carry only the language name; the code between them is kept
            // verbatim because emphasis rules would mangle it.
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            let kept = collapse_spaces(line);
            if !kept.is_empty() {
                lines.push(kept);
            }
            continue;
        }
        if is_thematic_break(line) {
            continue;
        }
        let body = strip_block_prefixes(line);
        let mut out = String::with_capacity(body.len());
        inline(body, &mut out, &mut Scan::for_line(body.len()));
        let text = collapse_spaces(&decode_entities(&out));
        if !text.is_empty() {
            lines.push(text);
        }
    }
    lines.join("\n")
}

/// Removes the common leading indentation of the non-blank lines and trims trailing
/// whitespace, so an indented summary reads like a top-level paragraph.
pub(super) fn dedent(lines: &[&str]) -> Vec<String> {
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches([' ', '\t']).len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| {
            if l.trim().is_empty() {
                String::new()
            } else {
                // `indent` counts leading whitespace bytes common to every non-blank
                // line, and whitespace is ASCII here, so this is a char boundary.
                l.get(indent..).unwrap_or(l).trim_end().to_string()
            }
        })
        .collect()
}

/// Joins lines into paragraphs: lines inside a paragraph keep their `"\n"`, any run of
/// blank lines becomes one `"\n\n"`, and blank lines at either end disappear.
pub(super) fn join_paragraphs<S: AsRef<str>>(lines: &[S]) -> String {
    let mut out = String::new();
    let mut pending_break = false;
    for line in lines {
        let line = line.as_ref();
        if line.trim().is_empty() {
            pending_break = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push_str(if pending_break { "\n\n" } else { "\n" });
        }
        out.push_str(line);
        pending_break = false;
    }
    out
}

/// `---`, `***`, `___` (three or more, spaces allowed between).
fn is_thematic_break(line: &str) -> bool {
    let compact: Vec<char> = line.chars().filter(|c| !c.is_whitespace()).collect();
    compact.len() >= 3
        && matches!(compact[0], '-' | '*' | '_')
        && compact.iter().all(|&c| c == compact[0])
}

/// Strips block quote marks, heading marks and list markers from the start of a
/// (trimmed) line, in any nesting (`> * 1. text` gives `text`).
fn strip_block_prefixes(mut line: &str) -> &str {
    loop {
        let before = line;
        if let Some(rest) = line.strip_prefix('>') {
            line = rest.trim_start();
        }
        line = strip_heading(line);
        line = strip_bullet(line);
        line = strip_ordered(line);
        if line == before {
            return line;
        }
    }
}

/// `# Title` and `## Title ##` give `Title`; `#hashtag` is left alone because a heading
/// mark must be followed by a space.
fn strip_heading(line: &str) -> &str {
    let hashes = line.len() - line.trim_start_matches('#').len();
    if hashes == 0 || hashes > 6 {
        return line;
    }
    let rest = &line[hashes..];
    if rest.is_empty() {
        return rest;
    }
    if !rest.starts_with([' ', '\t']) {
        return line;
    }
    let rest = rest.trim();
    // A closing sequence of hashes is decoration too.
    let trimmed = rest.trim_end_matches('#');
    if trimmed.len() != rest.len() && (trimmed.is_empty() || trimmed.ends_with([' ', '\t'])) {
        trimmed.trim_end()
    } else {
        rest
    }
}

/// `* item`, `- item`, `+ item`: the marker must be followed by whitespace, so `-20°C`
/// and `*emphasis*` are not bullets.
fn strip_bullet(line: &str) -> &str {
    let mut chars = line.chars();
    match (chars.next(), chars.next()) {
        (Some('*' | '-' | '+'), Some(' ' | '\t')) => line[1..].trim_start(),
        _ => line,
    }
}

/// `1. item` and `1) item`. At most three digits: a line that starts with a year such
/// as `2025. ` is more likely prose than a list with two thousand items.
fn strip_ordered(line: &str) -> &str {
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits > 3 {
        return line;
    }
    let rest = &line[digits..];
    let mut chars = rest.chars();
    match (chars.next(), chars.next()) {
        (Some('.' | ')'), Some(' ' | '\t')) => rest[1..].trim_start(),
        _ => line,
    }
}

/// Look-ahead allowance and nesting depth for one line's inline markup.
///
/// Every search for a closing delimiter (`*`, `` ` ``, `]`, `)`, `>`) looks ahead and,
/// when the closer never comes, the opener is literal and the next opener looks again:
/// a line of unmatched openers (`*a *a *a ...`, `[[[[...`) would cost time quadratic in
/// its length, and a deeply nested one (`[[[[x](u)](u)](u)`) recursion as deep as the
/// line is long. So each line gets a budget of look-ahead bytes proportional to its
/// length, and nesting deeper than [`MAX_NESTING`] is kept as written. Real lines use a
/// small part of either; a hostile line costs O(its length) and a fixed stack, and only
/// its output differs (markup kept as text once the budget is spent).
struct Scan {
    /// Bytes that searches may still look at.
    fuel: usize,
    /// Nesting of the current [`inline`] call.
    depth: usize,
}

/// Inline constructs nested deeper than this are kept as written.
const MAX_NESTING: usize = 32;
/// Look-ahead budget per byte of a line (plus [`LOOKAHEAD_BASE`]).
const LOOKAHEAD_PER_BYTE: usize = 16;
const LOOKAHEAD_BASE: usize = 4096;

impl Scan {
    fn for_line(len: usize) -> Self {
        Scan {
            fuel: len
                .saturating_mul(LOOKAHEAD_PER_BYTE)
                .saturating_add(LOOKAHEAD_BASE),
            depth: 0,
        }
    }

    /// Pays for looking at `n` more bytes; false (and nothing left) when the budget
    /// cannot cover them.
    fn spend(&mut self, n: usize) -> bool {
        match self.fuel.checked_sub(n) {
            Some(left) => {
                self.fuel = left;
                true
            }
            None => {
                self.fuel = 0;
                false
            }
        }
    }

    /// The first `byte` at or after `from`, within the budget.
    fn find_byte(&mut self, bytes: &[u8], from: usize, byte: u8) -> Option<usize> {
        let from = from.min(bytes.len());
        let limit = bytes.len().min(from.saturating_add(self.fuel));
        match bytes[from..limit].iter().position(|&b| b == byte) {
            Some(k) => {
                self.spend(k + 1);
                Some(from + k)
            }
            None => {
                self.spend(limit - from);
                None
            }
        }
    }
}

/// Inline markup of one line, appended to `out`.
fn inline(s: &str, out: &mut String, scan: &mut Scan) {
    if scan.depth >= MAX_NESTING {
        out.push_str(s);
        return;
    }
    scan.depth += 1;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < s.len() {
        let c = bytes[i];
        match c {
            b'\\' => {
                // A backslash escape makes the next punctuation literal (`S\_max`).
                match bytes.get(i + 1) {
                    Some(&next) if next.is_ascii_punctuation() => {
                        out.push(next as char);
                        i += 2;
                    }
                    _ => {
                        out.push('\\');
                        i += 1;
                    }
                }
            }
            b'`' => i = code_span(s, i, out, scan),
            b'!' if bytes.get(i + 1) == Some(&b'[') => match link(s, i + 1, scan) {
                Some((text, end)) => {
                    inline(text, out, scan);
                    i = end;
                }
                None => {
                    out.push('!');
                    i += 1;
                }
            },
            b'[' => match link(s, i, scan) {
                Some((text, end)) => {
                    inline(text, out, scan);
                    i = end;
                }
                None => {
                    out.push('[');
                    i += 1;
                }
            },
            b'<' => i = html_tag(s, i, out, scan),
            b'*' | b'_' | b'~' => i = emphasis(s, i, out, scan),
            _ => {
                // Copy the whole (possibly multi-byte) character.
                let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&s[i..i + ch_len]);
                i += ch_len;
            }
        }
    }
    scan.depth -= 1;
}

/// An inline code span starting at the backtick run at `start`: its content is copied
/// verbatim (no emphasis or tag stripping inside, so `` `<|user|>` `` survives). An
/// unmatched run is literal. Returns the index after what was consumed.
fn code_span(s: &str, start: usize, out: &mut String, scan: &mut Scan) -> usize {
    let bytes = s.as_bytes();
    let run = run_length(bytes, start, b'`');
    let content_start = start + run;
    let mut j = content_start;
    while j < s.len() {
        if bytes[j] == b'`' {
            let close = run_length(bytes, j, b'`');
            if !scan.spend(close) {
                break;
            }
            if close == run {
                out.push_str(s[content_start..j].trim());
                return j + close;
            }
            j += close;
        } else {
            match scan.find_byte(bytes, j, b'`') {
                Some(next) => j = next,
                None => break,
            }
        }
    }
    out.push_str(&s[start..content_start]);
    content_start
}

/// `[text](target)` starting at the `[` at `start`: returns the text and the index after
/// the closing `)`. Brackets and parentheses may nest (`[a [b]](u(1))`).
fn link<'s>(s: &'s str, start: usize, scan: &mut Scan) -> Option<(&'s str, usize)> {
    let bytes = s.as_bytes();
    let close_bracket = matching(bytes, start, b'[', b']', scan)?;
    if bytes.get(close_bracket + 1) != Some(&b'(') {
        return None;
    }
    let close_paren = matching(bytes, close_bracket + 1, b'(', b')', scan)?;
    Some((&s[start + 1..close_bracket], close_paren + 1))
}

/// Index of the delimiter that closes the one at `open`, honouring nesting and
/// backslash escapes.
fn matching(bytes: &[u8], open: usize, opener: u8, closer: u8, scan: &mut Scan) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = open;
    while j < bytes.len() {
        let b = bytes[j];
        if b == b'\\' {
            if !scan.spend(2) {
                return None;
            }
            j += 2;
            continue;
        }
        if !scan.spend(1) {
            return None;
        }
        if b == opener {
            depth += 1;
        } else if b == closer {
            depth -= 1;
            if depth == 0 {
                return Some(j);
            }
        }
        j += 1;
    }
    None
}

/// An HTML tag or autolink starting at the `<` at `start`. Tags vanish (`<br>` becomes a
/// space so words on either side stay apart), `<https://...>` keeps the address, and a
/// `<` that starts neither (`a < b`, `<3`) is literal.
fn html_tag(s: &str, start: usize, out: &mut String, scan: &mut Scan) -> usize {
    let rest = &s[start + 1..];
    let Some(end) = scan
        .find_byte(s.as_bytes(), start + 1, b'>')
        .map(|at| at - (start + 1))
    else {
        out.push('<');
        return start + 1;
    };
    let inner = &rest[..end];
    let is_autolink = ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| inner.starts_with(scheme));
    if is_autolink && !inner.contains(char::is_whitespace) {
        out.push_str(inner);
        return start + 1 + end + 1;
    }
    let name = inner.strip_prefix('/').unwrap_or(inner);
    let looks_like_tag = inner.starts_with('!')
        || (name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '/')
                .all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !looks_like_tag {
        out.push('<');
        return start + 1;
    }
    let tag_name: String = name
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    if matches!(
        tag_name.as_str(),
        "br" | "p" | "div" | "li" | "tr" | "td" | "hr"
    ) {
        out.push(' ');
    }
    start + 1 + end + 1
}

/// A run of `*`, `_` or `~` at `start`. When it opens emphasis that is closed later on
/// the line, the delimiters go and the content is processed; otherwise the run is
/// copied literally.
///
/// "Clearly emphasis" means: the opener is followed by a non-space and the closer is
/// preceded by one (so `2 * 3 * 4` is arithmetic), a single `*` must not sit inside an
/// ASCII word or number (so `3*4*5` stays), and `_` must not sit inside any word (so
/// `snake_case_name` stays).
fn emphasis(s: &str, start: usize, out: &mut String, scan: &mut Scan) -> usize {
    let bytes = s.as_bytes();
    let delim = bytes[start];
    let run = run_length(bytes, start, delim);
    let after = start + run;
    let literal = |out: &mut String| {
        out.push_str(&s[start..after]);
        after
    };
    if delim == b'~' && run != 2 {
        return literal(out);
    }
    let prev = s[..start].chars().next_back();
    let next = s[after..].chars().next();
    if next.is_none_or(char::is_whitespace) {
        return literal(out);
    }
    if !can_flank_outside(delim, run, prev) {
        return literal(out);
    }
    let mut j = after;
    while j < s.len() {
        if bytes[j] == b'\\' {
            if !scan.spend(2) {
                break;
            }
            j += 2;
            continue;
        }
        if bytes[j] == b'`' {
            // Delimiters inside a code span do not close emphasis: skip to just after the
            // next run of at least as many backticks, or past this run if there is none.
            let code_run = run_length(bytes, j, b'`');
            if !scan.spend(code_run) {
                break;
            }
            j = backticks_after(bytes, j + code_run, code_run, scan).unwrap_or(j + code_run);
            continue;
        }
        if bytes[j] != delim {
            if !scan.spend(1) {
                break;
            }
            j += 1;
            continue;
        }
        let close = run_length(bytes, j, delim);
        if !scan.spend(close) {
            break;
        }
        let before_close = s[..j].chars().next_back();
        let after_close = s[j + close..].chars().next();
        if close == run
            && j > after
            && before_close.is_some_and(|c| !c.is_whitespace())
            && can_flank_outside(delim, run, after_close)
        {
            inline(&s[after..j], out, scan);
            return j + close;
        }
        j += close;
    }
    literal(out)
}

/// The index just after the first `count` consecutive backticks at or after `from`
/// (the end of `` str::find("``") ``), within the budget.
fn backticks_after(bytes: &[u8], from: usize, count: usize, scan: &mut Scan) -> Option<usize> {
    let mut k = from;
    while k < bytes.len() {
        k = scan.find_byte(bytes, k, b'`')?;
        let run = run_length(bytes, k, b'`');
        if !scan.spend(run) {
            return None;
        }
        if run >= count {
            return Some(k + count);
        }
        k += run;
    }
    None
}

/// Whether the character just outside a delimiter run (before an opener, after a
/// closer) allows the run to be emphasis.
fn can_flank_outside(delim: u8, run: usize, outside: Option<char>) -> bool {
    match (delim, outside) {
        (_, None) => true,
        (b'_', Some(c)) => !c.is_alphanumeric(),
        (b'*', Some(c)) if run == 1 => !c.is_ascii_alphanumeric(),
        _ => true,
    }
}

fn run_length(bytes: &[u8], start: usize, byte: u8) -> usize {
    bytes[start..].iter().take_while(|&&b| b == byte).count()
}

/// The few entities that appear in scraped text; anything else is left as written.
fn decode_entities(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('&') {
        return s.into();
    }
    s.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
        .into()
}

/// Trims and turns every run of whitespace into one space.
fn collapse_spaces(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bold_markers_disappear_but_their_text_stays() {
        assert_eq!(
            strip_markdown("Nvidia CEO **Jensen Huang** 将出席"),
            "Nvidia CEO Jensen Huang 将出席"
        );
        assert_eq!(
            strip_markdown("名为**“Nested Learning”**的论文"),
            "名为“Nested Learning”的论文"
        );
        assert_eq!(strip_markdown("__bold__ and ~~gone~~"), "bold and gone");
    }

    #[test]
    fn inline_code_keeps_its_text_including_angle_brackets() {
        assert_eq!(strip_markdown("关于`hf-mem`工具"), "关于hf-mem工具");
        assert_eq!(
            strip_markdown("special tokens `<|user|>` and `<|assistant|>`"),
            "special tokens <|user|> and <|assistant|>"
        );
        assert_eq!(strip_markdown("`**not bold**`"), "**not bold**");
    }

    #[test]
    fn links_and_images_keep_only_their_text() {
        assert_eq!(
            strip_markdown("see [the paper](https://example.com/a_(b)) now"),
            "see the paper now"
        );
        assert_eq!(
            strip_markdown("![logo](x.png) [**bold** link](u)"),
            "logo bold link"
        );
        assert_eq!(
            strip_markdown("[2025-03-23] not a link"),
            "[2025-03-23] not a link"
        );
    }

    #[test]
    fn headings_bullets_and_numbers_lose_their_marks() {
        let md = "# Title\n\n## **Sub** ##\n\n*   **要点：** 内容\n    *   nested\n- dash\n1.  first\n10) tenth\n> quoted";
        assert_eq!(
            strip_markdown(md),
            "Title\nSub\n要点： 内容\nnested\ndash\nfirst\ntenth\nquoted"
        );
    }

    #[test]
    fn html_tags_vanish_and_line_breaks_separate_words() {
        assert_eq!(
            strip_markdown(r#"<a href="https://youtube.com/x" target="_blank">watch</a> now"#),
            "watch now"
        );
        assert_eq!(strip_markdown("one<br>two"), "one two");
        assert_eq!(
            strip_markdown("<https://example.com>"),
            "https://example.com"
        );
        assert_eq!(strip_markdown("a < b > c and <3"), "a < b > c and <3");
    }

    #[test]
    fn technical_tokens_and_arithmetic_are_not_mangled() {
        for s in [
            "GPT-4o",
            "C++ and C#",
            "3*4",
            "3*4*5",
            "2 * 3 * 4",
            "snake_case_name",
            "-20°C至40°C",
            "5**2",
            "a16z合伙人Anish Acharya",
            "S_max",
            "#hashtag",
            "2025. 年度总结",
        ] {
            assert_eq!(strip_markdown(s), s, "mangled {s:?}");
        }
    }

    #[test]
    fn single_star_and_underscore_emphasis_is_removed_when_clear() {
        assert_eq!(strip_markdown("这是*强调*文本"), "这是强调文本");
        assert_eq!(strip_markdown("an _italic_ word"), "an italic word");
        assert_eq!(strip_markdown("***both***"), "both");
    }

    #[test]
    fn backslash_escapes_become_the_literal_character() {
        assert_eq!(strip_markdown(r"S\_max 與 \*star\*"), "S_max 與 *star*");
    }

    #[test]
    fn blank_lines_rules_and_extra_spaces_collapse() {
        let md = "  first   para  \n\n\n---\n\nsecond\nline\n\n***\n";
        assert_eq!(strip_markdown(md), "first para\nsecond\nline");
        assert_eq!(strip_markdown(""), "");
        assert_eq!(strip_markdown("\n\n  \n"), "");
    }

    #[test]
    fn fenced_code_is_kept_verbatim_without_fences() {
        assert_eq!(
            strip_markdown("```rust\nlet x = a*b*c;\n```\nafter"),
            "let x = a*b*c;\nafter"
        );
    }

    #[test]
    fn entities_are_decoded() {
        assert_eq!(strip_markdown("R&amp;D &lt;tag&gt;"), "R&D <tag>");
    }

    #[test]
    fn dedent_removes_only_the_common_indentation() {
        let lines = ["    a", "", "      b  ", "    c"];
        assert_eq!(dedent(&lines), vec!["a", "", "  b", "c"]);
    }

    #[test]
    fn paragraphs_are_joined_with_one_blank_line() {
        let lines: Vec<String> = ["", "a", "b", "", "", "c", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(join_paragraphs(&lines), "a\nb\n\nc");
    }
}
