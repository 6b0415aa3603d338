//! Hostile files through the parsers: arbitrary bytes, invalid UTF-8, truncated and
//! mutated sample files, enormous lines, deeply nested Markdown and a 50 MB file. The
//! promise under test: never a panic or a stack overflow, memory proportional to the
//! input, and always either a clean parse or a `file:line: message` error.
//!
//! Its own binary because it installs a counting global allocator (per thread, so
//! tests running in parallel do not see each other's allocations). Parsing runs on
//! threads with a small stack ([`SMALL_STACK`]), smaller than any thread the server or
//! the CLI parses on, so unbounded recursion shows up here first.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use storydex::corpus::{self, ParseError, ParsedFile};

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; the bookkeeping only touches
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Stack of the threads parsing here. The server parses on tokio's blocking threads
/// (2 MiB) and the CLI on the main thread (8 MiB): a parser that fits in 256 KiB for
/// any input fits there.
const SMALL_STACK: usize = 256 * 1024;

/// Runs `f` on a fresh thread with [`SMALL_STACK`], returning its result and the peak
/// heap it used above what it started with.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> (T, usize) {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(move || {
            let base = LIVE.with(Cell::get);
            PEAK.with(|p| p.set(base));
            let out = f();
            let peak = PEAK.with(Cell::get) - base;
            (out, peak.max(0) as usize)
        })
        .expect("spawning a test thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

const SAMPLES: [(&str, &str); 5] = [
    (
        "000_ce41d89debbb0a4e.txt",
        include_str!("../data/sample/000_ce41d89debbb0a4e.txt"),
    ),
    (
        "001_f9894c49d7f708a5.txt",
        include_str!("../data/sample/001_f9894c49d7f708a5.txt"),
    ),
    (
        "002_942afda76c0f7909.txt",
        include_str!("../data/sample/002_942afda76c0f7909.txt"),
    ),
    (
        "003_ac231d0ff860caab.txt",
        include_str!("../data/sample/003_ac231d0ff860caab.txt"),
    ),
    (
        "004_e093e21e046dee1d.txt",
        include_str!("../data/sample/004_e093e21e046dee1d.txt"),
    ),
];

const DIGEST_HEAD: &str =
    "---\ntitle: \"t\"\ndate: 2026-01-06T12:00:09+08:00\ncategories: [\"A\"]\n---\n\n";

/// A one-item digest whose summary is `summary` (indented as the format wants).
fn digest_with_summary(summary: &str) -> String {
    let mut out = String::with_capacity(summary.len() + 200);
    out.push_str(DIGEST_HEAD);
    out.push_str("1.  [Head](https://x.com/1)\n\n");
    for line in summary.split('\n') {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// An archive with one entry whose body is `body`.
fn archive_with_body(body: &str) -> String {
    format!(
        "<details>\n<summary>1. [2025-03-23] 【AI】Title | tag</summary><br>\n\n\
         <a href=\"https://www.youtube.com/watch?v=x\">x</a>\n\n{body}\n</details>\n"
    )
}

/// Checks the contract on one result: a parse, or an error in `name:line: message`
/// form whose line exists in the input (0 = the file as a whole).
fn check_contract(name: &str, input: &[u8], result: &Result<ParsedFile, ParseError>) {
    match result {
        Ok(parsed) => {
            assert!(!parsed.stories.is_empty(), "a clean parse has stories");
            for s in &parsed.stories {
                assert!(!s.id.is_empty());
                assert!(s.text.starts_with(&s.headline), "{:?}", s.id);
            }
        }
        Err(e) => {
            let lines = input.split(|&b| b == b'\n').count();
            assert_eq!(e.source_name, name);
            assert!(e.line <= lines, "line {} of {} lines: {e}", e.line, lines);
            assert!(!e.message.trim().is_empty(), "an error says what is wrong");
            let shown = e.to_string();
            let prefix = format!("{name}:{}: ", e.line);
            assert!(shown.starts_with(&prefix), "{shown:?} lacks {prefix:?}");
        }
    }
}

/// Parses on a small stack, checks the contract, and returns the peak heap used.
fn parse_checked(input: Vec<u8>) -> usize {
    let (input, peak) = on_small_stack(move || {
        let result = corpus::parse_bytes("hostile.txt", &input);
        check_contract("hostile.txt", &input, &result);
        input
    });
    drop(input);
    peak
}

/// Markdown-ish text: mostly the characters the inline scanner treats specially.
fn markdownish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "*",
        "**",
        "_",
        "__",
        "~~",
        "`",
        "``",
        "[",
        "]",
        "(",
        ")",
        "](",
        "![",
        "<",
        ">",
        "</",
        "<br>",
        "<https://a.b>",
        "\\",
        "\\*",
        "#",
        "# ",
        "- ",
        "1. ",
        "> ",
        "&amp;",
        "&lt;",
        " ",
        "  ",
        "\t",
        "\n",
        "\n\n",
        "a",
        "GPT-4o",
        "中文",
        "3*4",
        "snake_case",
        "---",
        "```",
        "<details>",
        "</details>",
        "<summary>",
        "</summary>",
        "1.  [h](u)",
    ]);
    prop::collection::vec(atoms, 0..200).prop_map(|v| v.concat())
}

proptest! {
    // No regression files: a failure prints its minimal input, which goes into a test.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        parse_checked(bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_head_never_panic(
        digest in any::<bool>(),
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut input = if digest {
            DIGEST_HEAD.as_bytes().to_vec()
        } else {
            b"<details>\n<summary>1. [2025-01-01] t</summary>\n".to_vec()
        };
        input.extend(bytes);
        parse_checked(input);
    }

    #[test]
    fn truncated_samples_parse_or_name_a_line(sample in 0..SAMPLES.len(), cut in any::<prop::sample::Index>()) {
        let text = SAMPLES[sample].1.as_bytes();
        // Cutting anywhere, also inside a multi-byte character.
        parse_checked(text[..cut.index(text.len() + 1)].to_vec());
    }

    #[test]
    fn mutated_samples_parse_or_name_a_line(
        sample in 0..SAMPLES.len(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, markdownish()), 1..8),
    ) {
        let mut text = SAMPLES[sample].1.as_bytes().to_vec();
        for (at, kind, insert) in edits {
            let at = at.index(text.len() + 1);
            match kind {
                // Insert markup.
                0 => { text.splice(at..at, insert.into_bytes()); }
                // Delete a stretch.
                1 => { let end = (at + insert.len()).min(text.len()); text.drain(at..end); }
                // Duplicate a stretch (repeated items, repeated headers).
                _ => {
                    let end = (at + 400).min(text.len());
                    let copy = text[at..end].to_vec();
                    text.splice(at..at, copy);
                }
            }
        }
        parse_checked(text);
    }

    #[test]
    fn markdownish_summaries_and_bodies_never_panic(md in markdownish(), archive in any::<bool>()) {
        let text = if archive { archive_with_body(&md) } else { digest_with_summary(&md) };
        parse_checked(text.into_bytes());
    }

    #[test]
    fn strip_markdown_keeps_plain_words(md in markdownish()) {
        let (out, _) = on_small_stack(move || corpus::strip_markdown(&md));
        prop_assert!(!out.contains("\n\n"), "blank lines collapse: {out:?}");
    }
}

/// Summaries built to make a naive scanner recurse once per character.
fn nested(depth: usize) -> Vec<(&'static str, String)> {
    vec![
        (
            "links",
            format!("{}x{}", "[".repeat(depth), "](u)".repeat(depth)),
        ),
        (
            "images",
            format!("{}x{}", "![".repeat(depth), "](u)".repeat(depth)),
        ),
        (
            "bold",
            format!("{}x{}", "**a ".repeat(depth), " a**".repeat(depth)),
        ),
        (
            "strike",
            format!("{}x{}", "~~a ".repeat(depth), " a~~".repeat(depth)),
        ),
        (
            "mixed",
            format!("{}x{}", "*_[**".repeat(depth), "**](u)_*".repeat(depth)),
        ),
        ("quotes", format!("{}x", "> ".repeat(depth))),
        ("lists", format!("{}x", "- 1. # ".repeat(depth))),
        (
            "parens",
            format!("[x]{}u{}", "(".repeat(depth), ")".repeat(depth)),
        ),
    ]
}

#[test]
fn deeply_nested_markdown_parses_on_a_small_stack() {
    for (what, summary) in nested(100_000) {
        for archive in [false, true] {
            let text = if archive {
                archive_with_body(&summary)
            } else {
                digest_with_summary(&summary)
            };
            let len = text.len();
            let peak = parse_checked(text.into_bytes());
            assert!(
                peak < 16 * len + (1 << 20),
                "{what}: {peak} bytes for {len}"
            );
        }
    }
}

/// Lines of a few megabytes made of the patterns that make a scanner look ahead for a
/// closer that never comes (or comes only at the end). A quadratic scanner takes hours
/// on these; the test's own run time is the signal, nothing here is timed.
fn enormous_lines(bytes: usize) -> Vec<(&'static str, String)> {
    let fill = |unit: &str| unit.repeat(bytes / unit.len());
    vec![
        ("open stars", fill("*a ")),
        ("open underscores", fill("_a ")),
        ("open strikes", fill("~~a ")),
        ("open brackets", fill("[a")),
        ("open images", fill("![a")),
        ("open angles", fill("<a")),
        ("open backticks", fill("`a``")),
        ("separators", fill("](")),
        ("escapes", fill("\\")),
        ("entities", fill("&amp;&lt;")),
        ("chinese", fill("过去4小时全球AI发生了什么")),
        ("hyphens", fill("a-b - ")),
        ("stars closed at the end", format!("{}a*", fill("*a "))),
        ("code spans in emphasis", format!("*a{}", fill("`x` "))),
    ]
}

#[test]
fn enormous_lines_in_summaries_bodies_and_item_lines_finish() {
    for (what, line) in enormous_lines(2 << 20) {
        let item_line = format!("{DIGEST_HEAD}1.  [{line}](https://x.com/1)\n\n    s\n");
        let inputs = [
            digest_with_summary(&line),
            archive_with_body(&line),
            item_line,
            format!("<details>\n<summary>1. [2025-01-01] {line}</summary>\nb\n</details>\n"),
        ];
        for text in inputs {
            let len = text.len();
            let peak = parse_checked(text.into_bytes());
            assert!(
                peak < 16 * len + (1 << 20),
                "{what}: {peak} bytes for {len}"
            );
        }
    }
}

/// A file of `target` bytes: a valid archive of many episodes, or one of the hostile
/// shapes (all newlines, one line, one huge entry).
fn fifty_mb_files(target: usize) -> Vec<(&'static str, Vec<u8>)> {
    let episode = |n: usize| {
        format!(
            "<details>\n<summary>{n}. [2025-03-23] 【人工智能】标题 {n} | tag</summary><br>\n\n\
             <a href=\"https://www.youtube.com/watch?v={n}\">x</a>\n\n# 标题\n\n\
             **主題：**大語言模型的局限與AGI的未來。{}\n\n[model=x]\n</details>\n\n",
            "图灵奖得主杨立昆在访谈中对大语言模型提出质疑。".repeat(20)
        )
    };
    let mut archive = String::with_capacity(target + 4096);
    let mut n = 1;
    while archive.len() < target {
        archive.push_str(&episode(n));
        n += 1;
    }
    let mut one_entry = archive_with_body(&"a".repeat(target)).into_bytes();
    one_entry.truncate(target + 200);
    vec![
        ("archive", archive.into_bytes()),
        ("newlines", b"\n".repeat(target)),
        ("blank lines in an entry", {
            let mut v = b"<details>\n<summary>1. t</summary>\n".to_vec();
            v.extend(b"\n".repeat(target));
            v.extend(b"x\n</details>\n");
            v
        }),
        ("one line", b"x".repeat(target)),
        ("one entry", one_entry),
    ]
}

#[test]
fn a_50_mb_file_parses_or_fails_cleanly_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (what, bytes) in fifty_mb_files(50 << 20) {
        let path = dir.path().join("big.txt");
        std::fs::write(&path, &bytes).expect("writing the big file");
        let len = bytes.len();
        drop(bytes);
        let ((), peak) = on_small_stack(move || {
            let result = corpus::parse_file(&path);
            let input = std::fs::read(&path).expect("reading the big file back");
            check_contract(&path.display().to_string(), &input, &result);
        });
        // The file itself, its line index, and the stories' display and text copies.
        assert!(
            peak < 8 * len,
            "{what}: peak heap {peak} bytes for a {len}-byte file"
        );
        eprintln!("{what}: {len} bytes, peak heap {} MB", peak >> 20);
    }
}

#[test]
fn a_file_over_the_size_limit_is_refused_at_line_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("huge.txt");
    let file = std::fs::File::create(&path).expect("creating the file");
    // Sparse: no disk space, no memory.
    file.set_len(corpus::MAX_FILE_BYTES + 1)
        .expect("sizing the file");
    let ((), peak) = on_small_stack(move || {
        let e = corpus::parse_file(&path).expect_err("an oversized file must not parse");
        assert_eq!(e.line, 0);
        assert!(e.message.contains("larger than 64 MB"), "{}", e.message);
    });
    assert!(peak < 1 << 20, "peak heap {peak}: the file was read");
}
