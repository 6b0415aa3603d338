//! `storydex recluster`: recompute every stored duplicate cluster and say what changed.
//!
//! Owns: the arguments and the output. Must not: cluster (that is `service`).

use std::time::Instant;

use clap::Args;

use super::output::print_json;
use super::Common;

// The arguments (their help text is the variant's doc comment in `cli::Command`).
#[derive(Debug, Args)]
pub struct ReclusterArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run(args: ReclusterArgs) -> anyhow::Result<()> {
    let ReclusterArgs { common, json } = args;
    let _lock = common.lock("storydex recluster")?;
    let service = common.open()?;
    let started = Instant::now();
    let r = service.recluster()?;
    if json {
        print_json(&serde_json::json!({
            "stories": r.stories,
            "moved": r.moved,
            "clusters_before": r.clusters_before,
            "clusters_after": r.clusters_after,
            "seconds": started.elapsed().as_secs_f64(),
        }))
    } else {
        println!(
            "{} stories: {} moved to another cluster; clusters of 2 or more: {} before, {} after ({:.1}s)",
            r.stories,
            r.moved,
            r.clusters_before,
            r.clusters_after,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}
