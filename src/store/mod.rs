//! Persistent state: SQLite (the source of truth) and the usearch index derived from it.
//!
//! Owns: the schema and its migrations (`schema`), the model a store was built with,
//! story/window rows and their vectors (`rows`, `reads`, `writes`), the lexical
//! index (`fts`), the in-memory catalog of window keys used to filter searches
//! (`catalog`), the stored duplicate clusters (`clusters`), and keeping the vector
//! index consistent with SQLite. Must not: parse files or run the model.
//!
//! Locking order (never the other way round): `conn`, then `index`, then `catalog`, then
//! `kinds`, then `flat`.
//! Writers commit to SQLite first, then update the index; readers only take `index`
//! and `catalog` read locks, so searches keep answering during an ingest.

mod backup;
mod catalog;
mod clusters;
mod coded;
mod flat;
mod fts;
mod index;
mod lock;
mod reads;
mod rows;
mod schema;
mod writes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use rusqlite::{Connection, OptionalExtension};
use time::OffsetDateTime;

use crate::corpus::{SourceKind, Story};
use crate::embed::Window;
pub use backup::{backup, BackupReport};
pub use catalog::WindowMeta;
use catalog::{load_catalog, load_flat, FlatBlocks, KindSpans};
pub use clusters::{ClusterMembers, ReclusterReport};
pub use flat::EXACT_SEARCH_MAX;
use index::{IndexStamp, VectorIndex};
pub use lock::WriterLock;
use rows::blob_to_vector;
pub use rows::day_of;
use schema::generation;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store at {path} was built with model {stored}, not {requested}; \
         use a new --data folder or the model it was built with"
    )]
    ModelMismatch {
        path: PathBuf,
        stored: String,
        requested: String,
    },
    #[error("vector has dimension {got}, the store holds {expected}")]
    Dimension { expected: usize, got: usize },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("vector index: {0}")]
    Index(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("backup: {0}")]
    Backup(String),
    #[error(
        "the store in {dir} is being written by another process ({holder}); one process \
         writes a store at a time: stop it first, or while it is `storydex serve`, send new \
         digests to it with POST /v1/digests"
    )]
    Locked { dir: PathBuf, holder: String },
    #[error("cannot take the writer lock {path}: {source}")]
    LockFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A story as stored, with its digest's title.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStory {
    pub id: String,
    pub digest_id: String,
    pub digest_title: String,
    pub position: u32,
    pub headline: String,
    pub author: Option<String>,
    pub url: Option<String>,
    pub published: Option<OffsetDateTime>,
    pub tags: Vec<String>,
    pub display: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredDigest {
    pub id: String,
    pub kind: SourceKind,
    pub title: String,
    pub published: Option<OffsetDateTime>,
    pub categories: Vec<String>,
    pub source: String,
    pub stories: usize,
}

/// One story ready to be written: parsed, hashed and embedded.
pub struct NewStory<'a> {
    pub story: &'a Story,
    pub hash: String,
    pub windows: Vec<Window>,
}

/// One search result: a window and its cosine similarity to the query.
#[derive(Debug, Clone)]
pub struct WindowHit {
    pub key: u64,
    pub score: f32,
    pub meta: WindowMeta,
}

pub struct Store {
    dir: PathBuf,
    model_id: String,
    dimension: usize,
    conn: Mutex<Connection>,
    index: RwLock<VectorIndex>,
    catalog: RwLock<HashMap<u64, WindowMeta>>,
    /// Per source kind, how many windows and which days: a search skips a kind with no
    /// window in its range instead of walking the whole graph for none. Updated with the
    /// catalog (under its write lock); days only widen.
    kinds: RwLock<KindSpans>,
    /// Per source kind, every window's vector in one block while the kind has at most
    /// [`EXACT_SEARCH_MAX`] windows: searched by comparing them all ([`flat`]). `None`
    /// beyond, where the HNSW index answers. A small archive beside a million digest
    /// items keeps its block, so a search of the archive alone stays a scan.
    flat: RwLock<FlatBlocks>,
    /// Sign codes of every window once a source kind outgrows its exact scan
    /// ([`coded`]); `None` while every kind is scanned exactly.
    coded: RwLock<Option<coded::SignCodes>>,
    large: RwLock<LargeSearch>,
}

/// How a search over a source kind past [`EXACT_SEARCH_MAX`] windows finds its windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LargeSearch {
    /// Scan every window's sign code, then score at least `depth` of the nearest exactly
    /// (the default: [`LargeSearch::DEFAULT`]).
    Rescored { depth: usize },
    /// Ask the usearch HNSW graph with this `expansion_search`: faster, and it misses
    /// true neighbours on e5's crowded cosines (`scripts/bench-scale` reports both).
    Graph { expansion: usize },
}

impl LargeSearch {
    /// 4,096 re-scored windows found 0.999 of the exact top ten among a million planted
    /// stories (`scripts/bench-scale`).
    pub const DEFAULT: LargeSearch = LargeSearch::Rescored { depth: 4096 };

    /// Re-scored windows for a search of `count`: the depth, and never fewer than four
    /// per window asked for.
    fn depth_for(depth: usize, count: usize) -> usize {
        depth.max(count.saturating_mul(4))
    }
}

pub(super) const DB_FILE: &str = "storydex.sqlite3";
const INDEX_FILE: &str = "index.usearch";
const CODES_FILE: &str = "index.codes";

/// Writes `codes` and then their stamp (no stamp in between: a crash means "rebuild").
fn save_codes(codes: &coded::SignCodes, path: &Path, stamp: &IndexStamp) -> Result<(), StoreError> {
    let stamp_path = index::stamp_path(path);
    match std::fs::remove_file(&stamp_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    codes.save(path)?;
    index::write_stamp(&stamp_path, stamp, path)
}

impl Store {
    /// Opens (creating if needed) the store in `dir` for the given model.
    ///
    /// A missing, stale or unreadable index is rebuilt from SQLite with a log line, and
    /// saved. Processes that write should hold the store's [`WriterLock`].
    pub fn open(dir: &Path, model_id: &str, dimension: usize) -> Result<Self, StoreError> {
        Self::open_with(dir, model_id, dimension, true, EXACT_SEARCH_MAX)
    }

    /// [`Store::open`] for a process that only reads, next to a writer that may be
    /// running: a stale index is rebuilt in memory but never saved, since the index file
    /// belongs to the writer.
    pub fn open_for_reading(
        dir: &Path,
        model_id: &str,
        dimension: usize,
    ) -> Result<Self, StoreError> {
        Self::open_with(dir, model_id, dimension, false, EXACT_SEARCH_MAX)
    }

    fn open_with(
        dir: &Path,
        model_id: &str,
        dimension: usize,
        save_rebuilt_index: bool,
        exact_max: usize,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let opening = std::time::Instant::now();
        let mut conn = Connection::open(dir.join(DB_FILE))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        schema::migrate(&mut conn, dir, model_id, dimension)?;
        let checked = opening.elapsed();
        let catalog = load_catalog(&conn, &dir.join(DB_FILE))?;
        let catalogued = opening.elapsed();
        let store = Self {
            dir: dir.to_owned(),
            model_id: model_id.to_owned(),
            dimension,
            index: RwLock::new(VectorIndex::new(dimension)?),
            kinds: RwLock::new(KindSpans::of(catalog.values())),
            flat: RwLock::new(load_flat(&conn, &catalog, dimension, exact_max)?),
            catalog: RwLock::new(catalog),
            conn: Mutex::new(conn),
            coded: RwLock::new(None),
            large: RwLock::new(LargeSearch::DEFAULT),
        };
        store.load_or_rebuild_index(save_rebuilt_index)?;
        store.load_or_build_codes(save_rebuilt_index)?;
        tracing::info!(
            windows = store.window_count(),
            schema_ms = checked.as_millis() as u64,
            catalog_ms = (catalogued - checked).as_millis() as u64,
            index_ms = (opening.elapsed() - catalogued).as_millis() as u64,
            "store opened"
        );
        Ok(store)
    }

    /// The model id and dimension a store in `dir` was built with, if there is one.
    pub fn stored_model(dir: &Path) -> Result<Option<(String, usize)>, StoreError> {
        let path = dir.join(DB_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let get = |key: &str| -> Result<Option<String>, StoreError> {
            Ok(conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()?)
        };
        match (get("model_id")?, get("dimension")?) {
            (Some(model), Some(dim)) => Ok(Some((
                model,
                dim.parse()
                    .map_err(|_| StoreError::Corrupt(format!("dimension {dim:?}")))?,
            ))),
            _ => Ok(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    pub fn index_path(&self) -> PathBuf {
        self.dir.join(INDEX_FILE)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn stamp(&self, conn: &Connection) -> Result<IndexStamp, StoreError> {
        let size: i64 = conn.query_row("SELECT COUNT(*) FROM windows", [], |r| r.get(0))?;
        Ok(IndexStamp {
            model_id: self.model_id.clone(),
            generation: generation(conn)?,
            size: size as usize,
        })
    }

    fn load_or_rebuild_index(&self, save: bool) -> Result<(), StoreError> {
        let conn = self.conn();
        let stamp = self.stamp(&conn)?;
        let path = self.index_path();
        if let Some(loaded) = VectorIndex::load_if_current(&path, self.dimension, &stamp)? {
            *self.index.write().unwrap_or_else(|p| p.into_inner()) = loaded;
            return Ok(());
        }
        tracing::info!(
            path = %path.display(),
            windows = stamp.size,
            "vector index missing or out of date; rebuilding it from SQLite"
        );
        let mut rebuilt = VectorIndex::new(self.dimension)?;
        let mut stmt = conn.prepare("SELECT key, vector FROM windows")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let key: i64 = row.get(0)?;
            let vector = blob_to_vector(&row.get::<_, Vec<u8>>(1)?, self.dimension)?;
            rebuilt.add(key as u64, &vector)?;
        }
        if save {
            rebuilt.save(&path, &stamp)?;
        }
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = rebuilt;
        Ok(())
    }

    /// Saves the index if it is not already saved for the current generation.
    pub fn save_index(&self) -> Result<(), StoreError> {
        let conn = self.conn();
        let stamp = self.stamp(&conn)?;
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        if index.len() != stamp.size {
            return Err(StoreError::Corrupt(format!(
                "index holds {} windows, SQLite {}",
                index.len(),
                stamp.size
            )));
        }
        index.save(&self.index_path(), &stamp)?;
        if let Some(codes) = &*self.coded.read().unwrap_or_else(|p| p.into_inner()) {
            save_codes(codes, &self.codes_path(), &stamp)?;
        }
        Ok(())
    }

    fn codes_path(&self) -> PathBuf {
        self.dir.join(CODES_FILE)
    }

    /// Sign codes for a store with a kind past its exact scan: read from their file when
    /// its stamp matches SQLite, else built from the index's vectors.
    fn load_or_build_codes(&self, save: bool) -> Result<(), StoreError> {
        let total = self.window_count();
        if self
            .flat
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .scans(None, total)
        {
            return Ok(());
        }
        let path = self.codes_path();
        let stamp = self.stamp(&self.conn())?;
        let current = std::fs::read_to_string(index::stamp_path(&path))
            .ok()
            .and_then(|text| serde_json::from_str::<IndexStamp>(&text).ok())
            .is_some_and(|s| s == stamp);
        if current {
            if let Some(codes) = coded::SignCodes::load(&path, self.dimension) {
                if codes.len() == total {
                    *self.coded.write().unwrap_or_else(|p| p.into_inner()) = Some(codes);
                    return Ok(());
                }
            }
        }
        tracing::info!(
            path = %path.display(),
            windows = total,
            "sign codes missing or out of date; building them from the index"
        );
        let codes = {
            let index = self.index.read().unwrap_or_else(|p| p.into_inner());
            let catalog = self.catalog.read().unwrap_or_else(|p| p.into_inner());
            catalog::build_codes(&index, &catalog, self.dimension)?
        };
        if save {
            save_codes(&codes, &path, &stamp)?;
        }
        *self.coded.write().unwrap_or_else(|p| p.into_inner()) = Some(codes);
        Ok(())
    }

    /// How searches past [`EXACT_SEARCH_MAX`] windows of a kind find their windows.
    pub fn set_large_search(&self, how: LargeSearch) {
        if let LargeSearch::Graph { expansion } = how {
            self.index
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .set_search_expansion(expansion);
        }
        *self.large.write().unwrap_or_else(|p| p.into_inner()) = how;
    }
}

/// A story's single vector and the facts clustering uses.
#[derive(Debug, Clone)]
pub struct StoryVector {
    pub id: String,
    pub digest_id: String,
    pub day: Option<u32>,
    pub published: Option<OffsetDateTime>,
    pub url: Option<String>,
    pub vector: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_a_store_with_another_model_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), "model-a@3", 3).unwrap());
        let err = Store::open(dir.path(), "model-b@3", 3).err().unwrap();
        assert!(matches!(err, StoreError::ModelMismatch { .. }), "{err}");
        assert!(err.to_string().contains("model-a@3"));
    }
}
