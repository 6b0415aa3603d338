//! Search past [`super::EXACT_SEARCH_MAX`] windows: one sign bit per dimension for every
//! window, scanned in full for each query, and the nearest rows by Hamming distance
//! handed back to be scored exactly from the stored vectors.
//!
//! Owns: the codes, the centre they are taken around, the rows' kinds and days (so a
//! source kind or a date range is applied while scanning), and the codes file beside the
//! index. Must not: score anything by itself or be trusted over SQLite: it is derived,
//! stamped like the index, and rebuilt from the index's vectors on any doubt.
//!
//! Why: e5's cosines crowd into 0.75-0.9, where the HNSW graph's recall@10 at a million
//! windows was 0.77 at its default expansion and 0.95 at four times the latency. A scan
//! of 48 bytes per window reads 48 MB at a million windows (a few milliseconds), never
//! misses a row because of the graph's shape or a narrow filter, and the exact re-scoring
//! of a few thousand candidates puts the true top ten in front
//! (`scripts/bench-scale`: recall and latency against the graph, same run).
//!
//! Codes are signs of `vector - centre`: e5's vectors share one strong direction, and
//! without the centre nearly every bit would be the same for every window. The centre is
//! the mean of the windows stored when the codes were first built (at least
//! [`super::EXACT_SEARCH_MAX`] of them), and is kept from then on: a drifting mean makes
//! the codes a little less sharp, never the results wrong.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use crate::domain::DateRange;

/// Sets of at least this many rows estimate each query's cut from every
/// [`SAMPLE_STRIDE`]th row.
const SAMPLE_FROM: usize = 1 << 16;
const SAMPLE_STRIDE: usize = 16;
/// Rows scanned per task when a scan is split over threads.
const CHUNK: usize = 1 << 16;
/// Below this many rows one thread scans them all.
const PARALLEL_FROM: usize = 1 << 18;
const MAGIC: &[u8; 8] = b"SDXSIGN1";

pub(crate) struct SignCodes {
    dimension: usize,
    words: usize,
    centre: Vec<f32>,
    keys: Vec<u64>,
    /// Source kind slot per row (see `FlatBlocks::slot`).
    kinds: Vec<u8>,
    /// `YYYYMMDD` per row, 0 when undated.
    days: Vec<u32>,
    codes: Vec<u64>,
    /// Row of each key; built at the first change, not at open.
    row_of: Option<HashMap<u64, usize>>,
}

/// What a scan lets through before the caller's own check: one kind slot or all, and a
/// date range (undated rows only pass an unbounded one, as [`DateRange`] says).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prefilter {
    kind: Option<u8>,
    bounded: bool,
    since: u32,
    until: u32,
}

impl Prefilter {
    pub(crate) fn new(kind: Option<u8>, range: DateRange) -> Self {
        let (since, until) = range.days();
        Self {
            kind,
            bounded: !range.is_all(),
            since: since.unwrap_or(0),
            until: until.unwrap_or(u32::MAX),
        }
    }

    /// As [`DateRange::contains_day`] with 0 for undated, without a date per row.
    #[inline]
    fn passes(&self, kind: u8, day: u32) -> bool {
        self.kind.is_none_or(|k| k == kind)
            && (!self.bounded || (day != 0 && day >= self.since && day <= self.until))
    }
}

impl SignCodes {
    /// Empty codes around `centre` (the mean of the vectors they will hold).
    pub(crate) fn new(centre: Vec<f32>) -> Self {
        let dimension = centre.len();
        Self {
            dimension,
            words: dimension.div_ceil(64),
            centre,
            keys: Vec::new(),
            kinds: Vec::new(),
            days: Vec::new(),
            codes: Vec::new(),
            row_of: Some(HashMap::new()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    fn code_into(&self, vector: &[f32], out: &mut [u64]) {
        out.fill(0);
        for (i, (x, c)) in vector.iter().zip(&self.centre).enumerate() {
            if x > c {
                out[i / 64] |= 1 << (i % 64);
            }
        }
    }

    fn rows(&mut self) -> &mut HashMap<u64, usize> {
        let keys = &self.keys;
        self.row_of
            .get_or_insert_with(|| keys.iter().enumerate().map(|(r, &k)| (k, r)).collect())
    }

    /// Adds a window, replacing one with the same key.
    pub(crate) fn add(&mut self, key: u64, kind: u8, day: Option<u32>, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dimension);
        self.remove(key);
        let row = self.keys.len();
        self.rows().insert(key, row);
        let mut code = vec![0u64; self.words];
        self.code_into(vector, &mut code);
        self.keys.push(key);
        self.kinds.push(kind);
        self.days.push(day.unwrap_or(0));
        self.codes.extend_from_slice(&code);
    }

    /// Removes a window (the last row moves into its place).
    pub(crate) fn remove(&mut self, key: u64) {
        let Some(row) = self.rows().remove(&key) else {
            return;
        };
        let last = self.keys.len() - 1;
        self.keys.swap_remove(row);
        self.kinds.swap_remove(row);
        self.days.swap_remove(row);
        let w = self.words;
        if row != last {
            self.codes.copy_within(last * w..(last + 1) * w, row * w);
            let moved = self.keys[row];
            self.rows().insert(moved, row);
        }
        self.codes.truncate(last * w);
    }

    /// The keys of at least `depth` rows passing `filter` and `keep` (all of them when
    /// fewer pass), nearest to `query` by Hamming distance; every row at the last
    /// distance taken comes along, so the cut never depends on row order.
    #[cfg(test)]
    pub(crate) fn candidates(
        &self,
        query: &[f32],
        depth: usize,
        filter: Prefilter,
        keep: impl Fn(u64) -> bool,
    ) -> Vec<u64> {
        self.candidates_many(&[query], depth, filter, keep)
            .pop()
            .unwrap_or_default()
    }

    /// [`SignCodes::candidates`] for several queries (a story's windows) in one pass
    /// over the codes: the rows are read once, whatever the number of queries.
    ///
    /// A sample of the rows (every 16th in a large set) first says, per query, about how
    /// far the `1.25 * depth` nearest passing rows lie; the full pass keeps the rows within
    /// that distance, and the nearest of them that pass `keep` are taken. Should the
    /// sample have cut too close, the query is scanned again keeping every row.
    pub(crate) fn candidates_many(
        &self,
        queries: &[&[f32]],
        depth: usize,
        filter: Prefilter,
        keep: impl Fn(u64) -> bool,
    ) -> Vec<Vec<u64>> {
        let w = self.words;
        let mut codes = vec![0u64; w * queries.len()];
        for (query, code) in queries.iter().zip(codes.chunks_exact_mut(w)) {
            self.code_into(query, code);
        }
        let stride = if self.keys.len() >= SAMPLE_FROM {
            SAMPLE_STRIDE
        } else {
            1
        };
        let bins = w * 64 + 1;
        let cuts: Vec<u32> = codes
            .chunks_exact(w)
            .map(|code| {
                let mut histogram = vec![0usize; bins];
                for row in (0..self.keys.len()).step_by(stride) {
                    if filter.passes(self.kinds[row], self.days[row]) {
                        histogram[self.distance(row, code) as usize] += 1;
                    }
                }
                // A quarter more than the depth; a full count (stride 1) needs no margin.
                let wanted = if stride == 1 {
                    depth
                } else {
                    depth + depth / 4
                };
                let mut seen = 0;
                (0..bins)
                    .find(|&d| {
                        seen += histogram[d] * stride;
                        seen >= wanted
                    })
                    .unwrap_or(bins - 1) as u32
            })
            .collect();
        let near = self.rows_within(&codes, &cuts, filter);
        near.into_iter()
            .zip(codes.chunks_exact(w).zip(&cuts))
            .map(|(found, (code, &cut))| {
                let taken = self.nearest_passing(found, depth, &keep);
                if taken.len() >= depth || cut as usize == bins - 1 {
                    return taken;
                }
                // The sample cut too close (or `keep` refused many): every passing row.
                let all = self.rows_within(code, &[bins as u32 - 1], filter);
                self.nearest_passing(all.into_iter().next().unwrap_or_default(), depth, &keep)
            })
            .collect()
    }

    /// Hamming distance from `row`'s code to `code`.
    fn distance(&self, row: usize, code: &[u64]) -> u32 {
        hamming(&self.codes[row * self.words..(row + 1) * self.words], code)
    }

    /// For each query (codes one after another), the (distance, row) of every row passing
    /// `filter` within that query's cut; split over threads for a large set.
    fn rows_within(&self, codes: &[u64], cuts: &[u32], filter: Prefilter) -> Vec<Vec<(u32, u32)>> {
        let queries = cuts.len();
        let scan = |rows: std::ops::Range<usize>| -> Vec<Vec<(u32, u32)>> {
            let mut found = vec![Vec::new(); queries];
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("popcnt") {
                // SAFETY: the CPU has `popcnt`, checked just above.
                unsafe { self.scan_popcnt(rows, codes, cuts, filter, &mut found) };
                return found;
            }
            self.scan(rows, codes, cuts, filter, &mut found);
            found
        };
        let n = self.keys.len();
        if n < PARALLEL_FROM {
            return scan(0..n);
        }
        (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| scan(c * CHUNK..((c + 1) * CHUNK).min(n)))
            .reduce(
                || vec![Vec::new(); queries],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(x, y)| x.extend(y));
                    a
                },
            )
    }

    /// [`SignCodes::scan`] compiled with the CPU's `popcnt` instruction (the baseline
    /// x86-64 target counts bits with a dozen instructions a word).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    fn scan_popcnt(
        &self,
        rows: std::ops::Range<usize>,
        codes: &[u64],
        cuts: &[u32],
        filter: Prefilter,
        found: &mut [Vec<(u32, u32)>],
    ) {
        self.scan(rows, codes, cuts, filter, found);
    }

    #[inline(always)]
    fn scan(
        &self,
        rows: std::ops::Range<usize>,
        codes: &[u64],
        cuts: &[u32],
        filter: Prefilter,
        found: &mut [Vec<(u32, u32)>],
    ) {
        let w = self.words;
        for row in rows {
            if !filter.passes(self.kinds[row], self.days[row]) {
                continue;
            }
            let bits = &self.codes[row * w..(row + 1) * w];
            for ((code, &cut), out) in codes.chunks_exact(w).zip(cuts).zip(found.iter_mut()) {
                let d = hamming(bits, code);
                if d <= cut {
                    out.push((d, row as u32));
                }
            }
        }
    }

    /// The keys of the nearest rows of `found` passing `keep`: at least `depth` when
    /// there are, with every row at the last distance taken (the cut never depends on
    /// row order).
    fn nearest_passing(
        &self,
        mut found: Vec<(u32, u32)>,
        depth: usize,
        keep: &impl Fn(u64) -> bool,
    ) -> Vec<u64> {
        found.sort_unstable();
        let mut out = Vec::with_capacity(depth.min(found.len()));
        let mut last = None;
        for (d, row) in found {
            if out.len() >= depth && last != Some(d) {
                break;
            }
            let key = self.keys[row as usize];
            if keep(key) {
                out.push(key);
                last = Some(d);
            }
        }
        out
    }

    /// Writes the codes to `path` atomically (temp file, fsync, rename).
    pub(crate) fn save(&self, path: &Path) -> Result<(), std::io::Error> {
        let mut bytes = Vec::with_capacity(
            32 + self.dimension * 4 + self.keys.len() * (8 + 1 + 4 + self.words * 8),
        );
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(self.dimension as u64).to_le_bytes());
        bytes.extend_from_slice(&(self.keys.len() as u64).to_le_bytes());
        self.centre
            .iter()
            .for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
        self.keys
            .iter()
            .for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
        bytes.extend_from_slice(&self.kinds);
        self.days
            .iter()
            .for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
        self.codes
            .iter()
            .for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Reads codes written by [`SignCodes::save`]; `None` when the file is missing,
    /// another format, another dimension or cut short.
    pub(crate) fn load(path: &Path, dimension: usize) -> Option<Self> {
        let bytes = std::fs::read(path).ok()?;
        let mut at = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let slice = bytes.get(at..at.checked_add(n)?)?;
            at += n;
            Some(slice)
        };
        if take(8)? != MAGIC {
            return None;
        }
        let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        if u64_of(take(8)?) != dimension as u64 {
            return None;
        }
        let rows = usize::try_from(u64_of(take(8)?)).ok()?;
        let words = dimension.div_ceil(64);
        let centre: Vec<f32> = take(dimension.checked_mul(4)?)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let keys: Vec<u64> = take(rows.checked_mul(8)?)?
            .chunks_exact(8)
            .map(u64_of)
            .collect();
        let kinds = take(rows)?.to_vec();
        let days: Vec<u32> = take(rows.checked_mul(4)?)?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let codes: Vec<u64> = take(rows.checked_mul(words * 8)?)?
            .chunks_exact(8)
            .map(u64_of)
            .collect();
        if at != bytes.len() {
            return None;
        }
        Some(Self {
            dimension,
            words,
            centre,
            keys,
            kinds,
            days,
            codes,
            row_of: None,
        })
    }
}

#[inline(always)]
fn hamming(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Pseudo-random unit vectors sharing one strong direction, as e5's do.
    pub(in crate::store) fn crowded(n: u64, dimension: usize) -> Vec<Vec<f32>> {
        let noise = |k: u64, d: u64| {
            (k.wrapping_mul(dimension as u64)
                .wrapping_add(d + 1)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                >> 40) as f32
                / (1u64 << 24) as f32
                - 0.5
        };
        (0..n)
            .map(|k| {
                let mut v: Vec<f32> = (0..dimension as u64)
                    .map(|d| noise(k, d) + 2.0 * noise(u64::MAX / 3, d))
                    .collect();
                crate::vector::normalize(&mut v);
                v
            })
            .collect()
    }

    fn mean(vectors: &[Vec<f32>]) -> Vec<f32> {
        let mut m = vec![0.0; vectors[0].len()];
        for v in vectors {
            m.iter_mut()
                .zip(v)
                .for_each(|(a, b)| *a += b / vectors.len() as f32);
        }
        m
    }

    fn codes_of(vectors: &[Vec<f32>]) -> SignCodes {
        let mut codes = SignCodes::new(mean(vectors));
        for (k, v) in vectors.iter().enumerate() {
            codes.add(k as u64, (k % 2) as u8, Some(20250101 + (k % 28) as u32), v);
        }
        codes
    }

    const ALL: Prefilter = Prefilter {
        kind: None,
        bounded: false,
        since: 0,
        until: u32::MAX,
    };

    #[test]
    fn the_true_nearest_rows_are_among_the_candidates() {
        let vectors = crowded(3000, 96);
        let codes = codes_of(&vectors);
        let (mut found, mut wanted) = (0, 0);
        for q in vectors.iter().step_by(97) {
            let mut exact: Vec<(f32, u64)> = vectors
                .iter()
                .enumerate()
                .map(|(k, v)| (crate::vector::dot(q, v), k as u64))
                .collect();
            exact.sort_by(|a, b| b.0.total_cmp(&a.0));
            let candidates = codes.candidates(q, 300, ALL, |_| true);
            assert!(candidates.len() >= 300);
            wanted += 10;
            found += exact[..10]
                .iter()
                .filter(|(_, k)| candidates.contains(k))
                .count();
        }
        // A tenth of the rows re-scored: a plain sign code finds nearly all of the ten.
        assert!(found as f64 >= 0.97 * wanted as f64, "{found}/{wanted}");
    }

    #[test]
    fn queries_scanned_together_get_what_they_get_alone() {
        let vectors = crowded(1500, 64);
        let codes = codes_of(&vectors);
        let queries: Vec<&[f32]> = vectors.iter().step_by(101).map(Vec::as_slice).collect();
        let filter = Prefilter::new(Some(0), DateRange::ALL);
        let together = codes.candidates_many(&queries, 50, filter, |k| !k.is_multiple_of(5));
        assert_eq!(together.len(), queries.len());
        for (q, got) in queries.iter().zip(&together) {
            assert_eq!(
                got,
                &codes.candidates(q, 50, filter, |k| !k.is_multiple_of(5))
            );
        }
    }

    #[test]
    fn kinds_days_and_the_callers_check_apply_before_the_depth() {
        let vectors = crowded(2000, 64);
        let codes = codes_of(&vectors);
        let range = DateRange::parse(Some("2025-01-03"), Some("2025-01-04")).unwrap();
        let filter = Prefilter::new(Some(1), range);
        let keep = |k: u64| !k.is_multiple_of(3);
        let got = codes.candidates(&vectors[5], 20, filter, keep);
        let passing: Vec<u64> = (0..2000u64)
            .filter(|k| !k.is_multiple_of(2) && [2, 3].contains(&(k % 28)) && keep(*k))
            .collect();
        assert!(got.len() >= 20, "{}", got.len());
        assert!(got.iter().all(|k| passing.contains(k)), "{got:?}");
        // Asking for more than pass: every passing row, once.
        let mut all = codes.candidates(&vectors[5], 10_000, filter, keep);
        all.sort_unstable();
        assert_eq!(all, passing);
    }

    #[test]
    fn removed_and_replaced_rows_and_a_saved_file_answer_the_same() {
        let vectors = crowded(500, 130);
        let mut codes = codes_of(&vectors);
        codes.remove(0);
        codes.remove(499);
        codes.add(7, 0, None, &vectors[8]);
        assert_eq!(codes.len(), 498);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("codes");
        codes.save(&path).unwrap();
        let mut loaded = SignCodes::load(&path, 130).unwrap();
        assert!(SignCodes::load(&path, 129).is_none(), "another dimension");
        for q in vectors.iter().step_by(31) {
            let a = codes.candidates(q, 40, ALL, |_| true);
            assert_eq!(a, loaded.candidates(q, 40, ALL, |_| true));
            assert!(!a.contains(&0) && !a.contains(&499));
        }
        // Key 7 now codes vector 8: it is found as 8's twin.
        let near = codes.candidates(&vectors[8], 1, ALL, |_| true);
        assert!(near.contains(&7) && near.contains(&8), "{near:?}");
        // A loaded file changes like the original.
        loaded.remove(3);
        assert!(!loaded
            .candidates(&vectors[3], 500, ALL, |_| true)
            .contains(&3));
        assert_eq!(loaded.len(), 497);
        // A file cut short is refused.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(SignCodes::load(&path, 130).is_none());
    }
}
