//! The usearch HNSW index over window vectors, derived from SQLite and rebuildable
//! (small stores are searched exactly instead: [`super::flat`]).
//!
//! Owns: the index file, its atomic save (temp file, fsync, rename) and the sidecar that
//! says which store generation and model it reflects. Must not: be trusted over SQLite;
//! on any doubt the caller rebuilds it.
//!
//! Locking: usearch has crash reports under concurrent add + search (unum-cloud/USearch
//! #389, #548), so the store wraps this type in an `RwLock`: searches share a read lock,
//! adds/removes/saves take the write lock. Nothing here locks on its own.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::StoreError;

pub(crate) struct VectorIndex {
    index: Index,
    dimension: usize,
    /// usearch keeps one search context per reserved thread and fails a search when all
    /// are taken ("Reserve capacity ahead of searches!"), so concurrent searches (under
    /// the store's read lock) wait here for a free context instead.
    contexts: Contexts,
    /// The file this index is a read-only memory-mapped view of, until the first change
    /// reads it into memory ([`VectorIndex::make_writable`]). Opening a million-window
    /// store this way takes milliseconds instead of reading 1.7 GB; searches read the
    /// pages they touch.
    viewed: Option<PathBuf>,
}

/// Search contexts reserved in every index; more concurrent searches than this wait.
const SEARCH_CONTEXTS: usize = 32;

/// A counting semaphore for blocking threads.
struct Contexts {
    free: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Contexts {
    fn new(n: usize) -> Self {
        Self {
            free: std::sync::Mutex::new(n),
            freed: std::sync::Condvar::new(),
        }
    }

    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            while *free == 0 {
                free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
            }
            *free -= 1;
        }
        let out = f();
        *self.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.freed.notify_one();
        out
    }
}

/// Written next to the index file; the index is only used when this matches SQLite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct IndexStamp {
    pub(crate) model_id: String,
    pub(crate) generation: i64,
    pub(crate) size: usize,
}

fn usearch_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Index(e.to_string())
}

impl VectorIndex {
    pub(crate) fn new(dimension: usize) -> Result<Self, StoreError> {
        let options = IndexOptions {
            dimensions: dimension,
            metric: MetricKind::Cos,
            quantization: ScalarKind::F32,
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 64,
            multi: false,
        };
        let index = Index::new(&options).map_err(usearch_error)?;
        index
            .reserve_capacity_and_threads(1024, SEARCH_CONTEXTS)
            .map_err(usearch_error)?;
        Ok(Self {
            index,
            dimension,
            contexts: Contexts::new(SEARCH_CONTEXTS),
            viewed: None,
        })
    }

    /// Opens `path` as a read-only view if its stamp matches `expected`; `Ok(None)`
    /// means "rebuild". The first change reads it into memory.
    pub(crate) fn load_if_current(
        path: &Path,
        dimension: usize,
        expected: &IndexStamp,
    ) -> Result<Option<Self>, StoreError> {
        let stamp_path = stamp_path(path);
        let Ok(stamp_text) = std::fs::read_to_string(&stamp_path) else {
            return Ok(None);
        };
        let Ok(stamp) = serde_json::from_str::<IndexStamp>(&stamp_text) else {
            return Ok(None);
        };
        if &stamp != expected || !path.is_file() {
            return Ok(None);
        }
        let mut index = Self::new(dimension)?;
        if index.index.view(&path.to_string_lossy()).is_err()
            || index.index.size() != expected.size
            || index.index.dimensions() != dimension
        {
            return Ok(None);
        }
        // A writer may have saved a newer index between the stamp read and the load:
        // only a stamp that did not change vouches for what was loaded.
        if std::fs::read_to_string(&stamp_path).ok().as_deref() != Some(stamp_text.as_str()) {
            return Ok(None);
        }
        // Viewing replaces the reservation: make room for the search contexts again.
        index
            .index
            .reserve_capacity_and_threads(expected.size, SEARCH_CONTEXTS)
            .map_err(usearch_error)?;
        index.viewed = Some(path.to_owned());
        Ok(Some(index))
    }

    /// Reads a viewed index into memory so that it can change; nothing to do when it
    /// already is in memory. The view's file is the one it was opened from (the store's
    /// lock keeps other writers away, and saves replace the file by renaming, which
    /// leaves the mapped one in place).
    fn make_writable(&mut self) -> Result<(), StoreError> {
        let Some(path) = self.viewed.take() else {
            return Ok(());
        };
        let size = self.index.size();
        let loaded = Self::new(self.dimension)?.index;
        let restore = |e: StoreError, this: &mut Self| {
            this.viewed = Some(path.clone());
            e
        };
        if let Err(e) = loaded.load(&path.to_string_lossy()) {
            return Err(restore(usearch_error(e), self));
        }
        if loaded.size() != size {
            let e = StoreError::Index(format!(
                "{} changed under its view ({size} windows, now {})",
                path.display(),
                loaded.size()
            ));
            return Err(restore(e, self));
        }
        loaded
            .reserve_capacity_and_threads(size.max(1024), SEARCH_CONTEXTS)
            .map_err(usearch_error)?;
        loaded.change_expansion_search(self.index.expansion_search());
        self.index = loaded;
        Ok(())
    }

    /// Whether the index is still a read-only view of its file.
    #[cfg(test)]
    pub(crate) fn is_view(&self) -> bool {
        self.viewed.is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.index.size()
    }

    /// Candidates kept while searching the graph: higher finds more of the true
    /// neighbours in a large index and costs time.
    pub(crate) fn set_search_expansion(&self, n: usize) {
        self.index.change_expansion_search(n);
    }

    pub(crate) fn add(&mut self, key: u64, vector: &[f32]) -> Result<(), StoreError> {
        if vector.len() != self.dimension {
            return Err(StoreError::Dimension {
                expected: self.dimension,
                got: vector.len(),
            });
        }
        self.make_writable()?;
        if self.index.size() + 1 > self.index.capacity() {
            let grown = (self.index.capacity() * 2).max(1024);
            self.index
                .reserve_capacity_and_threads(grown, SEARCH_CONTEXTS)
                .map_err(usearch_error)?;
        }
        self.index.add(key, vector).map_err(usearch_error)
    }

    pub(crate) fn remove(&mut self, key: u64) -> Result<(), StoreError> {
        self.make_writable()?;
        self.index.remove(key).map_err(usearch_error)?;
        Ok(())
    }

    /// The stored vector of `key` into `out`; `false` when the index lacks it.
    pub(crate) fn get(&self, key: u64, out: &mut [f32]) -> Result<bool, StoreError> {
        Ok(self.index.get(key, out).map_err(usearch_error)? > 0)
    }

    /// Up to `count` nearest keys passing `keep`, best first, as (key, cosine similarity).
    pub(crate) fn search(
        &self,
        query: &[f32],
        count: usize,
        keep: impl Fn(u64) -> bool,
    ) -> Result<Vec<(u64, f32)>, StoreError> {
        if self.index.size() == 0 || count == 0 {
            return Ok(Vec::new());
        }
        let matches = self
            .contexts
            .with(|| self.index.filtered_search(query, count, keep))
            .map_err(usearch_error)?;
        Ok(matches
            .keys
            .into_iter()
            .zip(matches.distances)
            .map(|(key, distance)| (key, 1.0 - distance))
            .collect())
    }

    /// Saves atomically: a reader never sees a half-written index or a stale stamp. A
    /// view of `path` itself is unchanged by definition (a change reads it into memory
    /// first), so only its stamp is written.
    pub(crate) fn save(&self, path: &Path, stamp: &IndexStamp) -> Result<(), StoreError> {
        let stamp_path = stamp_path(path);
        if self.viewed.as_deref() == Some(path) {
            return write_stamp(&stamp_path, stamp, path);
        }
        // Remove the stamp first: a crash between the two renames leaves no stamp, which
        // means "rebuild", never "trust a mismatched index".
        match std::fs::remove_file(&stamp_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let tmp = with_suffix(path, ".tmp");
        self.index
            .save(&tmp.to_string_lossy())
            .map_err(usearch_error)?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        write_stamp(&stamp_path, stamp, path)
    }
}

/// Writes `stamp` next to the index at `path` (temp file, fsync, rename, directory sync).
pub(super) fn write_stamp(
    stamp_path: &Path,
    stamp: &IndexStamp,
    path: &Path,
) -> Result<(), StoreError> {
    let stamp_tmp = with_suffix(stamp_path, ".tmp");
    let mut f = File::create(&stamp_tmp)?;
    f.write_all(serde_json::to_string(stamp)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&stamp_tmp, stamp_path)?;
    if let Some(dir) = path.parent() {
        // Make the renames durable too.
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub(super) fn stamp_path(path: &Path) -> PathBuf {
    with_suffix(path, ".stamp.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        crate::vector::normalize(&mut v);
        v
    }

    #[test]
    fn search_returns_cosine_similarity_best_first_and_respects_the_filter() {
        let mut index = VectorIndex::new(3).unwrap();
        index.add(1, &unit(&[1.0, 0.0, 0.0])).unwrap();
        index.add(2, &unit(&[1.0, 1.0, 0.0])).unwrap();
        index.add(3, &unit(&[0.0, 0.0, 1.0])).unwrap();
        let hits = index.search(&unit(&[1.0, 0.1, 0.0]), 3, |_| true).unwrap();
        assert_eq!(hits[0].0, 1);
        assert_eq!(hits[1].0, 2);
        assert!((hits[0].1 - 0.995).abs() < 0.01, "{hits:?}");
        let filtered = index
            .search(&unit(&[1.0, 0.1, 0.0]), 3, |k| k != 1)
            .unwrap();
        assert_eq!(filtered[0].0, 2);
    }

    /// Distinct pseudo-random unit vectors (a multiplicative hash per component).
    fn scattered(n: u64, dimension: u64) -> Vec<Vec<f32>> {
        (0..n)
            .map(|k| {
                let v: Vec<f32> = (0..dimension)
                    .map(|d| {
                        ((k * dimension + d + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f32
                    })
                    .map(|x| x / (1u64 << 24) as f32 - 0.5)
                    .collect();
                unit(&v)
            })
            .collect()
    }

    #[test]
    fn a_saved_index_opens_as_a_view_that_answers_like_the_original_and_changes_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.usearch");
        let mut original = VectorIndex::new(8).unwrap();
        let vectors = scattered(300, 8);
        for (k, v) in vectors.iter().enumerate() {
            original.add(k as u64, v).unwrap();
        }
        let stamp = IndexStamp {
            model_id: "m".into(),
            generation: 1,
            size: vectors.len(),
        };
        original.save(&path, &stamp).unwrap();
        let mut view = VectorIndex::load_if_current(&path, 8, &stamp)
            .unwrap()
            .expect("a current index");
        assert!(view.is_view());
        // Saving an unchanged view under a newer stamp keeps the file and moves the stamp.
        let bumped = IndexStamp {
            generation: 2,
            ..stamp.clone()
        };
        view.save(&path, &bumped).unwrap();
        assert!(VectorIndex::load_if_current(&path, 8, &bumped)
            .unwrap()
            .is_some());
        // Searches from many threads at once, as the server's readers do.
        std::thread::scope(|s| {
            for t in 0..8 {
                let (view, original, vectors) = (&view, &original, &vectors);
                s.spawn(move || {
                    for q in vectors.iter().skip(t).step_by(8) {
                        assert_eq!(
                            view.search(q, 5, |_| true).unwrap(),
                            original.search(q, 5, |_| true).unwrap()
                        );
                    }
                });
            }
        });
        // The first change reads the file into memory; the view's answers stay.
        view.remove(3).unwrap();
        assert!(!view.is_view());
        view.add(1000, &vectors[3]).unwrap();
        assert_eq!(view.len(), vectors.len());
        let best = view.search(&vectors[3], 1, |_| true).unwrap();
        assert_eq!(best[0].0, 1000);
        assert!(view
            .search(&vectors[3], 300, |_| true)
            .unwrap()
            .iter()
            .all(|h| h.0 != 3));
        // Saving over the viewed file works, and the saved index is what changed.
        let changed = IndexStamp {
            generation: 3,
            ..stamp
        };
        view.save(&path, &changed).unwrap();
        let reopened = VectorIndex::load_if_current(&path, 8, &changed)
            .unwrap()
            .unwrap();
        assert_eq!(
            reopened.search(&vectors[3], 1, |_| true).unwrap()[0].0,
            1000
        );
    }

    #[test]
    fn saved_index_loads_only_with_a_matching_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.usearch");
        let mut index = VectorIndex::new(3).unwrap();
        index.add(7, &unit(&[1.0, 2.0, 3.0])).unwrap();
        let stamp = IndexStamp {
            model_id: "m".into(),
            generation: 4,
            size: 1,
        };
        index.save(&path, &stamp).unwrap();
        assert!(VectorIndex::load_if_current(&path, 3, &stamp)
            .unwrap()
            .is_some());
        let newer = IndexStamp {
            generation: 5,
            ..stamp.clone()
        };
        assert!(VectorIndex::load_if_current(&path, 3, &newer)
            .unwrap()
            .is_none());
        std::fs::remove_file(&path).unwrap();
        assert!(VectorIndex::load_if_current(&path, 3, &stamp)
            .unwrap()
            .is_none());
    }

    #[test]
    fn many_more_concurrent_searches_than_contexts_all_succeed() {
        let mut index = VectorIndex::new(3).unwrap();
        for key in 0..500u64 {
            let a = key as f32 * 0.01;
            index.add(key, &unit(&[a.cos(), a.sin(), 0.3])).unwrap();
        }
        let index = &index;
        std::thread::scope(|s| {
            for t in 0..(SEARCH_CONTEXTS * 3) {
                s.spawn(move || {
                    for i in 0..50 {
                        let a = (t * 50 + i) as f32 * 0.001;
                        let hits = index.search(&unit(&[a.cos(), a.sin(), 0.3]), 5, |_| true);
                        assert_eq!(hits.unwrap().len(), 5);
                    }
                });
            }
        });
    }

    #[test]
    fn adding_past_the_reserved_capacity_grows_the_index() {
        let mut index = VectorIndex::new(2).unwrap();
        for key in 0..3000u64 {
            let angle = key as f32 * 0.001;
            index.add(key, &[angle.cos(), angle.sin()]).unwrap();
        }
        assert_eq!(index.len(), 3000);
    }
}
