//! One writing process per store: an exclusive advisory lock on `DIR/storydex.lock`.
//!
//! Owns: taking the lock, recording who holds it, and the message a second writer gets.
//! Must not: be taken by readers. `storydex search`, `similar`, `duplicates` and
//! `check` read a consistent SQLite snapshot (WAL) and never write the index file, so
//! they run alongside a server or an ingest.
//!
//! Why: `storydex serve` keeps the vector index and the window catalog in memory and
//! saves the index when it stops, stamped with the SQLite generation. A second process
//! writing the same store underneath it (an editor's `storydex ingest`) leaves the
//! server answering from a stale index (new stories missing from searches while
//! `/v1/digests` lists them, removed windows still found), and when the window count
//! happens to match, the server's shutdown save stamps that stale index as current, so
//! the next start trusts it. Rather than detect and reload, there is one writer at a
//! time: `ingest`, `serve`, `recluster` and `eval` hold this lock for their lifetime,
//! and a second one fails at once naming the holder. The kernel drops the lock when its
//! process ends, `kill -9` included, so a crash never leaves the store locked.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

const LOCK_FILE: &str = "storydex.lock";

/// Held by the one process allowed to write a store; released when dropped or when the
/// process ends.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
    path: PathBuf,
}

impl WriterLock {
    /// Takes the writer lock of the store in `dir` (created if missing) for `command`
    /// (`"storydex serve"`), or fails at once if another process holds it.
    pub fn acquire(dir: &Path, command: &str) -> Result<Self, StoreError> {
        let path = dir.join(LOCK_FILE);
        let cannot = |e: std::io::Error| StoreError::LockFile {
            path: path.clone(),
            source: e,
        };
        std::fs::create_dir_all(dir).map_err(cannot)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(cannot)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // Best effort: the holder writes these lines right after locking.
                let _ = file.read_to_string(&mut holder);
                return Err(StoreError::Locked {
                    dir: dir.to_owned(),
                    holder: describe_holder(&holder),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(cannot(e)),
        }
        let started = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let record = format!(
            "pid {}\ncommand {command}\nsince {started}\n",
            std::process::id()
        );
        file.set_len(0).map_err(cannot)?;
        file.rewind().map_err(cannot)?;
        file.write_all(record.as_bytes()).map_err(cannot)?;
        Ok(WriterLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `pid 4242, storydex serve, since 2026-01-07T00:00:00Z` from the lock file's lines.
fn describe_holder(record: &str) -> String {
    let field = |key: &str| {
        record
            .lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
            .filter(|v| !v.is_empty())
    };
    match (field("pid "), field("command "), field("since ")) {
        (Some(pid), Some(command), Some(since)) => format!("pid {pid}, {command}, since {since}"),
        (Some(pid), Some(command), None) => format!("pid {pid}, {command}"),
        _ => "another storydex process".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_fails_at_once_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = WriterLock::acquire(dir.path(), "storydex serve").unwrap();
        let err = WriterLock::acquire(dir.path(), "storydex ingest").unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StoreError::Locked { .. }), "{message}");
        assert!(
            message.contains(&format!("pid {}, storydex serve", std::process::id())),
            "{message}"
        );
        assert!(message.contains("POST /v1/digests"), "{message}");
        drop(first);
        WriterLock::acquire(dir.path(), "storydex ingest").unwrap();
    }

    #[test]
    fn a_lock_file_left_by_a_dead_process_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(LOCK_FILE),
            "pid 1\ncommand storydex serve\n",
        )
        .unwrap();
        WriterLock::acquire(dir.path(), "storydex ingest").unwrap();
    }
}
