//! candle-transformers' BERT: the portable path (CPUs without AVX-512, every GPU).
//!
//! Owns: loading `candle_transformers::models::bert` from the model folder, padding
//! windows into length-sorted batches under a token budget (with an attention mask),
//! mean pooling over the real tokens, and shrinking the batches when a GPU runs out of
//! memory. Must not: tokenize or window text (the encoder does), or hold model code of
//! its own beyond that glue.
//!
//! In f32 the network is `BertModel` as candle-transformers ships it. In f16 and bf16 it
//! is the same crate's `BertEncoder` (all twelve layers) fed by the embedding sum and
//! layer norm below: `BertModel` builds its attention mask as `(1 - mask) × f32::MIN`
//! converted to the model's type, and in f16 or bf16 `f32::MIN` rounds to -inf, so every
//! real token's mask becomes `0 × -inf = NaN`. The glue uses a finite -10,000 instead,
//! as BERT's original implementation did; softmax turns it into an exact 0.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use candle_transformers::models::bert::{BertEncoder, BertModel, Config};

use super::device::is_out_of_memory;
use super::EmbedError;

/// What a padded position adds to an attention score in half precision.
const MASKED: f64 = -10_000.0;

/// The network in the precision it was loaded in.
enum Network {
    /// f32: candle-transformers' whole model.
    Model(BertModel),
    /// f16 / bf16: candle-transformers' encoder layers behind finite-mask glue.
    Half {
        words: Embedding,
        /// Position embeddings plus token type 0, `[positions, hidden]`.
        position_and_type: Tensor,
        norm: LayerNorm,
        encoder: BertEncoder,
    },
}

pub(crate) struct Portable {
    network: Network,
    device: Device,
    dtype: DType,
    pad_id: u32,
    max_positions: usize,
    /// Padded tokens (sequences × longest) per forward pass; halved when the GPU runs
    /// out of memory, so an ingest goes on in smaller batches instead of failing.
    batch_tokens: AtomicUsize,
}

impl Portable {
    pub(crate) fn load(
        config: &Config,
        weights: &Path,
        device: &Device,
        dtype: DType,
        pad_id: u32,
        batch_tokens: usize,
    ) -> Result<Self, EmbedError> {
        let bad = |e: candle_core::Error| EmbedError::Config {
            path: weights.to_owned(),
            message: e.to_string(),
        };
        // SAFETY: the file is opened read-only and storydex never writes model files
        // while they are mapped; a concurrent external rewrite is outside our contract.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], dtype, device) }
            .map_err(bad)?;
        Self::from_var_builder(vb, config, dtype, pad_id, batch_tokens).map_err(|e| match e {
            EmbedError::Candle(e) => bad(e),
            other => other,
        })
    }

    /// [`Portable::load`] from weights already in a `VarBuilder` (the device check's
    /// seeded random model).
    pub(crate) fn from_var_builder(
        vb: VarBuilder,
        config: &Config,
        dtype: DType,
        pad_id: u32,
        batch_tokens: usize,
    ) -> Result<Self, EmbedError> {
        let device = vb.device().clone();
        let bad = EmbedError::Candle;
        let network = if dtype == DType::F32 {
            Network::Model(BertModel::load(vb, config).map_err(bad)?)
        } else {
            let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
                vb.pp("bert")
            } else {
                vb
            };
            let e = vb.pp("embeddings");
            let h = config.hidden_size;
            let words =
                candle_nn::embedding(config.vocab_size, h, e.pp("word_embeddings")).map_err(bad)?;
            let positions = e
                .pp("position_embeddings")
                .get((config.max_position_embeddings, h), "weight")
                .map_err(bad)?;
            let types = e
                .pp("token_type_embeddings")
                .get((config.type_vocab_size, h), "weight")
                .map_err(bad)?;
            let position_and_type = positions
                .broadcast_add(&types.narrow(0, 0, 1)?)?
                .contiguous()?;
            let norm =
                candle_nn::layer_norm(h, config.layer_norm_eps, e.pp("LayerNorm")).map_err(bad)?;
            let encoder = BertEncoder::load(vb.pp("encoder"), config).map_err(bad)?;
            Network::Half {
                words,
                position_and_type,
                norm,
                encoder,
            }
        };
        Ok(Self {
            network,
            device,
            dtype,
            pad_id,
            max_positions: config.max_position_embeddings,
            batch_tokens: AtomicUsize::new(batch_tokens.max(1)),
        })
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    pub(crate) fn dtype(&self) -> DType {
        self.dtype
    }

    /// Padded tokens per forward pass now (lower than asked after an out-of-memory).
    pub(crate) fn batch_tokens(&self) -> usize {
        self.batch_tokens.load(Ordering::Relaxed)
    }

    fn check_len(&self, len: usize) -> Result<(), EmbedError> {
        crate::embed::check_sequence(len, self.max_positions)
    }

    /// Sequences (`<s> ... </s>`, unpadded) to their mean-pooled unit vectors, in order.
    ///
    /// They run longest first in padded batches of at most the token budget, so a batch
    /// holds sequences of similar length and little of it is padding. Each vector equals
    /// the one its sequence gets alone, up to float rounding: padded positions are masked
    /// out of attention and pooling.
    /// `between_batches` runs before each batch (passages pause there for queries).
    pub(crate) fn embed_many(
        &self,
        seqs: &[&[u32]],
        between_batches: &dyn Fn(),
    ) -> Vec<Result<Vec<f32>, EmbedError>> {
        let mut out: Vec<Option<Result<Vec<f32>, EmbedError>>> = seqs
            .iter()
            .map(|s| self.check_len(s.len()).err().map(Err))
            .collect();
        let mut order: Vec<usize> = (0..seqs.len()).filter(|&i| out[i].is_none()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
        let mut rest = &order[..];
        while !rest.is_empty() {
            let take = batch_len(rest.iter().map(|&i| seqs[i].len()), self.batch_tokens());
            let (batch, after) = rest.split_at(take);
            rest = after;
            let members: Vec<&[u32]> = batch.iter().map(|&i| seqs[i]).collect();
            between_batches();
            for (&i, vector) in batch.iter().zip(self.embed_batch(&members)) {
                out[i] = Some(vector);
            }
        }
        out.into_iter()
            .map(|r| r.expect("every sequence was embedded; this is a bug"))
            .collect()
    }

    /// One batch; on a GPU out of memory, the budget halves and the batch runs again in
    /// two halves (down to one sequence, which fails with a sentence saying so).
    fn embed_batch(&self, seqs: &[&[u32]]) -> Vec<Result<Vec<f32>, EmbedError>> {
        match self.forward(seqs) {
            Ok(vectors) => vectors.into_iter().map(Ok).collect(),
            Err(e) if is_out_of_memory(&e) && seqs.len() > 1 => {
                let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(1);
                let smaller = (seqs.len() / 2 * longest).max(1);
                let before = self.batch_tokens.fetch_min(smaller, Ordering::Relaxed);
                if smaller < before {
                    tracing::warn!(
                        before,
                        after = smaller,
                        device = %super::device::name(&self.device),
                        "out of GPU memory: embedding in smaller batches"
                    );
                }
                let (a, b) = seqs.split_at(seqs.len() / 2);
                let mut out = self.embed_batch(a);
                out.extend(self.embed_batch(b));
                out
            }
            Err(e) if is_out_of_memory(&e) => vec![Err(EmbedError::Device(format!(
                "out of GPU memory on {} embedding one window of {} tokens ({e}); free memory \
                 on the GPU (nvidia-smi shows who holds it) or run with --device cpu",
                super::device::name(&self.device),
                seqs[0].len()
            )))],
            Err(e) => {
                let message = e.to_string();
                seqs.iter()
                    .map(|_| Err(EmbedError::Candle(candle_core::Error::Msg(message.clone()))))
                    .collect()
            }
        }
    }

    /// The forward pass of one padded batch: `[n, longest]` ids (pad id on the right),
    /// the mask, the network, then the mean over each sequence's real tokens.
    fn forward(&self, seqs: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let n = seqs.len();
        let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(n * longest);
        let mut mask = Vec::with_capacity(n * longest);
        for s in seqs {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(self.pad_id, longest - s.len()));
            mask.extend(std::iter::repeat_n(1.0f32, s.len()));
            mask.extend(std::iter::repeat_n(0.0f32, longest - s.len()));
        }
        let ids = Tensor::from_vec(ids, (n, longest), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, longest), &self.device)?;
        let hidden = match &self.network {
            Network::Model(model) => model.forward(&ids, &ids.zeros_like()?, Some(&mask))?,
            Network::Half {
                words,
                position_and_type,
                norm,
                encoder,
            } => {
                let x = words
                    .forward(&ids)?
                    .broadcast_add(&position_and_type.narrow(0, 0, longest)?)?;
                let x = norm.forward(&x)?;
                // [n, 1, 1, longest]: 0 for real tokens, MASKED for padding.
                let extended = ((1.0 - &mask)? * MASKED)?
                    .to_dtype(self.dtype)?
                    .unsqueeze(1)?
                    .unsqueeze(1)?;
                encoder.forward(&x, &extended)?
            }
        };
        let hidden = hidden.to_dtype(DType::F32)?;
        let summed = hidden.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
        let mut vectors = summed.to_vec2::<f32>()?;
        for v in &mut vectors {
            // The mean and the sum point the same way; the unit vector is the same.
            super::normalize(v);
        }
        Ok(vectors)
    }
}

/// How many of `lens` (longest first) go in the next batch: as many as keep
/// `count × longest` within `budget`, and always at least one.
fn batch_len(lens: impl Iterator<Item = usize>, budget: usize) -> usize {
    let mut longest = 0;
    let mut count = 0;
    for len in lens {
        longest = longest.max(len);
        if count > 0 && (count + 1) * longest > budget {
            break;
        }
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_fill_the_token_budget_with_the_longest_first() {
        assert_eq!(batch_len([512, 512, 400].into_iter(), 1024), 2);
        assert_eq!(batch_len([512, 10, 10].into_iter(), 1024), 2);
        assert_eq!(batch_len([100; 50].into_iter(), 1024), 10);
        // One sequence over the budget still runs, alone.
        assert_eq!(batch_len([512, 512].into_iter(), 100), 1);
        assert_eq!(batch_len(std::iter::empty(), 100), 0);
    }
}
