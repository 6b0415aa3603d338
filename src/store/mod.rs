//! Persistent state: SQLite (the source of truth) and the usearch index derived from it.
//!
//! Owns: the schema, the model a store was built with, story/window rows and their
//! vectors, the in-memory catalog of window keys used to filter searches, and keeping
//! the index consistent with SQLite. Must not: parse files or run the model.
//!
//! Locking order (never the other way round): `conn`, then `index`, then `catalog`, then
//! `kinds`, then `flat`.
//! Writers commit to SQLite first, then update the index; readers only take `index`
//! and `catalog` read locks, so searches keep answering during an ingest.

mod clusters;
mod flat;
mod index;
mod lock;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::{params, Connection, OptionalExtension};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::corpus::{Digest, SourceKind, Story};
use crate::embed::Window;
use clusters::UNDATED_TS;
pub use clusters::{ClusterMembers, ReclusterReport};
pub use flat::EXACT_SEARCH_MAX;
use index::{IndexStamp, VectorIndex};
pub use lock::WriterLock;

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

/// What the catalog knows about one window key, enough to filter a search without SQL.
#[derive(Debug, Clone)]
pub struct WindowMeta {
    /// Shared by the story's windows (and the digest's, for `digest_id`): a million
    /// windows cost a million strings less to load.
    pub story_id: Arc<str>,
    pub digest_id: Arc<str>,
    /// The story's publication date in its own offset, as `YYYYMMDD`.
    pub day: Option<u32>,
    /// Unix seconds of publication (undated: before everything); with the story id, the
    /// order clusters are assigned in.
    pub ts: i64,
    pub start: usize,
    pub end: usize,
    /// Which input format the story came in: digest items and archive episodes score on
    /// different scales against one query, and search calibrates each on its own.
    pub kind: SourceKind,
}

/// Windows and the span of their days, per source kind.
#[derive(Debug, Default, Clone, Copy)]
struct KindSpan {
    windows: usize,
    dated: usize,
    first_day: u32,
    last_day: u32,
}

#[derive(Debug, Default)]
struct KindSpans {
    digest: KindSpan,
    archive: KindSpan,
}

impl KindSpans {
    fn of<'a>(metas: impl Iterator<Item = &'a WindowMeta>) -> Self {
        let mut spans = Self::default();
        for meta in metas {
            spans.add(meta);
        }
        spans
    }

    fn span(&mut self, kind: SourceKind) -> &mut KindSpan {
        match kind {
            SourceKind::Digest => &mut self.digest,
            SourceKind::Archive => &mut self.archive,
        }
    }

    fn add(&mut self, meta: &WindowMeta) {
        let span = self.span(meta.kind);
        span.windows += 1;
        if let Some(day) = meta.day {
            if span.dated == 0 {
                (span.first_day, span.last_day) = (day, day);
            } else {
                span.first_day = span.first_day.min(day);
                span.last_day = span.last_day.max(day);
            }
            span.dated += 1;
        }
    }

    fn remove(&mut self, meta: &WindowMeta) {
        let span = self.span(meta.kind);
        span.windows = span.windows.saturating_sub(1);
        if meta.day.is_some() {
            span.dated = span.dated.saturating_sub(1);
        }
    }

    fn may_match(&self, kind: SourceKind, range: crate::domain::DateRange) -> bool {
        let span = match kind {
            SourceKind::Digest => &self.digest,
            SourceKind::Archive => &self.archive,
        };
        if span.windows == 0 {
            return false;
        }
        if range.is_all() {
            return true;
        }
        let (since, until) = range.days();
        span.dated > 0
            && since.is_none_or(|s| span.last_day >= s)
            && until.is_none_or(|u| span.first_day <= u)
    }
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
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS digests (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    published TEXT,
    categories TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stories (
    id TEXT PRIMARY KEY,
    digest_id TEXT NOT NULL REFERENCES digests(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    headline TEXT NOT NULL,
    author TEXT,
    url TEXT,
    published TEXT,
    day INTEGER,
    tags TEXT NOT NULL,
    display TEXT NOT NULL,
    text TEXT NOT NULL,
    content_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS stories_by_digest ON stories(digest_id, position);
CREATE TABLE IF NOT EXISTS windows (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    story_id TEXT NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS windows_by_story ON windows(story_id, idx);
"#;

/// Columns added after the first release: (name, declaration). Stores made before get
/// them on open, then backfilled ([`backfill_story_columns`]).
const STORY_COLUMNS: [(&str, &str); 4] = [
    // Unix seconds of publication (undated: clusters::UNDATED_TS).
    ("ts", "INTEGER"),
    // The story vector: normalised mean of its windows (f32 little-endian).
    ("vector", "BLOB"),
    // The duplicate cluster: the id of its earliest story.
    ("cluster", "TEXT"),
    // Mean pair score against the cluster's earlier members when assigned (1 for the first).
    ("cluster_score", "REAL"),
];

const STORY_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS stories_by_order ON stories(ts, id);
CREATE INDEX IF NOT EXISTS stories_by_cluster ON stories(cluster);
CREATE INDEX IF NOT EXISTS stories_by_day ON stories(day);
";

/// The lexical index: FTS5 over each story's analysed terms ([`crate::lexical`]), keyed
/// by the story's rowid. Written in the same transaction as the story; rebuilt from the
/// stories when the analyzer version changes (or the table is new).
fn lexical_schema() -> String {
    format!(
        "CREATE VIRTUAL TABLE IF NOT EXISTS story_terms USING fts5(title, body, \
         tokenize = \"unicode61 remove_diacritics 0 tokenchars '{}'\");",
        crate::lexical::FTS5_TOKENCHARS
    ) + "\nCREATE VIRTUAL TABLE IF NOT EXISTS story_terms_vocab USING fts5vocab(story_terms, 'row');"
}

/// BM25 column weights: a term in the headline counts twice a term in the body.
const BM25_WEIGHTS: &str = "2.0, 1.0";

const DB_FILE: &str = "storydex.sqlite3";
const INDEX_FILE: &str = "index.usearch";

impl Store {
    /// Opens (creating if needed) the store in `dir` for the given model.
    ///
    /// A missing, stale or unreadable index is rebuilt from SQLite with a log line, and
    /// saved. Processes that write should hold the store's [`WriterLock`].
    pub fn open(dir: &Path, model_id: &str, dimension: usize) -> Result<Self, StoreError> {
        Self::open_with(dir, model_id, dimension, true)
    }

    /// [`Store::open`] for a process that only reads, next to a writer that may be
    /// running: a stale index is rebuilt in memory but never saved, since the index file
    /// belongs to the writer.
    pub fn open_for_reading(
        dir: &Path,
        model_id: &str,
        dimension: usize,
    ) -> Result<Self, StoreError> {
        Self::open_with(dir, model_id, dimension, false)
    }

    fn open_with(
        dir: &Path,
        model_id: &str,
        dimension: usize,
        save_rebuilt_index: bool,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let opening = std::time::Instant::now();
        let mut conn = Connection::open(dir.join(DB_FILE))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(&lexical_schema())?;
        add_story_columns(&conn)?;
        conn.execute_batch(STORY_INDEXES)?;
        check_model(&mut conn, dir, model_id, dimension)?;
        backfill_story_columns(&mut conn, dimension)?;
        ensure_lexical_index(&mut conn)?;
        let checked = opening.elapsed();
        let catalog = load_catalog(&conn, &dir.join(DB_FILE))?;
        let catalogued = opening.elapsed();
        let store = Self {
            dir: dir.to_owned(),
            model_id: model_id.to_owned(),
            dimension,
            index: RwLock::new(VectorIndex::new(dimension)?),
            kinds: RwLock::new(KindSpans::of(catalog.values())),
            flat: RwLock::new(load_flat(&conn, &catalog, dimension)?),
            catalog: RwLock::new(catalog),
            conn: Mutex::new(conn),
        };
        store.load_or_rebuild_index(save_rebuilt_index)?;
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
        index.save(&self.index_path(), &stamp)
    }

    /// Content hashes of the stories already stored for `digest_id`.
    pub fn story_hashes(&self, digest_id: &str) -> Result<HashMap<String, String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, content_hash FROM stories WHERE digest_id = ?1")?;
        let rows = stmt.query_map([digest_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Inserts or replaces a digest row.
    pub fn put_digest(&self, digest: &Digest) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO digests (id, kind, title, published, categories, source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, title = excluded.title,
                 published = excluded.published, categories = excluded.categories,
                 source = excluded.source",
            params![
                digest.id,
                kind_name(digest.kind),
                digest.title,
                digest.published.map(format_time).transpose()?,
                serde_json::to_string(&digest.categories)?,
                digest.source,
            ],
        )?;
        Ok(())
    }

    /// Writes stories and their windows in one transaction, replacing earlier versions,
    /// assigns them (and any later story they may change) to duplicate clusters, then
    /// updates the index. On error nothing of the batch is stored.
    pub fn put_stories(
        &self,
        batch: &[NewStory<'_>],
        clustering: &crate::cluster::Params,
    ) -> Result<(), StoreError> {
        for new in batch {
            for w in &new.windows {
                if w.vector.len() != self.dimension {
                    return Err(StoreError::Dimension {
                        expected: self.dimension,
                        got: w.vector.len(),
                    });
                }
            }
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut removed = Vec::new();
        let mut added = Vec::new();
        let mut from: Option<(i64, String)> = None;
        let mut earliest = |key: (i64, String)| {
            if from.as_ref().is_none_or(|f| key < *f) {
                from = Some(key);
            }
        };
        for new in batch {
            let s = new.story;
            if let Some(old) = story_key(&tx, &s.id)? {
                earliest(old);
            }
            let ts = s.published.map_or(UNDATED_TS, |t| t.unix_timestamp());
            earliest((ts, s.id.clone()));
            let vector =
                crate::embed::mean_unit_vector(new.windows.iter().map(|w| w.vector.as_slice()));
            let kind = digest_kind(&tx, &s.digest_id)?;
            removed.extend(window_keys(&tx, &s.id)?);
            tx.execute("DELETE FROM windows WHERE story_id = ?1", [&s.id])?;
            delete_terms(&tx, &s.id)?;
            tx.execute(
                "INSERT INTO stories (id, digest_id, position, headline, author, url, published,
                     day, tags, display, text, content_hash, ts, vector)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT(id) DO UPDATE SET digest_id = excluded.digest_id,
                     position = excluded.position, headline = excluded.headline,
                     author = excluded.author, url = excluded.url,
                     published = excluded.published, day = excluded.day, tags = excluded.tags,
                     display = excluded.display, text = excluded.text,
                     content_hash = excluded.content_hash, ts = excluded.ts,
                     vector = excluded.vector, cluster = NULL, cluster_score = NULL",
                params![
                    s.id,
                    s.digest_id,
                    s.position,
                    s.headline,
                    s.author,
                    s.url,
                    s.published.map(format_time).transpose()?,
                    s.published.map(day_of),
                    serde_json::to_string(&s.tags)?,
                    s.display,
                    s.text,
                    new.hash,
                    ts,
                    vector_to_blob(&vector),
                ],
            )?;
            insert_terms(&tx, &s.id, &s.headline, s.author.as_deref(), &s.text)?;
            for (i, w) in new.windows.iter().enumerate() {
                tx.execute(
                    "INSERT INTO windows (story_id, idx, start, end, tokens, vector)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        s.id,
                        i as i64,
                        w.start as i64,
                        w.end as i64,
                        w.tokens as i64,
                        vector_to_blob(&w.vector)
                    ],
                )?;
                let meta = WindowMeta {
                    story_id: s.id.as_str().into(),
                    digest_id: s.digest_id.as_str().into(),
                    day: s.published.map(day_of),
                    ts,
                    start: w.start,
                    end: w.end,
                    kind,
                };
                added.push((tx.last_insert_rowid() as u64, meta, &w.vector));
            }
        }
        let pending: Vec<String> = batch.iter().map(|n| n.story.id.clone()).collect();
        self.cluster_after_write(&tx, from, &pending, clustering)?;
        bump_generation(&tx)?;
        tx.commit()?;
        self.apply_to_index(&removed, added)
    }

    /// Re-assigns clusters from the earliest story a write touched; from the very first
    /// story when the stored clusters were made with other settings.
    fn cluster_after_write(
        &self,
        tx: &Connection,
        from: Option<(i64, String)>,
        pending: &[String],
        clustering: &crate::cluster::Params,
    ) -> Result<(), StoreError> {
        let stamp_matches = clusters::stamp_matches(tx, clustering)?;
        let from = if stamp_matches {
            from
        } else {
            Some((i64::MIN, String::new()))
        };
        if let Some((ts, id)) = from {
            self.reassign_from(tx, (ts, &id), pending, clustering)?;
        }
        clusters::set_cluster_meta(tx, clustering)
    }

    /// Deletes the stories of `digest_id` that are not in `keep` (items removed from an
    /// edited digest). Returns how many were deleted.
    pub fn retain_stories(
        &self,
        digest_id: &str,
        keep: &HashSet<&str>,
        clustering: &crate::cluster::Params,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let existing: Vec<String> = {
            let mut stmt = tx.prepare("SELECT id FROM stories WHERE digest_id = ?1")?;
            let rows = stmt.query_map([digest_id], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut removed = Vec::new();
        let mut deleted = 0;
        let mut from: Option<(i64, String)> = None;
        for id in existing.iter().filter(|id| !keep.contains(id.as_str())) {
            if let Some(key) = story_key(&tx, id)? {
                if from.as_ref().is_none_or(|f| key < *f) {
                    from = Some(key);
                }
            }
            removed.extend(window_keys(&tx, id)?);
            tx.execute("DELETE FROM windows WHERE story_id = ?1", [id])?;
            delete_terms(&tx, id)?;
            tx.execute("DELETE FROM stories WHERE id = ?1", [id])?;
            deleted += 1;
        }
        if deleted > 0 {
            self.cluster_after_write(&tx, from, &[], clustering)?;
            bump_generation(&tx)?;
        }
        tx.commit()?;
        self.apply_to_index(&removed, Vec::new())?;
        Ok(deleted)
    }

    fn apply_to_index(
        &self,
        removed: &[u64],
        added: Vec<(u64, WindowMeta, &Vec<f32>)>,
    ) -> Result<(), StoreError> {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        let mut catalog = self.catalog.write().unwrap_or_else(|p| p.into_inner());
        let mut kinds = self.kinds.write().unwrap_or_else(|p| p.into_inner());
        let mut flat = self.flat.write().unwrap_or_else(|p| p.into_inner());
        for key in removed {
            index.remove(*key)?;
            if let Some(meta) = catalog.remove(key) {
                kinds.remove(&meta);
                if let Some(block) = flat.get_mut(meta.kind) {
                    block.remove(*key);
                }
            }
        }
        for (key, meta, vector) in added {
            index.add(key, vector)?;
            kinds.add(&meta);
            if let Some(block) = flat.get_mut(meta.kind) {
                block.add(key, meta.clone(), vector);
            }
            catalog.insert(key, meta);
        }
        // A kind grown past a scan: the graph answers for it from now on.
        flat.drop_oversized();
        Ok(())
    }

    /// Nearest windows to `query` among those `keep` accepts, best first.
    pub fn search_windows(
        &self,
        query: &[f32],
        count: usize,
        kind: Option<SourceKind>,
        keep: impl Fn(&WindowMeta) -> bool,
    ) -> Result<Vec<WindowHit>, StoreError> {
        if query.len() != self.dimension {
            return Err(StoreError::Dimension {
                expected: self.dimension,
                got: query.len(),
            });
        }
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let catalog = self.catalog.read().unwrap_or_else(|p| p.into_inner());
        let blocks = self.flat.read().unwrap_or_else(|p| p.into_inner());
        if let Some(scanned) = blocks.scan(kind, catalog.len(), query, count, &keep) {
            return Ok(scanned);
        }
        drop(blocks);
        let hits = index.search(query, count, |key| {
            catalog
                .get(&key)
                .is_some_and(|m| kind.is_none_or(|k| m.kind == k) && keep(m))
        })?;
        Ok(hits
            .into_iter()
            .filter_map(|(key, score)| {
                catalog.get(&key).map(|meta| WindowHit {
                    key,
                    score,
                    meta: meta.clone(),
                })
            })
            .collect())
    }

    /// Stories matching any term of `query`, best BM25 first, with their BM25 score
    /// (higher is better) among those published in `range`.
    pub fn search_lexical(
        &self,
        query: &str,
        count: usize,
        range: crate::domain::DateRange,
        exclude_digest: Option<&str>,
    ) -> Result<Vec<(String, f32)>, StoreError> {
        let Some(expression) = crate::lexical::match_expression(query) else {
            return Ok(Vec::new());
        };
        let (since, until) = range.days();
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT s.id, bm25(story_terms, {BM25_WEIGHTS}) AS rank
             FROM story_terms JOIN stories s ON s.rowid = story_terms.rowid
             WHERE story_terms MATCH ?1
               AND (?2 IS NULL OR s.day >= ?2) AND (?3 IS NULL OR s.day <= ?3)
               AND (?4 IS NULL OR s.digest_id != ?4)
             ORDER BY rank LIMIT ?5"
        ))?;
        let rows = stmt.query_map(
            params![expression, since, until, exclude_digest, count as i64],
            |r| Ok((r.get::<_, String>(0)?, -r.get::<_, f64>(1)? as f32)),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many stories there are, and in how many of them each of `terms` occurs.
    pub fn document_frequencies(
        &self,
        terms: &[String],
    ) -> Result<(usize, HashMap<String, usize>), StoreError> {
        let conn = self.conn();
        let total: i64 = conn.query_row("SELECT COUNT(*) FROM stories", [], |r| r.get(0))?;
        let mut stmt = conn.prepare_cached("SELECT doc FROM story_terms_vocab WHERE term = ?1")?;
        let mut out = HashMap::with_capacity(terms.len());
        for term in terms {
            let doc: Option<i64> = stmt.query_row([term], |r| r.get(0)).optional()?;
            out.insert(term.clone(), doc.unwrap_or(0) as usize);
        }
        Ok((total as usize, out))
    }

    pub fn story_count(&self) -> Result<usize, StoreError> {
        let conn = self.conn();
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM stories", [], |r| r.get(0))?;
        Ok(n as usize)
    }

    /// Bumped by every write; caches of derived data key on it.
    pub fn generation(&self) -> Result<i64, StoreError> {
        generation(&self.conn())
    }

    /// Sets the index's search expansion (`expansion_search`; 64 by default), for
    /// measuring recall against latency at scale.
    pub fn set_search_expansion(&self, n: usize) {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .set_search_expansion(n);
    }

    /// Whether a window search compares every window: it then costs the same for any
    /// count, so callers may ask for many at once instead of widening step by step.
    pub fn searches_exactly(&self, kind: Option<SourceKind>) -> bool {
        let total = self.window_count();
        self.flat
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .scans(kind, total)
    }

    /// Whether any window of `kind` may be published in `range` (no false "no").
    pub fn kind_in_range(&self, kind: SourceKind, range: crate::domain::DateRange) -> bool {
        self.kinds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .may_match(kind, range)
    }

    pub fn window_count(&self) -> usize {
        self.index.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn story(&self, id: &str) -> Result<Option<StoredStory>, StoreError> {
        Ok(self.stories(&[id])?.pop())
    }

    /// The stories with these ids, in the order given; unknown ids are skipped.
    pub fn stories(&self, ids: &[&str]) -> Result<Vec<StoredStory>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(STORY_SELECT_BY_ID)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(story) = stmt.query_row([id], story_from_row).optional()? {
                out.push(story?);
            }
        }
        Ok(out)
    }

    /// The windows of a story with their vectors, in order.
    pub fn story_windows(&self, id: &str) -> Result<Vec<(WindowMeta, Vec<f32>)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT w.start, w.end, w.vector, s.digest_id, s.day, s.ts, d.kind FROM windows w
             JOIN stories s ON s.id = w.story_id JOIN digests d ON d.id = s.digest_id
             WHERE w.story_id = ?1 ORDER BY w.idx",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<u32>>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (start, end, blob, digest_id, day, ts, kind) = row?;
            let meta = WindowMeta {
                story_id: id.into(),
                digest_id: digest_id.into(),
                day,
                ts: ts.unwrap_or(UNDATED_TS),
                start: start as usize,
                end: end as usize,
                kind: parse_kind(&kind)?,
            };
            out.push((meta, blob_to_vector(&blob, self.dimension)?));
        }
        Ok(out)
    }

    /// One vector per story (the normalised mean of its windows) with what clustering
    /// needs.
    pub fn story_vectors(&self) -> Result<Vec<StoryVector>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, digest_id, day, published, url, vector FROM stories ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                StoryVector {
                    id: r.get(0)?,
                    digest_id: r.get(1)?,
                    day: r.get(2)?,
                    published: None,
                    url: r.get(4)?,
                    vector: Vec::new(),
                },
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Vec<u8>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mut story, published, blob) = row?;
            story.published = parse_time_opt(published)?;
            story.vector = blob_to_vector(&blob, self.dimension)?;
            out.push(story);
        }
        Ok(out)
    }

    pub fn digests(&self) -> Result<Vec<StoredDigest>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT d.id, d.kind, d.title, d.published, d.categories, d.source,
                    (SELECT COUNT(*) FROM stories s WHERE s.digest_id = d.id)
             FROM digests d ORDER BY d.published DESC NULLS LAST, d.id",
        )?;
        let rows = stmt.query_map([], digest_from_row)?;
        rows.map(|r| r?).collect()
    }

    pub fn digest(&self, id: &str) -> Result<Option<(StoredDigest, Vec<StoredStory>)>, StoreError> {
        let conn = self.conn();
        let digest = conn
            .query_row(
                "SELECT d.id, d.kind, d.title, d.published, d.categories, d.source,
                        (SELECT COUNT(*) FROM stories s WHERE s.digest_id = d.id)
                 FROM digests d WHERE d.id = ?1",
                [id],
                digest_from_row,
            )
            .optional()?;
        let Some(digest) = digest else {
            return Ok(None);
        };
        let mut stmt = conn.prepare(&format!(
            "{STORY_SELECT} WHERE s.digest_id = ?1 ORDER BY s.position"
        ))?;
        let stories = stmt
            .query_map([id], story_from_row)?
            .map(|r| r?)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((digest?, stories)))
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

const STORY_SELECT: &str = "SELECT s.id, s.digest_id, d.title, s.position, s.headline, s.author,
        s.url, s.published, s.tags, s.display, s.text
    FROM stories s JOIN digests d ON d.id = s.digest_id";
/// [`STORY_SELECT`] without its `FROM`, so a query can add columns (from index 11 on):
/// `format!("{STORY_SELECT_COLUMNS}, extra FROM ...")` is completed by the caller's
/// `FROM stories s JOIN digests d ...`.
const STORY_SELECT_COLUMNS: &str = "SELECT s.id, s.digest_id, d.title, s.position, s.headline,
        s.author, s.url, s.published, s.tags, s.display, s.text";
const STORY_SELECT_BY_ID: &str = "SELECT s.id, s.digest_id, d.title, s.position, s.headline,
        s.author, s.url, s.published, s.tags, s.display, s.text
    FROM stories s JOIN digests d ON d.id = s.digest_id WHERE s.id = ?1";

fn story_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredStory, StoreError>> {
    let tags: String = r.get(8)?;
    let published: Option<String> = r.get(7)?;
    let build = || -> Result<StoredStory, StoreError> {
        Ok(StoredStory {
            id: r.get(0)?,
            digest_id: r.get(1)?,
            digest_title: r.get(2)?,
            position: r.get(3)?,
            headline: r.get(4)?,
            author: r.get(5)?,
            url: r.get(6)?,
            published: parse_time_opt(published)?,
            tags: serde_json::from_str(&tags)?,
            display: r.get(9)?,
            text: r.get(10)?,
        })
    };
    Ok(build())
}

fn digest_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredDigest, StoreError>> {
    let kind: String = r.get(1)?;
    let published: Option<String> = r.get(3)?;
    let categories: String = r.get(4)?;
    let build = || -> Result<StoredDigest, StoreError> {
        Ok(StoredDigest {
            id: r.get(0)?,
            kind: parse_kind(&kind)?,
            title: r.get(2)?,
            published: parse_time_opt(published)?,
            categories: serde_json::from_str(&categories)?,
            source: r.get(5)?,
            stories: r.get::<_, i64>(6)? as usize,
        })
    };
    Ok(build())
}

fn kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Digest => "digest",
        SourceKind::Archive => "archive",
    }
}

fn parse_kind(kind: &str) -> Result<SourceKind, StoreError> {
    match kind {
        "digest" => Ok(SourceKind::Digest),
        "archive" => Ok(SourceKind::Archive),
        other => Err(StoreError::Corrupt(format!("digest kind {other:?}"))),
    }
}

/// The stored kind of a digest (its row is written before its stories).
fn digest_kind(conn: &Connection, digest_id: &str) -> Result<SourceKind, StoreError> {
    let kind: String = conn
        .query_row("SELECT kind FROM digests WHERE id = ?1", [digest_id], |r| {
            r.get(0)
        })
        .map_err(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::Corrupt(format!(
                "stories of digest {digest_id:?} written before the digest"
            )),
            e => e.into(),
        })?;
    parse_kind(&kind)
}

fn check_model(
    conn: &mut Connection,
    dir: &Path,
    model_id: &str,
    dimension: usize,
) -> Result<(), StoreError> {
    let stored: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'model_id'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match stored {
        Some(stored) if stored != model_id => Err(StoreError::ModelMismatch {
            path: dir.to_owned(),
            stored,
            requested: model_id.to_owned(),
        }),
        Some(_) => Ok(()),
        None => {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('model_id', ?1), ('dimension', ?2),
                     ('schema_version', '1'), ('generation', '0')",
                params![model_id, dimension.to_string()],
            )?;
            tx.commit()?;
            Ok(())
        }
    }
}

/// Writes a story's terms; its row must exist (the terms take its rowid). The author
/// (the account a digest item credits: `-sarah guo`, `- Demis Hassabis`) is indexed
/// with the headline: an editor looks a post up by who wrote it.
fn insert_terms(
    conn: &Connection,
    id: &str,
    headline: &str,
    author: Option<&str>,
    text: &str,
) -> Result<(), StoreError> {
    let title = match author {
        Some(author) => format!("{headline} {author}"),
        None => headline.to_owned(),
    };
    conn.prepare_cached(
        "INSERT INTO story_terms (rowid, title, body)
         SELECT rowid, ?2, ?3 FROM stories WHERE id = ?1",
    )?
    .execute(params![
        id,
        crate::lexical::index_text(&title),
        crate::lexical::index_text(text)
    ])?;
    Ok(())
}

fn delete_terms(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "DELETE FROM story_terms WHERE rowid = (SELECT rowid FROM stories WHERE id = ?1)",
    )?
    .execute([id])?;
    Ok(())
}

/// Rebuilds the lexical index from the stories when it was made by another analyzer
/// version, or by a storydex that had none (one transaction: all or nothing).
fn ensure_lexical_index(conn: &mut Connection) -> Result<(), StoreError> {
    let current = crate::lexical::ANALYZER_VERSION.to_string();
    let stored: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'lexical_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if stored.as_deref() == Some(current.as_str()) {
        return Ok(());
    }
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM story_terms", [])?;
    type Row = (String, String, Option<String>, String);
    let stories: Vec<Row> = {
        let mut stmt = tx.prepare("SELECT id, headline, author, text FROM stories")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    if !stories.is_empty() {
        tracing::info!(
            stories = stories.len(),
            "lexical index missing or from another analyzer; rebuilding it"
        );
    }
    for (id, headline, author, text) in &stories {
        insert_terms(&tx, id, headline, author.as_deref(), text)?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('lexical_version', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [&current],
    )?;
    tx.commit()?;
    Ok(())
}

fn generation(conn: &Connection) -> Result<i64, StoreError> {
    let value: String =
        conn.query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
            r.get(0)
        })?;
    value
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("generation {value:?} is not a number")))
}

fn bump_generation(conn: &Connection) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'generation'",
        [],
    )?;
    Ok(())
}

/// A stored story's place in the cluster order.
fn story_key(conn: &Connection, id: &str) -> Result<Option<(i64, String)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(ts, ?2) FROM stories WHERE id = ?1")?
        .query_row(params![id, UNDATED_TS], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|ts| (ts, id.to_owned())))
}

fn add_story_columns(conn: &Connection) -> Result<(), StoreError> {
    let existing: HashSet<String> = {
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('stories')")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for (name, declaration) in STORY_COLUMNS {
        if !existing.contains(name) {
            conn.execute_batch(&format!(
                "ALTER TABLE stories ADD COLUMN {name} {declaration}"
            ))?;
        }
    }
    Ok(())
}

/// Fills `ts` and `vector` of stories stored before those columns existed (one
/// transaction); their clusters are then computed by [`Store::ensure_clusters`].
fn backfill_story_columns(conn: &mut Connection, dimension: usize) -> Result<(), StoreError> {
    let done: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'story_columns'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if done.is_some() {
        return Ok(()); // every write since fills them
    }
    let tx = conn.transaction()?;
    let missing: Vec<(String, Option<String>)> = {
        let mut stmt =
            tx.prepare("SELECT id, published FROM stories WHERE ts IS NULL OR vector IS NULL")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (id, published) in &missing {
        let ts = parse_time_opt(published.clone())?.map_or(UNDATED_TS, |t| t.unix_timestamp());
        let windows: Vec<Vec<f32>> = {
            let mut stmt =
                tx.prepare_cached("SELECT vector FROM windows WHERE story_id = ?1 ORDER BY idx")?;
            let rows = stmt.query_map([id], |r| r.get::<_, Vec<u8>>(0))?;
            let mut out = Vec::new();
            for blob in rows {
                out.push(blob_to_vector(&blob?, dimension)?);
            }
            out
        };
        let vector = crate::embed::mean_unit_vector(windows.iter().map(Vec::as_slice));
        tx.execute(
            "UPDATE stories SET ts = ?2, vector = ?3 WHERE id = ?1",
            params![id, ts, vector_to_blob(&vector)],
        )?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('story_columns', '1')
         ON CONFLICT(key) DO NOTHING",
        [],
    )?;
    tx.commit()?;
    Ok(())
}

fn window_keys(conn: &Connection, story_id: &str) -> Result<Vec<u64>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT key FROM windows WHERE story_id = ?1")?;
    let rows = stmt.query_map([story_id], |r| r.get::<_, i64>(0))?;
    Ok(rows
        .map(|r| r.map(|k| k as u64))
        .collect::<Result<_, _>>()?)
}

/// The exact-search blocks of the kinds with at most [`EXACT_SEARCH_MAX`] windows, from
/// the vectors in SQLite.
fn load_flat(
    conn: &Connection,
    catalog: &HashMap<u64, WindowMeta>,
    dimension: usize,
) -> Result<FlatBlocks, StoreError> {
    let mut counts = [0usize; 2];
    for meta in catalog.values() {
        counts[FlatBlocks::slot(meta.kind)] += 1;
    }
    let mut blocks = FlatBlocks {
        blocks: counts.map(|n| (n <= EXACT_SEARCH_MAX).then(|| flat::FlatIndex::new(dimension))),
    };
    if blocks.blocks.iter().all(Option::is_none) {
        return Ok(blocks);
    }
    let mut stmt = conn.prepare("SELECT key, vector FROM windows")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let key = r.get::<_, i64>(0)? as u64;
        let meta = catalog
            .get(&key)
            .ok_or_else(|| StoreError::Corrupt(format!("window {key} missing from the catalog")))?;
        if let Some(block) = blocks.get_mut(meta.kind) {
            let blob = r.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            block.add(key, meta.clone(), &blob_to_vector(blob, dimension)?);
        }
    }
    Ok(blocks)
}

/// The exact-search blocks, one per source kind ([`flat::FlatIndex`]).
struct FlatBlocks {
    blocks: [Option<flat::FlatIndex>; 2],
}

impl FlatBlocks {
    fn slot(kind: SourceKind) -> usize {
        match kind {
            SourceKind::Digest => 0,
            SourceKind::Archive => 1,
        }
    }

    fn get_mut(&mut self, kind: SourceKind) -> Option<&mut flat::FlatIndex> {
        self.blocks[Self::slot(kind)].as_mut()
    }

    fn drop_oversized(&mut self) {
        for block in &mut self.blocks {
            if block.as_ref().is_some_and(|b| b.len() > EXACT_SEARCH_MAX) {
                *block = None;
            }
        }
    }

    /// Whether a search of `kind` (every kind: `None`) is a scan: that kind has its
    /// block; for every kind, all kinds have theirs and the store is small in all.
    fn scans(&self, kind: Option<SourceKind>, total: usize) -> bool {
        match kind {
            Some(kind) => self.blocks[Self::slot(kind)].is_some(),
            None => total <= EXACT_SEARCH_MAX && self.blocks.iter().all(Option::is_some),
        }
    }

    /// The best `count` windows of `kind` passing `keep` by scanning, or `None` when the
    /// graph must answer ([`FlatBlocks::scans`]).
    fn scan(
        &self,
        kind: Option<SourceKind>,
        total: usize,
        query: &[f32],
        count: usize,
        keep: &impl Fn(&WindowMeta) -> bool,
    ) -> Option<Vec<WindowHit>> {
        if !self.scans(kind, total) {
            return None;
        }
        let mut hits: Vec<WindowHit> = self
            .blocks
            .iter()
            .enumerate()
            .filter(|(slot, _)| kind.is_none_or(|k| Self::slot(k) == *slot))
            .filter_map(|(_, block)| block.as_ref())
            .flat_map(|block| block.search(query, count, keep))
            .map(|(key, score, meta)| WindowHit {
                key,
                score,
                meta: meta.clone(),
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.key.cmp(&b.key)));
        hits.truncate(count);
        Some(hits)
    }
}

/// Every window's [`WindowMeta`]. The map is sized from the count first (growing it
/// rehashed a million entries several times), and ids are shared: a story's windows
/// come one after another, and a digest's ids repeat.
///
/// A large store is read in two halves of the key range at once, the second through its
/// own read-only connection to `db` (SQLite's join, not the map, is most of the time).
fn load_catalog(conn: &Connection, db: &Path) -> Result<HashMap<u64, WindowMeta>, StoreError> {
    // Below this many windows one thread reads them all.
    load_catalog_split(conn, db, 100_000)
}

fn load_catalog_split(
    conn: &Connection,
    db: &Path,
    split_at: i64,
) -> Result<HashMap<u64, WindowMeta>, StoreError> {
    let (low, high, windows): (Option<i64>, Option<i64>, i64) = conn.query_row(
        "SELECT MIN(key), MAX(key), COUNT(*) FROM windows",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (Some(low), Some(high)) = (low, high) else {
        return Ok(HashMap::new());
    };
    let capacity = windows.max(0) as usize;
    if windows < split_at {
        return load_catalog_range(conn, low, high, capacity);
    }
    let middle = low + (high - low) / 2;
    std::thread::scope(|scope| {
        let upper = scope.spawn(move || {
            let other =
                Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            load_catalog_range(&other, middle + 1, high, capacity / 2)
        });
        let mut catalog = load_catalog_range(conn, low, middle, capacity)?;
        let upper = upper
            .join()
            .map_err(|_| StoreError::Corrupt("reading the window catalog panicked".into()))??;
        catalog.extend(upper);
        Ok(catalog)
    })
}

/// The windows with keys in `low..=high`, ids shared as [`load_catalog`] says.
fn load_catalog_range(
    conn: &Connection,
    low: i64,
    high: i64,
    capacity: usize,
) -> Result<HashMap<u64, WindowMeta>, StoreError> {
    let mut catalog = HashMap::with_capacity(capacity);
    // Digests are few beside windows: their kinds are read once, not joined per window.
    let kinds: HashMap<String, SourceKind> = {
        let mut stmt = conn.prepare("SELECT id, kind FROM digests")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut kinds = HashMap::new();
        for row in rows {
            let (id, kind) = row?;
            kinds.insert(id, parse_kind(&kind)?);
        }
        kinds
    };
    let mut digests: HashMap<String, (Arc<str>, SourceKind)> = HashMap::new();
    let mut last_story: Option<Arc<str>> = None;
    let mut stmt = conn.prepare(
        "SELECT w.key, w.story_id, s.digest_id, s.day, w.start, w.end, s.ts
         FROM windows w JOIN stories s ON s.id = w.story_id
         WHERE w.key BETWEEN ?1 AND ?2",
    )?;
    let mut rows = stmt.query([low, high])?;
    while let Some(r) = rows.next()? {
        let story = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
        let story_id = match &last_story {
            Some(last) if &**last == story => Arc::clone(last),
            _ => {
                let id: Arc<str> = Arc::from(story);
                last_story = Some(Arc::clone(&id));
                id
            }
        };
        let digest = r.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?;
        let (digest_id, kind) = match digests.get(digest) {
            Some((id, kind)) => (Arc::clone(id), *kind),
            None => {
                let id: Arc<str> = Arc::from(digest);
                let kind = *kinds.get(digest).ok_or_else(|| {
                    StoreError::Corrupt(format!("window of unknown digest {digest:?}"))
                })?;
                digests.insert(digest.to_owned(), (Arc::clone(&id), kind));
                (id, kind)
            }
        };
        catalog.insert(
            r.get::<_, i64>(0)? as u64,
            WindowMeta {
                story_id,
                digest_id,
                day: r.get(3)?,
                ts: r.get::<_, Option<i64>>(6)?.unwrap_or(UNDATED_TS),
                start: r.get::<_, i64>(4)? as usize,
                end: r.get::<_, i64>(5)? as usize,
                kind,
            },
        );
    }
    Ok(catalog)
}

/// `YYYYMMDD` of a time in its own offset: a digest published at 00:00 +08:00 belongs
/// to that local day, as its title says.
pub fn day_of(t: OffsetDateTime) -> u32 {
    t.year() as u32 * 10_000 + u8::from(t.month()) as u32 * 100 + t.day() as u32
}

fn format_time(t: OffsetDateTime) -> Result<String, StoreError> {
    t.format(&Rfc3339)
        .map_err(|e| StoreError::Corrupt(format!("time {t} cannot be formatted: {e}")))
}

fn parse_time_opt(s: Option<String>) -> Result<Option<OffsetDateTime>, StoreError> {
    s.map(|s| {
        OffsetDateTime::parse(&s, &Rfc3339)
            .map_err(|e| StoreError::Corrupt(format!("stored time {s:?}: {e}")))
    })
    .transpose()
}

fn vector_to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn blob_to_vector(blob: &[u8], dimension: usize) -> Result<Vec<f32>, StoreError> {
    if blob.len() != dimension * 4 {
        return Err(StoreError::Corrupt(format!(
            "stored vector has {} bytes, expected {}",
            blob.len(),
            dimension * 4
        )));
    }
    Ok(blob
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_small_enough_is_scanned_beside_a_kind_that_is_not() {
        let mut blocks = FlatBlocks {
            blocks: [None, Some(flat::FlatIndex::new(2))],
        };
        let archive = WindowMeta {
            story_id: "e".into(),
            digest_id: "a".into(),
            day: None,
            ts: 0,
            start: 0,
            end: 1,
            kind: SourceKind::Archive,
        };
        blocks
            .get_mut(SourceKind::Archive)
            .unwrap()
            .add(7, archive, &[1.0, 0.0]);
        let total = EXACT_SEARCH_MAX + 100;
        assert!(blocks.scans(Some(SourceKind::Archive), total));
        assert!(!blocks.scans(Some(SourceKind::Digest), total));
        assert!(!blocks.scans(None, total), "all kinds: the graph");
        let hits = blocks
            .scan(Some(SourceKind::Archive), total, &[1.0, 0.0], 5, &|_| true)
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].key, 7);
        assert!(blocks
            .scan(None, total, &[1.0, 0.0], 5, &|_| true)
            .is_none());
    }

    #[test]
    fn kind_spans_say_which_kinds_a_date_range_can_hold() {
        use crate::domain::DateRange;
        let meta = |kind, day| WindowMeta {
            story_id: "s".into(),
            digest_id: "d".into(),
            day,
            ts: 0,
            start: 0,
            end: 1,
            kind,
        };
        let january = meta(SourceKind::Digest, Some(20260106));
        let undated = meta(SourceKind::Archive, None);
        let mut spans = KindSpans::of([&january, &undated].into_iter());
        let range = |a, b| DateRange::parse(Some(a), Some(b)).unwrap();
        assert!(spans.may_match(SourceKind::Digest, DateRange::ALL));
        assert!(spans.may_match(SourceKind::Digest, range("2026-01-01", "2026-01-06")));
        assert!(!spans.may_match(SourceKind::Digest, range("2026-01-07", "2026-02-01")));
        // Undated windows never match a bounded range.
        assert!(spans.may_match(SourceKind::Archive, DateRange::ALL));
        assert!(!spans.may_match(SourceKind::Archive, range("2026-01-01", "2026-12-31")));
        spans.remove(&undated);
        assert!(!spans.may_match(SourceKind::Archive, DateRange::ALL));
    }

    #[test]
    fn vectors_round_trip_through_blobs() {
        let v = vec![0.25, -1.5, 3.0];
        assert_eq!(blob_to_vector(&vector_to_blob(&v), 3).unwrap(), v);
        assert!(blob_to_vector(&vector_to_blob(&v), 4).is_err());
    }

    #[test]
    fn day_uses_the_local_date_of_the_offset() {
        let t = OffsetDateTime::parse("2026-01-07T00:00:10+08:00", &Rfc3339).unwrap();
        assert_eq!(day_of(t), 20260107);
    }

    #[test]
    fn the_catalog_read_in_two_halves_equals_the_catalog_read_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let encoder = std::sync::Arc::new(crate::embed::fake::FakeEncoder::new(8));
        let model = crate::embed::Encoder::model_id(encoder.as_ref()).to_owned();
        let store = std::sync::Arc::new(Store::open(dir.path(), &model, 8).unwrap());
        let service = crate::service::Service::new(std::sync::Arc::clone(&store), encoder, 0.9);
        for (day, items) in [
            ("06", ["Atlas enters the factory", "Rubin ships"]),
            ("07", ["Gemini Robotics", "GPT-5 review"]),
        ] {
            let mut text =
                format!("---\ntitle: \"t\"\ndate: 2026-01-{day}T12:00:00+08:00\n---\n\n");
            for (i, item) in items.iter().enumerate() {
                text.push_str(&format!(
                    "{}.  [{item}](https://example.com/{day}/{i})\n\n    {item}.\n\n",
                    i + 1
                ));
            }
            service.ingest_text(&format!("{day}.md"), &text).unwrap();
        }
        let conn = store.conn();
        let db = dir.path().join(DB_FILE);
        let flat = |c: HashMap<u64, WindowMeta>| {
            let mut v: Vec<_> = c
                .into_iter()
                .map(|(k, m)| {
                    (
                        k,
                        m.story_id.to_string(),
                        m.digest_id.to_string(),
                        m.day,
                        m.ts,
                        m.start,
                        m.end,
                    )
                })
                .collect();
            v.sort();
            v
        };
        let whole = flat(load_catalog_split(&conn, &db, i64::MAX).unwrap());
        let halves = flat(load_catalog_split(&conn, &db, 1).unwrap());
        assert_eq!(whole.len(), 4);
        assert_eq!(halves, whole);
    }

    #[test]
    fn opening_a_store_with_another_model_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), "model-a@3", 3).unwrap());
        let err = Store::open(dir.path(), "model-b@3", 3).err().unwrap();
        assert!(matches!(err, StoreError::ModelMismatch { .. }), "{err}");
        assert!(err.to_string().contains("model-a@3"));
    }
}
