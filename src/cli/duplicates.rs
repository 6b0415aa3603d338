//! `storydex duplicates`: clusters of stories that report the same event in different
//! digests.
//!
//! Owns: the arguments and the output. Must not: cluster (that is `service`, which also
//! says which clustering a `--min-score` gets).

use std::io::Write;

use clap::Args;

use super::output::{print_json, short_date};
use super::Common;
use crate::api::{ClusterView, DuplicatesResponse};
use crate::domain::DateRange;

// The arguments (their help text is the variant's doc comment in `cli::Command`).
#[derive(Debug, Args)]
pub struct DuplicatesArgs {
    #[command(flatten)]
    pub common: Common,
    /// Only stories published on or after this day (YYYY-MM-DD).
    #[arg(long)]
    pub since: Option<String>,
    /// Only stories published on or before this day (YYYY-MM-DD).
    #[arg(long)]
    pub until: Option<String>,
    /// Pair score a duplicate must reach (default: the model's calibrated threshold).
    #[arg(long)]
    pub min_score: Option<f32>,
    /// Print JSON (the same shape as `GET /v1/duplicates`).
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run(args: DuplicatesArgs) -> anyhow::Result<()> {
    let DuplicatesArgs {
        common,
        since,
        until,
        min_score,
        json,
    } = args;
    let range = DateRange::parse(since.as_deref(), until.as_deref())?;
    let service = common.open_for_reading()?;
    let clusters = service.duplicates(range, min_score)?;
    let response = DuplicatesResponse {
        clusters: clusters.into_iter().map(ClusterView::from).collect(),
    };
    if json {
        print_json(&response)
    } else {
        print_clusters(&response.clusters)
    }
}

fn print_clusters(clusters: &[ClusterView]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if clusters.is_empty() {
        writeln!(out, "no duplicate coverage found")?;
    }
    for c in clusters {
        writeln!(
            out,
            "{}  ({} stories, {} .. {})",
            c.title,
            c.stories.len(),
            short_date(c.first_seen.as_deref()),
            short_date(c.last_seen.as_deref())
        )?;
        for s in &c.stories {
            writeln!(
                out,
                "    {:.3}  {}  {} · {}",
                s.score,
                short_date(s.published.as_deref()),
                s.digest,
                s.title
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}
