//! The model manifest (`models/<name>.toml`): facts about a model that are not in its
//! weights, and the thresholds and ranking knobs calibrated for it (read as plain data,
//! [`crate::tuning`]; the service decides what they mean). Must not: load weights.

use std::path::Path;

use serde::Deserialize;

use super::EmbedError;
use crate::tuning::{Ranking, Thresholds};

/// The manifest of the default model, compiled in so the binary works from any directory.
const DEFAULT_MANIFEST: &str = include_str!("../../models/multilingual-e5-small.toml");

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    pub hub_repo: String,
    pub revision: String,
    pub architecture: String,
    pub dimension: usize,
    pub max_tokens: usize,
    pub pooling: String,
    pub query_prefix: String,
    pub passage_prefix: String,
    pub pad_token_id: u32,
    pub files: Vec<String>,
    pub window_overlap: usize,
    /// Padded tokens (windows × the longest of them) per forward pass on the
    /// candle-transformers path (GPUs); `--batch-tokens` overrides it.
    #[serde(default = "default_batch_tokens")]
    pub batch_tokens: usize,
    /// When set, a passage longer than one window gets its head window and then short
    /// windows over all of it, instead of full-size windows.
    #[serde(default)]
    pub detail_windows: Option<super::DetailWindows>,
    pub thresholds: Thresholds,
    /// Ranking knobs tuned for this model (defaults when the manifest has none).
    #[serde(default)]
    pub search: Ranking,
}

fn default_batch_tokens() -> usize {
    16_384
}

impl ModelSpec {
    /// The built-in manifest of `intfloat/multilingual-e5-small`.
    pub fn default_model() -> Self {
        Self::parse(
            DEFAULT_MANIFEST,
            Path::new("models/multilingual-e5-small.toml"),
        )
        .expect("the built-in manifest parses and is valid; this is a bug")
    }

    pub fn from_file(path: &Path) -> Result<Self, EmbedError> {
        let text = std::fs::read_to_string(path).map_err(|e| EmbedError::Manifest {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Self, EmbedError> {
        let spec: ModelSpec = toml::from_str(text).map_err(|e| EmbedError::Manifest {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let bad = |message: String| EmbedError::Manifest {
            path: path.to_owned(),
            message,
        };
        if spec.architecture != "bert" {
            return Err(bad(format!(
                "architecture {:?} is not supported (only \"bert\")",
                spec.architecture
            )));
        }
        if spec.pooling != "mean" {
            return Err(bad(format!(
                "pooling {:?} is not supported (only \"mean\")",
                spec.pooling
            )));
        }
        if spec.max_tokens < 16 || spec.window_overlap * 2 >= spec.max_tokens {
            return Err(bad(format!(
                "window_overlap {} must be under half of max_tokens {}",
                spec.window_overlap, spec.max_tokens
            )));
        }
        if spec.batch_tokens < spec.max_tokens {
            return Err(bad(format!(
                "batch_tokens {} must hold at least one full window of max_tokens {}",
                spec.batch_tokens, spec.max_tokens
            )));
        }
        if let Some(d) = spec.detail_windows {
            if d.tokens < 16 || d.overlap * 2 >= d.tokens {
                return Err(bad(format!(
                    "detail_windows: overlap {} must be under half of tokens {} (at least 16)",
                    d.overlap, d.tokens
                )));
            }
        }
        Ok(spec)
    }

    /// What decides a passage's windows and vectors besides the weights: stored stories
    /// embedded under another layout are embedded again on the next ingest.
    pub fn layout_key(&self) -> String {
        let detail = self
            .detail_windows
            .map_or("none".to_owned(), |d| format!("{}/{}", d.tokens, d.overlap));
        format!(
            "{}|{}|{}|{}|{}",
            self.max_tokens, self.window_overlap, detail, self.query_prefix, self.passage_prefix
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_manifest_describes_multilingual_e5_small() {
        let spec = ModelSpec::default_model();
        assert_eq!(spec.hub_repo, "intfloat/multilingual-e5-small");
        assert_eq!(spec.dimension, 384);
        assert_eq!(spec.max_tokens, 512);
        assert_eq!(spec.query_prefix, "query: ");
        assert_eq!(spec.passage_prefix, "passage: ");
        assert_eq!(spec.pad_token_id, 1);
    }

    #[test]
    fn manifest_with_unknown_pooling_is_rejected_with_the_reason() {
        let text = DEFAULT_MANIFEST.replace("pooling = \"mean\"", "pooling = \"cls\"");
        let err = ModelSpec::parse(&text, Path::new("x.toml")).unwrap_err();
        assert!(err.to_string().contains("pooling \"cls\""), "{err}");
    }
}
