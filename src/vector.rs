//! Vector math on embeddings: dot products, unit length, means.
//!
//! Owns: the one definition of each operation, so every layer scores the same way.
//! Must not: know what the vectors stand for (stories, windows, queries).

/// Scale `v` to unit length in place (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Normalised mean of unit vectors: the one vector of a multi-window story, used both
/// for clustering and for checking a draft.
pub fn mean_unit_vector<'a>(vectors: impl IntoIterator<Item = &'a [f32]>) -> Vec<f32> {
    let mut sum: Vec<f32> = Vec::new();
    for v in vectors {
        if sum.is_empty() {
            sum = v.to_vec();
        } else {
            sum.iter_mut().zip(v).for_each(|(a, b)| *a += b);
        }
    }
    normalize(&mut sum);
    sum
}

/// Cosine similarity of two unit vectors (one running sum, in order).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// [`dot`] in sixteen independent lanes, which the compiler turns into SIMD (a single
/// running sum cannot be reordered, so it stays scalar). For scans over many vectors;
/// its rounding differs from [`dot`] in the last bits.
pub fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_gives_unit_length_and_keeps_zero_vectors() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert!((dot(&v, &v) - 1.0).abs() < 1e-6);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut z = vec![0.0; 3];
        normalize(&mut z);
        assert_eq!(z, vec![0.0; 3]);
    }

    #[test]
    fn the_lane_dot_product_equals_the_plain_one() {
        let a: Vec<f32> = (0..385)
            .map(|i| ((i * 7919) % 101) as f32 / 101.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..385)
            .map(|i| ((i * 104_729) % 97) as f32 / 97.0 - 0.5)
            .collect();
        assert!((dot_lanes(&a, &b) - dot(&a, &b)).abs() < 1e-4);
    }

    #[test]
    fn the_mean_of_unit_vectors_has_unit_length() {
        let m = mean_unit_vector([[1.0f32, 0.0].as_slice(), [0.0, 1.0].as_slice()]);
        assert!((dot(&m, &m) - 1.0).abs() < 1e-6);
        assert!((m[0] - m[1]).abs() < 1e-6);
    }
}
