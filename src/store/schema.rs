//! The SQLite schema and its migrations: tables, columns added since the first release
//! and their backfill, the model a store was built with, the write generation.
//!
//! Owns: everything [`Store::open`](super::Store::open) does to a database before it is
//! used. Must not: read or write stories for callers.

use std::collections::HashSet;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::clusters::UNDATED_TS;
use super::rows::{blob_to_vector, parse_time_opt, vector_to_blob};
use super::{fts, StoreError};

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

/// Creates or upgrades the schema of the database in `dir` and checks it belongs to
/// `model_id`.
pub(super) fn migrate(
    conn: &mut Connection,
    dir: &Path,
    model_id: &str,
    dimension: usize,
) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(&fts::lexical_schema())?;
    add_story_columns(conn)?;
    conn.execute_batch(STORY_INDEXES)?;
    check_model(conn, dir, model_id, dimension)?;
    backfill_story_columns(conn, dimension)?;
    fts::ensure_lexical_index(conn)
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

pub(super) fn generation(conn: &Connection) -> Result<i64, StoreError> {
    let value: String =
        conn.query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
            r.get(0)
        })?;
    value
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("generation {value:?} is not a number")))
}

pub(super) fn bump_generation(conn: &Connection) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'generation'",
        [],
    )?;
    Ok(())
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
        let vector = crate::vector::mean_unit_vector(windows.iter().map(Vec::as_slice));
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
