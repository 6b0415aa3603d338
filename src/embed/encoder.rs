//! [`CandleEncoder`]: tokenizer + windows + the BERT network behind the [`Encoder`] trait.
//!
//! Owns: the e5 prefixes, cutting queries to the token limit, splitting long passages
//! into overlapping windows that each fit the model, and choosing the engine that runs
//! the network for the device asked for. Must not: pool or normalise (the engines do)
//! or know about stories.

use std::path::Path;

use candle_core::DType;
use candle_transformers::models::bert::{Config, HiddenAct};
use rayon::prelude::*;
use tokenizers::Tokenizer;

use super::device::{self, DeviceInfo, EncoderOptions, Engine, Precision};
use super::gate::QueryGate;
use super::portable::Portable;
use super::{avx512, EmbedError, Encoder, ModelFiles, ModelSpec, Role, Window};

/// The engine running the network.
enum Network {
    /// storydex's AVX-512 kernels: each window on its own, windows of different texts in
    /// parallel on the encoder's thread pool.
    Avx512(avx512::Bert),
    /// candle-transformers' BERT: windows in padded, length-sorted batches.
    Portable(Portable),
}

pub struct CandleEncoder {
    spec: ModelSpec,
    model_id: String,
    tokenizer: Tokenizer,
    network: Network,
    info: DeviceInfo,
    max_positions: usize,
    bos: u32,
    eos: u32,
    /// Passages run inside this pool, so the kernels' parallel loops are cheap
    /// work-stealing splits among its threads instead of a sleep/wake hand-off from the
    /// calling thread for each of the ~60 ops of a forward pass.
    pool: rayon::ThreadPool,
    /// Queries run in their own pool, so they never queue behind passage tasks; while
    /// one runs, passages pause at their next layer ([`QueryGate`]).
    query_pool: rayon::ThreadPool,
    gate: QueryGate,
}

/// A tokenized text, special tokens not yet added.
struct Tokens {
    ids: Vec<u32>,
    /// Byte offsets of each token in the text that was tokenized.
    offsets: Vec<(usize, usize)>,
    /// How many leading tokens belong to the role prefix (`"passage: "`).
    prefix_len: usize,
}

/// On the CPU the candle-transformers path batches at most this many padded tokens
/// unless `--batch-tokens` says otherwise: a CPU gains little from larger batches and
/// the attention scores of a batch grow with it.
const CPU_BATCH_TOKENS: usize = 2048;

impl CandleEncoder {
    /// Loads the model with the default options: the AVX-512 kernels where the CPU has
    /// them, a CUDA GPU when the build has the `cuda` feature and one answers.
    pub fn load(spec: ModelSpec, files: &ModelFiles) -> Result<Self, EmbedError> {
        Self::load_with(spec, files, EncoderOptions::default())
    }

    /// Loads the model on the device, in the precision and with the engine `options`
    /// ask for, and embeds a probe text so unusable weights fail here, not on the first
    /// request.
    pub fn load_with(
        spec: ModelSpec,
        files: &ModelFiles,
        options: EncoderOptions,
    ) -> Result<Self, EmbedError> {
        let config = read_config(&files.config)?;
        if config.hidden_size != spec.dimension {
            return Err(EmbedError::Dimension {
                expected: spec.dimension,
                got: config.hidden_size,
            });
        }
        let candle_device = device::resolve(options.device)?;
        let avx512 = match options.engine {
            Engine::Avx512 if !candle_device.is_cpu() => {
                return Err(EmbedError::Device(format!(
                    "--engine avx512 runs on the CPU only; use --engine candle (or auto) with \
                     --device {}",
                    options.device
                )))
            }
            Engine::Avx512 if !avx512::available() => {
                return Err(EmbedError::Device(
                    "--engine avx512 needs a CPU with AVX-512 (this one has none); use \
                     --engine auto or candle"
                        .to_owned(),
                ))
            }
            Engine::Avx512 => true,
            Engine::Candle => false,
            Engine::Auto => candle_device.is_cpu() && avx512::available(),
        };
        let (network, info) = if avx512 {
            let bf16 = match options.precision {
                Precision::Auto | Precision::Bf16 => avx512::bf16_available(),
                Precision::F32 => false,
                Precision::F16 => {
                    return Err(EmbedError::Device(
                        "the AVX-512 kernels run f32 or bf16, not f16; use --precision bf16, \
                         f32 or auto, or --engine candle"
                            .to_owned(),
                    ))
                }
            };
            if options.precision == Precision::Bf16 && !bf16 {
                return Err(EmbedError::Device(
                    "--precision bf16 on the AVX-512 kernels needs AVX512-BF16, which this CPU \
                     lacks; use --precision f32 or auto"
                        .to_owned(),
                ));
            }
            let bert = avx512::Bert::load(&config, &files.weights, bf16, options.int8_queries)?;
            let info = DeviceInfo {
                device: "cpu".to_owned(),
                precision: if bert.bf16() { "bf16" } else { "f32" }.to_owned(),
                engine: "avx512".to_owned(),
                batch_tokens: 0,
            };
            (Network::Avx512(bert), info)
        } else {
            let dtype = match options.precision {
                Precision::F32 => DType::F32,
                Precision::Bf16 => DType::BF16,
                Precision::F16 => DType::F16,
                Precision::Auto if candle_device.is_cpu() => DType::F32,
                Precision::Auto => DType::F16,
            };
            let budget = options.batch_tokens.unwrap_or(if candle_device.is_cpu() {
                spec.batch_tokens.min(CPU_BATCH_TOKENS)
            } else {
                spec.batch_tokens
            });
            let portable = Portable::load(
                &config,
                &files.weights,
                &candle_device,
                dtype,
                spec.pad_token_id,
                budget,
            )?;
            let info = DeviceInfo {
                device: device::name(portable.device()),
                precision: dtype_name(portable.dtype()).to_owned(),
                engine: "candle-transformers".to_owned(),
                batch_tokens: portable.batch_tokens(),
            };
            (Network::Portable(portable), info)
        };
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
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool = |name: &'static str| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(move |i| format!("storydex-{name}-{i}"))
                .build()
                .map_err(|e| EmbedError::Device(format!("cannot start the model threads: {e}")))
        };
        let (query_pool, pool) = (pool("query")?, pool("passage")?);
        let encoder = Self {
            model_id,
            tokenizer,
            network,
            info,
            max_positions: config.max_position_embeddings,
            bos,
            eos,
            spec,
            pool,
            query_pool,
            gate: QueryGate::default(),
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
            .min(self.max_positions)
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

    /// A passage's windows with their ids, not yet embedded.
    fn passage_windows(&self, text: &str) -> Result<Vec<(Window, Vec<u32>)>, EmbedError> {
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
        Ok(spans
            .into_iter()
            .map(|(from, to)| {
                let ids = self.with_specials(prefix, &body[from..to]);
                let window = Window {
                    start: floor_char_boundary(text, body_offsets[from].0),
                    end: ceil_char_boundary(text, body_offsets[to - 1].1),
                    tokens: ids.len(),
                    vector: Vec::new(),
                };
                (window, ids)
            })
            .collect())
    }

    /// Passages on the AVX-512 kernels: every window of every text its own task, all
    /// in parallel; each pauses between layers while a query runs.
    fn embed_passages_avx512(
        &self,
        bert: &avx512::Bert,
        texts: &[&str],
    ) -> Result<Vec<Vec<Window>>, EmbedError> {
        let mut windows: Vec<Vec<(Window, Vec<u32>)>> = texts
            .iter()
            .map(|text| self.passage_windows(text))
            .collect::<Result<_, _>>()?;
        let pause = || self.gate.pause_for_queries();
        // Short news items keep two cores busier this way than by splitting each small
        // matmul between them.
        self.pool.install(|| {
            windows.par_iter_mut().flatten().try_for_each(
                |(window, ids)| -> Result<(), EmbedError> {
                    window.vector = bert.embed(ids, &pause)?;
                    Ok(())
                },
            )
        })?;
        Ok(windows
            .into_iter()
            .map(|w| w.into_iter().map(|(window, _)| window).collect())
            .collect())
    }

    /// Passages on candle-transformers: every window of every text in one list, run in
    /// length-sorted padded batches.
    fn embed_passages_portable(
        &self,
        portable: &Portable,
        texts: &[&str],
    ) -> Result<Vec<Vec<Window>>, EmbedError> {
        let mut windows: Vec<Vec<(Window, Vec<u32>)>> = texts
            .iter()
            .map(|text| self.passage_windows(text))
            .collect::<Result<_, _>>()?;
        let ids: Vec<&[u32]> = windows
            .iter()
            .flatten()
            .map(|(_, ids)| ids.as_slice())
            .collect();
        let mut vectors = portable
            .embed_many(&ids, &|| self.gate.pause_for_queries())
            .into_iter();
        for (window, _) in windows.iter_mut().flatten() {
            window.vector = vectors
                .next()
                .expect("one vector per window; this is a bug")?;
        }
        Ok(windows
            .into_iter()
            .map(|w| w.into_iter().map(|(window, _)| window).collect())
            .collect())
    }

    /// Query sequences to vectors on whichever engine runs the model, on the queries'
    /// own threads, with passages paused while they run.
    fn embed_ids(&self, seqs: &[&[u32]]) -> Vec<Result<Vec<f32>, EmbedError>> {
        let _turn = self.gate.enter();
        match &self.network {
            Network::Avx512(bert) => self.query_pool.install(|| bert.embed_many(seqs)),
            Network::Portable(portable) => portable.embed_many(seqs, &|| ()),
        }
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

/// `config.json`, as candle-transformers' BERT reads it, checked for what storydex
/// supports.
fn read_config(path: &Path) -> Result<Config, EmbedError> {
    let bad = |message: String| EmbedError::Config {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let config: Config = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if config.hidden_act != HiddenAct::Gelu {
        return Err(bad(format!(
            "hidden_act {:?} is not supported (only exact \"gelu\")",
            config.hidden_act
        )));
    }
    if config.num_attention_heads == 0
        || !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
    {
        return Err(bad(format!(
            "hidden_size {} is not a multiple of num_attention_heads {}",
            config.hidden_size, config.num_attention_heads
        )));
    }
    Ok(config)
}

fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        _ => "f32",
    }
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
        self.embed_ids(&[&ids])
            .pop()
            .expect("one vector per query; this is a bug")
    }

    fn embed_queries(&self, texts: &[&str]) -> Vec<Result<Vec<f32>, EmbedError>> {
        let ids: Vec<Result<Vec<u32>, EmbedError>> =
            texts.iter().map(|t| self.query_ids(t)).collect();
        let seqs: Vec<&[u32]> = ids.iter().filter_map(|r| r.as_deref().ok()).collect();
        let mut vectors = self.embed_ids(&seqs).into_iter();
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
        match &self.network {
            Network::Avx512(bert) => self.embed_passages_avx512(bert, texts),
            Network::Portable(portable) => self.embed_passages_portable(portable, texts),
        }
    }

    fn count_tokens(&self, text: &str) -> Result<usize, EmbedError> {
        // What the model reads: the query cut to its window, prefix and specials included.
        Ok(self.query_ids(text)?.len())
    }

    fn passage_layout(&self) -> String {
        self.spec.layout_key()
    }

    fn device_info(&self) -> DeviceInfo {
        let mut info = self.info.clone();
        if let Network::Portable(p) = &self.network {
            info.batch_tokens = p.batch_tokens();
        }
        info
    }
}

#[cfg(test)]
#[path = "encoder_tests.rs"]
mod tests;
