//! What each page shows, ready for its template: stored values turned into display
//! strings, URLs already checked, HTML fragments already escaped.
//!
//! Owns: the template structs and the rows they list. Must not: query anything; the
//! handlers in `pages` fetch, this only shapes.
//!
//! Every field a template prints with `|safe` is named `*_html` and is built here from
//! escaped text ([`highlight`]) or sanitised Markdown ([`markdown`]).

use askama::Template;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use super::highlight::{escape, highlight};
use super::markdown::{render as render_markdown, safe_url};
use crate::corpus::{SourceKind, Story};
use crate::service::{Coverage, DuplicateCluster, StoryHit, Verdict};
use crate::store::{StoredDigest, StoredStory};

/// `2026-01-06 12:00` in the story's own offset (the digest's local time), a bare date
/// for archive entries (dated at midnight UTC), or 无日期 when undated.
pub(crate) fn when(t: Option<OffsetDateTime>) -> String {
    let Some(t) = t else {
        return "无日期 undated".to_owned();
    };
    let date_only = t.offset() == UtcOffset::UTC && t.time() == time::Time::MIDNIGHT;
    let formatted = if date_only {
        t.format(format_description!("[year]-[month]-[day]"))
    } else {
        t.format(format_description!("[year]-[month]-[day] [hour]:[minute]"))
    };
    formatted.unwrap_or_else(|_| t.to_string())
}

/// A link a page may show, or `None` (the URL is then printed as text).
fn link(url: Option<&str>) -> Option<String> {
    url.and_then(safe_url).map(str::to_owned)
}

fn score(s: f32) -> String {
    format!("{s:.3}")
}

/// What a search score is made of: `cosine 0.832 · BM25 7.1`.
fn detail(cosine: Option<f32>, bm25: Option<f32>) -> String {
    let parts: Vec<String> = [
        cosine.map(|c| format!("cosine {c:.3}")),
        bm25.map(|b| format!("BM25 {b:.1}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    parts.join(" · ")
}

/// The first `chars` characters of a story's text after its headline, for lists.
fn excerpt(text: &str, chars: usize) -> String {
    let body = text.split_once('\n').map_or(text, |(_, rest)| rest).trim();
    let mut out: String = body.chars().take(chars).collect();
    if body.chars().nth(chars).is_some() {
        out.push('…');
    }
    out
}

/// One story in a result list (search, similar stories).
pub(crate) struct HitRow {
    pub(crate) id: String,
    pub(crate) headline: String,
    pub(crate) digest_id: String,
    pub(crate) digest_title: String,
    pub(crate) when: String,
    pub(crate) url: Option<String>,
    pub(crate) raw_url: Option<String>,
    pub(crate) score: String,
    /// How the score was made (`cosine 0.832 · BM25 7.1`), or empty.
    pub(crate) detail: String,
    pub(crate) snippet_html: String,
}

impl HitRow {
    /// `query` marks its words in the snippet; `None` only escapes it.
    pub(crate) fn new(hit: StoryHit, query: Option<&str>) -> Self {
        // A story's first window starts with its headline, which the row already shows.
        let snippet = hit
            .snippet
            .strip_prefix(hit.story.headline.as_str())
            .map_or(hit.snippet.as_str(), str::trim_start);
        let snippet_html = match query {
            Some(q) => highlight(snippet, q),
            None => {
                let mut out = String::new();
                escape(snippet, &mut out);
                out
            }
        };
        let s = hit.story;
        Self {
            url: link(s.url.as_deref()),
            raw_url: s.url,
            id: s.id,
            headline: s.headline,
            digest_id: s.digest_id,
            digest_title: s.digest_title,
            when: when(s.published),
            score: score(hit.score),
            detail: detail(hit.cosine, hit.bm25),
            snippet_html,
        }
    }
}

/// A stored story with where it appeared.
pub(crate) struct StoryRow {
    pub(crate) id: String,
    pub(crate) headline: String,
    pub(crate) digest_id: String,
    pub(crate) digest_title: String,
    pub(crate) when: String,
    pub(crate) url: Option<String>,
    pub(crate) raw_url: Option<String>,
    /// Cluster or coverage score, when the row has one.
    pub(crate) score: String,
    /// Why it counts as the same event, when known.
    pub(crate) reason: String,
    pub(crate) excerpt: String,
    /// The story the page is about (marked in its own cluster).
    pub(crate) current: bool,
}

impl StoryRow {
    pub(crate) fn new(s: StoredStory) -> Self {
        Self {
            excerpt: excerpt(&s.text, 140),
            url: link(s.url.as_deref()),
            raw_url: s.url,
            id: s.id,
            headline: s.headline,
            digest_id: s.digest_id,
            digest_title: s.digest_title,
            when: when(s.published),
            score: String::new(),
            reason: String::new(),
            current: false,
        }
    }

    pub(crate) fn scored(s: StoredStory, value: f32) -> Self {
        Self {
            score: score(value),
            ..Self::new(s)
        }
    }

    pub(crate) fn coverage(c: Coverage) -> Self {
        let reason = format!(
            "confidence {:.0}%; {}",
            c.confidence * 100.0,
            c.reason.describe()
        );
        Self {
            reason,
            ..Self::scored(c.story, c.score)
        }
    }
}

/// A same-event cluster.
pub(crate) struct ClusterRow {
    pub(crate) title: String,
    pub(crate) first_seen: String,
    pub(crate) last_seen: String,
    pub(crate) digests: usize,
    pub(crate) members: Vec<StoryRow>,
}

impl ClusterRow {
    pub(crate) fn new(c: DuplicateCluster, current: Option<&str>) -> Self {
        let mut digests: Vec<&str> = c
            .stories
            .iter()
            .map(|(s, _)| s.digest_id.as_str())
            .collect();
        digests.sort_unstable();
        digests.dedup();
        let digests = digests.len();
        // Oldest first: the page reads as "first reported ..., repeated ...".
        let mut stories = c.stories;
        stories.sort_by(|(a, _), (b, _)| {
            crate::service::timestamp(a.published)
                .cmp(&crate::service::timestamp(b.published))
                .then_with(|| a.id.cmp(&b.id))
        });
        Self {
            title: c.title,
            first_seen: when(c.first_seen),
            last_seen: when(c.last_seen),
            digests,
            members: stories
                .into_iter()
                .map(|(s, value)| {
                    let mut row = StoryRow::scored(s, value);
                    row.current = current == Some(row.id.as_str());
                    row
                })
                .collect(),
        }
    }
}

/// One item of a checked (or just published) draft.
pub(crate) struct CheckedRow {
    pub(crate) position: u32,
    pub(crate) headline: String,
    pub(crate) url: Option<String>,
    pub(crate) raw_url: Option<String>,
    pub(crate) covered_by: Vec<StoryRow>,
    /// A new item's closest earlier story, below its threshold (not counted).
    pub(crate) nearest: Vec<StoryRow>,
    /// `covered`, `check` or `new`.
    pub(crate) verdict: &'static str,
    /// For a `check` item: the draft item's text and the earlier story's, side by side.
    pub(crate) compare: Option<(String, String)>,
}

impl CheckedRow {
    pub(crate) fn new(
        story: &Story,
        coverage: Vec<Coverage>,
        nearest: Option<Coverage>,
        verdict: Verdict,
    ) -> Self {
        let compare = nearest
            .as_ref()
            .filter(|_| verdict == Verdict::Check)
            .map(|n| (story.text.clone(), n.story.text.clone()));
        Self {
            position: story.position,
            headline: story.headline.clone(),
            url: link(story.url.as_deref()),
            raw_url: story.url.clone(),
            covered_by: coverage.into_iter().map(StoryRow::coverage).collect(),
            nearest: nearest.into_iter().map(StoryRow::coverage).collect(),
            verdict: verdict.as_str(),
            compare,
        }
    }
}

pub(crate) struct DigestRow {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) kind: &'static str,
    pub(crate) when: String,
    pub(crate) stories: usize,
    pub(crate) categories: String,
}

impl DigestRow {
    pub(crate) fn new(d: StoredDigest) -> Self {
        Self {
            kind: match d.kind {
                SourceKind::Digest => "简报 digest",
                SourceKind::Archive => "视频存档 archive",
            },
            when: if d.published.is_some() {
                when(d.published)
            } else {
                String::new()
            },
            categories: d.categories.join(" · "),
            id: d.id,
            title: d.title,
            stories: d.stories,
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub(crate) title: String,
    pub(crate) nav: &'static str,
    pub(crate) message: String,
}

#[derive(Template)]
#[template(path = "search.html")]
pub(crate) struct SearchPage {
    pub(crate) title: String,
    pub(crate) nav: &'static str,
    pub(crate) q: String,
    pub(crate) since: String,
    pub(crate) until: String,
    pub(crate) mode: String,
    pub(crate) modes: &'static [(&'static str, &'static str)],
    pub(crate) searched: bool,
    pub(crate) error: Option<String>,
    pub(crate) hits: Vec<HitRow>,
    pub(crate) took_ms: String,
}

/// A stored story's page.
#[derive(Template)]
#[template(path = "story.html")]
pub(crate) struct StoryPage {
    pub(crate) title: String,
    pub(crate) nav: &'static str,
    pub(crate) story: StoryRow,
    pub(crate) author: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) body_html: String,
    pub(crate) same_digest: bool,
    pub(crate) similar: Vec<HitRow>,
    pub(crate) cluster: Option<ClusterRow>,
}

impl StoryPage {
    pub(crate) fn new(
        story: StoredStory,
        similar: Vec<StoryHit>,
        cluster: Option<DuplicateCluster>,
        same_digest: bool,
    ) -> Self {
        let body_html = render_markdown(&story.display);
        let author = story.author.clone();
        let tags = story.tags.clone();
        let id = story.id.clone();
        let story = StoryRow::new(story);
        Self {
            title: story.headline.clone(),
            nav: "",
            author,
            tags,
            body_html,
            same_digest,
            similar: similar.into_iter().map(|h| HitRow::new(h, None)).collect(),
            cluster: cluster.map(|c| ClusterRow::new(c, Some(&id))),
            story,
        }
    }
}

#[derive(Template)]
#[template(path = "duplicates.html")]
pub(crate) struct DuplicatesPage {
    pub(crate) title: String,
    pub(crate) nav: &'static str,
    pub(crate) since: String,
    pub(crate) until: String,
    /// What the range means, in words (`the last 7 days of the store: ...`).
    pub(crate) range_note: String,
    pub(crate) error: Option<String>,
    pub(crate) clusters: Vec<ClusterRow>,
}

/// The draft check, before and after checking, and after a failed publish.
#[derive(Template)]
#[template(path = "check.html")]
pub(crate) struct CheckPage {
    pub(crate) title: String,
    pub(crate) nav: &'static str,
    pub(crate) draft: String,
    pub(crate) error: Option<String>,
    /// Set once the draft was checked.
    pub(crate) checked: Option<CheckedDraft>,
    /// The publish form is offered for this draft (exactly the text checked).
    pub(crate) publish: bool,
    /// The server has a write key, so the form asks for it.
    pub(crate) key_needed: bool,
    /// Without a key on a public address nothing can be published.
    pub(crate) publish_disabled: bool,
}

pub(crate) struct CheckedDraft {
    pub(crate) digest_id: String,
    pub(crate) covered: usize,
    /// Items the editor should compare with their nearest earlier story.
    pub(crate) check: usize,
    pub(crate) new: usize,
    pub(crate) items: Vec<CheckedRow>,
}

impl CheckedDraft {
    pub(crate) fn new(digest_id: String, items: Vec<CheckedRow>) -> Self {
        let count = |v: &str| items.iter().filter(|i| i.verdict == v).count();
        Self {
            digest_id,
            covered: count("covered"),
            check: count("check"),
            new: count("new"),
            items,
        }
    }
}

#[derive(Template)]
#[template(path = "published.html")]
pub(crate) struct PublishedPage {
    pub(crate) title: String,
    pub(crate) nav: &'static str,
    pub(crate) digest_id: String,
    pub(crate) digest_title: String,
    pub(crate) new: usize,
    pub(crate) updated: usize,
    pub(crate) unchanged: usize,
    pub(crate) removed: usize,
    pub(crate) items: Vec<CheckedRow>,
}

#[derive(Template)]
#[template(path = "digests.html")]
pub(crate) struct DigestsPage {
    pub(crate) title: String,
    pub(crate) nav: &'static str,
    pub(crate) digests: Vec<DigestRow>,
    pub(crate) watch: Option<WatchView>,
}

/// The watched folder, on the Digests view: where, when it was last scanned, what fails.
pub(crate) struct WatchView {
    pub(crate) folder: String,
    pub(crate) last_scan: String,
    pub(crate) removes: bool,
    pub(crate) failing: Vec<(String, String)>,
}

impl WatchView {
    pub(crate) fn new(w: crate::service::WatchSnapshot) -> Self {
        Self {
            folder: w.folder.display().to_string(),
            last_scan: w.last_scan.map_or_else(
                || "扫描中 scanning".to_owned(),
                |t| {
                    t.format(format_description!(
                        "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
                    ))
                    .unwrap_or_else(|_| t.to_string())
                },
            ),
            removes: w.removes,
            failing: w.failing.into_iter().map(|f| (f.source, f.error)).collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "digest.html")]
pub(crate) struct DigestPage {
    pub(crate) title: String,
    pub(crate) nav: &'static str,
    pub(crate) digest: DigestRow,
    pub(crate) items: Vec<StoryRow>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn digest_times_keep_their_offset_and_archive_dates_have_no_time() {
        assert_eq!(
            when(Some(datetime!(2026-01-06 12:00:09 +08:00))),
            "2026-01-06 12:00"
        );
        assert_eq!(when(Some(datetime!(2025-03-21 0:00 UTC))), "2025-03-21");
        assert!(when(None).contains("undated"));
    }

    #[test]
    fn excerpts_skip_the_headline_line_and_cut_on_characters() {
        assert_eq!(excerpt("标题\n正文很长很长", 4), "正文很长…");
        assert_eq!(excerpt("only a headline", 10), "only a hea…");
    }
}
