//! Where and how the encoder runs: the device (`--device`), the precision, the engine,
//! and what was chosen, for `/health`, `/metrics` and `storydex model info`.
//!
//! Owns: parsing the user's choices, turning them into a candle [`Device`] with a
//! sentence that says what to do when that fails, and [`DeviceInfo`]. Must not: load
//! weights.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::EmbedError;

/// `--device` / `STORYDEX_DEVICE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA GPU 0 when the build has the `cuda` feature and a GPU answers; else the CPU.
    #[default]
    Auto,
    Cpu,
    /// An NVIDIA GPU by its CUDA index.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "unknown device {s:?}: use auto, cpu, cuda or cuda:N (N is the GPU's index \
                 as nvidia-smi lists it)"
            )
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(Self::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// `--precision` / `STORYDEX_PRECISION`: the number format of weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// bf16 on CPUs with AVX512-BF16 (f32 elsewhere on the CPU), f16 on a GPU.
    #[default]
    Auto,
    F32,
    Bf16,
    F16,
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "f16" | "fp16" | "float16" | "half" => Ok(Self::F16),
            _ => Err(format!(
                "unknown precision {s:?}: use auto, f32, bf16 or f16"
            )),
        }
    }
}

/// `--engine` / `STORYDEX_ENGINE`: which implementation of the network runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// storydex's AVX-512 kernels on CPUs that have AVX-512, candle-transformers'
    /// BERT everywhere else (older CPUs, every GPU).
    #[default]
    Auto,
    /// storydex's own AVX-512 kernels (CPU only).
    Avx512,
    /// candle-transformers' `BertModel` on the chosen device.
    Candle,
}

impl FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "avx512" => Ok(Self::Avx512),
            "candle" | "candle-transformers" => Ok(Self::Candle),
            _ => Err(format!("unknown engine {s:?}: use auto, avx512 or candle")),
        }
    }
}

/// How to load the encoder: values, not process state, so two encoders loaded side by
/// side (an evaluation comparing precisions) never affect each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncoderOptions {
    pub device: DeviceChoice,
    pub precision: Precision,
    pub engine: Engine,
    /// Padded tokens (sequences × longest) per forward pass on the candle-transformers
    /// path; `None`: the manifest's `batch_tokens`.
    pub batch_tokens: Option<usize>,
    /// Queries (at most 24 tokens) with int8 weights on the AVX-512 path. Off: measured
    /// slower than bf16 on AMD Zen 4 (the per-weight widening costs more than the bytes
    /// it saves); kept to compare.
    pub int8_queries: bool,
}

/// What the loaded encoder runs on, as `/health`, `/metrics` and `model info` say it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceInfo {
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// `f32`, `bf16` or `f16`. On the AVX-512 path, the precision of passages; queries
    /// of at most 24 tokens run in f32 (or int8 when asked).
    pub precision: String,
    /// `avx512` (storydex's kernels) or `candle-transformers`.
    pub engine: String,
    /// Padded tokens per forward pass (candle-transformers path; 0 on the AVX-512 path,
    /// which embeds each window on its own).
    pub batch_tokens: usize,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} on {}", self.engine, self.precision, self.device)?;
        if self.batch_tokens > 0 {
            write!(f, ", batches of {} tokens", self.batch_tokens)?;
        }
        Ok(())
    }
}

/// Whether this build can run on NVIDIA GPUs.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// The candle device for `choice`, with a sentence saying what to do when it is not
/// there.
pub(crate) fn resolve(choice: DeviceChoice) -> Result<Device, EmbedError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(n) => cuda(n),
        DeviceChoice::Auto => {
            if CUDA_BUILT {
                match cuda(0) {
                    Ok(device) => return Ok(device),
                    Err(e) => tracing::info!("no GPU, embedding on the CPU: {e}"),
                }
            }
            Ok(Device::Cpu)
        }
    }
}

fn cuda(n: usize) -> Result<Device, EmbedError> {
    if !CUDA_BUILT {
        return Err(EmbedError::Device(format!(
            "--device cuda:{n} needs a storydex built with the `cuda` feature; this one was \
             built without it. Build it with `scripts/build-cuda` (or `cargo build --release \
             --features cuda` where the CUDA toolkit is installed), or run with --device cpu"
        )));
    }
    Device::new_cuda(n).map_err(|e| {
        EmbedError::Device(format!(
            "no NVIDIA GPU answered as cuda:{n} ({e}). Check that `nvidia-smi` lists it, that \
             the driver (libcuda.so.1) and the CUDA libraries (cuBLAS, cuRAND, NVRTC) can be \
             loaded (LD_LIBRARY_PATH), and CUDA_VISIBLE_DEVICES; or run with --device cpu"
        ))
    })
}

/// The name `/health` and `model info` give a device.
pub(crate) fn name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_owned(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Whether a model error is the GPU running out of memory (a smaller batch may fit).
pub(crate) fn is_out_of_memory(e: &candle_core::Error) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("out_of_memory") || text.contains("out of memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_as_the_flag_documents_them() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!("CPU".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceChoice::Cuda(3)));
        let err = "cuda:x".parse::<DeviceChoice>().unwrap_err();
        assert!(err.contains("cuda:N"), "{err}");
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert_eq!(DeviceChoice::Cuda(1).to_string(), "cuda:1");
        assert_eq!("bf16".parse(), Ok(Precision::Bf16));
        assert!("int4".parse::<Precision>().is_err());
        assert_eq!("candle".parse(), Ok(Engine::Candle));
    }

    #[test]
    fn cuda_asked_of_a_cpu_build_names_the_feature_and_the_build_command() {
        if CUDA_BUILT {
            return;
        }
        let err = resolve(DeviceChoice::Cuda(0)).unwrap_err().to_string();
        assert!(err.contains("`cuda` feature"), "{err}");
        assert!(err.contains("scripts/build-cuda"), "{err}");
        assert!(err.contains("--device cpu"), "{err}");
        assert!(resolve(DeviceChoice::Auto).unwrap().is_cpu());
    }

    #[test]
    fn out_of_memory_is_recognised_in_cuda_errors() {
        let e = candle_core::Error::Msg(
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into(),
        );
        assert!(is_out_of_memory(&e));
        assert!(!is_out_of_memory(&candle_core::Error::Msg(
            "shape mismatch".into()
        )));
    }
}
