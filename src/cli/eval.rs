//! `storydex eval`: score search and the draft check on the labelled sets.
//!
//! Owns: the arguments, ingesting the corpus first, and where the report or the dumps
//! go. Must not: score (that is [`crate::eval`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use clap::Args;

use super::Common;

// The arguments (their help text is the variant's doc comment in `cli::Command`).
#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub common: Common,
    /// The corpus the labels refer to.
    #[arg(long, default_value = "data/sample")]
    pub corpus: PathBuf,
    /// Folder with search.toml, check_en.toml and repeats_zh.toml.
    #[arg(long, default_value = "data/eval")]
    pub sets: PathBuf,
    /// Also compare ranking variants on the tuning split.
    #[arg(long)]
    pub sweep: bool,
    /// Every miss, and the held-out score distributions too.
    #[arg(long)]
    pub verbose: bool,
    /// Write each English post's top candidates with their signals (JSON lines) to
    /// this file, for fitting coverage rules.
    #[arg(long)]
    pub dump_check: Option<PathBuf>,
    /// Write every query's and story's vectors and BM25 candidates as JSON lines to
    /// this file (for refitting the ranking offline) instead of the report.
    #[arg(long)]
    pub dump_search: Option<PathBuf>,
}

pub(super) fn run(args: EvalArgs) -> anyhow::Result<()> {
    let EvalArgs {
        common,
        corpus,
        sets,
        sweep,
        verbose,
        dump_check,
        dump_search,
    } = args;
    let _lock = common.lock("storydex eval")?;
    let service = common.open()?;
    let cancel = AtomicBool::new(false);
    let report = service.ingest_paths(&[corpus], &cancel, &mut |_| {})?;
    if !report.failed.is_empty() {
        anyhow::bail!("the corpus did not parse: {:?}", report.failed);
    }
    if let Some(path) = dump_check {
        let posts = crate::eval::load_posts(&sets.join("check_en.toml"))?;
        return write_json_lines(&path, crate::eval::candidate_signals(&service, &posts)?);
    }
    if let Some(path) = dump_search {
        let queries = crate::eval::load_queries(&sets.join("search.toml"))?;
        return write_json_lines(&path, crate::eval::search_signals(&service, &queries)?);
    }
    print!("{}", crate::eval::report(&service, &sets, sweep, verbose)?);
    Ok(())
}

/// Writes `rows` to `path` as JSON lines (`storydex eval --dump-*`).
fn write_json_lines<T: serde::Serialize>(path: &Path, rows: Vec<T>) -> anyhow::Result<()> {
    let mut out = String::new();
    for row in rows {
        out.push_str(&serde_json::to_string(&row)?);
        out.push('\n');
    }
    std::fs::write(path, out)?;
    Ok(())
}
