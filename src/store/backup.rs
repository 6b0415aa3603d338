//! Backups of a live store: a consistent copy while `serve` or an ingest writes.
//!
//! Owns: copying the database with SQLite's online backup API (one read transaction, so
//! the copy is the database as of one commit, whoever writes meanwhile), and the index
//! file with it only when its stamp says it reflects exactly that commit; otherwise the
//! copy has no index and rebuilds it from SQLite when opened. Must not: need the model
//! or the writer lock (a backup never blocks the writer for longer than SQLite's read
//! lock does, and never changes the source).
//!
//! The copy is written into a temporary folder beside `out` and renamed into place at
//! the end, so `out` is either a whole backup or absent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::index::{stamp_path, IndexStamp};
use super::{StoreError, DB_FILE, INDEX_FILE};

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    pub dir: PathBuf,
    pub stories: usize,
    pub windows: usize,
    /// The store's write generation the copy is as of.
    pub generation: i64,
    /// Whether the index file came with it (else it is rebuilt on first open).
    pub index: bool,
    pub bytes: u64,
}

/// Copies the store in `dir` into `out`, a path that must not exist yet.
pub fn backup(dir: &Path, out: &Path) -> Result<BackupReport, StoreError> {
    let source = dir.join(DB_FILE);
    if !source.is_file() {
        return Err(StoreError::Backup(format!(
            "{} holds no store ({DB_FILE} is missing)",
            dir.display()
        )));
    }
    if out.exists() {
        return Err(StoreError::Backup(format!(
            "{} already exists; back up into a new path",
            out.display()
        )));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let name = out
        .file_name()
        .ok_or_else(|| StoreError::Backup(format!("{} names no folder", out.display())))?;
    let tmp = parent.join(format!(".{}.partial", name.to_string_lossy()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir(&tmp)?;
    let report = copy_into(dir, &source, &tmp).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&tmp);
    })?;
    std::fs::rename(&tmp, out)?;
    if let Ok(d) = std::fs::File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(BackupReport {
        dir: out.to_owned(),
        ..report
    })
}

fn copy_into(dir: &Path, source: &Path, tmp: &Path) -> Result<BackupReport, StoreError> {
    let src = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(Duration::from_secs(10))?;
    let mut dst = Connection::open(tmp.join(DB_FILE))?;
    {
        // -1: every page in one step, under one read transaction: a consistent copy. A
        // writer holding the lock at that moment makes the step busy; it is tried again.
        use rusqlite::backup::StepResult;
        let backup = rusqlite::backup::Backup::new(&src, &mut dst)?;
        let mut tries = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => continue,
                StepResult::Busy | StepResult::Locked if tries < 1000 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {
                    return Err(StoreError::Backup(
                        "the store stayed locked for 10 s; try again".to_owned(),
                    ))
                }
            }
        }
    }
    drop(src);
    let integrity: String = dst.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if integrity != "ok" {
        return Err(StoreError::Corrupt(format!(
            "the backup's integrity check says {integrity}"
        )));
    }
    let meta = |key: &str| -> Result<String, StoreError> {
        Ok(dst.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))?)
    };
    let count = |table: &str| -> Result<usize, StoreError> {
        let n: i64 = dst.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(n as usize)
    };
    let stamp = IndexStamp {
        model_id: meta("model_id")?,
        generation: meta("generation")?.parse().unwrap_or(0),
        size: count("windows")?,
    };
    let stories = count("stories")?;
    dst.pragma_update(None, "journal_mode", "DELETE")?;
    drop(dst);
    let index = copy_index_if_current(dir, tmp, &stamp)?;
    std::fs::File::open(tmp.join(DB_FILE))?.sync_all()?;
    let bytes = std::fs::read_dir(tmp)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    Ok(BackupReport {
        dir: tmp.to_owned(),
        stories,
        windows: stamp.size,
        generation: stamp.generation,
        index,
        bytes,
    })
}

/// Copies the index and its stamp when the stamp on disk is `stamp`, read before and
/// after opening the index file: a save replaces the stamp before the index, so an
/// unchanged stamp after the open means the opened file is the one it describes.
fn copy_index_if_current(dir: &Path, tmp: &Path, stamp: &IndexStamp) -> Result<bool, StoreError> {
    let index = dir.join(INDEX_FILE);
    let read_stamp = || -> Option<IndexStamp> {
        serde_json::from_slice(&std::fs::read(stamp_path(&index)).ok()?).ok()
    };
    if read_stamp().as_ref() != Some(stamp) {
        return Ok(false);
    }
    let Ok(mut file) = std::fs::File::open(&index) else {
        return Ok(false);
    };
    if read_stamp().as_ref() != Some(stamp) {
        return Ok(false);
    }
    let copy = tmp.join(INDEX_FILE);
    std::io::copy(&mut file, &mut std::fs::File::create(&copy)?)?;
    std::fs::File::open(&copy)?.sync_all()?;
    std::fs::write(stamp_path(&copy), serde_json::to_vec(stamp)?)?;
    Ok(true)
}
