//! The BERT encoder (e5 family) written on candle tensors.
//!
//! Owns: loading weights from `model.safetensors` and the forward pass of one token
//! sequence to a mean-pooled, L2-normalised vector. Must not: tokenize or window text.
//!
//! This follows candle-transformers' `models::bert` (same weights, same maths) but keeps
//! the hot path short: Q, K and V are one fused matmul with the 1/sqrt(d) scale folded
//! into Q, and the 250k-row word embedding table stays in the memory map (only the rows
//! a text uses are read).
//!
//! Where every dense layer has the packed AVX-512 kernel, the forward pass runs on plain
//! buffers ([`Bert::embed_packed`]): the kernels, fused attention, and residual + layer
//! norm done row by row here. candle's own element-wise ops are not used there: above
//! 64k elements they fan out to a separate spinning thread pool behind one mutex, which
//! serialised the windows embedded in parallel and spun against our own threads.
//! Elsewhere (no AVX-512, GPUs) the same maths runs on candle tensors.

use std::path::Path;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor, D};
use serde::Deserialize;

use super::attention::FusedAttention;
use super::linear::{Dense, LongPrecision};
use super::EmbedError;

/// The fields of `config.json` this encoder uses (HF BERT names).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BertConfig {
    pub(crate) vocab_size: usize,
    pub(crate) hidden_size: usize,
    pub(crate) num_hidden_layers: usize,
    pub(crate) num_attention_heads: usize,
    pub(crate) intermediate_size: usize,
    pub(crate) hidden_act: String,
    pub(crate) max_position_embeddings: usize,
    pub(crate) layer_norm_eps: f64,
}

impl BertConfig {
    pub(crate) fn from_file(path: &Path) -> Result<Self, EmbedError> {
        let bad = |message: String| EmbedError::Config {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let config: BertConfig = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if config.hidden_act != "gelu" {
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
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
    /// The same parameters on the host, for the packed path.
    host_weight: Vec<f32>,
    host_bias: Vec<f32>,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }

    /// `x = LayerNorm(x + residual)` for each row of `x` (`residual` empty: no sum).
    fn add_and_norm(&self, x: &mut [f32], residual: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if super::linear::avx512_available() {
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
    let width = norm.host_weight.len();
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
        for ((a, w), b) in row.iter_mut().zip(&norm.host_weight).zip(&norm.host_bias) {
            *a = ((*a - mean) * inv).mul_add(*w, *b);
        }
    }
}

struct Layer {
    /// Q, K and V stacked into one `[3H, H]` projection; Q pre-scaled by 1/sqrt(head dim).
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    /// With the GELU fused in.
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
}

pub(crate) struct Bert {
    /// Keeps the word embedding table mapped; rows are gathered from it per text.
    weights: MmapedSafetensors,
    /// Every dense layer has the packed kernel: run [`Bert::embed_packed`].
    packed: bool,
    /// Long inputs in bf16 (attention included) on the packed path.
    bf16: bool,
    /// `position_and_type` on the host, for the packed path.
    host_position_and_type: Vec<f32>,
    hidden: usize,
    heads: usize,
    vocab: usize,
    max_positions: usize,
    /// Position embeddings plus token type 0, which every e5 input uses.
    position_and_type: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    device: Device,
}

const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";

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
    /// `precision`: how the packed kernels keep weights for long inputs.
    pub(crate) fn load(
        config: &BertConfig,
        weights_path: &Path,
        device: &Device,
        precision: LongPrecision,
    ) -> Result<Self, EmbedError> {
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
        let load = |name: &str, shape: &[usize]| -> Result<Tensor, EmbedError> {
            let full = format!("{prefix}{name}");
            let t = weights
                .load(&full, device)
                .map_err(|e| EmbedError::Config {
                    path: weights_path.to_owned(),
                    message: format!("tensor {full}: {e}"),
                })?
                .to_dtype(DType::F32)?;
            if t.dims() != shape {
                return Err(EmbedError::Config {
                    path: weights_path.to_owned(),
                    message: format!("tensor {full} has shape {:?}, expected {shape:?}", t.dims()),
                });
            }
            Ok(t)
        };
        let norm = |name: &str| -> Result<LayerNorm, EmbedError> {
            let weight = load(&format!("{name}.weight"), &[h])?;
            let bias = load(&format!("{name}.bias"), &[h])?;
            Ok(LayerNorm {
                host_weight: weight.to_vec1()?,
                host_bias: bias.to_vec1()?,
                weight,
                bias,
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
        let dense = |name: &str, out: usize, inp: usize, gelu: bool| -> Result<Dense, EmbedError> {
            let (w, b) = weight_and_bias(name, out, inp)?;
            Ok(Dense::new(w, b, gelu, precision)?)
        };

        let word = weights.get(&format!("{prefix}{WORD_EMBEDDINGS}"))?;
        if word.shape() != [config.vocab_size, h] || word.dtype() != safetensors::Dtype::F32 {
            return Err(EmbedError::Config {
                path: weights_path.to_owned(),
                message: format!(
                    "{WORD_EMBEDDINGS} must be F32 [{}, {h}], found {:?} {:?}",
                    config.vocab_size,
                    word.dtype(),
                    word.shape()
                ),
            });
        }

        let positions = load(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let token_type = load("embeddings.token_type_embeddings.weight", &[2, h])?;
        let position_and_type = positions.broadcast_add(&token_type.narrow(0, 0, 1)?)?;

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
                qkv: Dense::new(qkv_w, qkv_b, false, precision)?,
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
        let packed = device.is_cpu()
            && layers.iter().all(|l| {
                [&l.qkv, &l.attention_out, &l.intermediate, &l.output]
                    .iter()
                    .all(|d| d.packed().is_some())
            });
        let host_position_and_type = if packed {
            position_and_type.flatten_all()?.to_vec1()?
        } else {
            Vec::new()
        };
        Ok(Self {
            weights,
            packed,
            bf16: precision == LongPrecision::Bf16,
            host_position_and_type,
            hidden: h,
            heads: config.num_attention_heads,
            vocab: config.vocab_size,
            max_positions: config.max_position_embeddings,
            position_and_type,
            embedding_norm,
            layers,
            device: device.clone(),
        })
    }

    pub(crate) fn max_positions(&self) -> usize {
        self.max_positions
    }

    pub(crate) fn hidden(&self) -> usize {
        self.hidden
    }

    /// Gathers the rows of `ids` from the mapped word embedding table.
    fn word_embeddings(&self, ids: &[u32]) -> Result<Tensor, EmbedError> {
        let rows = self.word_rows(ids)?;
        Ok(Tensor::from_vec(
            rows,
            (ids.len(), self.hidden),
            &self.device,
        )?)
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

    /// One sequence (`<s> ... </s>`, no padding) to its mean-pooled unit vector.
    pub(crate) fn embed(&self, ids: &[u32]) -> Result<Vec<f32>, EmbedError> {
        let len = ids.len();
        if len == 0 {
            return Err(EmbedError::EmptyText);
        }
        if len > self.max_positions {
            return Err(EmbedError::Tokenizer(format!(
                "{len} tokens is more than the model's {} positions",
                self.max_positions
            )));
        }
        if self.packed {
            let short = super::linear::is_short(len);
            return Ok(self.embed_packed(&[ids], short)?.remove(0));
        }
        let x = self
            .word_embeddings(ids)?
            .add(&self.position_and_type.narrow(0, 0, len)?)?;
        let mut x = self.embedding_norm.forward(&x)?;
        for layer in &self.layers {
            x = self.layer_forward(layer, &x)?;
        }
        let mut pooled = x.mean(0)?.to_vec1::<f32>()?;
        super::normalize(&mut pooled);
        Ok(pooled)
    }

    /// Several sequences to their vectors, in order, each exactly as [`Bert::embed`]
    /// gives it. With packed layers, sequences of one precision class (short or long)
    /// run as one forward pass: their rows share each weight read, which is what a short
    /// query is bound by, while attention and pooling stay within each sequence.
    pub(crate) fn embed_many(&self, seqs: &[&[u32]]) -> Vec<Result<Vec<f32>, EmbedError>> {
        let valid = |ids: &[u32]| !ids.is_empty() && ids.len() <= self.max_positions;
        if !self.packed || seqs.len() < 2 {
            return seqs.iter().map(|ids| self.embed(ids)).collect();
        }
        let mut out: Vec<Option<Result<Vec<f32>, EmbedError>>> = seqs
            .iter()
            .map(|ids| (!valid(ids)).then(|| self.embed(ids)))
            .collect();
        for short in [true, false] {
            let group: Vec<usize> = (0..seqs.len())
                .filter(|&i| out[i].is_none() && super::linear::is_short(seqs[i].len()) == short)
                .collect();
            if group.is_empty() {
                continue;
            }
            let members: Vec<&[u32]> = group.iter().map(|&i| seqs[i]).collect();
            match self.embed_packed(&members, short) {
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

    /// [`Bert::embed`] on plain buffers, for when every dense layer is packed: `seqs`
    /// (all short or all long, as `short` says) stacked row after row through the dense
    /// layers, each its own attention and mean.
    fn embed_packed(&self, seqs: &[&[u32]], short: bool) -> Result<Vec<Vec<f32>>, EmbedError> {
        use rayon::prelude::*;
        let h = self.hidden;
        fn packed(d: &Dense) -> &super::linear::PackedLinear {
            d.packed()
                .expect("embed_packed needs packed layers; this is a bug")
        }
        let ids: Vec<u32> = seqs.concat();
        let rows = ids.len();
        let mut starts = Vec::with_capacity(seqs.len());
        let mut positions = Vec::with_capacity(rows * h);
        for s in seqs {
            starts.push(positions.len() / h);
            positions.extend_from_slice(&self.host_position_and_type[..s.len() * h]);
        }
        let mut x = self.word_rows(&ids)?;
        self.embedding_norm.add_and_norm(&mut x, &positions);
        for layer in &self.layers {
            let qkv = packed(&layer.qkv).apply_rows(&x, rows, short);
            let context = if seqs.len() == 1 {
                super::attention::attention(&qkv, rows, h, self.heads, self.bf16)
            } else {
                let parts: Vec<Vec<f32>> = seqs
                    .par_iter()
                    .zip(&starts)
                    .map(|(s, &start)| {
                        let qkv = &qkv[start * 3 * h..(start + s.len()) * 3 * h];
                        super::attention::attention(qkv, s.len(), h, self.heads, self.bf16)
                    })
                    .collect();
                parts.concat()
            };
            let mut attended = packed(&layer.attention_out).apply_rows(&context, rows, short);
            layer.attention_norm.add_and_norm(&mut attended, &x);
            let ff = packed(&layer.intermediate).apply_rows(&attended, rows, short);
            x = packed(&layer.output).apply_rows(&ff, rows, short);
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
                super::normalize(&mut pooled);
                pooled
            })
            .collect())
    }

    fn layer_forward(&self, layer: &Layer, x: &Tensor) -> candle_core::Result<Tensor> {
        let (len, h) = x.dims2()?;
        let qkv = layer.qkv.forward(x)?;
        let context = if qkv.device().is_cpu() {
            qkv.apply_op1_no_bwd(&FusedAttention { heads: self.heads })?
        } else {
            let head_dim = h / self.heads;
            // [len, 3H] -> three [heads, len, head_dim]
            let split = |i: usize| -> candle_core::Result<Tensor> {
                qkv.narrow(1, i * h, h)?
                    .reshape((len, self.heads, head_dim))?
                    .transpose(0, 1)?
                    .contiguous()
            };
            let (q, k, v) = (split(0)?, split(1)?, split(2)?);
            let scores = q.matmul(&k.t()?)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            probs
                .matmul(&v)?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((len, h))?
        };
        let attended = layer
            .attention_norm
            .forward(&(layer.attention_out.forward(&context)? + x)?)?;
        let ff = layer.intermediate.forward(&attended)?;
        let out = (layer.output.forward(&ff)? + &attended)?;
        let out = layer.output_norm.forward(&out)?;
        debug_assert_eq!(out.dim(D::Minus1)?, h);
        Ok(out)
    }
}
