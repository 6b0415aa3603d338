//! Stored Markdown to HTML that is safe to put in a page, and the one URL rule every link
//! on the page follows.
//!
//! Owns: [`render`] (pulldown-cmark, with raw HTML turned into escaped text and links or
//! images whose URL is not http, https, mailto or relative dropped to their text) and
//! [`safe_url`]. Must not: trust anything stored: every digest is somebody's input.

use pulldown_cmark::{html, Event, Options, Parser, Tag, TagEnd};

/// The URL if a page may link to it: `http:`, `https:`, `mailto:` or relative (no
/// scheme). Anything else (`javascript:`, `data:`, `vbscript:`, ...) is refused.
///
/// Browsers ignore ASCII tabs and newlines anywhere in a URL and strip leading control
/// characters and spaces, so `java\tscript:` is `javascript:` to them: the scheme is
/// read the way a browser reads it.
pub(crate) fn safe_url(url: &str) -> Option<&str> {
    let seen: String = url
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let scheme_end = seen.find([':', '/', '?', '#']);
    match scheme_end {
        Some(i) if seen[i..].starts_with(':') => {
            let scheme = seen[..i].to_ascii_lowercase();
            matches!(scheme.as_str(), "http" | "https" | "mailto").then_some(url)
        }
        // No scheme: a relative URL (a path, a query or a fragment).
        _ => Some(url),
    }
}

/// Renders stored Markdown (a summary or an episode body) to HTML for the page.
///
/// Raw HTML blocks and inline tags become visible text, so `<script>` shows as
/// `<script>`. A link with an unsafe URL keeps its text and loses the link; an image
/// with one is replaced by its alt text.
pub(crate) fn render(markdown: &str) -> String {
    let options = Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES;
    // Per open link or image: whether its start tag was dropped (so its end tag is too).
    let mut dropped: Vec<bool> = Vec::new();
    let events = Parser::new_ext(markdown, options).filter_map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Some(Event::Text(raw)),
        Event::Start(Tag::Link { ref dest_url, .. } | Tag::Image { ref dest_url, .. }) => {
            let safe = safe_url(dest_url).is_some();
            dropped.push(!safe);
            // A dropped link's text, and a dropped image's alt text, arrive as the inner
            // events: without the tag they are plain text.
            safe.then_some(event)
        }
        Event::End(end @ (TagEnd::Link | TagEnd::Image)) => {
            let was_dropped = dropped.pop().unwrap_or(false);
            (!was_dropped).then_some(Event::End(end))
        }
        // Footnote and math extensions are off; everything else is plain Markdown that
        // pulldown-cmark escapes itself.
        other => Some(other),
    });
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, events);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_web_mail_and_relative_urls_are_safe() {
        for ok in [
            "https://x.com/a",
            "http://example.org",
            "HTTPS://EXAMPLE.ORG",
            "mailto:a@b.c",
            "/stories/x",
            "page?a=b:c",
            "#top",
            "a/b:c",
        ] {
            assert_eq!(safe_url(ok), Some(ok), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " javascript:alert(1)",
            "java\tscript:alert(1)",
            "java\nscript:alert(1)",
            "\u{1}javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox",
            "file:///etc/passwd",
        ] {
            assert_eq!(safe_url(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn raw_html_renders_as_visible_text() {
        let html = render("Hello <script>alert(1)</script> and \"><img src=x onerror=alert(1)>");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{html}"
        );

        let block = render("<div onclick=\"x()\">\n<script>alert(1)</script>\n</div>");
        assert!(!block.contains("<div"), "{block}");
        assert!(!block.contains("<script"), "{block}");
    }

    #[test]
    fn unsafe_links_keep_their_text_and_lose_the_link() {
        let html = render("see [the **report**](javascript:alert(1)) and [ok](https://a.example/)");
        assert!(!html.contains("javascript"), "{html}");
        assert!(html.contains("the <strong>report</strong>"), "{html}");
        assert!(
            html.contains("<a href=\"https://a.example/\">ok</a>"),
            "{html}"
        );

        // Entities are decoded before the URL is checked.
        let html = render("[x](&#106;avascript:alert(1))");
        assert!(!html.contains("href"), "{html}");
    }

    #[test]
    fn unsafe_images_become_their_alt_text() {
        let html = render("![a chart](javascript:alert(1)) ![ok](https://a.example/i.png)");
        assert!(html.contains("a chart"), "{html}");
        assert!(!html.contains("javascript"), "{html}");
        assert!(
            html.contains("<img src=\"https://a.example/i.png\" alt=\"ok\""),
            "{html}"
        );
    }

    #[test]
    fn markdown_formatting_and_chinese_text_survive() {
        let html = render("Boston Dynamics展示了其**新型全电动Atlas人形机器人**");
        assert_eq!(
            html,
            "<p>Boston Dynamics展示了其<strong>新型全电动Atlas人形机器人</strong></p>\n"
        );
    }
}
