//! A deterministic stand-in for the embedding model, for tests and demos only.
//!
//! Owns: hashing text features (lower-cased words, and bigrams of CJK characters) into a
//! fixed-size signed vector, so texts that share words score higher than texts that do
//! not. Must not: be used for real search; it knows nothing of meaning, only of shared
//! surface forms.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::{normalize, EmbedError, Encoder, Window};

/// Hashes words and CJK bigrams into a unit vector: no model files, same output every run.
///
/// [`FakeEncoder::set_delay`] makes every call sleep, so a test can fill the embedding
/// queue of the HTTP server and watch it answer 503; it also counts what it was asked
/// ([`FakeEncoder::query_batches`], [`FakeEncoder::passages_embedded`]) and can be told
/// to panic on one text ([`FakeEncoder::with_panic_on`]).
#[derive(Debug)]
pub struct FakeEncoder {
    model_id: String,
    dimension: usize,
    delay_micros: AtomicU64,
    query_batches: Mutex<Vec<usize>>,
    passages: AtomicUsize,
    panic_on: Option<String>,
}

impl Default for FakeEncoder {
    fn default() -> Self {
        Self::new(384)
    }
}

impl FakeEncoder {
    /// A fake encoder producing `dimension`-long vectors (384, like multilingual-e5-small,
    /// by default).
    pub fn new(dimension: usize) -> Self {
        assert!(dimension > 0, "a zero-dimensional encoder is a bug");
        Self {
            model_id: format!("fake-hash-{dimension}"),
            dimension,
            delay_micros: AtomicU64::new(0),
            query_batches: Mutex::new(Vec::new()),
            passages: AtomicUsize::new(0),
            panic_on: None,
        }
    }

    /// Makes every query call that sees `text` panic (a model bug, for tests).
    pub fn with_panic_on(mut self, text: &str) -> Self {
        self.panic_on = Some(text.to_owned());
        self
    }

    /// How many texts each [`Encoder::embed_queries`] call got, in order.
    pub fn query_batches(&self) -> Vec<usize> {
        self.query_batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Passages embedded so far.
    pub fn passages_embedded(&self) -> usize {
        self.passages.load(Ordering::Relaxed)
    }

    /// Makes each later `embed_*` call sleep this long first (zero turns it off).
    pub fn set_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.delay_micros.store(micros, Ordering::Relaxed);
    }

    /// Builder form of [`FakeEncoder::set_delay`].
    pub fn with_delay(self, delay: Duration) -> Self {
        self.set_delay(delay);
        self
    }

    fn pause(&self) {
        let micros = self.delay_micros.load(Ordering::Relaxed);
        if micros > 0 {
            std::thread::sleep(Duration::from_micros(micros));
        }
    }

    /// The unit vector of a text plus the number of features that went into it.
    fn vector(&self, text: &str) -> Result<(Vec<f32>, usize), EmbedError> {
        let features = features(text);
        if features.is_empty() {
            return Err(EmbedError::EmptyText);
        }
        let mut v = vec![0.0f32; self.dimension];
        for feature in &features {
            let h = fnv1a(feature.as_bytes());
            let slot = (h % self.dimension as u64) as usize;
            // A sign bit from elsewhere in the hash keeps unrelated features from all
            // piling up positively, so unrelated texts score near zero.
            v[slot] += if h >> 63 == 0 { 1.0 } else { -1.0 };
        }
        normalize(&mut v);
        if v.iter().all(|x| *x == 0.0) {
            // Features that cancelled out exactly; a zero vector has no cosine.
            v[0] = 1.0;
        }
        Ok((v, features.len()))
    }
}

impl Encoder for FakeEncoder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn device_info(&self) -> crate::embed::DeviceInfo {
        crate::embed::DeviceInfo {
            device: "cpu".to_owned(),
            precision: "f32".to_owned(),
            engine: "fake".to_owned(),
            batch_tokens: 0,
        }
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        assert!(
            self.panic_on.as_deref() != Some(text),
            "the fake encoder was told to panic on {text:?}"
        );
        self.pause();
        Ok(self.vector(text)?.0)
    }

    fn embed_queries(&self, texts: &[&str]) -> Vec<Result<Vec<f32>, EmbedError>> {
        self.query_batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(texts.len());
        texts.iter().map(|t| self.embed_query(t)).collect()
    }

    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<Window>>, EmbedError> {
        self.pause();
        self.passages.fetch_add(texts.len(), Ordering::Relaxed);
        texts
            .iter()
            .map(|text| {
                let (vector, n) = self.vector(text)?;
                Ok(vec![Window {
                    start: 0,
                    end: text.len(),
                    tokens: n + 2,
                    vector,
                }])
            })
            .collect()
    }

    fn count_tokens(&self, text: &str) -> Result<usize, EmbedError> {
        Ok(features(text).len() + 2)
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x3040..=0x30FF | 0xAC00..=0xD7AF)
}

/// Lower-cased alphanumeric words, and each CJK run as its characters and bigrams.
fn features(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut cjk: Vec<char> = Vec::new();
    let flush_word = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            out.push(std::mem::take(word));
        }
    };
    let flush_cjk = |cjk: &mut Vec<char>, out: &mut Vec<String>| {
        for c in cjk.iter() {
            out.push(c.to_string());
        }
        for pair in cjk.windows(2) {
            out.push(pair.iter().collect());
        }
        cjk.clear();
    };
    for c in text.chars() {
        if is_cjk(c) {
            flush_word(&mut word, &mut out);
            cjk.push(c);
        } else if c.is_alphanumeric() {
            flush_cjk(&mut cjk, &mut out);
            word.extend(c.to_lowercase());
        } else {
            flush_word(&mut word, &mut out);
            flush_cjk(&mut cjk, &mut out);
        }
    }
    flush_word(&mut word, &mut out);
    flush_cjk(&mut cjk, &mut out);
    out
}

/// FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::dot;

    #[test]
    fn the_same_text_always_gets_the_same_unit_vector() {
        let e = FakeEncoder::default();
        let a = e.embed_query("Nvidia 发布 Rubin").unwrap();
        let b = e.embed_query("Nvidia 发布 Rubin").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 384);
        assert!((dot(&a, &a) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn texts_sharing_words_score_higher_than_unrelated_texts() {
        let e = FakeEncoder::new(256);
        let q = e.embed_query("Boston Dynamics Atlas robot").unwrap();
        let near = e
            .embed_query("Atlas humanoid robot from Boston Dynamics")
            .unwrap();
        let far = e.embed_query("quarterly interest rates in Europe").unwrap();
        assert!(dot(&q, &near) > dot(&q, &far) + 0.3);
        let zh = e.embed_query("英伟达发布新芯片").unwrap();
        let zh_near = e.embed_query("英伟达芯片").unwrap();
        let zh_far = e.embed_query("谷歌论文").unwrap();
        assert!(dot(&zh, &zh_near) > dot(&zh, &zh_far));
    }

    #[test]
    fn passages_get_one_window_covering_the_whole_text() {
        let e = FakeEncoder::default();
        let texts = ["第一条 news", "second story"];
        let windows = e.embed_passages(&texts).unwrap();
        assert_eq!(windows.len(), 2);
        assert_eq!(
            (windows[0][0].start, windows[0][0].end),
            (0, texts[0].len())
        );
        assert_eq!(windows[1].len(), 1);
        assert!(matches!(e.embed_query(" … "), Err(EmbedError::EmptyText)));
    }
}
