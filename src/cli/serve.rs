//! `storydex serve`: the arguments; the server itself starts in [`crate::server::run`].
//!
//! Owns: handing the settings, the store folder and the model loader to the server.
//! Must not: know how the server starts or stops.

use clap::Args;

use super::Common;
use crate::server::ServeSettings;

// The arguments (their help text is the variant's doc comment in `cli::Command`).
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub settings: ServeSettings,
}

pub(super) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs { common, settings } = args;
    let model = common.model.clone();
    crate::server::run(settings, common.data, move || model.load_encoder())
}
