//! The digest format: YAML front matter, then numbered `[headline](url)` items each
//! followed by an indented summary.
//!
//! Owns: front matter reading (only the `title`, `date` and `categories` keys it needs),
//! item splitting, author splitting, and the ids of digests and their stories. Must not:
//! read files, or accept a file it cannot fully account for; a malformed item is an
//! error with its line, never a silently dropped story.

use std::collections::HashMap;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::markdown::{dedent, join_paragraphs, strip_markdown};
use super::{Digest, ParseError, ParsedFile, SourceKind, Story};

/// Parses a digest whose opening `---` is at `lines[open]`.
pub(super) fn parse(source: &str, lines: &[&str], open: usize) -> Result<ParsedFile, ParseError> {
    let err = |line: usize, msg: String| ParseError::new(source, line, msg);

    let close = lines[open + 1..]
        .iter()
        .position(|l| l.trim() == "---")
        .map(|p| open + 1 + p)
        .ok_or_else(|| {
            err(
                open + 1,
                "front matter opened here is never closed: add a line with just --- after it"
                    .into(),
            )
        })?;
    let front = FrontMatter::parse(source, lines, open, close)?;

    let (date_line, date_value) = front.date.ok_or_else(|| {
        err(
            open + 1,
            "front matter has no `date:` line: add one like `date: 2026-01-06T12:00:09+08:00`"
                .into(),
        )
    })?;
    let published = OffsetDateTime::parse(&date_value, &Rfc3339).map_err(|e| {
        err(
            date_line,
            format!(
                "cannot read date `{date_value}` ({e}): write it as RFC 3339 with an offset, \
                 like 2026-01-06T12:00:09+08:00"
            ),
        )
    })?;
    let digest_id = digest_id(published);

    let items = split_items(lines, close + 1);
    if items.is_empty() {
        return Err(err(
            0,
            format!(
                "no numbered items after the front matter (which ends at line {}): \
                 add items like `1.  [headline](url)` followed by an indented summary",
                close + 1
            ),
        ));
    }

    let mut first_seen: HashMap<u32, usize> = HashMap::new();
    let mut stories = Vec::with_capacity(items.len());
    for item in items {
        let line_no = item.line + 1;
        if let Some(first) = first_seen.insert(item.number, line_no) {
            return Err(err(
                line_no,
                format!(
                    "item number {} appears twice (first at line {first}): \
                     renumber the items so each number is used once",
                    item.number
                ),
            ));
        }
        let (raw_headline, url) = parse_link(item.rest).map_err(|m| err(line_no, m))?;
        let (headline, author) = split_author(raw_headline);

        let summary_lines = dedent(&item.body);
        let display = join_paragraphs(&summary_lines);
        if display.is_empty() {
            return Err(err(
                line_no,
                format!(
                    "item {} has no summary: add an indented paragraph after a blank line \
                     under the link",
                    item.number
                ),
            ));
        }
        let text = format!("{headline}\n{}", strip_markdown(&display));
        stories.push(Story {
            id: format!("{digest_id}-{:02}", item.number),
            digest_id: digest_id.clone(),
            position: item.number,
            headline: headline.to_string(),
            author: author.map(str::to_string),
            url: Some(url.to_string()),
            published: Some(published),
            tags: front.categories.clone(),
            display,
            text,
        });
    }

    let digest = Digest {
        id: digest_id,
        kind: SourceKind::Digest,
        // A missing title is not worth rejecting the file over; the file name still tells
        // a reader where the stories came from.
        title: front.title.unwrap_or_else(|| source.to_string()),
        published: Some(published),
        categories: front.categories,
        source: source.to_string(),
    };
    Ok(ParsedFile { digest, stories })
}

/// `d20260106-1200`: the date and minute in the digest's own offset, so the id reads like
/// the digest's title, is URL-safe, and is the same every time the file is parsed.
/// Digests are hours apart, so the minute is precise enough to keep ids unique.
fn digest_id(published: OffsetDateTime) -> String {
    format!(
        "d{:04}{:02}{:02}-{:02}{:02}",
        published.year(),
        u8::from(published.month()),
        published.day(),
        published.hour(),
        published.minute()
    )
}

/// The keys of the front matter that matter here; everything else is ignored so new
/// keys in future digests do not break ingestion.
struct FrontMatter {
    title: Option<String>,
    /// 1-based line and raw value, kept apart so a bad date is reported at its line.
    date: Option<(usize, String)>,
    categories: Vec<String>,
}

impl FrontMatter {
    fn parse(
        source: &str,
        lines: &[&str],
        open: usize,
        close: usize,
    ) -> Result<FrontMatter, ParseError> {
        let mut front = FrontMatter {
            title: None,
            date: None,
            categories: Vec::new(),
        };
        // Set after `categories:` with no value, for YAML's block list form (`- item`).
        let mut in_category_block = false;
        for (idx, raw) in lines.iter().enumerate().take(close).skip(open + 1) {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if in_category_block {
                if let Some(item) = line.strip_prefix("- ").or(line.strip_prefix('-')) {
                    let item = unquote(item.trim());
                    if !item.is_empty() {
                        front.categories.push(item);
                    }
                    continue;
                }
                in_category_block = false;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "title" => front.title = Some(unquote(value)),
                "date" => front.date = Some((idx + 1, unquote(value))),
                "categories" => {
                    if value.is_empty() {
                        in_category_block = true;
                    } else {
                        front.categories = flow_list(value).ok_or_else(|| {
                            ParseError::new(
                                source,
                                idx + 1,
                                "categories list is not closed: write it as \
                                 [\"A\", \"B\"] on one line",
                            )
                        })?;
                    }
                }
                _ => {}
            }
        }
        Ok(front)
    }
}

/// `"quoted"` or `'quoted'` YAML scalars without their quotes; plain ones as written.
fn unquote(value: &str) -> String {
    let v = value.trim();
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let inner = &v[1..v.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        out
    } else if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        v[1..v.len() - 1].replace("''", "'")
    } else {
        v.to_string()
    }
}

/// A YAML flow list `["A", "B"]` (commas inside quotes allowed), or a single plain
/// scalar as a one-element list. `None` when the `[` is never closed.
fn flow_list(value: &str) -> Option<Vec<String>> {
    let Some(inner) = value.strip_prefix('[') else {
        let single = unquote(value);
        return Some(if single.is_empty() {
            Vec::new()
        } else {
            vec![single]
        });
    };
    let inner = inner.trim_end().strip_suffix(']')?;
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in inner.chars() {
        if escaped {
            current.push(c);
            escaped = false;
            continue;
        }
        match (quote, c) {
            (Some('"'), '\\') => {
                current.push(c);
                escaped = true;
            }
            (Some(q), _) if c == q => {
                quote = None;
                current.push(c);
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                current.push(c);
            }
            (None, ',') => {
                items.push(std::mem::take(&mut current));
            }
            _ => current.push(c),
        }
    }
    items.push(current);
    Some(
        items
            .iter()
            .map(|s| unquote(s))
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// One numbered item: where it starts, its number, the text after `N.`, and the lines up
/// to the next item.
struct RawItem<'a> {
    /// 0-based index of the item line.
    line: usize,
    number: u32,
    rest: &'a str,
    body: Vec<&'a str>,
}

/// Splits the lines after the front matter into items. Text before the first item (a
/// stray heading, say) belongs to no story and is skipped.
fn split_items<'a>(lines: &[&'a str], from: usize) -> Vec<RawItem<'a>> {
    let mut items: Vec<RawItem<'a>> = Vec::new();
    for (idx, line) in lines.iter().enumerate().skip(from) {
        if let Some((number, rest)) = item_start(line) {
            items.push(RawItem {
                line: idx,
                number,
                rest,
                body: Vec::new(),
            });
        } else if let Some(current) = items.last_mut() {
            current.body.push(line);
        }
    }
    items
}

/// `N.  rest` at the start of an unindented line. Summaries are indented, so a number at
/// column 0 is always an item, while `1. ` inside a summary's list is not.
fn item_start(line: &str) -> Option<(u32, &str)> {
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits > 6 {
        return None;
    }
    let after = line[digits..].strip_prefix('.')?;
    if !(after.is_empty() || after.starts_with([' ', '\t'])) {
        return None;
    }
    let number = line[..digits].parse().ok()?;
    Some((number, after.trim()))
}

/// `[headline](url)` filling the rest of an item line. The URL runs from the `](` that
/// closes the headline's brackets to the `)` ending the line, so brackets in the headline
/// and parentheses in the URL both survive.
fn parse_link(rest: &str) -> Result<(&str, &str), String> {
    const SHAPE: &str = "write the item as `N.  [headline](url)`";
    let Some(inner) = rest.strip_prefix('[') else {
        return Err(format!("item line has no [headline](url) link: {SHAPE}"));
    };
    let Some(inner) = inner.trim_end().strip_suffix(')') else {
        return Err(format!(
            "item line does not end with the link's closing `)`: {SHAPE}"
        ));
    };
    // Prefer the first `](` at which the headline's own brackets are balanced
    // (`[[Live] news](u)`), else the last one.
    let split = link_separator(inner);
    let Some(split) = split else {
        return Err(format!("item line has no [headline](url) link: {SHAPE}"));
    };
    let headline = inner[..split].trim();
    // A Markdown link may carry a title after the URL (`(url "title")`); only the URL
    // is wanted.
    let url = inner[split + 2..].split_whitespace().next().unwrap_or("");
    if headline.is_empty() {
        return Err(format!("item link has an empty headline: {SHAPE}"));
    }
    if url.is_empty() {
        return Err(format!("item link has an empty url: {SHAPE}"));
    }
    Ok((headline, url))
}

/// The first `](` before which the brackets are balanced, else the last `](`. One pass:
/// an item line is bounded only by the request body, and checking the prefix of every
/// `](` anew would cost time quadratic in its length.
fn link_separator(inner: &str) -> Option<usize> {
    let bytes = inner.as_bytes();
    let mut depth = 0i64;
    let mut went_negative = false;
    let mut last = None;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b']' && bytes.get(i + 1) == Some(&b'(') {
            if depth == 0 && !went_negative {
                return Some(i);
            }
            last = Some(i);
        }
        match b {
            b'[' => depth += 1,
            b']' => depth -= 1,
            _ => {}
        }
        went_negative |= depth < 0;
    }
    last
}

/// Splits a trailing author off a headline: `标题-宝玉` and `Title - Demis Hassabis`.
///
/// The rule, checked against every headline of the seed digests:
/// 1. A spaced ` - ` (the last one) separates an author when what follows looks like a
///    name. Spaces make the intent explicit, and a hyphenated name (`Jean-Luc`) after
///    it still works.
/// 2. Otherwise the last bare `-` separates an author when what follows looks like a
///    name and the character before the hyphen is not an ASCII letter or digit. In the
///    seeds every bare-hyphen author follows Chinese text or punctuation
///    (`模型-歸藏(guizang.ai)`, `”-宝玉`), while every hyphen glued to an ASCII word is
///    part of a term (`GPT-5`, `hf-mem`, `Claude-Code`, `VLA-模型`).
///
/// Known limit: an author right after an ASCII term (`发布GPT-5-宝玉`) stays in the
/// headline; keeping a headline whole is the cheaper mistake than cutting a term.
fn split_author(headline: &str) -> (&str, Option<&str>) {
    if let Some(pos) = headline.rfind(" - ") {
        let head = headline[..pos].trim_end();
        let author = headline[pos + 3..].trim();
        if !head.is_empty() && looks_like_name(author) {
            return (head, Some(author));
        }
    }
    if let Some(pos) = headline.rfind('-') {
        let head = &headline[..pos];
        let author = headline[pos + 1..].trim();
        let glued_to_ascii_word = head
            .chars()
            .next_back()
            .is_none_or(|c| c.is_ascii_alphanumeric());
        if !glued_to_ascii_word && !head.trim().is_empty() && looks_like_name(author) {
            return (head.trim_end(), Some(author));
        }
    }
    (headline, None)
}

/// A short run of at most five words with no clause punctuation, code or version-like
/// start: `歸藏(guizang.ai)`, `clem 🤗`, `Peter H. Diamandis, MD` pass; `mem\``, `5`,
/// `评测：深度分析` do not.
fn looks_like_name(s: &str) -> bool {
    const NOT_IN_NAMES: &[char] = &[
        '`', '[', ']', ':', ';', '"', '，', '。', '：', '；', '！', '？', '、', '“', '”', '《',
        '》', '「', '」',
    ];
    !s.is_empty()
        && s.chars().count() <= 40
        && s.split_whitespace().count() <= 5
        && s.chars().any(char::is_alphanumeric)
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && !s.contains(NOT_IN_NAMES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::parse_str;
    use time::macros::datetime;

    const D000: &str = include_str!("../../data/sample/000_ce41d89debbb0a4e.txt");
    const D001: &str = include_str!("../../data/sample/001_f9894c49d7f708a5.txt");
    const D002: &str = include_str!("../../data/sample/002_942afda76c0f7909.txt");
    const D004: &str = include_str!("../../data/sample/004_e093e21e046dee1d.txt");

    fn parse_ok(text: &str) -> ParsedFile {
        match parse_str("test.txt", text) {
            Ok(parsed) => parsed,
            Err(e) => panic!("expected to parse, got {e}"),
        }
    }

    fn parse_err(text: &str) -> ParseError {
        match parse_str("test.txt", text) {
            Ok(parsed) => panic!("expected an error, parsed {} stories", parsed.stories.len()),
            Err(e) => e,
        }
    }

    const MINIMAL: &str = "---\ntitle: \"t\"\ndate: 2026-01-06T12:00:09+08:00\ncategories: [\"A\"]\n---\n\n1.  [Head](https://x.com/1)\n\n    Summary.\n";

    #[test]
    fn digest_000_front_matter_becomes_the_digest() {
        let parsed = parse_ok(D000);
        let d = &parsed.digest;
        assert_eq!(d.id, "d20260106-1200");
        assert_eq!(d.kind, SourceKind::Digest);
        assert_eq!(d.title, "2026.01.06.12 过去4小时全球AI发生了什么？");
        assert_eq!(d.published, Some(datetime!(2026-01-06 12:00:09 +08:00)));
        assert_eq!(
            d.categories,
            [
                "AI Industry",
                "Robotics",
                "Deep Learning",
                "Software Development",
                "Research"
            ]
        );
        assert_eq!(d.source, "test.txt");
        assert_eq!(parsed.stories.len(), 10);
    }

    #[test]
    fn digest_000_items_4_and_5_have_stable_ids_and_urls() {
        let parsed = parse_ok(D000);
        let s4 = &parsed.stories[3];
        assert_eq!(s4.id, "d20260106-1200-04");
        assert_eq!(s4.position, 4);
        assert_eq!(
            s4.url.as_deref(),
            Some("https://x.com/demishassabis/status/2008307002699612586")
        );
        assert_eq!(
            s4.headline,
            "Google DeepMind与Boston Dynamics合作推动Gemini机器人发展"
        );
        assert_eq!(s4.author, None);
        let s5 = &parsed.stories[4];
        assert_eq!(s5.id, "d20260106-1200-05");
        assert_eq!(
            s5.url.as_deref(),
            Some("https://x.com/imxiaohu/status/2008340526660284584")
        );
        assert_eq!(s5.digest_id, "d20260106-1200");
        assert_eq!(s5.published, Some(datetime!(2026-01-06 12:00:09 +08:00)));
        assert_eq!(s5.tags, parsed.digest.categories);
        let last = &parsed.stories[9];
        assert_eq!(last.id, "d20260106-1200-10");
        assert_eq!(last.headline, "AI普及面临组织协调挑战");
    }

    #[test]
    fn digest_000_hyphen_inside_backticked_tool_name_is_not_an_author() {
        let s2 = &parse_ok(D000).stories[1];
        assert_eq!(s2.headline, "Hugging Face推出VRAM估算工具`hf-mem`");
        assert_eq!(s2.author, None);
    }

    #[test]
    fn digest_001_item_1_author_is_split_from_the_headline() {
        let parsed = parse_ok(D001);
        assert_eq!(parsed.digest.id, "d20260107-0000");
        let s1 = &parsed.stories[0];
        assert_eq!(s1.id, "d20260107-0000-01");
        assert_eq!(
            s1.headline,
            "英伟达在CES 2026发布Rubin芯片架构及Alpamayo机器人和自动驾驶VLA模型"
        );
        assert_eq!(s1.author.as_deref(), Some("歸藏(guizang.ai)"));
        assert!(s1.text.starts_with(
            "英伟达在CES 2026发布Rubin芯片架构及Alpamayo机器人和自动驾驶VLA模型\n英伟达CEO黄仁勋"
        ));
        assert!(!s1.text.contains("歸藏"), "the author must not be embedded");
    }

    #[test]
    fn every_seed_headline_splits_into_the_expected_headline_and_author() {
        // (file text, [(headline, author)] in item order)
        type Expected<'a> = (&'a str, &'a [(&'a str, Option<&'a str>)]);
        let expected: &[Expected] = &[
            (
                D001,
                &[
                    (
                        "英伟达在CES 2026发布Rubin芯片架构及Alpamayo机器人和自动驾驶VLA模型",
                        Some("歸藏(guizang.ai)"),
                    ),
                    (
                        "Google DeepMind与Boston Dynamics达成机器人AI合作",
                        Some("Demis Hassabis"),
                    ),
                    (
                        "Boston Dynamics推出新款Atlas人形机器人，进军工业生产",
                        Some("小互"),
                    ),
                    (
                        "谷歌发布“Nested Learning”论文，探索深度学习新架构",
                        Some("向阳乔木"),
                    ),
                    (
                        "a16z合伙人Anish Acharya展望2026年AI应用趋势：从“怎么做”到“做什么”",
                        Some("宝玉"),
                    ),
                    (
                        "新论点：AI落地挑战在于组织协调而非技术适应",
                        Some("sarah guo"),
                    ),
                    (
                        "Huggingface热门论文洞察：中国团队贡献突出，中美AI竞争激烈",
                        Some("向阳乔木"),
                    ),
                    (
                        "NVIDIA GR00T等开放机器人数据集2025年下载量突破900万",
                        Some("Clement Delangue"),
                    ),
                    (
                        "新工具hf-mem：Huggingface模型VRAM推理需求估算器",
                        Some("Clement Delangue"),
                    ),
                ],
            ),
            (
                D002,
                &[
                    ("全球最大AI机器人黑客马拉松即将举行", Some("clem 🤗")),
                    ("大型LLM训练效率研究：H2项目取得进展", Some("Jack Clark")),
                    (
                        "多模态RAG研究揭示检索优越性与VLM文本阅读挑战",
                        Some("merve"),
                    ),
                    ("Gary Marcus批评AI估值炒作与伪科学论文", Some("Gary Marcus")),
                    ("《AI帝国》作者探讨AI发展轨迹的潜在危害", Some("Karen Hao")),
                    ("Hugging Face CEO看好印度在AI领域的影响力", Some("clem 🤗")),
                    (
                        "Hugging Face发布模型上下文协议（MCP）服务器",
                        Some("clem 🤗"),
                    ),
                    ("讽刺漫画揭示技术问题解决中的“AI依赖陷阱”", Some("宝玉")),
                ],
            ),
            (
                D004,
                &[
                    (
                        "Google发布第七代TPU Ironwood，性能大幅提升",
                        Some("Demis Hassabis"),
                    ),
                    ("AI对就业市场的影响及北美科技公司裁员趋势", Some("宝玉")),
                    (
                        "对Sam Altman信誉及其政府担保言论的质疑",
                        Some("Gary Marcus"),
                    ),
                    (
                        "AI被视为新的经济增长引擎，基础设施投资至关重要",
                        Some("Peter H. Diamandis, MD"),
                    ),
                    ("中国AI模型在计算效率上展现显著优势", Some("Emad")),
                    ("Emad呼吁政府为AI基础设施建设提供承保和担保", Some("Emad")),
                    ("机器人操控能力与AI大模型的融合趋势", Some("宝玉")),
                ],
            ),
        ];
        for (text, items) in expected {
            let parsed = parse_ok(text);
            let got: Vec<(&str, Option<&str>)> = parsed
                .stories
                .iter()
                .map(|s| (s.headline.as_str(), s.author.as_deref()))
                .collect();
            assert_eq!(&got, items, "in digest {}", parsed.digest.id);
        }
        // Digest 000 names no authors at all.
        assert!(parse_ok(D000).stories.iter().all(|s| s.author.is_none()));
    }

    #[test]
    fn hyphens_inside_terms_are_not_author_separators() {
        for headline in [
            "OpenAI发布GPT-5",
            "新工具hf-mem",
            "Anthropic推出Claude-Code",
            "英伟达发布自动驾驶VLA-模型",
            "Qwen3-VL开源",
            "Google推出Gemini-2.5",
            "OpenAI推出GPT-4o-mini",
            "温度范围-20°C",
        ] {
            assert_eq!(split_author(headline), (headline, None), "{headline}");
        }
    }

    #[test]
    fn author_separators_in_other_shapes_are_recognised() {
        assert_eq!(split_author("标题 - Jean-Luc"), ("标题", Some("Jean-Luc")));
        assert_eq!(
            split_author("发布GPT-5（开源）-宝玉"),
            ("发布GPT-5（开源）", Some("宝玉"))
        );
        assert_eq!(split_author("Title -Someone"), ("Title", Some("Someone")));
        // After a spaced dash, a clause is not a name.
        assert_eq!(
            split_author("GPT-5 - 评测：深度分析"),
            ("GPT-5 - 评测：深度分析", None)
        );
    }

    #[test]
    fn summary_markdown_is_kept_for_display_and_stripped_for_text() {
        let s1 = &parse_ok(D000).stories[0];
        assert!(s1.display.contains("Nvidia CEO **Jensen Huang** 将出席"));
        assert!(
            s1.display.starts_with("Sarah Guo宣布"),
            "display is dedented"
        );
        assert!(s1.text.contains("Nvidia CEO Jensen Huang 将出席"));
        assert!(!s1.text.contains("**"));
        assert!(s1
            .text
            .starts_with("Nvidia将在CES 2026上举办NVIDIA Live活动\nSarah Guo宣布"));

        let s2 = &parse_ok(D000).stories[1];
        assert!(s2.display.contains("关于`hf-mem`工具"));
        assert!(s2.text.contains("关于hf-mem工具"));
    }

    #[test]
    fn multi_paragraph_summaries_are_dedented_and_joined_with_a_blank_line() {
        let text = "---\ndate: 2026-01-06T12:00:09+08:00\n---\n\n1.  [Head](u)\n\n    First line\n    continues **here**.\n\n\n    Second paragraph.\n\n2.  [Other](v)\n\n    Other summary.";
        let parsed = parse_ok(text);
        assert_eq!(
            parsed.stories[0].display,
            "First line\ncontinues **here**.\n\nSecond paragraph."
        );
        assert_eq!(
            parsed.stories[0].text,
            "Head\nFirst line\ncontinues here.\nSecond paragraph."
        );
        assert_eq!(parsed.stories[1].display, "Other summary.");
        // Without a title the file name stands in.
        assert_eq!(parsed.digest.title, "test.txt");
        assert!(parsed.digest.categories.is_empty());
    }

    #[test]
    fn links_with_brackets_in_the_headline_and_parentheses_in_the_url_parse() {
        assert_eq!(
            parse_link("[[Live] news](https://e.com/a_(b))"),
            Ok(("[Live] news", "https://e.com/a_(b)"))
        );
        assert_eq!(
            parse_link("[Wiki](https://en.wikipedia.org/wiki/C_(language) \"title\")"),
            Ok(("Wiki", "https://en.wikipedia.org/wiki/C_(language)"))
        );
    }

    #[test]
    fn crlf_line_endings_and_a_bom_parse_like_plain_files() {
        let crlf = format!("\u{feff}{}", MINIMAL.replace('\n', "\r\n"));
        let parsed = parse_ok(&crlf);
        assert_eq!(parsed.stories[0].display, "Summary.");
        assert_eq!(parsed.stories[0].url.as_deref(), Some("https://x.com/1"));
    }

    #[test]
    fn block_style_categories_are_read_too() {
        let text = MINIMAL.replace("categories: [\"A\"]", "categories:\n  - A\n  - \"B, C\"");
        assert_eq!(parse_ok(&text).digest.categories, ["A", "B, C"]);
    }

    #[test]
    fn digest_id_uses_the_dates_own_offset() {
        let text = MINIMAL.replace("2026-01-06T12:00:09+08:00", "2025-06-09T23:59:59-07:00");
        let parsed = parse_ok(&text);
        assert_eq!(parsed.digest.id, "d20250609-2359");
        assert_eq!(parsed.stories[0].id, "d20250609-2359-01");
    }

    #[test]
    fn unterminated_front_matter_is_reported_at_its_opening_line() {
        let e = parse_err("\n---\ntitle: \"t\"\ndate: 2026-01-06T12:00:09+08:00\n\n1.  [H](u)\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("never closed"), "{}", e.message);
    }

    #[test]
    fn missing_date_is_reported_at_the_front_matter() {
        let e = parse_err(&MINIMAL.replace("date: 2026-01-06T12:00:09+08:00\n", ""));
        assert_eq!(e.line, 1);
        assert!(e.message.contains("date:"), "{}", e.message);
    }

    #[test]
    fn unparsable_date_is_reported_at_its_line() {
        let e = parse_err(&MINIMAL.replace("2026-01-06T12:00:09+08:00", "6 January 2026"));
        assert_eq!(e.line, 3);
        assert!(e.message.contains("RFC 3339"), "{}", e.message);
        // An offset is required: a bare local time is ambiguous.
        let e = parse_err(&MINIMAL.replace("2026-01-06T12:00:09+08:00", "2026-01-06T12:00:09"));
        assert_eq!(e.line, 3);
    }

    #[test]
    fn item_without_a_link_is_reported_at_its_line() {
        let text = MINIMAL.replace("[Head](https://x.com/1)", "Head without link");
        let e = parse_err(&text);
        assert_eq!(e.line, 7);
        assert!(e.message.contains("[headline](url)"), "{}", e.message);
        let e = parse_err(&MINIMAL.replace("(https://x.com/1)", "(https://x.com/1) trailing"));
        assert_eq!(e.line, 7);
        let e = parse_err(&MINIMAL.replace("(https://x.com/1)", "()"));
        assert_eq!(e.line, 7);
        assert!(e.message.contains("empty url"), "{}", e.message);
    }

    #[test]
    fn item_without_a_summary_is_reported_at_its_line() {
        let text =
            format!("{MINIMAL}\n2.  [Second](https://x.com/2)\n\n3.  [Third](u)\n\n    S.\n");
        let e = parse_err(&text);
        assert_eq!(e.line, 11);
        assert!(e.message.contains("item 2 has no summary"), "{}", e.message);
    }

    #[test]
    fn digest_without_items_is_an_error_for_the_whole_file() {
        let e = parse_err("---\ndate: 2026-01-06T12:00:09+08:00\n---\n\nJust prose.\n");
        assert_eq!(e.line, 0);
        assert!(e.message.contains("no numbered items"), "{}", e.message);
    }

    #[test]
    fn item_number_used_twice_is_reported_at_the_second_use() {
        let text = format!("{MINIMAL}\n1.  [Again](https://x.com/2)\n\n    S.\n");
        let e = parse_err(&text);
        assert_eq!(e.line, 11);
        assert!(e.message.contains("first at line 7"), "{}", e.message);
    }
}
