//! Synthetic stories for the benches: planted events with noisy copies in different
//! digests, shaped like the real model's vectors, and pairwise precision/recall.
//!
//! Geometry: every vector is `normalize(a*G + b*T + e*E + n*N)` with `G` one direction
//! shared by all stories, `T` one of [`TOPICS`] topic directions, `E` the event's own
//! direction and `N` per-copy noise (all random unit vectors, nearly orthogonal in 384
//! dimensions). With a² = 0.85, b² = 0.07, e² = 0.05 and n² drawn from 0.015..0.06,
//! unrelated stories score about 0.85 (0.92 within a topic), like the real model's
//! 0.85-0.93 for unrelated Chinese AI news, and copies of one event 0.94-0.985, around
//! the 0.95 duplicate threshold. Copies are spread over up to four days, so some pay
//! the time penalty (beyond three days) as real repeats sometimes do.

#![allow(dead_code)] // each bench uses part of this module

use storydex::cluster::{Cluster, Item};

pub(crate) const DIM: usize = 384;
pub(crate) const TOPICS: usize = 200;
/// The duplicate threshold the geometry above is laid out around.
pub(crate) const THRESHOLD: f32 = 0.95;
/// Digests come out every four hours.
pub(crate) const DIGEST_SECONDS: i64 = 4 * 3600;
const DAY: i64 = 86_400;

/// splitmix64: small, fast, and the same numbers on every machine.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize
    }

    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f32 {
        let u = self.uniform().max(f64::MIN_POSITIVE);
        let v = self.uniform();
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    pub(crate) fn unit_vector(&mut self, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim).map(|_| self.normal()).collect();
        storydex::vector::normalize(&mut v);
        v
    }
}

/// Stories with a known event each.
pub(crate) struct Planted {
    pub(crate) items: Vec<Item>,
    /// `event[i]` is the event item `i` is a copy of.
    pub(crate) event: Vec<usize>,
    pub(crate) events: usize,
    pub(crate) copies: usize,
}

/// `events` events, each reported by `copies` stories in different digests within four
/// days; events start uniformly over `days` days.
pub(crate) fn planted(events: usize, copies: usize, days: usize, seed: u64) -> Planted {
    let mut rng = Rng::new(seed);
    let global = rng.unit_vector(DIM);
    let topics: Vec<Vec<f32>> = (0..TOPICS).map(|_| rng.unit_vector(DIM)).collect();
    let (a, b, e) = (0.85f32.sqrt(), 0.07f32.sqrt(), 0.05f32.sqrt());
    let slots_in_window = (4 * DAY / DIGEST_SECONDS) as usize;
    assert!(
        copies <= slots_in_window,
        "copies must fit in distinct digests"
    );
    let mut items = Vec::with_capacity(events * copies);
    let mut event_of = Vec::with_capacity(events * copies);
    for ev in 0..events {
        let topic = &topics[rng.below(TOPICS)];
        let direction = rng.unit_vector(DIM);
        let first_slot = rng.below(days * (DAY / DIGEST_SECONDS) as usize);
        // Distinct digests: `copies` different slots of the four-day window.
        let mut slots: Vec<usize> = Vec::with_capacity(copies);
        while slots.len() < copies {
            let s = rng.below(slots_in_window);
            if !slots.contains(&s) {
                slots.push(s);
            }
        }
        for slot in slots {
            let slot = first_slot + slot;
            let n = (0.015 + 0.045 * rng.uniform() as f32).sqrt();
            let noise = rng.unit_vector(DIM);
            let mut vector: Vec<f32> = (0..DIM)
                .map(|d| a * global[d] + b * topic[d] + e * direction[d] + n * noise[d])
                .collect();
            storydex::vector::normalize(&mut vector);
            items.push(Item {
                digest: format!("d{slot}"),
                time: Some(slot as i64 * DIGEST_SECONDS + rng.below(600) as i64),
                url: None,
                vector,
            });
            event_of.push(ev);
        }
    }
    Planted {
        items,
        event: event_of,
        events,
        copies,
    }
}

/// Replaces the planted vectors with real ones: each event becomes one of `sample`'s
/// vectors (real e5 windows) moved a little along its own direction (cosine 0.96 to its
/// source, so events from one source window stay as close as real near-misses are), and
/// each copy that event's vector with its own noise (copies of one event 0.96-0.98).
pub(crate) fn resample(planted: &mut Planted, sample: &[Vec<f32>], seed: u64) {
    assert!(!sample.is_empty(), "no sample vectors");
    let mut rng = Rng::new(seed);
    let dim = sample[0].len();
    let mut events: Vec<Option<Vec<f32>>> = vec![None; planted.events];
    for (item, &event) in planted.items.iter_mut().zip(&planted.event) {
        let at = events[event].get_or_insert_with(|| {
            let base = &sample[rng.below(sample.len())];
            let away = rng.unit_vector(dim);
            let mut v: Vec<f32> = base.iter().zip(&away).map(|(b, a)| b + 0.29 * a).collect();
            storydex::vector::normalize(&mut v);
            v
        });
        let noise = rng.unit_vector(dim);
        let c = 0.14 + 0.06 * rng.uniform() as f32;
        let mut v: Vec<f32> = at.iter().zip(&noise).map(|(e, n)| e + c * n).collect();
        storydex::vector::normalize(&mut v);
        item.vector = v;
    }
}

/// Pairwise precision and recall of `clusters` against the planted events: a predicted
/// pair is two stories in one cluster, a true pair two copies of one event.
pub(crate) fn pairwise(planted: &Planted, clusters: &[Cluster]) -> (f64, f64) {
    let mut predicted = 0u64;
    let mut correct = 0u64;
    for c in clusters {
        let n = c.members.len() as u64;
        predicted += n * (n - 1) / 2;
        let mut per_event: std::collections::HashMap<usize, u64> = Default::default();
        for &(m, _) in &c.members {
            *per_event.entry(planted.event[m]).or_default() += 1;
        }
        correct += per_event.values().map(|k| k * (k - 1) / 2).sum::<u64>();
    }
    let copies = planted.copies as u64;
    let truth = planted.events as u64 * copies * (copies - 1) / 2;
    let precision = if predicted == 0 {
        1.0
    } else {
        correct as f64 / predicted as f64
    };
    (precision, correct as f64 / truth as f64)
}
