//! `storydex backup`: a consistent copy of a store, also while `serve` or an ingest
//! writes it.
//!
//! Owns: the arguments and the output. Must not: copy anything itself (that is
//! `store::backup`).

use std::path::PathBuf;

use clap::Args;

use super::output::print_json;

// The arguments (their help text is the variant's doc comment in `cli::Command`).
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Folder of the store to back up.
    #[arg(long, env = "STORYDEX_DATA", default_value = ".storydex")]
    pub data: PathBuf,
    #[arg(long)]
    pub json: bool,
    /// The backup's folder; must not exist yet. `storydex serve --data OUT` opens it.
    pub out: PathBuf,
}

pub(super) fn run(args: BackupArgs) -> anyhow::Result<()> {
    let report = crate::store::backup(&args.data, &args.out)?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "backed up {} stories ({} windows, generation {}) into {}: {:.1} MB, {}",
        report.stories,
        report.windows,
        report.generation,
        report.dir.display(),
        report.bytes as f64 / 1e6,
        if report.index {
            "vector index included"
        } else {
            "vector index rebuilt from SQLite when first opened"
        }
    );
    Ok(())
}
