//! `storydex similar`: stories similar to a stored story, from its stored vectors.
//!
//! Owns: the arguments and the output. Must not: rank (that is `service`).

use clap::Args;

use super::output::{print_hits, print_json};
use super::{Common, Filter};
use crate::api::{Hit, HitsResponse};

// The arguments (their help text is the variant's doc comment in `cli::Command`).
#[derive(Debug, Args)]
pub struct SimilarArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub filter: Filter,
    /// Only stories from other digests.
    #[arg(long)]
    pub other_digests: bool,
    #[arg(long)]
    pub json: bool,
    pub story_id: String,
}

pub(super) fn run(args: SimilarArgs) -> anyhow::Result<()> {
    let SimilarArgs {
        common,
        filter,
        other_digests,
        json,
        story_id,
    } = args;
    let (k, range) = filter.parse()?;
    let service = common.open_for_reading()?;
    let hits = service.similar(&story_id, k, range, other_digests)?;
    let hits: Vec<Hit> = hits.into_iter().map(Hit::from).collect();
    if json {
        print_json(&HitsResponse { hits })
    } else {
        print_hits(&hits)
    }
}
