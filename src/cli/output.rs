//! Terminal and JSON output shared by the subcommands.
//!
//! Owns: pretty JSON on stdout, the list of hits, dates as people read them. Must not:
//! compute anything it prints.

use std::io::Write;

use time::format_description::well_known::Rfc3339;

use crate::api::Hit;

pub(super) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

pub(super) fn print_hits(hits: &[Hit]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if hits.is_empty() {
        writeln!(out, "no matching stories")?;
    }
    for (i, h) in hits.iter().enumerate() {
        let date = h
            .published
            .as_deref()
            .and_then(|p| time::OffsetDateTime::parse(p, &Rfc3339).ok())
            .map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
            .unwrap_or_else(|| "undated".to_owned());
        writeln!(out, "{:>2}. {:.3}  {}", i + 1, h.score, h.title)?;
        writeln!(out, "    {date} · {} · {}", h.digest, h.id)?;
        if let Some(url) = &h.url {
            writeln!(out, "    {url}")?;
        }
    }
    Ok(())
}

pub(super) fn short_date(rfc3339: Option<&str>) -> String {
    rfc3339
        .and_then(|p| time::OffsetDateTime::parse(p, &Rfc3339).ok())
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_else(|| "undated".to_owned())
}
