//! `storydex check`: which items of a draft digest (not stored) were already covered,
//! and where.
//!
//! Owns: the arguments and the output. Must not: decide coverage (that is `service`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::output::{print_json, short_date};
use super::Common;
use crate::api::{CheckResponse, CheckedItemView};

// The arguments (their help text is the variant's doc comment in `cli::Command`).
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub common: Common,
    /// Print JSON (the same shape as `POST /v1/check`).
    #[arg(long)]
    pub json: bool,
    /// The draft digest (Markdown, the usual digest format).
    pub draft: PathBuf,
}

pub(super) fn run(args: CheckArgs) -> anyhow::Result<()> {
    let CheckArgs {
        common,
        json,
        draft,
    } = args;
    let text = std::fs::read(&draft).with_context(|| format!("reading {}", draft.display()))?;
    let source = draft.display().to_string();
    let parsed = crate::corpus::parse_bytes(&source, &text)?;
    let service = common.open_for_reading()?;
    let items = service.check_text(&source, &String::from_utf8_lossy(&text))?;
    let response = CheckResponse {
        digest: parsed.digest.id,
        items: items.into_iter().map(CheckedItemView::from).collect(),
    };
    if json {
        print_json(&response)
    } else {
        print_check(&response)
    }
}

fn print_check(response: &CheckResponse) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for item in &response.items {
        if item.previous_coverage.is_empty() {
            let verdict = if item.verdict == "check" {
                "CHECK   "
            } else {
                "new     "
            };
            writeln!(out, "{:>2}. {verdict} {}", item.position, item.title)?;
            if let Some(n) = &item.nearest {
                let label = if item.verdict == "check" {
                    "compare with"
                } else {
                    "nearest, not counted"
                };
                writeln!(
                    out,
                    "      {label}: {:.3} < {:.3}, confidence {:.0}%  {}  {} · {}",
                    n.score,
                    n.reason.threshold,
                    n.confidence * 100.0,
                    short_date(n.published.as_deref()),
                    n.digest,
                    n.title
                )?;
            }
            continue;
        }
        writeln!(out, "{:>2}. COVERED  {}", item.position, item.title)?;
        for c in &item.previous_coverage {
            writeln!(
                out,
                "      {:.3}, confidence {:.0}%  {}  {} · {}",
                c.score,
                c.confidence * 100.0,
                short_date(c.published.as_deref()),
                c.digest,
                c.title
            )?;
        }
    }
    Ok(())
}
