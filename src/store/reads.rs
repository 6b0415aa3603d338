//! Reading stored stories, digests, windows and vectors.
//!
//! Owns: the read queries callers use. Must not: write.

use std::collections::HashMap;

use rusqlite::OptionalExtension;

use super::clusters::UNDATED_TS;
use super::rows::{
    blob_to_vector, digest_from_row, parse_kind, parse_time_opt, story_from_row, STORY_SELECT,
    STORY_SELECT_BY_ID,
};
use super::{generation, Store, StoreError, StoredDigest, StoredStory, StoryVector, WindowMeta};

impl Store {
    /// Content hashes of the stories already stored for `digest_id`.
    pub fn story_hashes(&self, digest_id: &str) -> Result<HashMap<String, String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, content_hash FROM stories WHERE digest_id = ?1")?;
        let rows = stmt.query_map([digest_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
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
