//! Turning text into vectors.
//!
//! Owns: the model manifest ([`ModelSpec`]), locating or downloading the model files,
//! the device and precision ([`EncoderOptions`]), the two engines that run the BERT
//! network (storydex's AVX-512 kernels, the fast CPU path, and candle-transformers'
//! BERT on any CPU or a CUDA GPU, the portable path), tokenization into windows, and
//! pooling. Must not: know about stories, the store or HTTP; callers hand it strings
//! and get vectors back.

mod avx512;
pub mod device;
pub mod device_check;
mod encoder;
pub mod fake;
pub mod files;
mod gate;
mod portable;
mod spec;

/// Where the AVX-512 encoder's time goes (`examples/roofline.rs`).
#[doc(hidden)]
pub use avx512::roofline;
pub use device::{DeviceChoice, DeviceInfo, EncoderOptions, Engine, Precision};
pub use encoder::CandleEncoder;
pub use files::{ModelFiles, ModelSource};
pub use spec::ModelSpec;
// The encoder files normalise and score through these names (`super::normalize`,
// `crate::embed::dot`); the math itself is `crate::vector`'s.
use crate::vector::{dot, normalize};

/// Whether a text is a search query or a stored passage (e5 embeds them with different prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Query,
    Passage,
}

/// Short windows for long passages (see the manifest's `[detail_windows]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailWindows {
    /// Tokens per detail window (at most the model's limit).
    pub tokens: usize,
    /// Tokens shared by consecutive detail windows.
    pub overlap: usize,
}

/// One window of a passage and its vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Byte range of the window inside the passage text (always on char boundaries).
    pub start: usize,
    pub end: usize,
    /// Tokens fed to the model for this window, `<s>`/`</s>` and prefix included.
    pub tokens: usize,
    /// L2-normalised embedding.
    pub vector: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("model file {path} is missing: {hint}")]
    MissingFile {
        path: std::path::PathBuf,
        hint: String,
    },
    #[error("could not read model manifest {path}: {message}")]
    Manifest {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("could not download {file} from the Hugging Face Hub ({repo}): {message}")]
    Download {
        repo: String,
        file: String,
        message: String,
    },
    #[error("model config {path} is invalid: {message}")]
    Config {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("model: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("model output has dimension {got}, the manifest says {expected}")]
    Dimension { expected: usize, got: usize },
    #[error("cannot embed an empty text")]
    EmptyText,
    /// The device asked for is not there, or ran out of memory: the sentence says what
    /// to do.
    #[error("{0}")]
    Device(String),
}

/// The one vector of a passage: the normalised mean of its windows' vectors (what a
/// story is clustered and checked by, and what `POST /v1/embeddings` returns).
pub fn story_vector(windows: &[Window]) -> Vec<f32> {
    crate::vector::mean_unit_vector(windows.iter().map(|w| w.vector.as_slice()))
}

/// A token sequence an engine can run: not empty, and within the model's positions.
pub(crate) fn check_sequence(len: usize, max_positions: usize) -> Result<(), EmbedError> {
    if len == 0 {
        return Err(EmbedError::EmptyText);
    }
    if len > max_positions {
        return Err(EmbedError::Tokenizer(format!(
            "{len} tokens is more than the model's {max_positions} positions"
        )));
    }
    Ok(())
}

/// What the rest of storydex needs from an embedding model.
///
/// The real implementation is [`CandleEncoder`]; HTTP-layer tests use a fake behind the
/// same trait so they run without the model.
pub trait Encoder: Send + Sync {
    /// Identifies the model (and its weights' variant) so a store can refuse another one.
    fn model_id(&self) -> &str;
    fn dimension(&self) -> usize;
    /// One vector for a query, cut to the model's token limit.
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError>;
    /// One vector per query, in order, each equal to [`Encoder::embed_query`]'s; an
    /// encoder may embed them together (the server batches queries that wait together).
    fn embed_queries(&self, texts: &[&str]) -> Vec<Result<Vec<f32>, EmbedError>> {
        texts.iter().map(|t| self.embed_query(t)).collect()
    }
    /// Each passage becomes one or more overlapping windows that together cover all of it.
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<Window>>, EmbedError>;
    /// Tokens the model reads for a query: cut to the model's limit, prefix, `<s>` and
    /// `</s>` included.
    fn count_tokens(&self, text: &str) -> Result<usize, EmbedError>;
    /// How passages are cut into windows (and prefixed): part of each stored story's
    /// content hash, so a change of layout re-embeds on the next ingest.
    fn passage_layout(&self) -> String {
        String::new()
    }
    /// The device, precision and engine the model runs on.
    fn device_info(&self) -> DeviceInfo;
}
