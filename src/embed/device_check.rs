//! `storydex model check-device`: does the portable path on a device compute what it
//! computes on the CPU, and how fast? Self-contained: a BERT of the real model's shape
//! with seeded random weights built in memory, so it runs where the model files are not
//! (a GPU machine reached with a single binary).
//!
//! Owns: the random model, the agreement check (each vector against the CPU's f32 one)
//! and the throughput run. Must not: read model files or the store.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};
use serde::Serialize;

use super::device::{self, DeviceChoice};
use super::portable::Portable;
use super::EmbedError;

/// The shape of multilingual-e5-small (vocabulary included).
fn e5_small_config() -> Config {
    Config {
        vocab_size: 250_037,
        hidden_size: 384,
        num_hidden_layers: 12,
        num_attention_heads: 12,
        intermediate_size: 1536,
        hidden_act: HiddenAct::Gelu,
        hidden_dropout_prob: 0.0,
        max_position_embeddings: 512,
        type_vocab_size: 2,
        initializer_range: 0.02,
        layer_norm_eps: 1e-12,
        pad_token_id: 1,
        ..Config::default()
    }
}

/// A deterministic generator (SplitMix64), so the CPU and the device, and every run,
/// see the same weights and token ids.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-scale, scale).
    fn values(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| ((self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale)
            .collect()
    }
}

/// Random weights under BERT's names; dense layers scaled like a trained model's so
/// activations stay in range through twelve layers.
fn random_weights(config: &Config, seed: u64) -> candle_core::Result<HashMap<String, Tensor>> {
    let mut rng = Seeded(seed);
    let (h, ff) = (config.hidden_size, config.intermediate_size);
    // (name, shape, values); tensors are made at the end.
    let mut entries: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let e = "embeddings";
    for (name, rows, scale) in [
        ("word_embeddings", config.vocab_size, 0.1),
        ("position_embeddings", config.max_position_embeddings, 0.05),
        ("token_type_embeddings", config.type_vocab_size, 0.05),
    ] {
        let values = rng.values(rows * h, scale);
        entries.push((format!("{e}.{name}.weight"), vec![rows, h], values));
    }
    let norm = |name: String, rng: &mut Seeded, entries: &mut Vec<_>| {
        let w = rng.values(h, 0.1).into_iter().map(|x| 1.0 + x).collect();
        entries.push((format!("{name}.weight"), vec![h], w));
        entries.push((format!("{name}.bias"), vec![h], rng.values(h, 0.05)));
    };
    norm(format!("{e}.LayerNorm"), &mut rng, &mut entries);
    for i in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        for (name, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", ff, h),
            ("output.dense", h, ff),
        ] {
            let scale = (3.0 / inp as f32).sqrt();
            let w = rng.values(out * inp, scale);
            entries.push((format!("{p}.{name}.weight"), vec![out, inp], w));
            entries.push((format!("{p}.{name}.bias"), vec![out], rng.values(out, 0.02)));
        }
        norm(
            format!("{p}.attention.output.LayerNorm"),
            &mut rng,
            &mut entries,
        );
        norm(format!("{p}.output.LayerNorm"), &mut rng, &mut entries);
    }
    entries
        .into_iter()
        .map(|(name, shape, values)| Ok((name, Tensor::from_vec(values, shape, &Device::Cpu)?)))
        .collect()
}

fn portable(
    weights: &HashMap<String, Tensor>,
    config: &Config,
    device: &Device,
    dtype: DType,
    batch_tokens: usize,
) -> Result<Portable, EmbedError> {
    let vb = VarBuilder::from_tensors(weights.clone(), dtype, device);
    Portable::from_var_builder(vb, config, dtype, config.pad_token_id as u32, batch_tokens)
}

/// Token ids `<s> … </s>` of `len` tokens drawn from the vocabulary.
fn sequence(rng: &mut Seeded, len: usize, vocab: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..len)
        .map(|_| 5 + (rng.next() % (vocab as u64 - 5)) as u32)
        .collect();
    ids[0] = 0;
    if len > 1 {
        ids[len - 1] = 2;
    }
    ids
}

/// The lengths of the throughput run: `n` windows between 32 and 512 tokens, the same
/// formula `scripts/gpu-check`'s PyTorch peer uses.
pub fn throughput_lengths(n: usize) -> Vec<usize> {
    (0..n).map(|i| 32 + (i * 7919) % 481).collect()
}

#[derive(Debug, Serialize)]
pub struct Agreement {
    pub precision: String,
    /// Lowest cosine between a vector on the device (batched) and the CPU's vector in the
    /// same precision (one at a time): does the device compute what the CPU computes?
    pub min_cosine: f32,
    /// Lowest cosine against the CPU's f32 vector: what the precision itself costs (with
    /// random weights this drifts far more than with the trained model).
    pub min_cosine_vs_f32: f32,
    pub sequences: usize,
}

#[derive(Debug, Serialize)]
pub struct Throughput {
    pub precision: String,
    pub windows: usize,
    pub tokens: usize,
    pub batch_tokens: usize,
    /// Best of the timed runs.
    pub seconds: f64,
    pub tokens_per_second: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub device: String,
    pub agreement: Vec<Agreement>,
    pub throughput: Vec<Throughput>,
}

/// Agreement of every precision on `choice` with the CPU in f32, then throughput over
/// `windows` windows (0: skip it).
pub fn run(
    choice: DeviceChoice,
    windows: usize,
    batch_tokens: usize,
) -> Result<Report, EmbedError> {
    let device = device::resolve(choice)?;
    let config = e5_small_config();
    let weights = random_weights(&config, 17)?;
    let reference = portable(&weights, &config, &Device::Cpu, DType::F32, batch_tokens)?;
    let mut rng = Seeded(99);
    let mut seqs: Vec<Vec<u32>> = [1, 2, 31, 127, 512]
        .iter()
        .map(|&len| sequence(&mut rng, len, config.vocab_size))
        .collect();
    for len in [5, 40, 77, 200, 300, 450, 511, 64] {
        seqs.push(sequence(&mut rng, len, config.vocab_size));
    }
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let one_at_a_time = |model: &Portable| -> Result<Vec<Vec<f32>>, EmbedError> {
        refs.iter()
            .map(|s| model.embed_many(&[s], &|| ()).pop().expect("one vector"))
            .collect()
    };
    let f32_reference = one_at_a_time(&reference)?;
    let mut report = Report {
        device: device::name(&device),
        agreement: Vec::new(),
        throughput: Vec::new(),
    };
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        // The CPU in the same precision, one sequence at a time.
        let expected = if dtype == DType::F32 {
            f32_reference.clone()
        } else {
            one_at_a_time(&portable(
                &weights,
                &config,
                &Device::Cpu,
                dtype,
                batch_tokens,
            )?)?
        };
        let model = portable(&weights, &config, &device, dtype, batch_tokens)?;
        // Batched, as ingests run on a device.
        let got = model.embed_many(&refs, &|| ());
        let (mut min_cosine, mut min_cosine_vs_f32) = (1.0f32, 1.0f32);
        for ((g, e), f) in got.into_iter().zip(&expected).zip(&f32_reference) {
            let g = g?;
            min_cosine = min_cosine.min(crate::embed::dot(&g, e));
            min_cosine_vs_f32 = min_cosine_vs_f32.min(crate::embed::dot(&g, f));
        }
        report.agreement.push(Agreement {
            precision: format!("{dtype:?}").to_lowercase(),
            min_cosine,
            min_cosine_vs_f32,
            sequences: refs.len(),
        });
        if windows == 0 {
            continue;
        }
        let work: Vec<Vec<u32>> = throughput_lengths(windows)
            .into_iter()
            .map(|len| sequence(&mut rng, len, config.vocab_size))
            .collect();
        let work: Vec<&[u32]> = work.iter().map(Vec::as_slice).collect();
        let tokens: usize = work.iter().map(|s| s.len()).sum();
        // One warm-up pass (kernel compilation, allocator), then the best of three.
        model.embed_many(&work, &|| ());
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let started = Instant::now();
            for r in model.embed_many(&work, &|| ()) {
                r?;
            }
            best = best.min(started.elapsed().as_secs_f64());
        }
        report.throughput.push(Throughput {
            precision: format!("{dtype:?}").to_lowercase(),
            windows,
            tokens,
            batch_tokens: model.batch_tokens(),
            seconds: best,
            tokens_per_second: tokens as f64 / best,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the CPU the check runs the same code a GPU does: batched vectors equal the
    /// one-at-a-time ones in every precision, for a random model of the real shape.
    #[test]
    fn the_device_check_agrees_with_itself_on_the_cpu() {
        let report = run(DeviceChoice::Cpu, 0, 2048).expect("run the check on the CPU");
        assert_eq!(report.device, "cpu");
        assert_eq!(report.agreement.len(), 3);
        for a in &report.agreement {
            let floor = if a.precision == "f32" { 0.9999 } else { 0.999 };
            eprintln!("{a:?}");
            assert!(a.min_cosine >= floor, "{a:?}");
        }
        assert_eq!(
            throughput_lengths(3),
            vec![32, 32 + 7919 % 481, 32 + 15838 % 481]
        );
    }
}
