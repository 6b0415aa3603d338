//! `storydex search`: stories most similar to a Chinese or English query.
//!
//! Owns: the arguments and the output (a list, or the JSON of `POST /v1/search`). Must
//! not: rank (that is `service`).

use std::time::Instant;

use clap::Args;

use super::output::{print_hits, print_json};
use super::{Common, Filter};
use crate::api::{Hit, SearchResponse};
use crate::domain::QueryText;
use crate::service::SearchMode;

// The arguments (their help text is the variant's doc comment in `cli::Command`).
#[derive(Debug, Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub filter: Filter,
    /// Print JSON (the same shape as `POST /v1/search`).
    #[arg(long)]
    pub json: bool,
    /// Ranking: hybrid (vectors and exact terms fused), vector or lexical.
    #[arg(long, default_value = "hybrid")]
    pub mode: SearchMode,
    pub query: String,
}

pub(super) fn run(args: SearchArgs) -> anyhow::Result<()> {
    let SearchArgs {
        common,
        filter,
        json,
        mode,
        query,
    } = args;
    let (k, range) = filter.parse()?;
    let query = QueryText::new(&query)?;
    let service = common.open_for_reading()?;
    let started = Instant::now();
    let hits = service.search(&query, k, range, mode)?;
    let took_ms = started.elapsed().as_secs_f64() * 1000.0;
    let hits: Vec<Hit> = hits.into_iter().map(Hit::from).collect();
    if json {
        print_json(&SearchResponse {
            mode: mode.as_str().to_owned(),
            hits,
            took_ms,
        })
    } else {
        print_hits(&hits)
    }
}
