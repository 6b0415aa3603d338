//! The window catalog: every window key's story, digest, day and kind in memory, so a
//! search filters without SQL; the per-kind day spans; the exact-search blocks of small
//! kinds; and keeping all of them and the vector index in step with SQLite.
//!
//! Owns: loading the catalog, searching windows (a scan or the HNSW graph), and applying
//! a write's removed and added windows. Must not: write SQLite.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;

use super::clusters::UNDATED_TS;
use super::coded::{Prefilter, SignCodes};
use super::index::VectorIndex;
use super::rows::{blob_to_vector, parse_kind};
use super::{flat, LargeSearch, Store, StoreError, WindowHit};
use crate::corpus::SourceKind;
use crate::domain::DateRange;

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
pub(super) struct KindSpans {
    digest: KindSpan,
    archive: KindSpan,
}

impl KindSpans {
    pub(super) fn of<'a>(metas: impl Iterator<Item = &'a WindowMeta>) -> Self {
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

    pub(super) fn add(&mut self, meta: &WindowMeta) {
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

    /// Whether any window has no day.
    pub(super) fn has_undated(&self) -> bool {
        [self.digest, self.archive]
            .iter()
            .any(|span| span.windows > span.dated)
    }

    pub(super) fn remove(&mut self, meta: &WindowMeta) {
        let span = self.span(meta.kind);
        span.windows = span.windows.saturating_sub(1);
        if meta.day.is_some() {
            span.dated = span.dated.saturating_sub(1);
        }
    }

    pub(super) fn may_match(&self, kind: SourceKind, range: crate::domain::DateRange) -> bool {
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

/// The exact-search blocks of the kinds with at most [`super::EXACT_SEARCH_MAX`] windows, from
/// the vectors in SQLite.
pub(super) fn load_flat(
    conn: &Connection,
    catalog: &HashMap<u64, WindowMeta>,
    dimension: usize,
    max: usize,
) -> Result<FlatBlocks, StoreError> {
    let mut counts = [0usize; 2];
    for meta in catalog.values() {
        counts[FlatBlocks::slot(meta.kind)] += 1;
    }
    let mut blocks = FlatBlocks {
        blocks: counts.map(|n| (n <= max).then(|| flat::FlatIndex::new(dimension))),
        max,
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

/// The best `count` of (score, key), best first by score, ties by key.
fn best_first(mut hits: Vec<(f32, u64)>, count: usize) -> Vec<(f32, u64)> {
    let order = |a: &(f32, u64), b: &(f32, u64)| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1));
    if count == 0 {
        return Vec::new();
    }
    if hits.len() > count {
        hits.select_nth_unstable_by(count - 1, order);
        hits.truncate(count);
    }
    hits.sort_unstable_by(order);
    hits
}

/// Sign codes of every window in `catalog`, around the mean of their vectors (read back
/// from the index, twice: the mean first, then the codes).
pub(super) fn build_codes(
    index: &VectorIndex,
    catalog: &HashMap<u64, WindowMeta>,
    dimension: usize,
) -> Result<SignCodes, StoreError> {
    let mut vector = vec![0.0f32; dimension];
    let mut sum = vec![0.0f64; dimension];
    for &key in catalog.keys() {
        if !index.get(key, &mut vector)? {
            return Err(StoreError::Corrupt(format!(
                "window {key} missing from the index"
            )));
        }
        sum.iter_mut()
            .zip(&vector)
            .for_each(|(s, &x)| *s += f64::from(x));
    }
    let n = catalog.len().max(1) as f64;
    let mut codes = SignCodes::new(sum.iter().map(|s| (s / n) as f32).collect());
    for (&key, meta) in catalog {
        index.get(key, &mut vector)?;
        codes.add(key, FlatBlocks::slot(meta.kind) as u8, meta.day, &vector);
    }
    Ok(codes)
}

/// The exact-search blocks, one per source kind ([`flat::FlatIndex`]).
pub(super) struct FlatBlocks {
    pub(super) blocks: [Option<flat::FlatIndex>; 2],
    /// Windows of a kind past which it is no longer scanned ([`super::EXACT_SEARCH_MAX`]).
    pub(super) max: usize,
}

impl FlatBlocks {
    pub(super) fn slot(kind: SourceKind) -> usize {
        match kind {
            SourceKind::Digest => 0,
            SourceKind::Archive => 1,
        }
    }

    pub(super) fn get_mut(&mut self, kind: SourceKind) -> Option<&mut flat::FlatIndex> {
        self.blocks[Self::slot(kind)].as_mut()
    }

    pub(super) fn drop_oversized(&mut self) {
        for block in &mut self.blocks {
            if block.as_ref().is_some_and(|b| b.len() > self.max) {
                *block = None;
            }
        }
    }

    /// Whether a search of `kind` (every kind: `None`) is a scan: that kind has its
    /// block; for every kind, all kinds have theirs and the store is small in all.
    pub(super) fn scans(&self, kind: Option<SourceKind>, total: usize) -> bool {
        match kind {
            Some(kind) => self.blocks[Self::slot(kind)].is_some(),
            None => total <= self.max && self.blocks.iter().all(Option::is_some),
        }
    }

    /// The best `count` windows of `kind` passing `keep` by scanning, or `None` when the
    /// graph must answer ([`FlatBlocks::scans`]).
    pub(super) fn scan(
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
pub(super) fn load_catalog(
    conn: &Connection,
    db: &Path,
) -> Result<HashMap<u64, WindowMeta>, StoreError> {
    // Below this many windows one thread reads them all.
    load_catalog_split(conn, db, 100_000)
}

pub(super) fn load_catalog_split(
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
pub(super) fn load_catalog_range(
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

impl Store {
    pub(super) fn apply_to_index(
        &self,
        removed: &[u64],
        added: Vec<(u64, WindowMeta, &Vec<f32>)>,
    ) -> Result<(), StoreError> {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        let mut catalog = self.catalog.write().unwrap_or_else(|p| p.into_inner());
        let mut kinds = self.kinds.write().unwrap_or_else(|p| p.into_inner());
        let mut flat = self.flat.write().unwrap_or_else(|p| p.into_inner());
        let mut coded = self.coded.write().unwrap_or_else(|p| p.into_inner());
        for key in removed {
            index.remove(*key)?;
            if let Some(codes) = coded.as_mut() {
                codes.remove(*key);
            }
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
            if let Some(codes) = coded.as_mut() {
                codes.add(key, FlatBlocks::slot(meta.kind) as u8, meta.day, vector);
            }
            catalog.insert(key, meta);
        }
        // A kind grown past a scan: sign codes answer for it from now on.
        flat.drop_oversized();
        if coded.is_none() && !flat.scans(None, catalog.len()) {
            *coded = Some(build_codes(&index, &catalog, self.dimension)?);
        }
        Ok(())
    }

    /// Nearest windows to `query` of `kind` (all: `None`) in `range` among those `keep`
    /// accepts, best first by cosine, ties by key.
    pub fn search_windows(
        &self,
        query: &[f32],
        count: usize,
        kind: Option<SourceKind>,
        range: DateRange,
        keep: impl Fn(&WindowMeta) -> bool,
    ) -> Result<Vec<WindowHit>, StoreError> {
        Ok(self
            .search_windows_many(&[query], count, kind, range, keep)?
            .pop()
            .unwrap_or_default())
    }

    /// [`Store::search_windows`] for each of `queries` (a story's windows): past an exact
    /// scan, the sign codes are read once for all of them.
    pub fn search_windows_many(
        &self,
        queries: &[&[f32]],
        count: usize,
        kind: Option<SourceKind>,
        range: DateRange,
        keep: impl Fn(&WindowMeta) -> bool,
    ) -> Result<Vec<Vec<WindowHit>>, StoreError> {
        if let Some(q) = queries.iter().find(|q| q.len() != self.dimension) {
            return Err(StoreError::Dimension {
                expected: self.dimension,
                got: q.len(),
            });
        }
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let catalog = self.catalog.read().unwrap_or_else(|p| p.into_inner());
        self.search_held(&index, &catalog, queries, count, kind, range, keep)
    }

    /// [`Store::search_windows_many`] for a caller already holding the index and catalog
    /// (read) locks.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn search_held(
        &self,
        index: &VectorIndex,
        catalog: &HashMap<u64, WindowMeta>,
        queries: &[&[f32]],
        count: usize,
        kind: Option<SourceKind>,
        range: DateRange,
        keep: impl Fn(&WindowMeta) -> bool,
    ) -> Result<Vec<Vec<WindowHit>>, StoreError> {
        let passes = |m: &WindowMeta| {
            kind.is_none_or(|k| m.kind == k) && range.contains_day(m.day) && keep(m)
        };
        let blocks = self.flat.read().unwrap_or_else(|p| p.into_inner());
        let scanned: Option<Vec<_>> = queries
            .iter()
            .map(|q| blocks.scan(kind, catalog.len(), q, count, &passes))
            .collect();
        if let Some(scanned) = scanned {
            return Ok(scanned);
        }
        drop(blocks);
        let large = *self.large.read().unwrap_or_else(|p| p.into_inner());
        let coded = self.coded.read().unwrap_or_else(|p| p.into_inner());
        if let (LargeSearch::Rescored { depth }, Some(codes)) = (large, coded.as_ref()) {
            let depth = LargeSearch::depth_for(depth, count);
            let filter = Prefilter::new(kind.map(|k| FlatBlocks::slot(k) as u8), range);
            let candidates = codes.candidates_many(queries, depth, filter, |key| {
                catalog.get(&key).is_some_and(&passes)
            });
            drop(coded);
            let mut vector = vec![0.0f32; self.dimension];
            let mut out = Vec::with_capacity(queries.len());
            for (query, keys) in queries.iter().zip(candidates) {
                let mut scored = Vec::with_capacity(keys.len());
                for key in keys {
                    if index.get(key, &mut vector)? {
                        scored.push((crate::vector::dot_lanes(query, &vector), key));
                    }
                }
                let hits = best_first(scored, count)
                    .into_iter()
                    .filter_map(|(score, key)| {
                        catalog.get(&key).map(|meta| WindowHit {
                            key,
                            score,
                            meta: meta.clone(),
                        })
                    })
                    .collect();
                out.push(hits);
            }
            return Ok(out);
        }
        drop(coded);
        queries
            .iter()
            .map(|q| {
                let hits = index.search(q, count, |key| catalog.get(&key).is_some_and(&passes))?;
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
            })
            .collect()
    }

    /// Whether a window search compares every window (exactly, or by its sign code
    /// before exact re-scoring): it then costs about the same for any count, so callers
    /// may ask for many at once instead of widening step by step.
    pub fn searches_exactly(&self, kind: Option<SourceKind>) -> bool {
        let total = self.window_count();
        let scans = self
            .flat
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .scans(kind, total);
        scans
            || (matches!(
                *self.large.read().unwrap_or_else(|p| p.into_inner()),
                LargeSearch::Rescored { .. }
            ) && self
                .coded
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .is_some())
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
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::store::DB_FILE;

    #[test]
    fn a_kind_small_enough_is_scanned_beside_a_kind_that_is_not() {
        let mut blocks = FlatBlocks {
            blocks: [None, Some(flat::FlatIndex::new(2))],
            max: crate::store::EXACT_SEARCH_MAX,
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
        let total = crate::store::EXACT_SEARCH_MAX + 100;
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
    fn the_catalog_read_in_two_halves_equals_the_catalog_read_at_once() {
        use crate::embed::Encoder;

        let dir = tempfile::tempdir().unwrap();
        let encoder = crate::embed::fake::FakeEncoder::new(8);
        let store = Store::open(dir.path(), encoder.model_id(), 8).unwrap();
        let clustering = crate::cluster::Params::with_threshold(0.9);
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
            let parsed = crate::corpus::parse_str(&format!("{day}.md"), &text).unwrap();
            store.put_digest(&parsed.digest).unwrap();
            let texts: Vec<&str> = parsed.stories.iter().map(|s| s.text.as_str()).collect();
            let windows = encoder.embed_passages(&texts).unwrap();
            let batch: Vec<crate::store::NewStory<'_>> = parsed
                .stories
                .iter()
                .zip(windows)
                .map(|(story, windows)| crate::store::NewStory {
                    story,
                    hash: story.id.clone(),
                    windows,
                })
                .collect();
            store.put_stories(&batch, &clustering).unwrap();
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
    fn past_the_exact_scan_sign_codes_and_exact_rescoring_find_the_true_neighbours() {
        use crate::corpus::{Digest, Story};
        use time::macros::datetime;

        const DIM: usize = 32;
        let dir = tempfile::tempdir().unwrap();
        let open = || Store::open_with(dir.path(), "m@32", DIM, true, 300).unwrap();
        let store = open();
        let vectors = crate::store::coded::tests::crowded(1200, DIM);
        let clustering = crate::cluster::Params::with_threshold(0.999);
        // 30 digests of 40 stories, one a day from 2025-01-01.
        for d in 0..30 {
            let published = datetime!(2025-01-01 12:00 UTC) + time::Duration::days(d as i64);
            let digest = Digest {
                id: format!("d{d:02}"),
                kind: SourceKind::Digest,
                title: "t".into(),
                published: Some(published),
                categories: Vec::new(),
                source: format!("{d}.md"),
            };
            store.put_digest(&digest).unwrap();
            let stories: Vec<Story> = (0..40)
                .map(|i| Story {
                    id: format!("s{:04}", d * 40 + i),
                    digest_id: digest.id.clone(),
                    position: i as u32 + 1,
                    headline: "h".into(),
                    author: None,
                    url: None,
                    published: Some(published),
                    tags: Vec::new(),
                    display: "x".into(),
                    text: "x".into(),
                })
                .collect();
            let batch: Vec<crate::store::NewStory<'_>> = stories
                .iter()
                .enumerate()
                .map(|(i, story)| crate::store::NewStory {
                    story,
                    hash: story.id.clone(),
                    windows: vec![crate::embed::Window {
                        start: 0,
                        end: 1,
                        tokens: 1,
                        vector: vectors[d * 40 + i].clone(),
                    }],
                })
                .collect();
            store.put_stories(&batch, &clustering).unwrap();
        }
        assert!(!store.flat.read().unwrap().scans(None, 1200));
        assert!(
            store.searches_exactly(None),
            "codes and re-scoring count as a scan"
        );
        let vector_of = |id: &str| &vectors[id[1..].parse::<usize>().unwrap()];
        let exact = |q: &[f32], range: DateRange| -> Vec<String> {
            let mut all: Vec<(f32, String)> = (0..1200)
                .filter(|i| range.contains_day(Some(20250101 + (i / 40) as u32)))
                .map(|i| (crate::vector::dot(q, &vectors[i]), format!("s{i:04}")))
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0));
            all.into_iter().take(10).map(|x| x.1).collect()
        };
        let week = DateRange::parse(Some("2025-01-08"), Some("2025-01-14")).unwrap();
        let answers = |store: &Store| -> (usize, Vec<Vec<String>>) {
            let (mut found, mut lists) = (0, Vec::new());
            for (n, q) in vectors.iter().step_by(61).enumerate() {
                let range = if n % 2 == 0 { DateRange::ALL } else { week };
                let hits = store.search_windows(q, 10, None, range, |_| true).unwrap();
                assert_eq!(hits.len(), 10);
                for h in &hits {
                    // Scores are exact cosines, and the range holds.
                    let cosine = crate::vector::dot(q, vector_of(&h.meta.story_id));
                    assert!((h.score - cosine).abs() < 1e-5);
                    assert!(range.contains_day(h.meta.day));
                }
                let ids: Vec<String> = hits.iter().map(|h| h.meta.story_id.to_string()).collect();
                found += exact(q, range).iter().filter(|id| ids.contains(id)).count();
                lists.push(ids);
            }
            (found, lists)
        };
        // A shallow depth, so that the codes, not a full re-scoring, pick the candidates.
        store.set_large_search(LargeSearch::Rescored { depth: 64 });
        let (found, first) = answers(&store);
        assert!(found >= 190, "{found} of 200 true neighbours");
        store.save_index().unwrap();
        drop(store);
        // Reopened from the codes file, and rebuilt without it: the same answers.
        let store = open();
        store.set_large_search(LargeSearch::Rescored { depth: 64 });
        assert_eq!(answers(&store).1, first);
        drop(store);
        std::fs::remove_file(dir.path().join(super::super::CODES_FILE)).unwrap();
        let store = open();
        store.set_large_search(LargeSearch::Rescored { depth: 64 });
        assert_eq!(answers(&store).1, first);
        // A removed digest is gone from the codes too.
        store.remove_digest("d00", &clustering).unwrap();
        let hits = store
            .search_windows(&vectors[3], 50, None, DateRange::ALL, |_| true)
            .unwrap();
        assert!(hits.iter().all(|h| &*h.meta.digest_id != "d00"));
        let best_left = (40..1200)
            .max_by(|&a, &b| {
                crate::vector::dot(&vectors[3], &vectors[a])
                    .total_cmp(&crate::vector::dot(&vectors[3], &vectors[b]))
            })
            .unwrap();
        assert_eq!(*hits[0].meta.story_id, format!("s{best_left:04}"));
    }
}
