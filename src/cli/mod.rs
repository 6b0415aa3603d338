//! Command-line interface: one file per subcommand, each parsing its arguments,
//! calling the service and printing the result.
//!
//! Owns: the argument definitions (clap; doc comments become the help text), the
//! options every store command shares ([`Common`]), and terminal/JSON output. Must not:
//! contain search or ingest logic (that is `service`), or run the server (that is
//! [`crate::server::run`]).

mod backup;
mod check;
mod duplicates;
mod eval;
mod ingest;
mod model;
mod output;
mod recluster;
mod search;
mod serve;
mod similar;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

pub use backup::BackupArgs;
pub use check::CheckArgs;
pub use duplicates::DuplicatesArgs;
pub use eval::EvalArgs;
pub use ingest::IngestArgs;
pub use model::ModelCommand;
pub use recluster::ReclusterArgs;
pub use search::SearchArgs;
pub use serve::ServeArgs;
pub use similar::SimilarArgs;

use crate::domain::{DateRange, TopK};
use crate::embed::{CandleEncoder, Encoder, ModelFiles, ModelSpec};
use crate::service::{Service, Tuning};
use crate::store::{Store, WriterLock};

/// storydex: related stories and duplicate coverage for an archive of AI news digests.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse, embed and store digest/archive files or folders (resumable; re-runs skip
    /// unchanged stories).
    Ingest(IngestArgs),
    /// Stories most similar to a Chinese or English query.
    Search(SearchArgs),
    /// Stories similar to a stored story, from its stored vectors.
    Similar(SimilarArgs),
    /// Clusters of stories that report the same event in different digests.
    Duplicates(DuplicatesArgs),
    /// Serve search, similar stories and digest ingest over HTTP (JSON; see
    /// /openapi.json). Listens at once; /health says "starting" until the model is loaded.
    Serve(ServeArgs),
    /// For a draft digest (not stored), which items were already covered, and where.
    Check(CheckArgs),
    /// Recompute every stored duplicate cluster (after a threshold or model change) and
    /// report what changed.
    Recluster(ReclusterArgs),
    /// Score search and the "already covered?" check on the labelled sets (data/eval),
    /// per split: tune on `tune` and `fresh`, report `heldout` and the blind `fresh2` and
    /// `fresh3`. Ingests the corpus into --data first
    /// (a re-run skips unchanged stories).
    Eval(EvalArgs),
    /// Copy a store into a new folder, consistent as of one commit, also while `serve`
    /// or an ingest writes it (SQLite's online backup; the vector index comes along when
    /// it matches that commit, else it is rebuilt on first open).
    Backup(BackupArgs),
    /// Inspect or obtain the embedding model.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Ingest(args) => ingest::run(args),
        Command::Search(args) => search::run(args),
        Command::Similar(args) => similar::run(args),
        Command::Duplicates(args) => duplicates::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Check(args) => check::run(args),
        Command::Recluster(args) => recluster::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Backup(args) => backup::run(args),
        Command::Model { command } => model::run(command),
    }
}

#[derive(Debug, Clone, Default, Args)]
pub struct ModelArgs {
    /// Model manifest (TOML); the built-in multilingual-e5-small one by default.
    #[arg(long, env = "STORYDEX_MODEL")]
    pub model: Option<PathBuf>,
    /// Folder holding config.json, tokenizer.json and model.safetensors. Default:
    /// models/<name>/ if complete, else the hf-hub cache (downloading if needed).
    #[arg(long, env = "STORYDEX_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// Where the model runs: auto (a CUDA GPU when this build has the `cuda` feature and
    /// one answers, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, env = "STORYDEX_DEVICE", default_value = "auto")]
    pub device: crate::embed::DeviceChoice,
    /// Number format: auto (bf16 on CPUs with AVX512-BF16, else f32; f16 on a GPU), f32,
    /// bf16 or f16.
    #[arg(long, env = "STORYDEX_PRECISION", default_value = "auto")]
    pub precision: crate::embed::Precision,
    /// Network implementation: auto (storydex's AVX-512 kernels where the CPU has them,
    /// candle-transformers' BERT elsewhere and on GPUs), avx512 or candle.
    #[arg(long, env = "STORYDEX_ENGINE", default_value = "auto")]
    pub engine: crate::embed::Engine,
    /// Padded tokens per forward pass on the candle-transformers path (default: the
    /// manifest's batch_tokens on a GPU, at most 2048 on a CPU).
    #[arg(long, env = "STORYDEX_BATCH_TOKENS")]
    pub batch_tokens: Option<usize>,
}

impl ModelArgs {
    pub fn spec(&self) -> anyhow::Result<ModelSpec> {
        match &self.model {
            Some(path) => Ok(ModelSpec::from_file(path)?),
            None => Ok(ModelSpec::default_model()),
        }
    }

    /// Locates the files and loads the encoder (embedding a probe text to fail fast).
    pub fn load_encoder(&self) -> anyhow::Result<CandleEncoder> {
        let spec = self.spec()?;
        let files = ModelFiles::locate(&spec, self.model_dir.as_deref())?;
        let started = Instant::now();
        let encoder = CandleEncoder::load_with(spec, &files, self.options())
            .with_context(|| format!("loading the model from {}", files.source))?;
        tracing::info!(
            source = %files.source,
            device = %encoder.device_info(),
            ms = started.elapsed().as_millis() as u64,
            "model loaded"
        );
        Ok(encoder)
    }

    /// The device, precision, engine and batch size asked for.
    pub fn options(&self) -> crate::embed::EncoderOptions {
        crate::embed::EncoderOptions {
            device: self.device,
            precision: self.precision,
            engine: self.engine,
            batch_tokens: self.batch_tokens,
            int8_queries: false,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Folder of the store (SQLite database and vector index).
    #[arg(long, env = "STORYDEX_DATA", default_value = ".storydex")]
    pub data: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Folder of the language data (OpenCC's Traditional/Simplified tables and
    /// CC-CEDICT), fetched by scripts/fetch-lexicon. Required: without it storydex
    /// refuses to start and says how to fetch it.
    #[arg(long, env = "STORYDEX_LEXICON_DIR", default_value = "models/lexicon")]
    pub lexicon_dir: PathBuf,
}

impl Common {
    /// Takes the store's writer lock for `command`: one process writes a store at a
    /// time (see [`WriterLock`]). Held until dropped.
    pub fn lock(&self, command: &str) -> anyhow::Result<WriterLock> {
        Ok(WriterLock::acquire(&self.data, command)?)
    }

    /// Loads the model and opens the store built with it, for a command holding the
    /// writer lock ([`Common::lock`]).
    pub fn open(&self) -> anyhow::Result<Service> {
        self.open_with(Store::open)
    }

    /// [`Common::open`] for commands that only read: no lock, so they run next to a
    /// server or an ingest, and they never write the index file.
    pub fn open_for_reading(&self) -> anyhow::Result<Service> {
        self.open_with(Store::open_for_reading)
    }

    /// Loads the model and opens the store built with it, made ready by
    /// [`crate::service::prepare_store`]: how every store command, and the server, start.
    pub fn load(&self, open: OpenStore) -> anyhow::Result<(Store, CandleEncoder, Tuning)> {
        // Before the store: it rebuilds its lexical index when the language data changed.
        let started = Instant::now();
        let lexicon = crate::lexical::Lexicon::load(&self.lexicon_dir)?;
        tracing::info!(
            dir = %self.lexicon_dir.display(),
            ms = started.elapsed().as_millis() as u64,
            "language data loaded"
        );
        crate::lexical::use_lexicon(Some(Arc::new(lexicon)));
        let encoder = self.model.load_encoder()?;
        let tuning = Tuning::from_spec(encoder.spec());
        let store = open(&self.data, encoder.model_id(), encoder.dimension())
            .with_context(|| format!("opening the store in {}", self.data.display()))?;
        crate::service::prepare_store(&store, &tuning)?;
        Ok((store, encoder, tuning))
    }

    fn open_with(&self, open: OpenStore) -> anyhow::Result<Service> {
        let (store, encoder, tuning) = self.load(open)?;
        Ok(Service::new(Arc::new(store), Arc::new(encoder), tuning))
    }
}

/// [`Store::open`] or [`Store::open_for_reading`].
pub type OpenStore = fn(&Path, &str, usize) -> Result<Store, crate::store::StoreError>;

#[derive(Debug, Clone, Args)]
pub struct Filter {
    /// How many stories to return (1-100).
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// Only stories published on or after this day (YYYY-MM-DD).
    #[arg(long)]
    pub since: Option<String>,
    /// Only stories published on or before this day (YYYY-MM-DD).
    #[arg(long)]
    pub until: Option<String>,
}

impl Filter {
    fn parse(&self) -> anyhow::Result<(TopK, DateRange)> {
        Ok((
            TopK::new(self.k)?,
            DateRange::parse(self.since.as_deref(), self.until.as_deref())?,
        ))
    }
}
