//! Row codecs: stories and digests as SQLite rows (one column list for every story
//! query), kinds, times and vectors as stored values.
//!
//! Owns: how each value is written and read back. Must not: run queries of its own.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{StoreError, StoredDigest, StoredStory};
use crate::corpus::SourceKind;

/// The columns [`story_from_row`] reads, in its order (`s`: stories, `d`: digests).
macro_rules! story_columns {
    () => {
        "s.id, s.digest_id, d.title, s.position, s.headline, s.author, s.url, s.published, \
         s.tags, s.display, s.text"
    };
}

/// The stories with their digests' titles; callers add `WHERE` and `ORDER BY`.
pub(super) const STORY_SELECT: &str = concat!(
    "SELECT ",
    story_columns!(),
    " FROM stories s JOIN digests d ON d.id = s.digest_id"
);
/// [`STORY_SELECT`] without its `FROM`, so a query can add columns (from index 11 on):
/// `format!("{STORY_SELECT_COLUMNS}, extra FROM ...")` is completed by the caller's
/// `FROM stories s JOIN digests d ...`.
pub(super) const STORY_SELECT_COLUMNS: &str = concat!("SELECT ", story_columns!());
/// One story by id.
pub(super) const STORY_SELECT_BY_ID: &str = concat!(
    "SELECT ",
    story_columns!(),
    " FROM stories s JOIN digests d ON d.id = s.digest_id WHERE s.id = ?1"
);

pub(super) fn story_from_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<StoredStory, StoreError>> {
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

pub(super) fn digest_from_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<StoredDigest, StoreError>> {
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

pub(super) fn kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Digest => "digest",
        SourceKind::Archive => "archive",
    }
}

pub(super) fn parse_kind(kind: &str) -> Result<SourceKind, StoreError> {
    match kind {
        "digest" => Ok(SourceKind::Digest),
        "archive" => Ok(SourceKind::Archive),
        other => Err(StoreError::Corrupt(format!("digest kind {other:?}"))),
    }
}

/// `YYYYMMDD` of a time in its own offset: a digest published at 00:00 +08:00 belongs
/// to that local day, as its title says.
pub fn day_of(t: OffsetDateTime) -> u32 {
    t.year() as u32 * 10_000 + u8::from(t.month()) as u32 * 100 + t.day() as u32
}

pub(super) fn format_time(t: OffsetDateTime) -> Result<String, StoreError> {
    t.format(&Rfc3339)
        .map_err(|e| StoreError::Corrupt(format!("time {t} cannot be formatted: {e}")))
}

pub(super) fn parse_time_opt(s: Option<String>) -> Result<Option<OffsetDateTime>, StoreError> {
    s.map(|s| {
        OffsetDateTime::parse(&s, &Rfc3339)
            .map_err(|e| StoreError::Corrupt(format!("stored time {s:?}: {e}")))
    })
    .transpose()
}

pub(super) fn vector_to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(super) fn blob_to_vector(blob: &[u8], dimension: usize) -> Result<Vec<f32>, StoreError> {
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
}
