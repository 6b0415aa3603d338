//! Parsing of the two input formats into [`Story`] values.
//!
//! Owns: recognising a file as a digest or a video-summary archive, splitting it into
//! stories, stable ids, display text and embedding text. Must not: touch the model,
//! the store or the filesystem beyond reading the one file it is given.

use std::path::Path;

use time::OffsetDateTime;

/// Which of the two input formats a file was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// "过去4小时全球AI发生了什么？": YAML front matter, then numbered linked items.
    Digest,
    /// The video-summary archive: `<details><summary>N. [date] title</summary>` blocks.
    Archive,
}

/// One digest (or one archive file): the unit that stories belong to.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    /// Stable, URL-safe id, the same each time the same file is parsed.
    pub id: String,
    pub kind: SourceKind,
    pub title: String,
    /// Publication time from the front matter; `None` for an archive file.
    pub published: Option<OffsetDateTime>,
    pub categories: Vec<String>,
    /// Where it came from (file name), for messages.
    pub source: String,
}

/// One news item of a digest, or one episode of the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct Story {
    /// Stable, URL-safe, human-readable id, unique across the corpus.
    pub id: String,
    pub digest_id: String,
    /// The item's number as written in the file (1-based).
    pub position: u32,
    /// Headline with any trailing author removed.
    pub headline: String,
    pub author: Option<String>,
    pub url: Option<String>,
    /// Digest items: the digest's time. Archive entries: their own date (midnight UTC),
    /// or `None` when the entry has none.
    pub published: Option<OffsetDateTime>,
    /// Digest categories, or the archive entry's `【category】` and `| tag` parts.
    pub tags: Vec<String>,
    /// The summary/body as written (Markdown kept), for display.
    pub display: String,
    /// Plain text to embed: headline, a newline, then the body with Markdown stripped.
    pub text: String,
}

/// One parsed file.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedFile {
    pub digest: Digest,
    pub stories: Vec<Story>,
}

/// A file that could not be parsed: says which file, which line and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}:{line}: {message}")]
pub struct ParseError {
    pub source_name: String,
    /// 1-based line number; 0 when the problem is the file as a whole.
    pub line: usize,
    pub message: String,
}

mod archive;
mod digest;
mod markdown;

pub use markdown::strip_markdown;

impl ParseError {
    pub(crate) fn new(source_name: &str, line: usize, message: impl Into<String>) -> Self {
        ParseError {
            source_name: source_name.to_string(),
            line,
            message: message.into(),
        }
    }
}

/// What every file must start with, quoted in the error for a file that is neither.
const EXPECTED_FORMAT: &str =
    "expected a digest (front matter starting with ---) or an archive (<details><summary>...)";

/// Parses one file's text, recognising the format from its first non-blank line.
///
/// `source_name` is only used in ids (archive files) and messages.
pub fn parse_str(source_name: &str, text: &str) -> Result<ParsedFile, ParseError> {
    // Editors on Windows like to prepend a BOM; it is not content.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // The line index costs 16 bytes a line, more than the text itself for a file of
    // blank lines; count first so a hostile one is refused before anything is built.
    let line_count = text.bytes().filter(|&b| b == b'\n').count() + 1;
    if line_count > MAX_LINES {
        return Err(ParseError::new(
            source_name,
            MAX_LINES + 1,
            format!("the file has more than {MAX_LINES} lines: split it into several files"),
        ));
    }
    let mut lines: Vec<&str> = Vec::with_capacity(line_count);
    // `lines` also drops the `\r` of CRLF endings, so both parsers see clean lines.
    lines.extend(text.lines());
    let Some(first) = lines.iter().position(|l| !l.trim().is_empty()) else {
        return Err(ParseError::new(
            source_name,
            0,
            format!("the file is empty: {EXPECTED_FORMAT}"),
        ));
    };
    let head = lines[first].trim();
    if head == "---" {
        digest::parse(source_name, &lines, first)
    } else if head.starts_with("<details") {
        archive::parse(source_name, &lines, first)
    } else {
        Err(ParseError::new(source_name, first + 1, EXPECTED_FORMAT))
    }
}

/// Like [`parse_str`], for raw bytes: text that is not UTF-8 is reported with the line
/// of the first bad byte, so the file can be fixed rather than silently mangled.
pub fn parse_bytes(source_name: &str, bytes: &[u8]) -> Result<ParsedFile, ParseError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_str(source_name, text),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            let column = e.valid_up_to() - line_start + 1;
            Err(ParseError::new(
                source_name,
                line,
                format!(
                    "invalid UTF-8 at byte {} (column {column} of this line): save the file as UTF-8",
                    e.valid_up_to()
                ),
            ))
        }
    }
}

/// Most lines a file may have (the sample archive has 6,665 for 100 episodes).
pub const MAX_LINES: usize = 1 << 22;

/// Largest file [`parse_file`] reads. The whole sample archive (100 episodes) is 0.4 MB;
/// parsing holds the text, its line index and two copies of every story, so a cap keeps
/// a stray multi-gigabyte file from taking the machine's memory.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Reads and parses one file. The path as given becomes [`Digest::source`].
pub fn parse_file(path: &Path) -> Result<ParsedFile, ParseError> {
    use std::io::Read;
    let source_name = path.display().to_string();
    let cannot_read =
        |e: std::io::Error| ParseError::new(&source_name, 0, format!("cannot read the file: {e}"));
    let too_big = || {
        ParseError::new(
            &source_name,
            0,
            format!(
                "the file is larger than {} MB: split it into several files",
                MAX_FILE_BYTES >> 20
            ),
        )
    };
    let file = std::fs::File::open(path).map_err(cannot_read)?;
    let size = file.metadata().map_err(cannot_read)?.len();
    if size > MAX_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(size as usize + 1);
    // `take` as well as the size on disk: the file may grow while it is read.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    parse_bytes(&source_name, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const SEEDS: [(&str, &str); 5] = [
        (
            "000_ce41d89debbb0a4e.txt",
            include_str!("../../data/sample/000_ce41d89debbb0a4e.txt"),
        ),
        (
            "001_f9894c49d7f708a5.txt",
            include_str!("../../data/sample/001_f9894c49d7f708a5.txt"),
        ),
        (
            "002_942afda76c0f7909.txt",
            include_str!("../../data/sample/002_942afda76c0f7909.txt"),
        ),
        (
            "003_ac231d0ff860caab.txt",
            include_str!("../../data/sample/003_ac231d0ff860caab.txt"),
        ),
        (
            "004_e093e21e046dee1d.txt",
            include_str!("../../data/sample/004_e093e21e046dee1d.txt"),
        ),
    ];

    fn parse_seeds() -> Vec<ParsedFile> {
        SEEDS
            .iter()
            .map(|(name, text)| match parse_str(name, text) {
                Ok(parsed) => parsed,
                Err(e) => panic!("seed {name} failed to parse: {e}"),
            })
            .collect()
    }

    #[test]
    fn all_seed_files_parse_into_134_stories() {
        let parsed = parse_seeds();
        let counts: Vec<(SourceKind, usize)> = parsed
            .iter()
            .map(|p| (p.digest.kind, p.stories.len()))
            .collect();
        assert_eq!(
            counts,
            [
                (SourceKind::Digest, 10),
                (SourceKind::Digest, 9),
                (SourceKind::Digest, 8),
                (SourceKind::Archive, 100),
                (SourceKind::Digest, 7),
            ]
        );
        let total: usize = parsed.iter().map(|p| p.stories.len()).sum();
        assert_eq!(total, 134);
    }

    #[test]
    fn story_and_digest_ids_are_unique_and_url_safe_across_the_seeds() {
        let parsed = parse_seeds();
        let url_safe = |id: &str| {
            !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        let mut story_ids = HashSet::new();
        let mut digest_ids = HashSet::new();
        for file in &parsed {
            assert!(url_safe(&file.digest.id), "{}", file.digest.id);
            assert!(
                digest_ids.insert(file.digest.id.clone()),
                "{}",
                file.digest.id
            );
            for story in &file.stories {
                assert!(url_safe(&story.id), "{}", story.id);
                assert_eq!(story.digest_id, file.digest.id);
                assert!(story_ids.insert(story.id.clone()), "duplicate {}", story.id);
                assert!(story.text.starts_with(&format!("{}\n", story.headline)));
            }
        }
        assert_eq!(story_ids.len(), 134);
    }

    #[test]
    fn parsing_the_same_file_twice_gives_the_same_ids() {
        let first = parse_seeds();
        let second = parse_seeds();
        assert_eq!(first, second);
    }

    #[test]
    fn file_in_neither_format_is_rejected_at_its_first_line() {
        let e = match parse_str("x.md", "\n\n# Just a heading\n") {
            Ok(_) => panic!("a plain Markdown file must not parse"),
            Err(e) => e,
        };
        assert_eq!(e.line, 3);
        assert_eq!(e.source_name, "x.md");
        assert!(e.message.contains("expected a digest (front matter starting with ---) or an archive (<details><summary>...)"));
        assert!(e.to_string().starts_with("x.md:3: expected a digest"));
    }

    #[test]
    fn empty_file_is_rejected_as_a_whole() {
        let e = match parse_str("empty.txt", " \n\n") {
            Ok(_) => panic!("an empty file must not parse"),
            Err(e) => e,
        };
        assert_eq!(e.line, 0);
        assert!(e.message.contains("empty"), "{}", e.message);
    }

    #[test]
    fn invalid_utf8_is_reported_at_the_line_of_the_bad_byte() {
        let mut bytes = SEEDS[0].1.as_bytes().to_vec();
        // Corrupt the first byte of line 3 (`date: ...`).
        let line3 = bytes
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .nth(1)
            .map_or(0, |(i, _)| i + 1);
        bytes[line3] = 0xff;
        let e = match parse_bytes("bad.txt", &bytes) {
            Ok(_) => panic!("invalid UTF-8 must not parse"),
            Err(e) => e,
        };
        assert_eq!(e.line, 3);
        assert!(e.message.contains("UTF-8"), "{}", e.message);
        assert!(e.message.contains("column 1"), "{}", e.message);
    }

    #[test]
    fn valid_bytes_parse_like_the_string() {
        let (name, text) = SEEDS[1];
        let from_bytes = parse_bytes(name, text.as_bytes()).map_err(|e| e.to_string());
        let from_str = parse_str(name, text).map_err(|e| e.to_string());
        assert_eq!(from_bytes, from_str);
    }

    #[test]
    fn parse_file_reads_a_seed_and_reports_a_missing_file_at_line_0() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
        let parsed = match parse_file(&dir.join("002_942afda76c0f7909.txt")) {
            Ok(parsed) => parsed,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(parsed.digest.id, "d20250610-0000");
        assert!(parsed.digest.source.ends_with("002_942afda76c0f7909.txt"));
        assert_eq!(parsed.stories.len(), 8);

        let e = match parse_file(&dir.join("no-such-file.txt")) {
            Ok(_) => panic!("a missing file must not parse"),
            Err(e) => e,
        };
        assert_eq!(e.line, 0);
        assert!(e.source_name.ends_with("no-such-file.txt"));
        assert!(
            e.message.starts_with("cannot read the file:"),
            "{}",
            e.message
        );
    }
}
