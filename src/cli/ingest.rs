//! `storydex ingest`: files and folders into the store, with a progress bar.
//!
//! Owns: the arguments, `--watch` (a folder followed until Ctrl-C), the Ctrl-C handling (the first stops after the current batch,
//! the second quits), the progress bar, the summary and the hint when the disk is full
//! or read-only. Must not: decide what is new or changed (that is `service`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::output::print_json;
use super::Common;
use crate::api::IngestSummary;
use crate::service::{Progress, Service, WatchOptions, WatchSettings, Watcher};

// The arguments (their help text is the variant's doc comment in `cli::Command`).
#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub common: Common,
    /// Files or folders (folders are read recursively: *.md, *.txt, *.markdown).
    #[arg(required_unless_present = "watch")]
    pub paths: Vec<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// With --watch, keep ingesting the folder's new and changed files until Ctrl-C.
    #[command(flatten)]
    pub watch: WatchSettings,
}

pub(super) fn run(args: IngestArgs) -> anyhow::Result<()> {
    let IngestArgs {
        common,
        paths,
        json,
        watch,
    } = args;
    let common = &common;
    let paths = &paths[..];
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
    let watch = watch.options();
    if paths.is_empty() {
        if let Some(options) = watch {
            return watch_folder(service, options, &cancel);
        }
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
        print_json(&summary)?;
    } else {
        print_summary(&summary);
    }
    if let Some(options) = watch {
        return watch_folder(service, options, &cancel);
    }
    if !summary.failed.is_empty() {
        anyhow::bail!("{} file(s) could not be ingested", summary.failed.len());
    }
    Ok(())
}

fn print_summary(summary: &IngestSummary) {
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
}

/// Ingests the watched folder's new and changed files until Ctrl-C; each is logged.
fn watch_folder(
    service: Service,
    options: WatchOptions,
    cancel: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let service = Arc::new(service);
    let stopping = Arc::clone(cancel);
    let watcher = Watcher::spawn(
        options,
        Box::new(move |op| {
            service
                .apply_watch_op(op, &stopping)
                .map_err(|e| format!("{:#}", anyhow::Error::from(e)))
        }),
    )
    .context("starting the folder watch")?;
    while !cancel.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    watcher.stop();
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
