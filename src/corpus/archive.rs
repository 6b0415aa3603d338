//! The video-summary archive: one `<details>` block per episode, with a
//! `<summary>N. [date] 【category】title | tag | tag</summary>` line, a YouTube link and
//! thumbnail, a `# title` heading that repeats the summary, a Markdown body and a trailing
//! `[model=...]` line.
//!
//! Owns: splitting the blocks, reading the summary line, separating the HTML and the
//! generator's bookkeeping from the body, and episode ids. Must not: read files, or guess
//! a date that the entry does not state (no date means `published = None`).

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest as _, Sha256};
use time::{Date, Month, OffsetDateTime};

use super::markdown::{join_paragraphs, strip_markdown};
use super::{Digest, ParseError, ParsedFile, SourceKind, Story};

/// Parses an archive whose first `<details>` is at `lines[first]`.
pub(super) fn parse(source: &str, lines: &[&str], first: usize) -> Result<ParsedFile, ParseError> {
    let file_name = Path::new(source)
        .file_name()
        .map_or_else(|| source.to_string(), |n| n.to_string_lossy().into_owned());
    let digest_id = format!("archive-{}", slug(source));

    let mut stories = Vec::new();
    let mut first_seen: HashMap<u32, usize> = HashMap::new();
    let mut i = first;
    while i < lines.len() {
        let line = lines[i].trim();
        if line.is_empty() {
            i += 1;
            continue;
        }
        if !line.starts_with("<details") {
            return Err(ParseError::new(
                source,
                i + 1,
                "text outside a <details> block: every entry must sit between \
                 <details> and </details>",
            ));
        }
        let close = block_end(source, lines, i)?;
        let entry = Entry::parse(source, lines, i, close)?;
        if let Some(first_line) = first_seen.insert(entry.number, entry.summary_line) {
            return Err(ParseError::new(
                source,
                entry.summary_line,
                format!(
                    "entry number {} appears twice (first at line {first_line}): \
                     episode numbers must be unique within a file",
                    entry.number
                ),
            ));
        }
        stories.push(entry.into_story(&digest_id));
        i = close + 1;
    }
    if stories.is_empty() {
        return Err(ParseError::new(
            source,
            0,
            "the archive has no <details> entries",
        ));
    }

    let digest = Digest {
        id: digest_id,
        kind: SourceKind::Archive,
        title: file_name,
        published: None,
        categories: Vec::new(),
        source: source.to_string(),
    };
    Ok(ParsedFile { digest, stories })
}

/// Index of the `</details>` closing the block opened at `open`. A second `<details>`
/// before it means the first was never closed, which is reported at its opening line.
fn block_end(source: &str, lines: &[&str], open: usize) -> Result<usize, ParseError> {
    // The opening line itself may hold the whole block (`<details>...</details>`).
    if lines[open].contains("</details>") {
        return Ok(open);
    }
    for (j, line) in lines.iter().enumerate().skip(open + 1) {
        let t = line.trim();
        if t.contains("</details>") {
            return Ok(j);
        }
        if t.starts_with("<details") {
            break;
        }
    }
    Err(ParseError::new(
        source,
        open + 1,
        "this <details> block is never closed: add </details> after the entry",
    ))
}

/// One episode as read from its block.
struct Entry {
    number: u32,
    /// 1-based line of the `<summary>`, for messages.
    summary_line: usize,
    headline: String,
    /// `【category】` first, then the ` | ` parts after the headline.
    tags: Vec<String>,
    url: Option<String>,
    published: Option<OffsetDateTime>,
    display: String,
    /// The summary's ` | ` parts alone, embedded when the body is empty.
    title_parts: Vec<String>,
}

impl Entry {
    fn parse(source: &str, lines: &[&str], open: usize, close: usize) -> Result<Entry, ParseError> {
        let block = &lines[open..=close];
        let (summary_idx, summary_end, summary) = find_summary(source, block, open)?;
        let summary_line = open + summary_idx + 1;
        let head =
            SummaryLine::parse(&summary).map_err(|m| ParseError::new(source, summary_line, m))?;

        // Everything after `</summary>` up to `</details>` is the body, HTML included.
        let last = block.len() - 1;
        let mut body: Vec<&str> = Vec::new();
        if summary_end < last {
            body.extend_from_slice(&block[summary_end + 1..last]);
            // Text sharing the `</details>` line still belongs to the entry.
            let before_close = block[last].split("</details>").next().unwrap_or("");
            if !before_close.trim().is_empty() {
                body.push(before_close);
            }
        }
        let (url, content) = split_html_header(&body);
        let display = clean_body(content, &head.full_title);

        Ok(Entry {
            number: head.number,
            summary_line,
            headline: head.headline,
            tags: head
                .category
                .into_iter()
                .chain(head.parts.clone())
                .collect(),
            url,
            published: head.date,
            display,
            title_parts: head.parts,
        })
    }

    fn into_story(self, digest_id: &str) -> Story {
        let body_text = strip_markdown(&self.display);
        // 43 of the 100 seed entries have an empty body; their headline alone ("每日科技
        // 新闻汇总") would make unrelated episodes identical, so the title's ` | ` parts
        // stand in for the body.
        let text = if body_text.is_empty() {
            format!("{}\n{}", self.headline, self.title_parts.join("\n"))
                .trim_end()
                .to_string()
        } else {
            format!("{}\n{body_text}", self.headline)
        };
        Story {
            id: format!("ep{}", self.number),
            digest_id: digest_id.to_string(),
            position: self.number,
            headline: self.headline,
            author: None,
            url: self.url,
            published: self.published,
            tags: self.tags,
            display: self.display,
            text,
        }
    }
}

/// Finds `<summary>...</summary>` in a block (it may span lines). Returns the index of
/// the line where it starts, the index where it ends, and the text between the tags.
fn find_summary(
    source: &str,
    block: &[&str],
    open: usize,
) -> Result<(usize, usize, String), ParseError> {
    let Some(start) = block.iter().position(|l| l.contains("<summary>")) else {
        return Err(ParseError::new(
            source,
            open + 1,
            "entry has no <summary>N. [YYYY-MM-DD] title</summary> line",
        ));
    };
    let mut text = String::new();
    for (k, line) in block.iter().enumerate().skip(start) {
        let from = if k == start {
            line.find("<summary>").map_or(0, |p| p + "<summary>".len())
        } else {
            0
        };
        let piece = &line[from..];
        if let Some(end) = piece.find("</summary>") {
            text.push_str(&piece[..end]);
            return Ok((start, k, text));
        }
        text.push_str(piece);
        text.push(' ');
    }
    Err(ParseError::new(
        source,
        open + start + 1,
        "<summary> is never closed: add </summary> after the title",
    ))
}

/// The parts of `N. [YYYY-MM-DD] 【category】title | tag | tag`.
struct SummaryLine {
    number: u32,
    date: Option<OffsetDateTime>,
    category: Option<String>,
    headline: String,
    parts: Vec<String>,
    /// Everything after the number and date, to recognise the repeated `# heading`.
    full_title: String,
}

impl SummaryLine {
    fn parse(summary: &str) -> Result<SummaryLine, String> {
        let s = summary.trim();
        let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let number = s[..digits]
            .parse::<u32>()
            .ok()
            .filter(|_| s[digits..].starts_with('.'))
            .ok_or_else(|| {
                format!(
                    "summary `{s}` does not start with the entry number: \
                     write it as `<summary>589. [2025-03-13] title</summary>`"
                )
            })?;
        let mut rest = s[digits + 1..].trim_start();

        let mut date = None;
        if let Some(after) = rest.strip_prefix('[') {
            if let Some(end) = after.find(']') {
                let inner = after[..end].trim();
                // Only a bracket of digits and dashes is meant as a date; `[Live]` is
                // part of the title.
                if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_digit() || c == '-') {
                    date = Some(parse_dashed_date(inner).ok_or_else(|| {
                        format!("`[{inner}]` is not a valid date: write it as [YYYY-MM-DD]")
                    })?);
                    rest = after[end + 1..].trim_start();
                }
            }
        }
        let full_title = rest.to_string();
        // Titles without a bracketed date often name their day in the title itself
        // ("每日科技新闻汇总 | 20250313"); that is the entry's own statement, not a guess.
        let date = date.or_else(|| compact_date_in(rest));

        let mut category = None;
        if let Some(after) = rest.strip_prefix('【') {
            if let Some(end) = after.find('】') {
                let c = after[..end].trim();
                if !c.is_empty() {
                    category = Some(c.to_string());
                }
                rest = &after[end + '】'.len_utf8()..];
            }
        }
        // Some titles separate parts with `？| ` or `|  ` instead of ` | `, so split on the
        // bar and trim.
        let mut parts = rest
            .split('|')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        let headline = parts
            .next()
            .ok_or_else(|| format!("summary `{s}` has no title after the number"))?;
        Ok(SummaryLine {
            number,
            date,
            category,
            headline,
            parts: parts.collect(),
            full_title,
        })
    }
}

/// `2025-03-23` at midnight UTC; `None` if it is not a real calendar date.
fn parse_dashed_date(s: &str) -> Option<OffsetDateTime> {
    let mut it = s.split('-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || y.len() != 4 {
        return None;
    }
    midnight_utc(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// The first standalone run of exactly eight digits that is a plausible `YYYYMMDD`.
fn compact_date_in(s: &str) -> Option<OffsetDateTime> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i - start == 8 {
            let run = &s[start..i];
            let year: i32 = run[..4].parse().ok()?;
            if (1990..=2100).contains(&year) {
                if let Some(date) =
                    midnight_utc(year, run[4..6].parse().ok()?, run[6..8].parse().ok()?)
                {
                    return Some(date);
                }
            }
        }
    }
    None
}

fn midnight_utc(year: i32, month: u8, day: u8) -> Option<OffsetDateTime> {
    let month = Month::try_from(month).ok()?;
    Date::from_calendar_date(year, month, day)
        .ok()
        .map(|d| d.midnight().assume_utc())
}

/// Separates the leading HTML (the YouTube link and its thumbnail, possibly spanning
/// lines) from the Markdown after it. Returns the link's `href` and the Markdown lines.
fn split_html_header<'a>(body: &[&'a str]) -> (Option<String>, Vec<&'a str>) {
    let mut url = None;
    let mut in_tag = false;
    let mut in_quote = false;
    let mut k = 0;
    while k < body.len() {
        let t = body[k].trim();
        let starts_tag = t.starts_with('<')
            && t[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!');
        if !(t.is_empty() || in_tag || starts_tag) {
            break;
        }
        if url.is_none() {
            url = href(t);
        }
        // Track whether a tag is still open at the end of the line (`<img src=...`
        // continues with `alt=... >` on the next one).
        for c in t.chars() {
            match (in_tag, c) {
                (true, '"') => in_quote = !in_quote,
                (true, '>') if !in_quote => in_tag = false,
                (false, '<') => in_tag = true,
                _ => {}
            }
        }
        k += 1;
    }
    (url, body[k..].to_vec())
}

/// The value of the first `href="..."` (or `'...'`) on a line.
fn href(line: &str) -> Option<String> {
    let at = line.find("href=")?;
    let rest = &line[at + "href=".len()..];
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    let end = value.find(quote)?;
    let url = value[..end].trim();
    (!url.is_empty()).then(|| url.to_string())
}

/// The Markdown body for display: without the `# heading` that repeats the title, and
/// without the trailing `[model=...]` bookkeeping and `---` separator, which describe
/// how the summary was made rather than the episode.
fn clean_body(mut content: Vec<&str>, full_title: &str) -> String {
    let leading_blank = content.iter().take_while(|l| l.trim().is_empty()).count();
    content.drain(..leading_blank);
    if let Some(first) = content.first() {
        if let Some(heading) = first.trim().strip_prefix("# ") {
            if without_spaces(heading) == without_spaces(full_title) {
                content.remove(0);
            }
        }
    }
    while let Some(last) = content.last() {
        let t = last.trim();
        let is_model_line = t.starts_with("[model=") && t.ends_with(']');
        let is_rule = t.len() >= 3 && t.chars().all(|c| c == '-');
        if t.is_empty() || is_model_line || is_rule {
            content.pop();
        } else {
            break;
        }
    }
    let lines: Vec<&str> = content.iter().map(|l| l.trim_end()).collect();
    join_paragraphs(&lines)
}

fn without_spaces(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// `003_ac231d0ff860caab.txt` gives `003-ac231d0ff860caab`: the file stem, lowercased,
/// with anything outside `[a-z0-9]` turned into single dashes. A stem with no ASCII at
/// all (a Chinese file name) falls back to a hash so the id stays stable and URL-safe.
fn slug(source: &str) -> String {
    let stem = Path::new(source)
        .file_stem()
        .map_or_else(|| source.to_string(), |s| s.to_string_lossy().into_owned());
    let mut out = String::new();
    for c in stem.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        let hash = Sha256::digest(stem.as_bytes());
        out = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::parse_str;
    use time::macros::datetime;

    const A003: &str = include_str!("../../data/sample/003_ac231d0ff860caab.txt");
    const NAME: &str = "data/sample/003_ac231d0ff860caab.txt";

    fn parse_ok(name: &str, text: &str) -> ParsedFile {
        match parse_str(name, text) {
            Ok(parsed) => parsed,
            Err(e) => panic!("expected to parse, got {e}"),
        }
    }

    fn parse_err(text: &str) -> ParseError {
        match parse_str("a.txt", text) {
            Ok(parsed) => panic!("expected an error, parsed {} stories", parsed.stories.len()),
            Err(e) => e,
        }
    }

    fn episode(parsed: &ParsedFile, number: u32) -> &Story {
        match parsed.stories.iter().find(|s| s.position == number) {
            Some(story) => story,
            None => panic!("no episode {number}"),
        }
    }

    const ONE: &str = "<details>\n<summary>7. [2025-01-02] 【AI】Title | tag one |  tag two</summary><br>\n\n<a href=\"https://www.youtube.com/watch?v=abc\" target=\"_blank\">\n    <img src=\"x.jpg\" \n        alt=\"[Youtube]\" width=\"200\">\n</a>\n\n# 【AI】Title | tag one |  tag two\n\n**Body** text.\n\n[model=gemini-2.0-flash,0]\n\n\n---\n\n</details>\n";

    #[test]
    fn archive_file_becomes_one_digest_with_100_episodes() {
        let parsed = parse_ok(NAME, A003);
        let d = &parsed.digest;
        assert_eq!(d.id, "archive-003-ac231d0ff860caab");
        assert_eq!(d.kind, SourceKind::Archive);
        assert_eq!(d.title, "003_ac231d0ff860caab.txt");
        assert_eq!(d.published, None);
        assert!(d.categories.is_empty());
        assert_eq!(d.source, NAME);
        assert_eq!(parsed.stories.len(), 100);
        let numbers: Vec<u32> = parsed.stories.iter().map(|s| s.position).collect();
        let expected: Vec<u32> = (501..=600).rev().collect();
        assert_eq!(numbers, expected);
    }

    #[test]
    fn episode_600_has_all_its_fields() {
        let parsed = parse_ok(NAME, A003);
        let ep = episode(&parsed, 600);
        assert_eq!(ep.id, "ep600");
        assert_eq!(ep.digest_id, "archive-003-ac231d0ff860caab");
        assert_eq!(ep.headline, "大语言模型不会带来AGI");
        assert_eq!(ep.author, None);
        assert_eq!(
            ep.url.as_deref(),
            Some("https://www.youtube.com/watch?v=NmCPbqlLjzo")
        );
        assert_eq!(ep.published, Some(datetime!(2025-03-23 0:00 UTC)));
        assert_eq!(
            ep.tags,
            [
                "人工智能",
                "图灵奖得主Yann LeCun最新访谈",
                "LLM的局限性",
                "缺乏物理世界理解",
                "推理缺陷",
                "V-JEPA",
                "OpenAI",
                "过度炒作",
                "开源优势"
            ]
        );
        assert!(ep.display.starts_with("好的，我來為您整理這篇文稿"));
        assert!(ep.display.ends_with("希望這個整理後的版本對您有所幫助！"));
        for gone in ["<a href", "<img", "# 【人工智能】", "[model=", "</details>"] {
            assert!(!ep.display.contains(gone), "display still has {gone}");
        }
        assert!(ep
            .display
            .contains("**主題：楊立昆專訪重點：大語言模型的局限與AGI的未來**"));
        assert!(ep
            .text
            .starts_with("大语言模型不会带来AGI\n好的，我來為您整理這篇文稿"));
        assert!(ep
            .text
            .contains("\n主題：楊立昆專訪重點：大語言模型的局限與AGI的未來\n"));
        assert!(ep.text.contains("\n缺乏創新能力： 大語言模型擅長"));
        assert!(!ep.text.contains("**"));
    }

    #[test]
    fn episode_589_takes_its_date_from_the_yyyymmdd_in_its_title() {
        let parsed = parse_ok(NAME, A003);
        let ep = episode(&parsed, 589);
        assert_eq!(ep.id, "ep589");
        // No `[date]` in the summary; the title says 20250313.
        assert_eq!(ep.published, Some(datetime!(2025-03-13 0:00 UTC)));
        assert_eq!(ep.headline, "每日科技新闻汇总");
        // The headline is not repeated among the tags.
        assert_eq!(
            ep.tags[..3],
            ["AI动态", "20250313", "灵犀X2机器人骑行秀绝技"]
        );
        assert_eq!(
            ep.url.as_deref(),
            Some("https://www.youtube.com/watch?v=Lt9G2OLUhbM")
        );
        // The body is empty, so the title's parts are embedded instead.
        assert_eq!(ep.display, "");
        assert_eq!(
            ep.text,
            "每日科技新闻汇总\n20250313\n灵犀X2机器人骑行秀绝技\n字节跳动开源COMET技术\n麻省理工提出L²M\nDALLE份额暴跌80%\n微软注资南非2.98亿美元"
        );
        assert_eq!(
            episode(&parsed, 588).published,
            Some(datetime!(2025-03-11 0:00 UTC))
        );
    }

    #[test]
    fn bracketed_date_wins_over_a_yyyymmdd_in_the_title() {
        // Episode 591 is dated [2025-03-13] but its title says 20250314.
        let parsed = parse_ok(NAME, A003);
        assert_eq!(
            episode(&parsed, 591).published,
            Some(datetime!(2025-03-13 0:00 UTC))
        );
    }

    #[test]
    fn episode_with_neither_date_nor_yyyymmdd_has_no_published_time() {
        let parsed = parse_ok(NAME, A003);
        let ep = episode(&parsed, 573);
        assert_eq!(ep.published, None);
        assert_eq!(
            ep.headline,
            "两万字深度解密DeepSeek-R1、Kimi 1.5，强推理模型凭什么火出圈"
        );
        assert_eq!(ep.tags, ["分享", "北大AI对齐团队", "超清版"]);
        let undated = parsed
            .stories
            .iter()
            .filter(|s| s.published.is_none())
            .count();
        // 43 entries lack `[date]`; 589 and 588 recover one from their titles.
        assert_eq!(undated, 41);
    }

    #[test]
    fn tight_and_doubled_bars_in_titles_still_split_into_clean_tags() {
        let parsed = parse_ok(NAME, A003);
        let ep597 = episode(&parsed, 597);
        assert_eq!(ep597.headline, "企业招聘也能遇到AI骗局？");
        assert_eq!(ep597.tags[1], "美初创公司Vidoc Security亲身经历");
        let ep583 = episode(&parsed, 583);
        assert_eq!(ep583.tags.last().map(String::as_str), Some("不朽计算"));
        assert!(parsed
            .stories
            .iter()
            .flat_map(|s| &s.tags)
            .all(|t| !t.is_empty() && t.trim() == t && !t.contains('|')));
    }

    #[test]
    fn every_episode_has_a_youtube_link_and_a_headline() {
        let parsed = parse_ok(NAME, A003);
        for s in &parsed.stories {
            let url = s.url.as_deref().unwrap_or("");
            assert!(
                url.starts_with("https://www.youtube.com/watch?v="),
                "{}: {url}",
                s.id
            );
            assert!(
                !s.headline.is_empty() && !s.headline.contains('【'),
                "{}",
                s.id
            );
            assert!(!s.display.contains("[model="), "{}", s.id);
            assert!(!s.display.ends_with("---"), "{}", s.id);
        }
    }

    #[test]
    fn small_block_parses_with_html_heading_and_model_line_removed() {
        let parsed = parse_ok("My Archive (2025).md", ONE);
        assert_eq!(parsed.digest.id, "archive-my-archive-2025");
        assert_eq!(parsed.digest.title, "My Archive (2025).md");
        let s = &parsed.stories[0];
        assert_eq!(s.id, "ep7");
        assert_eq!(s.position, 7);
        assert_eq!(s.headline, "Title");
        assert_eq!(s.tags, ["AI", "tag one", "tag two"]);
        assert_eq!(
            s.url.as_deref(),
            Some("https://www.youtube.com/watch?v=abc")
        );
        assert_eq!(s.published, Some(datetime!(2025-01-02 0:00 UTC)));
        assert_eq!(s.display, "**Body** text.");
        assert_eq!(s.text, "Title\nBody text.");
    }

    #[test]
    fn summary_on_the_details_line_and_no_category_are_accepted() {
        let text = "<details><summary>12. Plain title | x</summary>\n\nBody.\n</details>";
        let parsed = parse_ok("a.txt", text);
        let s = &parsed.stories[0];
        assert_eq!(s.headline, "Plain title");
        assert_eq!(s.tags, ["x"]);
        assert_eq!(s.url, None);
        assert_eq!(s.published, None);
        assert_eq!(s.display, "Body.");
    }

    #[test]
    fn entry_numbered_twice_is_reported_at_the_second_summary() {
        let text = format!("{ONE}\n{ONE}");
        let e = parse_err(&text);
        assert_eq!(e.line, 21);
        assert!(e.message.contains("first at line 2"), "{}", e.message);
    }

    #[test]
    fn unclosed_details_block_is_reported_at_its_opening_line() {
        let text = ONE.replace("</details>\n", "");
        let e = parse_err(&format!("\n{text}"));
        assert_eq!(e.line, 2);
        assert!(e.message.contains("never closed"), "{}", e.message);
        // A following block also shows the first was never closed.
        let e = parse_err(&format!("{text}{ONE}"));
        assert_eq!(e.line, 1);
    }

    #[test]
    fn summary_without_a_number_or_with_a_bad_date_is_reported_at_its_line() {
        let e = parse_err(&ONE.replace("<summary>7. ", "<summary>"));
        assert_eq!(e.line, 2);
        assert!(e.message.contains("entry number"), "{}", e.message);
        let e = parse_err(&ONE.replace("[2025-01-02]", "[2025-02-30]"));
        assert_eq!(e.line, 2);
        assert!(e.message.contains("YYYY-MM-DD"), "{}", e.message);
    }

    #[test]
    fn text_between_blocks_is_reported_at_its_line() {
        let e = parse_err(&format!("{ONE}stray text\n"));
        assert_eq!(e.line, 19);
        assert!(
            e.message.contains("outside a <details> block"),
            "{}",
            e.message
        );
    }

    #[test]
    fn block_without_summary_is_reported_at_its_opening_line() {
        let e = parse_err("<details>\nno summary here\n</details>\n");
        assert_eq!(e.line, 1);
        assert!(e.message.contains("<summary>"), "{}", e.message);
    }

    #[test]
    fn compact_dates_must_be_real_and_standalone() {
        assert_eq!(
            compact_date_in("x 20250313 y"),
            Some(datetime!(2025-03-13 0:00 UTC))
        );
        assert_eq!(compact_date_in("id 120250313"), None);
        assert_eq!(compact_date_in("20251340"), None);
        assert_eq!(compact_date_in("12345678"), None);
    }

    #[test]
    fn slugs_are_lowercase_ascii_with_single_dashes() {
        assert_eq!(slug("/tmp/x/003_AC23.txt"), "003-ac23");
        assert_eq!(slug("--A  b__c--.md"), "a-b-c");
        let chinese = slug("视频摘要.txt");
        assert_eq!(chinese.len(), 8);
        assert!(chinese.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(chinese, slug("视频摘要.txt"));
    }
}
