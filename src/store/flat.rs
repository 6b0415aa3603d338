//! Exact search for stores small enough to compare every window with the query: the
//! window vectors in one row-major block beside their catalog entries, scanned with the
//! search's filter applied row by row.
//!
//! Owns: the block and its rows' order. Must not: be the source of truth; it is filled
//! from SQLite at open and changed with the catalog, under the store's locks.
//!
//! Why: on e5's vectors, whose cosines all crowd into 0.75-0.9, the HNSW graph at
//! `expansion_search` 64 missed top-50 windows even among the sample's 989, and a
//! filtered graph search (a date range, one source kind) widens step by step. A scan of
//! 50,000 x 384 floats costs a few milliseconds and is never wrong.

use std::collections::HashMap;

use super::WindowMeta;

/// Stores of at most this many windows are searched by scanning every window.
pub const EXACT_SEARCH_MAX: usize = 50_000;

pub(crate) struct FlatIndex {
    dimension: usize,
    keys: Vec<u64>,
    metas: Vec<WindowMeta>,
    vectors: Vec<f32>,
    row_of: HashMap<u64, usize>,
}

impl FlatIndex {
    pub(crate) fn new(dimension: usize) -> Self {
        Self {
            dimension,
            keys: Vec::new(),
            metas: Vec::new(),
            vectors: Vec::new(),
            row_of: HashMap::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Adds a window, replacing one with the same key.
    pub(crate) fn add(&mut self, key: u64, meta: WindowMeta, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dimension);
        self.remove(key);
        self.row_of.insert(key, self.keys.len());
        self.keys.push(key);
        self.metas.push(meta);
        self.vectors.extend_from_slice(vector);
    }

    /// Removes a window (the last row moves into its place).
    pub(crate) fn remove(&mut self, key: u64) {
        let Some(row) = self.row_of.remove(&key) else {
            return;
        };
        let last = self.keys.len() - 1;
        self.keys.swap_remove(row);
        self.metas.swap_remove(row);
        let d = self.dimension;
        if row != last {
            self.vectors.copy_within(last * d..(last + 1) * d, row * d);
            self.row_of.insert(self.keys[row], row);
        }
        self.vectors.truncate(last * d);
    }

    /// Up to `count` windows passing `keep`, best first by cosine (vectors are unit
    /// length), ties by key: (key, cosine, catalog entry).
    pub(crate) fn search(
        &self,
        query: &[f32],
        count: usize,
        keep: impl Fn(&WindowMeta) -> bool,
    ) -> Vec<(u64, f32, &WindowMeta)> {
        if count == 0 {
            return Vec::new();
        }
        let d = self.dimension;
        let mut scored: Vec<(f32, usize)> = self
            .metas
            .iter()
            .enumerate()
            .filter(|(_, meta)| keep(meta))
            .map(|(row, _)| {
                (
                    crate::vector::dot_lanes(query, &self.vectors[row * d..(row + 1) * d]),
                    row,
                )
            })
            .collect();
        let order = |a: &(f32, usize), b: &(f32, usize)| {
            b.0.total_cmp(&a.0)
                .then_with(|| self.keys[a.1].cmp(&self.keys[b.1]))
        };
        if scored.len() > count {
            scored.select_nth_unstable_by(count - 1, order);
            scored.truncate(count);
        }
        scored.sort_unstable_by(order);
        scored
            .into_iter()
            .map(|(score, row)| (self.keys[row], score, &self.metas[row]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn meta(day: u32) -> WindowMeta {
        WindowMeta {
            story_id: Arc::from("s"),
            digest_id: Arc::from("d"),
            day: Some(day),
            ts: 0,
            start: 0,
            end: 1,
            kind: crate::corpus::SourceKind::Digest,
        }
    }

    /// Distinct pseudo-random unit vectors (a multiplicative hash per component).
    fn scattered(n: u64, dimension: u64) -> Vec<Vec<f32>> {
        (0..n)
            .map(|k| {
                let mut v: Vec<f32> = (0..dimension)
                    .map(|d| {
                        ((k * dimension + d + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f32
                    })
                    .map(|x| x / (1u64 << 24) as f32 - 0.5)
                    .collect();
                crate::vector::normalize(&mut v);
                v
            })
            .collect()
    }

    #[test]
    fn every_window_is_compared_and_the_filter_applies_before_the_count() {
        let vectors = scattered(500, 40);
        let mut flat = FlatIndex::new(40);
        for (k, v) in vectors.iter().enumerate() {
            flat.add(k as u64, meta(k as u32), v);
        }
        flat.remove(0);
        flat.remove(499);
        flat.add(7, meta(7), &vectors[7]);
        assert_eq!(flat.len(), 498);
        for q in vectors.iter().step_by(37) {
            // Only one key in 40 passes: still ten of them, the best ten.
            let keep = |m: &WindowMeta| m.day.is_some_and(|d| d.is_multiple_of(40));
            let mut want: Vec<(u64, f32)> = vectors
                .iter()
                .enumerate()
                .map(|(k, v)| (k as u64, crate::vector::dot(v, q)))
                .filter(|(k, _)| k.is_multiple_of(40) && *k != 0)
                .collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1));
            want.truncate(10);
            let got = flat.search(q, 10, keep);
            assert_eq!(
                got.iter().map(|h| h.0).collect::<Vec<_>>(),
                want.iter().map(|h| h.0).collect::<Vec<_>>()
            );
            assert!(got.iter().zip(&want).all(|(g, w)| (g.1 - w.1).abs() < 1e-5));
            // Fewer pass than asked for: all of them, nothing removed.
            assert_eq!(flat.search(q, 100, keep).len(), 12);
        }
    }

    #[test]
    fn the_lane_dot_product_equals_the_plain_one() {
        let v = scattered(3, 385);
        let plain = crate::vector::dot(&v[0], &v[1]);
        assert!((crate::vector::dot_lanes(&v[0], &v[1]) - plain).abs() < 1e-6);
    }
}
