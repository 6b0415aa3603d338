//! storydex's own BERT forward pass for x86 CPUs with AVX-512: the fast CPU path.
//!
//! Owns: packing the weights of `model.safetensors` for the kernels in [`linear`] and
//! [`attention`], and the forward pass of token sequences to mean-pooled, L2-normalised
//! vectors on plain buffers. Must not: tokenize or window text, or run anywhere without
//! AVX-512 (the encoder uses candle-transformers' BERT there, see `super::portable`).
//!
//! The maths is BERT's (the same as candle-transformers' `models::bert`, which the
//! tests hold it to); the hot path is shorter: Q, K and V are one fused matmul with the
//! 1/sqrt(d) scale folded into Q, attention is fused per head, residual + layer norm
//! run row by row, and the 250k-row word embedding table stays in the memory map (only
//! the rows a text uses are read). candle's element-wise ops are not used here: above
//! 64k elements they fan out to a separate spinning thread pool behind one mutex, which
//! serialised the windows embedded in parallel and spun against our own threads.

pub(crate) mod attention;
pub(crate) mod linear;
pub mod roofline;

use std::path::Path;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::Config;

use self::linear::{LongPrecision, PackedLinear};
use crate::embed::EmbedError;

struct LayerNorm {
    eps: f32,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl LayerNorm {
    /// `x = LayerNorm(x + residual)` for each row of `x` (`residual` empty: no sum).
    fn add_and_norm(&self, x: &mut [f32], residual: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if linear::avx512_available() {
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { add_and_norm_avx512(self, x, residual) };
            return;
        }
        add_and_norm_rows(self, x, residual);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn add_and_norm_avx512(norm: &LayerNorm, x: &mut [f32], residual: &[f32]) {
    add_and_norm_rows(norm, x, residual);
}

/// Two passes per row (mean, then variance about it) with 16 partial sums each, so the
/// reductions vectorise.
#[inline(always)]
fn add_and_norm_rows(norm: &LayerNorm, x: &mut [f32], residual: &[f32]) {
    const LANES: usize = 16;
    let width = norm.weight.len();
    for (i, row) in x.chunks_exact_mut(width).enumerate() {
        if !residual.is_empty() {
            for (a, r) in row.iter_mut().zip(&residual[i * width..(i + 1) * width]) {
                *a += r;
            }
        }
        let mut lanes = [0.0f32; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for l in 0..LANES {
                lanes[l] += c[l];
            }
        }
        let mean =
            (lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()) / width as f32;
        let mut lanes = [0.0f32; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for l in 0..LANES {
                lanes[l] = (c[l] - mean).mul_add(c[l] - mean, lanes[l]);
            }
        }
        let tail: f32 = chunks
            .remainder()
            .iter()
            .map(|v| (v - mean) * (v - mean))
            .sum();
        let var = (lanes.iter().sum::<f32>() + tail) / width as f32;
        let inv = 1.0 / (var + norm.eps).sqrt();
        for ((a, w), b) in row.iter_mut().zip(&norm.weight).zip(&norm.bias) {
            *a = ((*a - mean) * inv).mul_add(*w, *b);
        }
    }
}

struct Layer {
    /// Q, K and V stacked into one `[3H, H]` projection; Q pre-scaled by 1/sqrt(head dim).
    qkv: PackedLinear,
    attention_out: PackedLinear,
    attention_norm: LayerNorm,
    /// With the GELU fused in.
    intermediate: PackedLinear,
    output: PackedLinear,
    output_norm: LayerNorm,
}

pub(crate) struct Bert {
    /// Keeps the word embedding table mapped; rows are gathered from it per text.
    weights: MmapedSafetensors,
    /// Long inputs in bf16 (attention included).
    bf16: bool,
    /// Short inputs (queries) with the int8 copy of the weights.
    int8_short: bool,
    /// Position embeddings plus token type 0 (which every e5 input uses), `[positions, h]`.
    position_and_type: Vec<f32>,
    hidden: usize,
    heads: usize,
    vocab: usize,
    max_positions: usize,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";

/// Whether this CPU runs the kernels at all.
pub(crate) fn available() -> bool {
    linear::avx512_available()
}

/// Whether this CPU runs long inputs in bf16 (AVX512-BF16).
pub(crate) fn bf16_available() -> bool {
    linear::bf16_available()
}

/// Asks the kernel to read the weights file into the page cache now, in the background.
///
/// The word-embedding table stays mapped and a query reads one row per token, so on a
/// cold page cache (a fresh boot, a machine whose other work evicted the file) each
/// token not seen before was a disk read in the middle of a request: over 134 distinct
/// queries right after evicting the file, p99 77 ms and max 146 ms against 22 and 23 ms
/// warm. With the read-ahead they take minor faults only. Best effort: page cache, not
/// this process's memory, and nothing waits for it.
fn prefetch(path: &Path) {
    let Ok(file) = std::fs::File::open(path) else {
        return;
    };
    // SAFETY: read-only, and only used for the advice; see `Bert::load`.
    if let Ok(map) = unsafe { memmap2::Mmap::map(&file) } {
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::WillNeed);
        drop(map);
    }
}

impl Bert {
    /// Loads and packs the weights; `bf16`: long inputs in bf16 (needs AVX512-BF16),
    /// `int8_short`: short inputs with int8 weights.
    pub(crate) fn load(
        config: &Config,
        weights_path: &Path,
        bf16: bool,
        int8_short: bool,
    ) -> Result<Self, EmbedError> {
        assert!(
            available(),
            "the AVX-512 encoder needs AVX-512; this is a bug"
        );
        let precision = if bf16 && bf16_available() {
            LongPrecision::Bf16
        } else {
            LongPrecision::F32
        };
        // SAFETY: the file is opened read-only and storydex never writes model files
        // while they are mapped; a concurrent external rewrite is outside our contract.
        let weights = unsafe { MmapedSafetensors::new(weights_path)? };
        prefetch(weights_path);
        let prefix = if weights.get(WORD_EMBEDDINGS).is_ok() {
            ""
        } else {
            "bert."
        };
        let h = config.hidden_size;
        let bad = |message: String| EmbedError::Config {
            path: weights_path.to_owned(),
            message,
        };
        let load = |name: &str, shape: &[usize]| -> Result<Tensor, EmbedError> {
            let full = format!("{prefix}{name}");
            let t = weights
                .load(&full, &Device::Cpu)
                .map_err(|e| bad(format!("tensor {full}: {e}")))?
                .to_dtype(DType::F32)?;
            if t.dims() != shape {
                return Err(bad(format!(
                    "tensor {full} has shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
            Ok(t)
        };
        let host = |t: Tensor| -> Result<Vec<f32>, EmbedError> { Ok(t.flatten_all()?.to_vec1()?) };
        let norm = |name: &str| -> Result<LayerNorm, EmbedError> {
            Ok(LayerNorm {
                weight: host(load(&format!("{name}.weight"), &[h])?)?,
                bias: host(load(&format!("{name}.bias"), &[h])?)?,
                eps: config.layer_norm_eps as f32,
            })
        };
        let weight_and_bias =
            |name: &str, out: usize, inp: usize| -> Result<(Tensor, Tensor), EmbedError> {
                Ok((
                    load(&format!("{name}.weight"), &[out, inp])?,
                    load(&format!("{name}.bias"), &[out])?,
                ))
            };
        let pack = |w: Tensor, b: Tensor, gelu: bool| -> Result<PackedLinear, EmbedError> {
            let (out, inp) = w.dims2()?;
            if out % linear::NR != 0 {
                return Err(bad(format!(
                    "a dense layer has {out} outputs; the AVX-512 kernels need a multiple \
                     of {} (run with --device cpu on a build without them, or another model)",
                    linear::NR
                )));
            }
            Ok(PackedLinear::with_precision(
                &host(w)?,
                &host(b)?,
                out,
                inp,
                gelu,
                precision,
            ))
        };
        let dense = |name: &str, out: usize, inp: usize, gelu: bool| {
            let (w, b) = weight_and_bias(name, out, inp)?;
            pack(w, b, gelu)
        };

        let word = weights.get(&format!("{prefix}{WORD_EMBEDDINGS}"))?;
        if word.shape() != [config.vocab_size, h] || word.dtype() != safetensors::Dtype::F32 {
            return Err(bad(format!(
                "{WORD_EMBEDDINGS} must be F32 [{}, {h}], found {:?} {:?}",
                config.vocab_size,
                word.dtype(),
                word.shape()
            )));
        }

        let positions = load(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let token_type = load("embeddings.token_type_embeddings.weight", &[2, h])?;
        let position_and_type = host(positions.broadcast_add(&token_type.narrow(0, 0, 1)?)?)?;

        let head_dim = h / config.num_attention_heads;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let (qw, qb) = weight_and_bias(&format!("{p}.attention.self.query"), h, h)?;
            let (kw, kb) = weight_and_bias(&format!("{p}.attention.self.key"), h, h)?;
            let (vw, vb) = weight_and_bias(&format!("{p}.attention.self.value"), h, h)?;
            let qkv_w = Tensor::cat(&[(qw * scale)?, kw, vw], 0)?;
            let qkv_b = Tensor::cat(&[(qb * scale)?, kb, vb], 0)?;
            layers.push(Layer {
                qkv: pack(qkv_w, qkv_b, false)?,
                attention_out: dense(&format!("{p}.attention.output.dense"), h, h, false)?,
                attention_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                intermediate: dense(
                    &format!("{p}.intermediate.dense"),
                    config.intermediate_size,
                    h,
                    true,
                )?,
                output: dense(
                    &format!("{p}.output.dense"),
                    h,
                    config.intermediate_size,
                    false,
                )?,
                output_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let embedding_norm = norm("embeddings.LayerNorm")?;
        Ok(Self {
            weights,
            bf16: precision == LongPrecision::Bf16,
            int8_short,
            position_and_type,
            hidden: h,
            heads: config.num_attention_heads,
            vocab: config.vocab_size,
            max_positions: config.max_position_embeddings,
            embedding_norm,
            layers,
        })
    }

    /// Whether long inputs run in bf16.
    pub(crate) fn bf16(&self) -> bool {
        self.bf16
    }

    /// The rows of `ids` in the mapped word embedding table, `[ids.len(), hidden]`.
    fn word_rows(&self, ids: &[u32]) -> Result<Vec<f32>, EmbedError> {
        let view = self
            .weights
            .get(WORD_EMBEDDINGS)
            .or_else(|_| self.weights.get(&format!("bert.{WORD_EMBEDDINGS}")))?;
        let data = view.data();
        let row_bytes = self.hidden * 4;
        let mut out = Vec::with_capacity(ids.len() * self.hidden);
        for &id in ids {
            let id = id as usize;
            if id >= self.vocab {
                return Err(EmbedError::Tokenizer(format!(
                    "token id {id} is outside the model's vocabulary of {}",
                    self.vocab
                )));
            }
            let row = &data[id * row_bytes..(id + 1) * row_bytes];
            out.extend(
                row.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
        Ok(out)
    }

    fn check_len(&self, len: usize) -> Result<(), EmbedError> {
        crate::embed::check_sequence(len, self.max_positions)
    }

    /// One sequence (`<s> ... </s>`, no padding) to its mean-pooled unit vector.
    /// `between_layers` runs before each layer (passages pause there for queries).
    pub(crate) fn embed(
        &self,
        ids: &[u32],
        between_layers: &dyn Fn(),
    ) -> Result<Vec<f32>, EmbedError> {
        self.check_len(ids.len())?;
        Ok(self
            .forward(&[ids], linear::is_short(ids.len()), between_layers)?
            .remove(0))
    }

    /// Several sequences to their vectors, in order, each exactly as [`Bert::embed`]
    /// gives it. Sequences of one precision class (short or long) run as one forward
    /// pass: their rows share each weight read, which is what a short query is bound
    /// by, while attention and pooling stay within each sequence.
    pub(crate) fn embed_many(&self, seqs: &[&[u32]]) -> Vec<Result<Vec<f32>, EmbedError>> {
        if seqs.len() < 2 {
            return seqs.iter().map(|ids| self.embed(ids, &|| ())).collect();
        }
        let mut out: Vec<Option<Result<Vec<f32>, EmbedError>>> = seqs
            .iter()
            .map(|ids| self.check_len(ids.len()).err().map(Err))
            .collect();
        for short in [true, false] {
            let group: Vec<usize> = (0..seqs.len())
                .filter(|&i| out[i].is_none() && linear::is_short(seqs[i].len()) == short)
                .collect();
            if group.is_empty() {
                continue;
            }
            let members: Vec<&[u32]> = group.iter().map(|&i| seqs[i]).collect();
            match self.forward(&members, short, &|| ()) {
                Ok(vectors) => {
                    for (i, v) in group.into_iter().zip(vectors) {
                        out[i] = Some(Ok(v));
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    for i in group {
                        out[i] = Some(Err(EmbedError::Candle(candle_core::Error::Msg(
                            message.clone(),
                        ))));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| r.expect("every sequence was embedded; this is a bug"))
            .collect()
    }

    /// The forward pass of `seqs` (all short or all long, as `short` says) stacked row
    /// after row through the dense layers, each its own attention and mean.
    fn forward(
        &self,
        seqs: &[&[u32]],
        short: bool,
        between_layers: &dyn Fn(),
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        use rayon::prelude::*;
        let h = self.hidden;
        let int8 = short && self.int8_short;
        let ids: Vec<u32> = seqs.concat();
        let rows = ids.len();
        let mut starts = Vec::with_capacity(seqs.len());
        let mut positions = Vec::with_capacity(rows * h);
        for s in seqs {
            starts.push(positions.len() / h);
            positions.extend_from_slice(&self.position_and_type[..s.len() * h]);
        }
        let mut x = self.word_rows(&ids)?;
        self.embedding_norm.add_and_norm(&mut x, &positions);
        for layer in &self.layers {
            between_layers();
            let qkv = layer.qkv.apply_with(&x, rows, int8);
            let context = if seqs.len() == 1 {
                attention::attention(&qkv, rows, h, self.heads, self.bf16)
            } else {
                let parts: Vec<Vec<f32>> = seqs
                    .par_iter()
                    .zip(&starts)
                    .map(|(s, &start)| {
                        let qkv = &qkv[start * 3 * h..(start + s.len()) * 3 * h];
                        attention::attention(qkv, s.len(), h, self.heads, self.bf16)
                    })
                    .collect();
                parts.concat()
            };
            let mut attended = layer.attention_out.apply_with(&context, rows, int8);
            layer.attention_norm.add_and_norm(&mut attended, &x);
            let ff = layer.intermediate.apply_with(&attended, rows, int8);
            x = layer.output.apply_with(&ff, rows, int8);
            layer.output_norm.add_and_norm(&mut x, &attended);
        }
        Ok(seqs
            .iter()
            .zip(&starts)
            .map(|(s, &start)| {
                let mut pooled = vec![0.0f32; h];
                for row in x[start * h..(start + s.len()) * h].chunks_exact(h) {
                    pooled.iter_mut().zip(row).for_each(|(p, v)| *p += v);
                }
                crate::embed::normalize(&mut pooled);
                pooled
            })
            .collect())
    }
}
