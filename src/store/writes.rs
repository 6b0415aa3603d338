//! Writing digests and stories: one transaction per batch (rows, windows, terms and
//! the duplicate clusters they change), then the vector index.
//!
//! Owns: the write order (SQLite first, then the index) and what a removed story takes
//! with it. Must not: embed (callers hand in windows with their vectors).

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};

use super::clusters::{self, UNDATED_TS};
use super::fts::{delete_terms, insert_terms};
use super::rows::{day_of, format_time, kind_name, parse_kind, vector_to_blob};
use super::schema::bump_generation;
use super::{NewStory, Store, StoreError, WindowMeta};
use crate::corpus::{Digest, SourceKind};

impl Store {
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
            let vector = crate::embed::story_vector(&new.windows);
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
    /// Deletes a digest and all its stories (their windows, terms and index entries),
    /// re-running the cluster assignment after them. Returns how many stories went.
    pub fn remove_digest(
        &self,
        digest_id: &str,
        clustering: &crate::cluster::Params,
    ) -> Result<usize, StoreError> {
        let removed = self.retain_stories(digest_id, &HashSet::new(), clustering)?;
        // The digest row is not in the index: no new generation.
        self.conn()
            .execute("DELETE FROM digests WHERE id = ?1", [digest_id])?;
        Ok(removed)
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

/// A stored story's place in the cluster order.
fn story_key(conn: &Connection, id: &str) -> Result<Option<(i64, String)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(ts, ?2) FROM stories WHERE id = ?1")?
        .query_row(params![id, UNDATED_TS], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|ts| (ts, id.to_owned())))
}

pub(super) fn window_keys(conn: &Connection, story_id: &str) -> Result<Vec<u64>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT key FROM windows WHERE story_id = ?1")?;
    let rows = stmt.query_map([story_id], |r| r.get::<_, i64>(0))?;
    Ok(rows
        .map(|r| r.map(|k| k as u64))
        .collect::<Result<_, _>>()?)
}
