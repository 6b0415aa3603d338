//! `storydex serve`: the arguments; the server itself starts in [`crate::server::run`].
//!
//! Owns: handing the settings, the store folder and the model loader to the server.
//! Must not: know how the server starts or stops.

use std::sync::Arc;

use clap::Args;

use super::Common;
use crate::embed::Encoder;
use crate::server::ServeSettings;
use crate::store::Store;

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
    let data = common.data.clone();
    crate::server::run(settings, data, move || {
        let (store, encoder, tuning) = common.load(Store::open)?;
        Ok((store, Arc::new(encoder) as Arc<dyn Encoder>, tuning))
    })
}
